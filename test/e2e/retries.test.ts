import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cascade, freePort, type SiteProcess, startSite, tmpDir, until } from './helpers.js';

interface Status {
  targets: { dp: string; version: number; state: string; lastError: string | null; retries?: number }[];
}

/**
 * Retries are bounded: a DP that stays unreachable fails its target after CASCADE_MAX_RETRIES
 * attempts, saying so; distributing again once it is back resumes and installs.
 */
describe('a DP that stays away', () => {
  const running: SiteProcess[] = [];
  afterAll(async () => {
    for (const s of running) await s.stop();
  });

  it('fails after the retry limit, and a new distribute resumes it', async () => {
    const root = tmpDir('cascade-retries-');
    const cenDir = path.join(root, 'CEN');
    expect((await cascade(['site', 'init', '--data', cenDir, '--code', 'CEN', '--listen', `127.0.0.1:${await freePort()}`])).code).toBe(0);
    const site = await startSite(cenDir, [], { listen: null, env: { CASCADE_MAX_RETRIES: '2', CASCADE_PING_SECONDS: '1' } });
    running.push(site);
    const env = site.env;
    const token = JSON.parse((await cascade(['dp', 'join-token', '--json'], { env })).stdout).token;
    const dpDir = path.join(root, 'dp1');
    const listen = `127.0.0.1:${await freePort()}`;
    expect(
      (await cascade(['dp', 'init', '--data', dpDir, '--site', site.url, '--join-token', token, '--name', 'far-dp', '--listen', listen]))
        .stderr,
    ).toBe('');
    // The DP joined, then went away.
    const src = path.join(root, 'src');
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, 'a.txt'), 'hello\n');
    const id = JSON.parse((await cascade(['package', 'create', src, '--name', 'A', '--json'], { env })).stdout).id;
    expect((await cascade(['distribute', id, '--to', 'dp:far-dp'], { env })).code).toBe(0);
    const target = async () =>
      (JSON.parse((await cascade(['status', id, '--json'], { env })).stdout) as Status).targets.find((t) => t.dp === 'far-dp');
    await until('the target fails after two attempts', async () => (await target())?.state === 'failed', 60_000);
    expect((await target())?.lastError).toMatch(/gave up after 2 failed attempts \(CASCADE_MAX_RETRIES=2\): distribute again to resume$/);

    // Back: distributing again resumes it.
    running.push(await startSite(dpDir, [], { role: 'dp', listen: null }));
    expect((await cascade(['distribute', id, '--to', 'dp:far-dp'], { env })).code).toBe(0);
    await until('installed after all', async () => (await target())?.state === 'installed', 60_000);
  }, 150_000);
});
