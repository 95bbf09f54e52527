import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../../src/api/client.js';
import { NGINX, startBalancer } from '../fixtures/nginx.mjs';
import { cascade, freePort, makeSource, type SiteProcess, sleep, startSite, tmpDir, until } from './helpers.js';

const admin = process.env.CASCADE_TEST_PG;
const haveNginx = fs.existsSync(NGINX);
const why = !admin ? 'CASCADE_TEST_PG is not set (.ci/postgres.sh)' : !haveNginx ? `${NGINX} is not installed` : '';

const FAST = { CASCADE_PING_SECONDS: '1', CASCADE_REPORT_SECONDS: '1', CASCADE_LEASE_SECONDS: '4' };

interface Proc {
  id: string;
  url: string;
  state: string;
  holds: string[];
}
interface Target {
  site: string;
  dp: string;
  version: number;
  state: string;
}

/** SQLite is one process's: a second start on the folder (or on its database file) is refused, and the first loses nothing. */
describe('one process per SQLite site', () => {
  it('refuses a second site start on the same data folder with one line, naming the first', async () => {
    const root = tmpDir();
    const dir = path.join(root, 'cen');
    expect((await cascade(['site', 'init', '--data', dir, '--code', 'CEN'])).code).toBe(0);
    const first = await startSite(dir);
    try {
      const pid = first.proc.pid;
      const second = await cascade(['site', 'start', '--data', dir, '--listen', '127.0.0.1:0']);
      expect(second.code).toBe(1);
      expect(second.stderr.trim().split('\n')).toHaveLength(1);
      expect(second.stderr).toContain(`site CEN already runs on this data folder (process ${pid}, ${first.url}): stop it first`);
      expect(second.stderr).toContain('several processes of one site need a PostgreSQL store');
      // The first one's temporary files are untouched, and it goes on working.
      const src = path.join(root, 'src');
      makeSource(src, 3, 1 << 20);
      const r = await cascade(['package', 'create', src, '--name', 'Still', '--json'], { env: first.env });
      expect(r.stderr).toBe('');
      expect(JSON.parse(r.stdout)).toMatchObject({ version: 1 });
    } finally {
      await first.stop();
    }
    // Stopped (or killed), the folder is free again at once.
    const again = await startSite(dir);
    again.proc.kill('SIGKILL');
    await new Promise((r) => again.proc.once('exit', r));
    const third = await startSite(dir);
    // (Its signal handlers are installed just after it logs that it listens.)
    await sleep(1000);
    expect(await third.stop()).toBe(0);
  });
});

/**
 * Two processes of one site on PostgreSQL behind Debian's nginx: a child site and a DP reach
 * the site only through nginx. The process sending on the route to the child is SIGKILLed
 * mid-transfer; the other takes the route over and the child never receives a chunk it held.
 * Then a rolling restart, one process at a time, during a second distribution: every read
 * through nginx is answered throughout.
 */
