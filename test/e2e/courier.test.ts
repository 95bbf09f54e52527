import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cascade, freePort, makeSource, type SiteProcess, startSite, tmpDir, until } from './helpers.js';

interface Target {
  site: string;
  version: number;
  state: string;
  bytesDone: number;
  bytesTotal: number;
  detail: string | null;
  lastError: string | null;
}
interface Transfer {
  packageId: string;
  version: number;
  child: string;
  state: string;
  wireBytes: number;
}

const FAST = { CASCADE_PING_SECONDS: '1', CASCADE_REPORT_SECONDS: '1', CASCADE_COURIER_CHECK_SECONDS: '1' };

/**
 * A TCP proxy that counts what the parent sends to the child (the WAN route) and notices any
 * chunk batch: the route to EUR is this proxy, so every byte CEN sends EUR is counted here.
 */
function wanProxy(port: number, target: () => number) {
  const seen = { bytes: 0, chunkBatches: 0 };
  const server = net.createServer((client) => {
    const up = net.connect(target(), '127.0.0.1');
    let tail = '';
    client.on('data', (d: Buffer) => {
      seen.bytes += d.length;
      const text = tail + d.toString('latin1');
      seen.chunkBatches += text.split('POST /api/v1/transfers/chunks').length - 1;
      tail = text.slice(-40);
    });
    client.pipe(up);
    up.pipe(client);
    const end = () => {
      client.destroy();
      up.destroy();
    };
    client.on('error', end);
    up.on('error', end);
    client.on('close', end);
    up.on('close', end);
  });
  server.listen(port, '127.0.0.1');
  return { seen, close: () => new Promise<void>((r) => server.close(() => r())) };
}

