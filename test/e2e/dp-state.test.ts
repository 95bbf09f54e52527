import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cascade, freePort, makeSource, type SiteProcess, startSite, tmpDir, until } from './helpers.js';

interface Dp {
  name: string;
  state: string;
}

/**
 * A DP's state is current without waiting for the health checks (every 30 s by default, as
 * here): online as soon as it joined, unreachable as soon as a transfer to it found nothing
 * listening.
 */
describe('DP state', () => {
  const root = tmpDir('cascade-dp-state-');
  const running: SiteProcess[] = [];
  afterAll(async () => {
    for (const p of running) await p.stop();
  });

  it('is online once the DP joined, and unreachable within seconds of a failed contact', async () => {
    const cenDir = path.join(root, 'CEN');
    expect((await cascade(['site', 'init', '--data', cenDir, '--code', 'CEN', '--listen', `127.0.0.1:${await freePort()}`])).code).toBe(0);
    const cen = await startSite(cenDir, [], { listen: null });
    running.push(cen);
    const env = cen.env;
    const token = JSON.parse((await cascade(['dp', 'join-token', '--json'], { env })).stdout).token;
    const dpDir = path.join(root, 'dp');
    const listen = `127.0.0.1:${await freePort()}`;
    const init = await cascade([
      'dp',
      'init',
      '--data',
      dpDir,
      '--site',
      cen.url,
      '--join-token',
      token,
      '--name',
      'cen-dp9',
      '--listen',
      listen,
    ]);
    expect(init.stderr).toBe('');
    const dp = await startSite(dpDir, [], { role: 'dp' });
    running.push(dp);
    const stateOf = async () =>
      (JSON.parse((await cascade(['dp', 'list', '--json'], { env })).stdout) as { dps: Dp[] }).dps.find((d) => d.name === 'cen-dp9')?.state;
    expect(await stateOf()).toBe('online');

    // The DP stops; a distribution to it finds nothing listening: unreachable at once, and the
    // retry names the DP as a DP.
    await dp.stop();
    const src = path.join(root, 'src');
    makeSource(src, 3);
    const pkg = JSON.parse((await cascade(['package', 'create', src, '--name', 'Tools', '--json'], { env })).stdout).id;
    expect((await cascade(['distribute', pkg, '--to', 'dp:cen-dp9'], { env })).code).toBe(0);
    await until('cen-dp9 unreachable', async () => (await stateOf()) === 'unreachable', 10_000);
    const status = JSON.parse((await cascade(['status', pkg, '--json'], { env })).stdout) as {
      targets: { dp: string; state: string; lastError: string | null }[];
    };
    const t = status.targets.find((x) => x.dp === 'cen-dp9');
    expect(t?.state).toBe('retrying');
    expect(t?.lastError).toMatch(/^cannot reach DP cen-dp9 at http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED$/);
  });
});