describe.skipIf(why !== '')(`a site served by two processes behind nginx${why ? ` — SKIPPED: ${why}` : ''}`, () => {
  const db = `cascade_ha_${process.pid}_${crypto.randomBytes(3).toString('hex')}`;
  const url = (admin ?? '').replace(/\/[^/]*$/, `/${db}`);
  const sql = async (q: string) => {
    const c = new pg.Client({ connectionString: admin });
    await c.connect();
    try {
      await c.query(q);
    } finally {
      await c.end();
    }
  };
  const running: { stop(): Promise<unknown> }[] = [];
  afterAll(async () => {
    for (const p of running.reverse()) await p.stop().catch(() => {});
    await sql(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  });

  it('hands a dead process’s route to the other, sending no verified chunk twice; a rolling restart keeps it serving', async () => {
    await sql(`CREATE DATABASE ${db}`);
    const root = tmpDir();
    const cenDir = path.join(root, 'cen');
    const [lbPort, pa, pb] = [await freePort(), await freePort(), await freePort()];
    const lb = `http://127.0.0.1:${lbPort}`;
    expect((await cascade(['site', 'init', '--data', cenDir, '--code', 'CEN', '--db', url, '--url', lb])).stderr).toBe('');
    const listen = { a: `127.0.0.1:${pa}`, b: `127.0.0.1:${pb}` };
    const procs: Record<'a' | 'b', SiteProcess> = {
      a: await startSite(cenDir, [], { listen: listen.a, env: FAST }),
      b: await startSite(cenDir, [], { listen: listen.b, env: FAST }),
    };
    running.push({ stop: () => procs.a.stop() }, { stop: () => procs.b.stop() });
    const nginx = await startBalancer({ prefix: path.join(root, 'nginx'), port: lbPort, upstreams: [listen.a, listen.b] });
    running.push(nginx);
    const env = { CASCADE_SITE: lb, CASCADE_TOKEN: procs.a.token };
    const api = new ApiClient(lb, { token: procs.a.token });

    // The child site and a DP of CEN join through nginx, and reach CEN only through it.
    const tok = JSON.parse((await cascade(['site', 'join-token', '--json'], { env })).stdout).token;
    const berDir = path.join(root, 'ber');
    const berPort = await freePort();
    expect(
      (
        await cascade([
          'site',
          'init',
          '--data',
          berDir,
          '--code',
          'BER',
          '--parent',
          lb,
          '--join-token',
          tok,
          '--listen',
          `127.0.0.1:${berPort}`,
        ])
      ).stderr,
    ).toBe('');
    const ber = await startSite(berDir, [], { listen: null, env: FAST });
    running.push(ber);
    const dtok = JSON.parse((await cascade(['dp', 'join-token', '--json'], { env })).stdout).token;
    const dpDir = path.join(root, 'dp');
    const dpInit = await cascade(['dp', 'init', '--data', dpDir, '--site', lb, '--join-token', dtok, '--name', 'cen-dp1', '--json']);
    expect(dpInit.stderr).toBe('');
    const dp = await startSite(dpDir, [], { role: 'dp', env: FAST });
    running.push(dp);

    // Both processes run; they share the work.
    const processes = async () => ((await api.json<{ processes: Proc[] }>('GET', '/api/v1/sites')).processes ?? []) as Proc[];
    await until('both processes listed as running', async () => (await processes()).filter((p) => p.state === 'running').length === 2);

    const src = path.join(root, 'src');
    makeSource(src, 7, 24 << 20);
    const pkg = JSON.parse((await cascade(['package', 'create', src, '--name', 'HA', '--json'], { env })).stdout) as {
      id: string;
      bytes: number;
    };
    expect((await cascade(['route', 'set', 'BER', '--rate', '3MiB/s'], { env })).stderr).toBe('');
    expect((await cascade(['distribute', pkg.id, '--to', 'site:BER', '--to', 'dp:cen-dp1'], { env })).code).toBe(0);

    // The process sending to BER, once a quarter of the package is across.
    let holder: Proc | undefined;
    await until('a quarter of the package sent to BER', async () => {
      holder = (await processes()).find((p) => p.holds.includes('route:BER'));
      const t = (
        await api.json<{ transfers: { child: string; bytesDone: number; bytesTotal: number }[] }>('GET', '/api/v1/transfers')
      ).transfers.find((x) => x.child === 'BER');
      return Boolean(holder && t && t.bytesTotal > 0 && t.bytesDone > t.bytesTotal / 4 && t.bytesDone < t.bytesTotal * 0.75);
    });
    const victim = holder?.url === procs.a.url ? 'a' : 'b';
    const other = victim === 'a' ? 'b' : 'a';
    const killedAt = Date.now();
    procs[victim].proc.kill('SIGKILL');

    // The other process takes the route over and finishes; both targets installed.
    await until('the other process holds the route', async () => {
      const ps = await processes();
      return ps.some((p) => p.url === procs[other].url && p.holds.includes('route:BER'));
    });
    const tookOver = (Date.now() - killedAt) / 1000;
    const targets = async () => (await api.json<{ targets: Target[] }>('GET', `/api/v1/distributions/${pkg.id}`)).targets;
    await until(
      'BER and cen-dp1 installed',
      async () => (await targets()).filter((t) => t.state === 'installed' && t.version === 1).length >= 2,
      90_000,
    );
    console.log(`route taken over ${tookOver.toFixed(1)} s after the SIGKILL`);
    expect(procs[other].logs()).toContain('"lease":"route:BER","msg":"lease taken');
    // No verified chunk crossed the route twice: BER never received one it already held.
    expect(ber.logs()).not.toContain('chunks received that this site already held');
    const verify = JSON.parse(
      (await cascade(['package', 'verify', pkg.id, '--json'], { env: { CASCADE_SITE: ber.url, CASCADE_TOKEN: ber.token } })).stdout,
    );
    expect(verify.ok).toBe(true);
    // The dead process shows as such; its temporary files go when a process starts next.
    await until(
      'the killed process shows silent',
      async () => (await processes()).some((p) => p.url === procs[victim].url && p.state === 'silent'),
      60_000,
    );

    // A rolling restart during a second distribution: one process at a time, reads never fail.
    procs[victim] = await startSite(cenDir, [], { listen: listen[victim], env: FAST });
    fs.writeFileSync(path.join(src, 'sub', 'extra.bin'), crypto.randomBytes(16 << 20));
    const v2 = JSON.parse((await cascade(['package', 'update', pkg.id, src, '--json'], { env })).stdout) as { version: number };
    expect(v2.version).toBe(2);
    let reading = true;
    let reads = 0;
    const failures: string[] = [];
    const reader = (async () => {
      while (reading) {
        try {
          await api.json('GET', `/api/v1/distributions/${pkg.id}`);
          reads++;
        } catch (e) {
          failures.push((e as Error).message);
        }
        await sleep(20);
      }
    })();
    try {
      for (const p of ['a', 'b'] as const) {
        expect(await procs[p].stop()).toBe(0);
        await sleep(1000);
        procs[p] = await startSite(cenDir, [], { listen: listen[p], env: FAST });
        await sleep(1000);
      }
      await until(
        'version 2 installed on BER and cen-dp1',
        async () => {
          const t = (await api.json<{ targets: (Target & { version: number })[] }>('GET', `/api/v1/distributions/${pkg.id}`)).targets;
          return t.filter((x) => x.version === 2 && x.state === 'installed').length >= 2;
        },
        120_000,
      );
    } finally {
      reading = false;
      await reader;
    }
    expect(failures, nginx.logs().slice(-3000)).toEqual([]);
    expect(reads).toBeGreaterThan(50);
    expect(ber.logs()).not.toContain('chunks received that this site already held');
    const ps = await processes();
    expect(ps.filter((p) => p.state === 'running')).toHaveLength(2);

    // Download caps hold for the site, whichever process each agent reaches: a burst of 30
    // simulated clients through nginx against a cap of 3.
    const tool = path.join(root, 'tool');
    fs.mkdirSync(tool);
    fs.writeFileSync(path.join(tool, 'install.sh'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    fs.writeFileSync(path.join(tool, 'payload.bin'), crypto.randomBytes(2 << 20));
    const toolId = JSON.parse(
      (await cascade(['package', 'create', tool, '--name', 'Tool', '--program', 'Install=./install.sh', '--json'], { env })).stdout,
    ).id;
    for (const args of [
      ['collection', 'create', 'Everyone', '--rule', 'os = "linux"'],
      ['advertise', toolId, '--program', 'Install', '--collection', 'Everyone', '--mandatory', 'now'],
      ['site', 'set', '--download-slots', '3', '--client-rate', '6MiB/s'],
    ])
      expect((await cascade(args, { env })).stderr).toBe('');
    const agentToken = (await cascade(['agent', 'join-token', '--uses', '40'], { env })).stdout.trim();
    const sim = await cascade(
      ['agent', 'simulate', '--site', lb, '--join-token', agentToken, '--clients', '30', '--until-done', '--duration', '150s', '--json'],
      { env, timeoutMs: 200_000 },
    );
    expect(sim.stderr).toBe('');
    const figures = JSON.parse(sim.stdout);
    expect(figures.done).toBe(30);
    expect(figures.sites.CEN.peakDownloads).toBeGreaterThan(1);
    expect(figures.sites.CEN.peakDownloads).toBeLessThanOrEqual(3);
    expect(figures.sites.CEN.slotRefusals).toBeGreaterThan(0);
  }, 400_000);
});