/** CEN → EUR (behind a counted WAN route) → BER; parcels carried from CEN to EUR. */
describe('courier parcels', () => {
  const root = tmpDir('cascade-courier-');
  const sites: Record<string, SiteProcess> = {};
  let proxy: ReturnType<typeof wanProxy>;
  let eurPort = 0;

  const env = (code: string) => (sites[code] as SiteProcess).env;
  const run = async (code: string, args: string[]) => cascade(args, { env: env(code) });
  const json = async (code: string, args: string[]) => {
    const r = await run(code, [...args, '--json']);
    if (r.code !== 0) throw new Error(`cascade ${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout);
  };
  const targets = async (at: string, id: string): Promise<Target[]> => (await json(at, ['status', id])).targets;
  const transfers = async (at: string): Promise<Transfer[]> =>
    (
      await (
        await fetch(`${(sites[at] as SiteProcess).url}/api/v1/transfers`, {
          headers: { authorization: `Bearer ${(sites[at] as SiteProcess).token}` },
        })
      ).json()
    ).transfers;
  const target = async (at: string, id: string, site: string, version?: number) =>
    (await targets(at, id)).find((t) => t.site === site && (version === undefined || t.version === version));

  beforeAll(async () => {
    const init = async (code: string, parent?: string, viaProxy = false) => {
      const dir = path.join(root, code);
      const port = await freePort();
      const args = ['site', 'init', '--data', dir, '--code', code, '--listen', `127.0.0.1:${port}`];
      if (viaProxy) {
        eurPort = port;
        const p = await freePort();
        proxy = wanProxy(p, () => eurPort);
        args.push('--url', `http://127.0.0.1:${p}`);
      }
      if (parent)
        args.push('--parent', (sites[parent] as SiteProcess).url, '--join-token', (await json(parent, ['site', 'join-token'])).token);
      const r = await cascade(args);
      expect(r.stderr).toBe('');
      sites[code] = await startSite(dir, [], { listen: null, env: FAST });
    };
    await init('CEN');
    await init('EUR', 'CEN', true);
    await init('BER', 'EUR');
  });
  afterAll(async () => {
    for (const s of Object.values(sites)) await s.stop();
    await proxy?.close();
  });

  it('distributes by courier: no chunk on the route, a parcel carried, checked, imported, and on to the sites below', {
    timeout: 180_000,
  }, async () => {
    const src = path.join(root, 'src1');
    makeSource(src, 41, 48 << 20);
    const c = await json('CEN', ['package', 'create', src, '--name', 'Office']);
    const before = { ...proxy.seen };
    const d = await run('CEN', ['distribute', c.id, '--to', 'site:EUR', '--to', 'site:BER', '--via', 'courier']);
    expect(d.code).toBe(0);
    expect(d.stdout).toContain('by courier');
    // The route carries nothing: it waits for a parcel, with the exact export command.
    expect(d.stdout).toMatch(/^CEN -> EUR +\S+ \S+ +courier +- +waiting for a parcel: \d+ bytes/m);
    expect(d.stdout).toContain(`cascade courier export ${c.id} --version 1 --to-site EUR -o EUR.parcel`);

    // The sender offered the manifest, learnt what EUR lacks, and waits: no chunk crossed.
    await until('EUR waiting for a parcel', async () =>
      /waiting for a courier parcel/.test((await target('CEN', c.id, 'EUR'))?.detail ?? ''),
    );
    const waiting = (await target('CEN', c.id, 'EUR')) as Target;
    expect(waiting.state).toBe('pending');
    // Exactly the bytes EUR lacks: the package less what repeats inside it (chunks are stored once).
    const lacks = waiting.bytesTotal - waiting.bytesDone;
    expect(lacks).toBeGreaterThan(c.bytes * 0.9);
    expect(waiting.detail).toContain(`${lacks} bytes`);
    expect((await target('CEN', c.id, 'BER'))?.detail).toContain('waiting for a courier parcel');
    // And EUR's own status says what it waits for.
    await until('EUR to show it waits', async () =>
      /waiting for a courier parcel from CEN/.test((await target('EUR', c.id, 'EUR'))?.detail ?? ''),
    );
    expect((await target('EUR', c.id, 'EUR'))?.detail).toContain(`${lacks} bytes`);

    // Export: what EUR lacks, written to a file.
    const file = path.join(root, 'office.parcel');
    const x = await json('CEN', ['courier', 'export', c.id, '--to-site', 'EUR', '-o', file]);
    expect(x).toMatchObject({
      parcel: expect.stringMatching(/^[0-9a-f-]{36}$/),
      chunks: expect.any(Number),
      bytes: fs.statSync(file).size,
    });
    expect(x.packages).toEqual([{ id: c.id, version: 1, bytes: c.bytes, chunkBytesInParcel: lacks }]);
    await until('the parcel id in the status', async () => ((await target('CEN', c.id, 'EUR'))?.detail ?? '').includes(x.parcel));

    // Inspect lists what it holds.
    const i = await json('CEN', ['courier', 'inspect', file]);
    expect(i).toMatchObject({ parcel: x.parcel, format: 3, source: 'CEN', destination: 'EUR', chunks: x.chunks, bytes: x.bytes });
    expect(i.packages[0]).toMatchObject({ id: c.id, version: 1, name: 'Office', bytes: c.bytes });
    const text = await cascade(['courier', 'inspect', file]);
    expect(text.stdout).toContain(`parcel ${x.parcel} (format 3)`);

    // A parcel made for EUR is refused at another site with one line, unless --anyway.
    const elsewhere = await run('BER', ['courier', 'import', file]);
    expect(elsewhere.code).toBe(1);
    expect(elsewhere.stderr).toBe(
      `cascade: parcel ${x.parcel} was made at CEN for EUR, not for BER: import it at EUR, or here all the same with --anyway\n`,
    );
    expect((await json('BER', ['package', 'list'])).packages).toEqual([]);
    const home = await json('CEN', ['courier', 'import', file, '--anyway']);
    expect(home.packages[0]).toMatchObject({ id: c.id, state: 'installed' });

    // A tampered parcel is refused with one line, and nothing is installed.
    const tampered = path.join(root, 'tampered.parcel');
    const bytes = fs.readFileSync(file);
    const bad = Buffer.from(bytes);
    bad[bad.length - 100_000] = (bad[bad.length - 100_000] as number) ^ 0xff;
    fs.writeFileSync(tampered, bad);
    const t1 = await run('EUR', ['courier', 'import', tampered]);
    expect(t1.code).toBe(1);
    expect(t1.stderr).toMatch(/^cascade: parcel .* (is damaged or altered|does not match)/);
    expect(t1.stderr.trim().split('\n')).toHaveLength(1);
    expect((await json('EUR', ['package', 'list'])).packages).toEqual([]);
    expect((await run('CEN', ['courier', 'inspect', tampered])).stderr).toMatch(/checksum does not match|does not match/);

    // Cut half way (as if the import had been killed): what was stored stays, nothing installed.
    const cut = path.join(root, 'cut.parcel');
    fs.writeFileSync(cut, bytes.subarray(0, Math.floor(bytes.length * 0.85)));
    const t2 = await run('EUR', ['courier', 'import', cut]);
    expect(t2.code).toBe(1);
    expect(t2.stderr).toMatch(/truncated/);
    expect((await json('EUR', ['package', 'list'])).packages).toEqual([]);

    // The real parcel: the import resumes (what the cut one stored is not stored again).
    const r = await json('EUR', ['courier', 'import', file]);
    expect(r.parcel).toBe(x.parcel);
    expect(r.packages).toEqual([{ id: c.id, version: 1, bytes: c.bytes, state: 'installed', missingChunks: 0, missingBytes: 0 }]);
    expect(r.chunks.alreadyHeld).toBeGreaterThan(0);
    expect(r.chunks.stored + r.chunks.alreadyHeld).toBe(x.chunks);
    // The CLI asked what EUR holds and left those chunks out: they were not even sent.
    expect(r.bytes.parcel).toBe(fs.statSync(file).size);
    expect(r.bytes.received).toBeLessThan(r.bytes.parcel * 0.5);
    const v = await json('EUR', ['package', 'verify', c.id]);
    expect(v.ok).toBe(true);

    // Installed at EUR; the content flows on to BER over the network as usual; status goes up.
    await until('EUR installed, seen from CEN', async () => (await target('CEN', c.id, 'EUR'))?.state === 'installed');
    await until('BER installed, seen from CEN', async () => (await target('CEN', c.id, 'BER'))?.state === 'installed');
    const down = (await transfers('CEN')).find((t) => t.packageId === c.id);
    expect(down).toMatchObject({ state: 'done', wireBytes: 0 });
    // Counted on the wire: no chunk batch crossed the route to EUR, only small control calls.
    expect(proxy.seen.chunkBatches - before.chunkBatches).toBe(0);
    expect(proxy.seen.bytes - before.bytes).toBeLessThan(c.bytes / 20);
    // Messages come up with the status reports, BER's through EUR: two hops, a few seconds
    // after the targets' states.
    const want = ['CEN:courier_waiting', 'CEN:courier_exported', 'EUR:courier_imported', 'BER:package_installed'];
    let codes: string[] = [];
    await until('the courier messages, seen from CEN', async () => {
      const m = await json('CEN', ['messages', '--package', c.id]);
      codes = m.messages.map((z: { site: string; code: string }) => `${z.site}:${z.code}`);
      return want.every((w) => codes.includes(w));
    });
    expect(codes).toEqual(expect.arrayContaining(want));

    // Importing the same parcel again is harmless.
    const again = await json('EUR', ['courier', 'import', file]);
    expect(again.chunks).toEqual({ inParcel: x.chunks, stored: 0, alreadyHeld: x.chunks });
    expect(again.packages[0].state).toBe('installed');
    // Only the table of contents and the trailer crossed: every chunk was left out.
    expect(again.bytes.received).toBeLessThan(again.bytes.parcel / 20);
    const text2 = await run('EUR', ['courier', 'import', file]);
    expect(text2.stdout).toContain(`parcel ${x.parcel} from CEN imported at site EUR: 0 chunks stored`);
    expect(text2.stdout).toMatch(/ of the parcel's .* sent\)/);
  });

  it('a parcel of an older version helps; status shows exactly the bytes still missing; a second parcel carries the rest', async () => {
    const src = path.join(root, 'src2');
    makeSource(src, 42, 3 << 20);
    const c = await json('CEN', ['package', 'create', src, '--name', 'Tools']);
    const src2 = path.join(root, 'src2b');
    fs.cpSync(src, src2, { recursive: true, verbatimSymlinks: true });
    fs.writeFileSync(path.join(src2, 'new.bin'), crypto.randomBytes(700_000));
    const u = await json('CEN', ['package', 'update', c.id, src2]);
    expect(u.version).toBe(2);
    await run('CEN', ['distribute', c.id, '--to', 'site:EUR', '--via', 'courier']);
    await until('EUR waiting', async () => /waiting for a courier parcel/.test((await target('CEN', c.id, 'EUR', 2))?.detail ?? ''));

    // Version 1 on the media: it installs at EUR; version 2 still lacks its new chunks.
    const old = path.join(root, 'tools-v1.parcel');
    await json('CEN', ['courier', 'export', c.id, '--version', '1', '--to-site', 'EUR', '-o', old]);
    const r1 = await json('EUR', ['courier', 'import', old]);
    expect(r1.packages[0]).toMatchObject({ id: c.id, version: 1, state: 'installed' });
    let t = {} as Target;
    await until('CEN to see what is still missing', async () => {
      t = (await target('CEN', c.id, 'EUR', 2)) as Target;
      return t.bytesDone > 0 && /still missing|missing at EUR/.test(t.detail ?? '');
    });
    const missing = t.bytesTotal - t.bytesDone;
    expect(missing).toBeGreaterThanOrEqual(700_000);
    expect(missing).toBeLessThan(700_000 + 3 * 262_144);
    expect(t.detail).toContain(`${missing} bytes`);
    expect(t.state).toBe('pending');

    // The second parcel carries only what is still missing.
    const rest = path.join(root, 'tools-rest.parcel');
    const x2 = await json('CEN', ['courier', 'export', c.id, '--to-site', 'EUR', '-o', rest]);
    expect(x2.packages[0]).toMatchObject({ version: 2, chunkBytesInParcel: missing });
    const r2 = await json('EUR', ['courier', 'import', rest]);
    expect(r2.packages[0]).toMatchObject({ version: 2, state: 'installed' });
    await until('version 2 installed at EUR', async () => (await target('CEN', c.id, 'EUR', 2))?.state === 'installed');
    expect((await transfers('CEN')).find((z) => z.packageId === c.id && z.version === 2)?.wireBytes).toBe(0);
  });

  it('a parcel of part of a version: the rest comes over the network when distributed without --via courier', async () => {
    const src = path.join(root, 'src3');
    makeSource(src, 43, 2 << 20);
    const c = await json('CEN', ['package', 'create', src, '--name', 'Fonts']);
    await run('CEN', ['distribute', c.id, '--to', 'site:EUR', '--via', 'courier']);
    await until('EUR waiting', async () => /waiting for a courier parcel/.test((await target('CEN', c.id, 'EUR'))?.detail ?? ''));
    const before = proxy.seen.chunkBatches;
    await run('CEN', ['distribute', c.id, '--to', 'site:EUR']);
    await until('installed over the network', async () => (await target('CEN', c.id, 'EUR'))?.state === 'installed');
    expect(proxy.seen.chunkBatches).toBeGreaterThan(before);
    expect((await transfers('CEN')).find((z) => z.packageId === c.id)?.wireBytes).toBeGreaterThan(c.bytes * 0.9);
  });

  it('refuses a parcel signed by a site outside this hierarchy, and files that are not parcels', async () => {
    // Another central site, with its own key: EUR does not trust it.
    const other = path.join(root, 'XYZ');
    expect((await cascade(['site', 'init', '--data', other, '--code', 'XYZ'])).code).toBe(0);
    const xs = await startSite(other);
    try {
      const child = path.join(root, 'QQQ');
      const port = await freePort();
      const tok = JSON.parse((await cascade(['site', 'join-token', '--json'], { env: xs.env })).stdout).token;
      expect(
        (
          await cascade([
            'site',
            'init',
            '--data',
            child,
            '--code',
            'QQQ',
            '--listen',
            `127.0.0.1:${port}`,
            '--parent',
            xs.url,
            '--join-token',
            tok,
          ])
        ).code,
      ).toBe(0);
      const qs = await startSite(child, [], { listen: null });
      try {
        const src = path.join(root, 'src4');
        makeSource(src, 44, 1 << 20);
        const c = JSON.parse((await cascade(['package', 'create', src, '--name', 'Foreign', '--json'], { env: xs.env })).stdout);
        const file = path.join(root, 'foreign.parcel');
        expect((await cascade(['courier', 'export', c.id, '--to-site', 'QQQ', '-o', file], { env: xs.env })).code).toBe(0);
        const r = await run('EUR', ['courier', 'import', file]);
        expect(r.code).toBe(1);
        // Its header is the word of a site this hierarchy does not know: refused before its manifests are read.
        expect(r.stderr).toMatch(
          /^cascade: parcel \S+ says it was made at XYZ, but XYZ is not this hierarchy's central site \(CEN\) and the parcel carries no certificate of it/,
        );
        expect((await json('EUR', ['package', 'list'])).packages.map((p: { id: string }) => p.id)).not.toContain(c.id);
      } finally {
        await qs.stop();
      }
    } finally {
      await xs.stop();
    }
    const notParcel = path.join(root, 'notes.txt');
    fs.writeFileSync(notParcel, 'hello\n'.repeat(100));
    const r = await run('EUR', ['courier', 'import', notParcel]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('cascade: the file is not a courier parcel (no CASCPRCL magic)\n');
    const missing = await run('EUR', ['courier', 'import', path.join(root, 'nope.parcel')]);
    expect(missing.code).toBe(2);
  });
});
