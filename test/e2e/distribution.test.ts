import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cascade, freePort, makeSource, type SiteProcess, sleep, startSite, tmpDir, until } from './helpers.js';

interface Status {
  summary: { targeted: number; installed: number; sending: number; pending: number; retrying: number; failed: number };
  targets: {
    site: string;
    state: string;
    bytesDone: number;
    bytesTotal: number;
    detail: string | null;
    lastError: string | null;
    retries: number;
  }[];
}
interface Transfer {
  packageId: string;
  version: number;
  child: string;
  state: string;
  wireBytes: number;
  bytesTotal: number;
}

const FAST = { CASCADE_PING_SECONDS: '1', CASCADE_REPORT_SECONDS: '1' };

/** central → region → branch, three real processes; packages travel down, status comes up. */
describe('distribution down the tree', () => {
  const root = tmpDir('cascade-dist-');
  const sites: Record<string, SiteProcess> = {};
  const dirs: Record<string, string> = {};

  const init = async (code: string, parent?: string) => {
    const port = await freePort();
    dirs[code] = path.join(root, code);
    const args = ['site', 'init', '--data', dirs[code] as string, '--code', code, '--listen', `127.0.0.1:${port}`];
    if (parent) {
      const t = JSON.parse((await cascade(['site', 'join-token', '--json'], { env: (sites[parent] as SiteProcess).env })).stdout).token;
      args.push('--parent', (sites[parent] as SiteProcess).url, '--join-token', t);
    }
    const r = await cascade(args);
    expect(r.stderr).toBe('');
    sites[code] = await startSite(dirs[code] as string, [], { listen: null, env: FAST });
  };
  const status = async (at: string, id: string): Promise<Status> =>
    JSON.parse((await cascade(['status', id, '--json'], { env: (sites[at] as SiteProcess).env })).stdout);
  const transfers = async (at: string): Promise<Transfer[]> =>
    JSON.parse(
      await (
        await fetch(`${(sites[at] as SiteProcess).url}/api/v1/transfers`, {
          headers: { authorization: `Bearer ${(sites[at] as SiteProcess).token}` },
        })
      ).text(),
    ).transfers;
  const installed = (at: string, id: string, site: string, version?: number) => async () =>
    (await status(at, id)).targets.some(
      (t) =>
        t.site === site && t.state === 'installed' && (version === undefined || (t as unknown as { version: number }).version === version),
    );

  beforeAll(async () => {
    await init('CEN');
    await init('EUR', 'CEN');
    await init('BER', 'EUR');
  });
  afterAll(async () => {
    for (const s of Object.values(sites)) await s.stop();
  });

  it('sends a package once down each route, installs it at every site on the way, and reports up', async () => {
    const src = path.join(root, 'src1');
    makeSource(src, 21, 3 << 20);
    // 1 MiB of text, which the central site stores compressed (Brotli) when it ingests it.
    fs.writeFileSync(
      path.join(src, 'notes.txt'),
      Array.from({ length: 60_000 }, (_, i) => `line ${i % 977} of the notes\n`)
        .join('')
        .slice(0, 1 << 20),
    );
    const c = JSON.parse(
      (await cascade(['package', 'create', src, '--name', 'Office', '--json'], { env: (sites.CEN as SiteProcess).env })).stdout,
    );
    const d = await cascade(['distribute', c.id, '--to', 'site:BER', '--to', 'site:EUR', '--json'], {
      env: (sites.CEN as SiteProcess).env,
    });
    expect(d.stderr).toBe('');
    const planned = JSON.parse(d.stdout).targets as { dp: string; path: string[]; state: string; added: boolean }[];
    expect(
      planned.map((t) => ({ dp: t.dp, path: t.path, state: t.state, added: t.added })).sort((a, b) => a.dp.localeCompare(b.dp)),
    ).toEqual([
      { dp: 'BER', path: ['CEN', 'EUR', 'BER'], state: 'pending', added: true },
      { dp: 'EUR', path: ['CEN', 'EUR'], state: 'pending', added: true },
    ]);
    await until('BER installed, as seen from CEN', installed('CEN', c.id, 'BER'));
    const s = await status('CEN', c.id);
    expect(s.summary).toMatchObject({ targeted: 2, installed: 2, failed: 0 });
    // One transfer per route, however many targets lie below it; bytes on the wire ≈ what was lacked.
    const down = (await transfers('CEN')).filter((t) => t.packageId === c.id);
    expect(down).toHaveLength(1);
    expect(down[0]?.wireBytes).toBeLessThanOrEqual(c.bytes * 1.02);
    // The text crosses each route as it is stored, compressed once at CEN: relays do not
    // decompress it for the wire (nor compress it again).
    for (const at of ['CEN', 'EUR']) {
      const t = (await transfers(at)).find((x) => x.packageId === c.id);
      expect(t?.wireBytes).toBeLessThan(c.bytes - 800_000);
    }
    // The branch serves the package, verified against the origin's signature.
    const out = path.join(root, 'out1');
    const f = await cascade(['package', 'fetch', c.id, out], { env: (sites.BER as SiteProcess).env });
    expect(f.stderr).toBe('');
    expect(fs.readFileSync(path.join(out, 'sub/data.bin'))).toEqual(fs.readFileSync(path.join(src, 'sub/data.bin')));
    // Status messages from every site reached the central site (with the status reports, BER's
    // through EUR: a few seconds after the targets' states).
    const want = ['CEN:distribution_started', 'EUR:package_installed', 'BER:package_installed', 'EUR:transfer_done'];
    let codes: string[] = [];
    await until('the messages of every site, seen from CEN', async () => {
      const m = JSON.parse((await cascade(['messages', '--package', c.id, '--json'], { env: (sites.CEN as SiteProcess).env })).stdout);
      codes = m.messages.map((x: { site: string; code: string }) => `${x.site}:${x.code}`);
      return want.every((w) => codes.includes(w));
    });
    expect(codes).toEqual(expect.arrayContaining(want));
    const fromBer = JSON.parse((await cascade(['messages', '--site', 'BER', '--json'], { env: (sites.CEN as SiteProcess).env })).stdout);
    expect(fromBer.messages.every((x: { site: string }) => x.site === 'BER')).toBe(true);

    // An update crosses each route as a delta: far less than the package.
    const src2 = path.join(root, 'src2');
    fs.cpSync(src, src2, { recursive: true, verbatimSymlinks: true });
    const fd = fs.openSync(path.join(src2, 'sub/data.bin'), 'r+');
    fs.writeSync(fd, crypto.randomBytes(4000), 0, 4000, 1_000_000);
    fs.closeSync(fd);
    const u = JSON.parse((await cascade(['package', 'update', c.id, src2, '--json'], { env: (sites.CEN as SiteProcess).env })).stdout);
    expect(u.version).toBe(2);
    await cascade(['distribute', c.id, '--to', 'site:BER'], { env: (sites.CEN as SiteProcess).env });
    await until('version 2 at BER', installed('CEN', c.id, 'BER', 2));
    for (const at of ['CEN', 'EUR']) {
      const t = (await transfers(at)).find((x) => x.packageId === c.id && x.version === 2);
      expect(t?.state).toBe('done');
      expect(t?.wireBytes).toBeGreaterThan(4000);
      expect(t?.wireBytes).toBeLessThan(20_000);
    }
  });

  it('holds a package while the route schedule forbids its priority, then sends it when opened', async () => {
    const src = path.join(root, 'src3');
    makeSource(src, 22, 1 << 20);
    const c = JSON.parse(
      (await cascade(['package', 'create', src, '--name', 'Low', '--priority', 'low', '--json'], { env: (sites.CEN as SiteProcess).env }))
        .stdout,
    );
    const r = await cascade(['route', 'set', 'EUR', '--schedule', 'daily 00-24 high'], { env: (sites.CEN as SiteProcess).env });
    expect(r.code).toBe(0);
    await cascade(['distribute', c.id, '--to', 'site:EUR'], { env: (sites.CEN as SiteProcess).env });
    await sleep(2500);
    const held = await status('CEN', c.id);
    expect(held.targets[0]).toMatchObject({ site: 'EUR', state: 'pending', bytesDone: 0 });
    expect(held.targets[0]?.detail).toContain("waiting for the route's schedule");
    expect((await transfers('CEN')).find((t) => t.packageId === c.id)?.wireBytes).toBe(0);
    await cascade(['route', 'set', 'EUR', '--schedule', 'all'], { env: (sites.CEN as SiteProcess).env });
    await until('the low-priority package at EUR', installed('CEN', c.id, 'EUR'));
  });

  it('keeps to the route rate, and after the receiver is killed mid-transfer resumes without resending what arrived', async () => {
    await cascade(['route', 'set', 'EUR', '--rate', '1MiB/s'], { env: (sites.CEN as SiteProcess).env });
    const src = path.join(root, 'src4');
    makeSource(src, 23, 6 << 20);
    const c = JSON.parse(
      (await cascade(['package', 'create', src, '--name', 'Big', '--json'], { env: (sites.CEN as SiteProcess).env })).stdout,
    );
    const t0 = Date.now();
    await cascade(['distribute', c.id, '--to', 'site:EUR'], { env: (sites.CEN as SiteProcess).env });
    // Let part of it arrive, then kill the receiver hard.
    await until(
      'a few MiB at EUR',
      async () => ((await transfers('CEN')).find((t) => t.packageId === c.id)?.wireBytes ?? 0) > 0 || Date.now() - t0 > 3500,
      10_000,
    );
    await sleep(1500);
    (sites.EUR as SiteProcess).proc.kill('SIGKILL');
    await (sites.EUR as SiteProcess).stop();
    await until('the sender to notice', async () => (await status('CEN', c.id)).targets.some((t) => t.state === 'retrying'), 20_000);
    const retrying = (await status('CEN', c.id)).targets[0];
    expect(retrying?.lastError).toMatch(/EUR/);
    expect(retrying?.retries).toBeGreaterThan(0);
    sites.EUR = await startSite(dirs.EUR as string, [], { listen: null, env: FAST });
    await until('the package at EUR after the restart', installed('CEN', c.id, 'EUR'), 60_000);
    const secs = (Date.now() - t0) / 1000;
    // 1 MiB/s: the 6 MiB package cannot have crossed in much less than 5 s.
    expect(secs).toBeGreaterThan(4.5);
    const t = (await transfers('CEN')).find((x) => x.packageId === c.id);
    expect(t?.state).toBe('done');
    // The done transfer keeps how many retries it took, as its messages told them.
    expect(t?.retries).toBeGreaterThan(0);
    // Chunks verified before the kill did not cross again (allow one batch in flight).
    expect(t?.wireBytes).toBeLessThan(c.bytes * 1.02 + (4 << 20));
    const v = JSON.parse((await cascade(['package', 'verify', c.id, '--json'], { env: (sites.EUR as SiteProcess).env })).stdout);
    expect(v.ok).toBe(true);
    await cascade(['route', 'set', 'EUR', '--rate', 'unlimited'], { env: (sites.CEN as SiteProcess).env });
  });

  it('lets a high-priority package overtake queued ones on a busy route', async () => {
    const env = (sites.CEN as SiteProcess).env;
    await cascade(['route', 'set', 'EUR', '--rate', '512KiB/s', '--concurrency', '1'], { env });
    const make = async (name: string, priority: string, seed: number) => {
      const src = path.join(root, `prio-${name}`);
      makeSource(src, seed, 2 << 20);
      return JSON.parse((await cascade(['package', 'create', src, '--name', name, '--priority', priority, '--json'], { env })).stdout)
        .id as string;
    };
    const first = await make('first-low', 'low', 31);
    const second = await make('second-low', 'low', 32);
    const urgent = await make('urgent-high', 'high', 33);
    await cascade(['distribute', first, '--to', 'site:EUR'], { env });
    await until(
      'the first package on the wire',
      async () => ((await transfers('CEN')).find((t) => t.packageId === first)?.state ?? '') === 'sending',
    );
    // Straight to the API: both queue while the first is still on the wire.
    const cen = sites.CEN as SiteProcess;
    for (const id of [second, urgent]) {
      const r = await fetch(`${cen.url}/api/v1/distributions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${cen.token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ packageId: id, to: ['site:EUR'] }),
      });
      expect(r.status).toBe(201);
    }
    expect((await transfers('CEN')).find((t) => t.packageId === first)?.state).toBe('sending');
    // The queue shows the order the sender will take: the one sending, then by priority.
    const q = JSON.parse((await cascade(['queue', '--route', 'EUR', '--json'], { env })).stdout);
    expect(q.routes).toHaveLength(1);
    expect(q.routes[0].transfers.map((t: { packageId: string }) => t.packageId)).toEqual([first, urgent, second]);
    expect(q.routes[0].transfers[0].state).toBe('sending');
    // One shape for a rate and a schedule: bytes per second and the schedule object, as route show gives them.
    const shown = JSON.parse((await cascade(['route', 'show', 'EUR', '--json'], { env })).stdout);
    expect(q.routes[0].rate).toBe(shown.rate);
    expect(typeof q.routes[0].rate).toBe('number');
    expect(q.routes[0].schedule).toEqual(shown.schedule);
    expect(shown).not.toHaveProperty('rateText');
    expect(q.routes[0].transfers[2].etaSeconds).toBeGreaterThan(q.routes[0].transfers[1].etaSeconds);
    const text = (await cascade(['queue'], { env })).stdout;
    expect(text).toMatch(/^route to EUR: 512 KiB\/s, 1 in flight/m);
    await until(
      'all three at EUR',
      async () => {
        const ts = (await transfers('CEN')).filter((t) => [first, second, urgent].includes(t.packageId));
        return ts.length === 3 && ts.every((t) => t.state === 'done');
      },
      60_000,
    );
    const done = (await transfers('CEN'))
      .filter((t) => [first, second, urgent].includes(t.packageId))
      .sort((a, b) => ((a as unknown as { updatedAt: string }).updatedAt < (b as unknown as { updatedAt: string }).updatedAt ? -1 : 1))
      .map((t) => t.packageId);
    expect(done).toEqual([first, urgent, second]);
    await cascade(['route', 'set', 'EUR', '--rate', 'unlimited', '--concurrency', '2'], { env });
  });

  it('after the sending site is killed mid-transfer, it resumes at restart without resending what arrived', async () => {
    await cascade(['route', 'set', 'EUR', '--rate', '1MiB/s'], { env: (sites.CEN as SiteProcess).env });
    const src = path.join(root, 'src-sender-kill');
    makeSource(src, 41, 5 << 20);
    const c = JSON.parse(
      (await cascade(['package', 'create', src, '--name', 'SenderKill', '--json'], { env: (sites.CEN as SiteProcess).env })).stdout,
    );
    await cascade(['distribute', c.id, '--to', 'site:EUR'], { env: (sites.CEN as SiteProcess).env });
    await until(
      'some bytes on the wire',
      async () => ((await transfers('CEN')).find((t) => t.packageId === c.id)?.wireBytes ?? 0) > 1 << 20,
      20_000,
    );
    (sites.CEN as SiteProcess).proc.kill('SIGKILL');
    await (sites.CEN as SiteProcess).stop();
    sites.CEN = await startSite(dirs.CEN as string, [], { listen: null, env: FAST });
    await until('the package at EUR after the sender restarted', installed('CEN', c.id, 'EUR'), 60_000);
    const t = (await transfers('CEN')).find((x) => x.packageId === c.id);
    expect(t?.state).toBe('done');
    // What EUR had verified before the kill did not cross again (one batch in flight at most).
    expect(t?.wireBytes).toBeLessThan(c.bytes * 1.02 + (4 << 20));
    const v = JSON.parse((await cascade(['package', 'verify', c.id, '--json'], { env: (sites.EUR as SiteProcess).env })).stdout);
    expect(v.ok).toBe(true);
    await cascade(['route', 'set', 'EUR', '--rate', 'unlimited'], { env: (sites.CEN as SiteProcess).env });
  });
});
