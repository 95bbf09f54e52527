import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeRelease } from '../../src/lib/version.js';
import { BIN, cascade, freePort, type SiteProcess, startSite, tmpDir, until } from './helpers.js';

interface Dp {
  name: string;
  url: string;
  packages: { packageId: string; version: number }[];
  release: { running: string | null; upgrade: { target: string; state: string; attempt: number; detail: string | null } | null } | null;
}

/**
 * Site systems follow their site: a site server started on a newer release stores it as a
 * package, sends it to its DPs, and upgrades them one at a time (each drained first), while a
 * client downloads from them; a release that does not start on a DP is rolled back there, and
 * the upgrade halts, saying so.
 */
describe('DPs follow their site to a newer release', () => {
  const running: SiteProcess[] = [];
  const agents: ChildProcess[] = [];
  afterAll(async () => {
    for (const a of agents) if (a.exitCode === null) a.kill('SIGKILL');
    for (const s of running.reverse()) await s.stop().catch(() => undefined);
  });

  it('upgrades two DPs one at a time while a client downloads, and rolls back a release that does not start', async () => {
    const box = tmpDir('cascade-release-');
    // Quick cadences: DPs report every second, drain for 2 s, the site steps every second.
    const fast = {
      CASCADE_DP_STATE_SECONDS: '1',
      CASCADE_REPORT_SECONDS: '0.5',
      CASCADE_DP_DRAIN_SECONDS: '2',
      CASCADE_ROLLOUT_SECONDS: '1',
      CASCADE_DP_START_SECONDS: '60',
    };
    const siteDir = path.join(box, 'site');
    expect((await cascade(['site', 'init', '--data', siteDir, '--code', 'CEN'])).code).toBe(0);
    const siteListen = `127.0.0.1:${await freePort()}`;
    let site = await startSite(siteDir, [], { listen: siteListen, env: fast });
    running.push(site);
    const env = site.env;

    const dpNames = ['dp-north', 'dp-south'];
    const dps: SiteProcess[] = [];
    for (const name of dpNames) {
      const token = (await cascade(['dp', 'join-token'], { env })).stdout.trim();
      const d = path.join(box, name);
      const listen = `127.0.0.1:${await freePort()}`;
      expect(
        (await cascade(['dp', 'init', '--data', d, '--site', site.url, '--join-token', token, '--name', name, '--listen', listen])).code,
      ).toBe(0);
      const dp = await startSite(d, [], { role: 'dp', listen, env: fast });
      running.push(dp);
      dps.push(dp);
    }
    const dpList = async () => JSON.parse((await cascade(['dp', 'list', '--json'], { env: site.env })).stdout).dps as Dp[];
    await until('both DPs report release 0.1.0', async () =>
      (await dpList()).filter((d) => dpNames.includes(d.name)).every((d) => d.release?.running === '0.1.0'),
    );

    // A 24 MiB package on both DPs, advertised to every client; each client downloads at 1 MiB/s.
    const src = path.join(box, 'src');
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, 'big.bin'), Buffer.from(Array.from({ length: 24 << 20 }, (_, i) => (i * 2654435761) >>> 24)));
    fs.writeFileSync(path.join(src, 'setup.sh'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    const pkg = JSON.parse(
      (await cascade(['package', 'create', src, '--name', 'Big', '--program', 'Setup=./setup.sh', '--json'], { env })).stdout,
    ).id as string;
    expect((await cascade(['distribute', pkg, ...dpNames.flatMap((n) => ['--to', `dp:${n}`])], { env })).code).toBe(0);
    await until(
      'both DPs hold the package',
      async () => (await dpList()).filter((d) => dpNames.includes(d.name) && d.packages.some((p) => p.packageId === pkg)).length === 2,
      120_000,
    );
    expect((await cascade(['collection', 'create', 'Everyone', '--rule', 'os != ""'], { env })).code).toBe(0);
    expect((await cascade(['advertise', pkg, '--program', 'Setup', '--collection', 'Everyone', '--mandatory', 'now'], { env })).code).toBe(
      0,
    );
    expect((await cascade(['site', 'set', '--download-slots', '2', '--client-rate', '2MiB/s'], { env })).code).toBe(0);
    const agentDir = path.join(box, 'agent');
    const token = (await cascade(['agent', 'join-token'], { env })).stdout.trim();
    expect(
      (await cascade(['agent', 'init', '--data', agentDir, '--site', site.url, '--join-token', token, '--hostname', 'pc-1'])).code,
    ).toBe(0);

    // The site server restarts on release 0.2.0 (same data folder, same address).
    await site.stop();
    const v2 = writeRelease('0.2.0', path.join(box, 'release-0.2.0'));
    site = await startSite(siteDir, [], { listen: siteListen, env: fast, bin: path.join(v2, 'bin', 'cascade') });
    running.push(site);

    // A client downloads meanwhile (about 24 s at 1 MiB/s).
    const agent = spawn(process.execPath, [BIN, 'agent', 'run-now', '--data', agentDir], { env: { ...process.env } });
    agents.push(agent);
    let agentLog = '';
    agent.stdout.on('data', (d) => {
      agentLog += d;
    });
    agent.stderr.on('data', (d) => {
      agentLog += d;
    });

    // Watch the DPs: never both out of service at once; each comes back on 0.2.0.
    const restarting = new Set(['draining', 'upgrading']);
    const order: string[] = [];
    // Whether the client was still downloading when each DP began its restart.
    const downloading: boolean[] = [];
    await until(
      'both DPs run release 0.2.0',
      async () => {
        const list = (await dpList()).filter((d) => dpNames.includes(d.name));
        const out = list.filter((d) => d.release?.upgrade && restarting.has(d.release.upgrade.state)).map((d) => d.name);
        expect(out.length).toBeLessThanOrEqual(1);
        for (const n of out)
          if (!order.includes(n)) {
            order.push(n);
            downloading.push(agent.exitCode === null);
          }
        return list.every((d) => d.release?.running === '0.2.0' && d.release.upgrade?.state === 'upgraded');
      },
      120_000,
    );
    expect(order).toHaveLength(2);
    expect(downloading).toEqual([true, true]);
    await until('the client finishes', async () => agent.exitCode !== null, 90_000);
    expect(agent.exitCode, agentLog).toBe(0);
    expect(agentLog).toMatch(/succeeded/);
    for (const d of dps) expect(d.logs()).toContain('restarting on a newer release');
    for (const d of dps) expect(d.logs()).toContain('running the new release: confirmed by its site');
    for (const name of dpNames) {
      const rel = JSON.parse(fs.readFileSync(path.join(box, name, 'releases.json'), 'utf8'));
      expect(rel).toMatchObject({ current: '0.2.0', trying: null });
      expect(fs.existsSync(path.join(box, name, 'releases', '0.2.0', 'dist', 'lib', 'version.js'))).toBe(true);
    }
    const listed = await cascade(['dp', 'list'], { env: site.env });
    expect(listed.stdout).toMatch(/dp-north +CEN +remote +online +0\.2\.0 /);

    // Release 0.3.0 cannot serve as a DP: the first DP rolls back to 0.2.0; the upgrade halts there.
    await site.stop();
    const v3 = writeRelease('0.3.0', path.join(box, 'release-0.3.0'));
    const main = path.join(v3, 'dist', 'main.js');
    fs.writeFileSync(
      main,
      `if (process.argv.includes('dp') && process.env.CASCADE_DP_SUPERVISED === '1') { console.error('boom: this release cannot serve'); process.exit(3); }\n${fs.readFileSync(main, 'utf8')}`,
    );
    site = await startSite(siteDir, [], { listen: siteListen, env: fast, bin: path.join(v3, 'bin', 'cascade') });
    running.push(site);
    await until(
      'the first DP rolls back and the upgrade halts',
      async () => (await dpList()).some((d) => d.release?.upgrade?.state === 'rolled-back'),
      120_000,
    );
    const list = (await dpList()).filter((d) => dpNames.includes(d.name));
    const failed = list.find((d) => d.release?.upgrade?.state === 'rolled-back') as Dp;
    const other = list.find((d) => d !== failed) as Dp;
    expect(failed.release?.running).toBe('0.2.0');
    expect(failed.release?.upgrade?.detail).toMatch(
      /release 0\.3\.0 did not start there \(DP 0\.3\.0 exited \(code 3\) before its first status report: .*boom: this release cannot serve\); back on 0\.2\.0/,
    );
    expect(other.release?.running).toBe('0.2.0');
    expect(other.release?.upgrade?.state).not.toMatch(/draining|upgrading/);
    const text = await cascade(['dp', 'list'], { env: site.env });
    expect(text.stdout).toContain(`${failed.name}: release 0.3.0 did not start there`);
    expect(text.stdout).toMatch(/0\.2\.0 → 0\.3\.0 rolled-back/);
    const resumed = await cascade(['dp', 'upgrade', failed.name, '--json'], { env: site.env });
    expect(JSON.parse(resumed.stdout)).toEqual({ release: '0.3.0', resumed: [failed.name] });
  }, 300_000);
});
