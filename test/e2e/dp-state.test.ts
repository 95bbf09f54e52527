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

    // The operator need not wait for the backoff: retry it now, or cancel it.
    const queue = JSON.parse((await cascade(['queue', '--json'], { env })).stdout) as {
      routes: { child: string; transfers: { id: string; packageId: string; state: string }[] }[];
    };
    const entry = queue.routes.find((r) => r.child === 'cen-dp9')?.transfers.find((x) => x.packageId === pkg);
    expect(entry?.state).toBe('retrying');
    const id = entry?.id as string;
    const transferOf = async () =>
      (
        JSON.parse((await cascade(['status', pkg, '--json'], { env })).stdout) as {
          targets: { dp: string; retries: number; state: string; lastError: string | null }[];
        }
      ).targets.find((x) => x.dp === 'cen-dp9');
    const before = (await transferOf())?.retries ?? 0;
    const now = await cascade(['transfer', 'retry-now', id], { env });
    expect(now.stderr).toBe('');
    expect(now.stdout).toMatch(new RegExp(`^transfer ${id}: ${pkg} version 1 to cen-dp9, queued`));
    await until('tried again at once', async () => ((await transferOf())?.retries ?? 0) > before, 5_000);
    const cancel = await cascade(['transfer', 'cancel', id, '--json'], { env });
    expect(cancel.stderr).toBe('');
    expect(JSON.parse(cancel.stdout)).toMatchObject({ id, state: 'failed', lastError: expect.stringMatching(/^cancelled by /) });
    expect(await transferOf()).toMatchObject({ state: 'failed', lastError: expect.stringMatching(/^cancelled by /) });
    const again = await cascade(['transfer', 'cancel', id], { env });
    expect([again.code, again.stderr]).toEqual([1, `cascade: transfer ${id} is failed already: nothing to cancel\n`]);
    const unknown = await cascade(['transfer', 'retry-now', 'nope'], { env });
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/^cascade: no transfer nope at site CEN/);
  });
});
