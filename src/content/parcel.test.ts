import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CascadeError } from '../core/errors.js';
import { type ImportReport, importParcel, type ParcelSink } from '../site/courier.js';
import { encodeChunk } from './codec.js';
import { ContentLibrary } from './library.js';
import { type Manifest, manifestChunks, signManifest, verifyManifest } from './manifest.js';
import { type ParcelPlan, ParcelReader, parcelHeader, parseOmitHeader, unverifiedManifest, writeParcel } from './parcel.js';
import { INDEX_ENTRY, PARCEL_FORMAT, PARCEL_MAGIC, PREFIX, readParcelToc, TRAILER } from './parcel-toc.js';
import { closePool } from './pool.js';
import { generateSiteKey, publicKeyPem, type TrustedKey } from './signing.js';

const sha = (b: Uint8Array) => crypto.createHash('sha256').update(b).digest('hex');
const key = generateSiteKey('CEN');
const signer = (b: Uint8Array) => crypto.sign(null, b, key.privateKey);
const trusted: TrustedKey[] = [{ keyId: key.keyId, publicKeyPem: publicKeyPem(key.publicKey), site: 'CEN' }];

/** A version of `n` chunks: half text (stored Brotli), half random (stored raw). */
function makeVersion(id: string, version: number, n: number, seed: number, signer = key) {
  const chunks: { digest: string; raw: Buffer; stored: Buffer }[] = [];
  for (let i = 0; i < n; i++) {
    const raw = i % 2 === 0 ? Buffer.from(`chunk ${seed} ${i} `.repeat(3000)) : crypto.randomBytes(20_000 + ((i * 7919) % 30_000));
    chunks.push({ digest: sha(raw), raw, stored: encodeChunk(raw) });
  }
  const size = chunks.reduce((s, c) => s + c.raw.length, 0);
  const manifest: Manifest = {
    format: 1,
    id,
    version,
    name: `Package ${id}`,
    origin: 'CEN',
    priority: 'medium',
    created: '2026-11-21T00:00:00.000Z',
    bytes: size,
    programs: [],
    files: [{ type: 'file', path: 'data.bin', mode: 0o644, size, chunks: chunks.map((c) => [c.digest, c.raw.length] as [string, number]) }],
  };
  return { manifest, bytes: signManifest(manifest, signer), chunks };
}

type Version = ReturnType<typeof makeVersion>;

function plan(versions: Version[], only?: (digest: string) => boolean): ParcelPlan {
  const seen = new Set<string>();
  const chunks = versions
    .flatMap((v) => v.chunks)
    .filter((c) => (only ? only(c.digest) : true) && !seen.has(c.digest) && seen.add(c.digest))
    .map((c) => ({ digest: c.digest, stored: c.stored.length, size: c.raw.length }));
  return {
    parcel: crypto.randomUUID(),
    created: new Date().toISOString(),
    source: 'CEN',
    destination: 'EUR',
    full: !only,
    packages: versions.map((v) => ({
      id: v.manifest.id,
      version: v.manifest.version,
      bytes: v.manifest.bytes,
      manifest: v.bytes,
      certificate: null,
    })),
    chunks,
    signer: { keyId: key.keyId, certificate: null },
  };
}

async function bytesOf(p: ParcelPlan, versions: Version[]): Promise<Buffer> {
  const byDigest = new Map(versions.flatMap((v) => v.chunks).map((c) => [c.digest, c.stored]));
  const parts: Uint8Array[] = [];
  for await (const b of writeParcel(p, async (es) => Buffer.concat(es.map((e) => byDigest.get(e.digest) as Buffer)), signer)) parts.push(b);
  return Buffer.concat(parts);
}

/** Feeds bytes in uneven pieces, as a network or a disk would. */
async function* pieces(b: Uint8Array, size = 7777): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}

/** A sink with a real library (worker pool) and an in-memory store. */
function memorySink(root: string, trust: TrustedKey[] = trusted) {
  const library = new ContentLibrary(root);
  const rows = new Map<string, number>();
  const installed = new Set<string>();
  const sink: ParcelSink = {
    library,
    haveChunks: async (ds) => new Set(ds.filter((d) => rows.has(d))),
    recordChunks: async (rs) => {
      for (const r of rs) rows.set(r.digest, r.size);
    },
    verifySource: async (h, signed) => {
      const k = trust.find((t) => t.keyId === h.signer.keyId);
      if (!k || !crypto.verify(null, signed.bytes, crypto.createPublicKey(k.publicKeyPem), signed.signature))
        throw new CascadeError('bad_parcel', `parcel ${h.parcel}: its header is not signed by ${h.source}`);
    },
    verify: async (p) => verifyManifest(p.manifest, trust).manifest,
    hold: async () => {},
    install: async (_p, m) => {
      const missing = [...manifestChunks(m)].filter(([d]) => !rows.has(d));
      if (missing.length === 0) installed.add(`${m.id}/${m.version}`);
      return { installed: missing.length === 0, missingChunks: missing.length, missingBytes: missing.reduce((n, [, s]) => n + s, 0) };
    },
  };
  return { sink, library, rows, installed };
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(CascadeError);
    return `${(e as CascadeError).code}: ${(e as CascadeError).message}`;
  }
  throw new Error('expected a CascadeError, but nothing was thrown');
}

async function readAll(b: Uint8Array, sizes?: Map<string, number>): Promise<{ chunks: number }> {
  const r = new ParcelReader(pieces(b));
  await r.header();
  const pkgs = await r.packages();
  const known = sizes ?? new Map(pkgs.flatMap((p) => [...manifestChunks(unverifiedManifest(p.manifest).manifest)]));
  const index = await r.index((d) => known.get(d));
  let n = 0;
  for await (const t of r.chunks(1 << 20)) n += t.items.length;
  await r.finish();
  expect(n).toBe(index.length);
  return { chunks: n };
}

describe('courier parcel format', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-parcel-'));
  const a = makeVersion('CEN00001', 1, 40, 1);
  const b = makeVersion('CEN00002', 3, 12, 2);
  const p0 = plan([a, b]);
  let whole: Buffer;

  beforeAll(async () => {
    whole = await bytesOf(p0, [a, b]);
  });
  afterAll(async () => {
    await closePool();
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('round-trips several packages: header, manifests, index, chunks, checksum', async () => {
    const p = p0;
    const h = parcelHeader(p);
    expect(whole.length).toBe(h.totalBytes);
    expect(whole.subarray(0, 8).equals(PARCEL_MAGIC)).toBe(true);
    const r = new ParcelReader(pieces(whole));
    const header = await r.header();
    expect(header).toMatchObject({ format: PARCEL_FORMAT, parcel: p.parcel, source: 'CEN', destination: 'EUR', chunks: 52 });
    expect(header.packages.map((x) => `${x.id}/${x.version}`)).toEqual(['CEN00001/1', 'CEN00002/3']);
    const pkgs = await r.packages();
    expect(pkgs[0]?.manifest.equals(a.bytes)).toBe(true);
    expect(verifyManifest(pkgs[1]?.manifest as Buffer, trusted).manifest).toEqual(b.manifest);
    const sizes = new Map([...manifestChunks(a.manifest), ...manifestChunks(b.manifest)]);
    const index = await r.index((d) => sizes.get(d));
    expect(index).toHaveLength(52);
    const stored = new Map([...a.chunks, ...b.chunks].map((c) => [c.digest, c.stored]));
    for await (const t of r.chunks(256 << 10)) {
      for (const it of t.items)
        expect(Buffer.from(t.buf.subarray(it.offset, it.offset + it.length)).equals(stored.get(it.digest) as Buffer)).toBe(true);
    }
    expect((await r.finish()).checksum).toMatch(/^[0-9a-f]{64}$/);
  });

  it('imports into a library: every chunk verified and stored as it came; a second import is harmless', async () => {
    const { sink, rows, installed, library } = memorySink(path.join(root, 'lib1'));
    await library.init();
    const r1: ImportReport = await importParcel(sink, pieces(whole, 65536));
    expect(r1.packages.map((p) => p.state)).toEqual(['installed', 'installed']);
    expect(r1.chunks).toEqual({ inParcel: 52, stored: 52, alreadyHeld: 0 });
    expect(rows.size).toBe(52);
    expect(installed.size).toBe(2);
    for (const c of a.chunks) expect(fs.readFileSync(library.chunkPath(c.digest)).equals(c.stored)).toBe(true);
    const r2 = await importParcel(sink, pieces(whole, 65536));
    expect(r2.chunks).toEqual({ inParcel: 52, stored: 0, alreadyHeld: 52 });
    expect(r2.packages.every((p) => p.state === 'installed')).toBe(true);
  });

  it('a sender may leave out chunks the receiver holds (x-cascade-omit): only the rest is read', async () => {
    const { sink, library, rows } = memorySink(path.join(root, 'lib-omit'));
    await library.init();
    // The receiver holds a's first 20 chunks (index entries 0-19: a's chunks come first).
    const first = new Set(a.chunks.slice(0, 20).map((c) => c.digest));
    await importParcel(
      sink,
      pieces(
        await bytesOf(
          plan([a], (d) => first.has(d)),
          [a],
        ),
      ),
    );
    expect(rows.size).toBe(20);
    // The parcel without the bytes of entries 0-19 and 20-24 (the last five are not held).
    const tocEnd = whole.length - TRAILER - parcelHeader(p0).chunkBytes;
    const at = (i: number) => tocEnd + p0.chunks.slice(0, i).reduce((n, c) => n + c.stored, 0);
    const stripped = Buffer.concat([whole.subarray(0, at(0)), whole.subarray(at(25))]);
    const omit = parseOmitHeader('0-20, 20-25');
    expect(omit).toEqual([
      [0, 20],
      [20, 25],
    ]);
    const r = await importParcel(sink, pieces(stripped, 65536), { omit: omit });
    expect(r.chunks).toEqual({ inParcel: 52, stored: 27, alreadyHeld: 20 });
    expect(r.bytes.received).toBe(stripped.length);
    expect(r.bytes.parcel).toBe(whole.length);
    // Left out but not held: missing, exactly as from a partial parcel.
    expect(r.packages[0]).toMatchObject({ id: 'CEN00001', state: 'incomplete', missingChunks: 5 });
    expect(r.packages[1]).toMatchObject({ id: 'CEN00002', state: 'installed' });
    // Ranges that leave out what the stream holds break its framing: refused, nothing installed.
    expect(await codeOf(importParcel(sink, pieces(whole), { omit: [[30, 31]] }))).toMatch(/^bad_parcel: /);
  });

  it('refuses omitted ranges that are malformed, out of order or outside the parcel', async () => {
    expect(parseOmitHeader(undefined)).toEqual([]);
    for (const bad of ['1-x', '-1-2', '1', '1-2;3-4']) expect(() => parseOmitHeader(bad), bad).toThrow(/x-cascade-omit: .* is not a range/);
    expect(() => parseOmitHeader(Array.from({ length: 513 }, (_, i) => `${2 * i}-${2 * i + 1}`).join(','))).toThrow(/over 512/);
    for (const ranges of [
      [[5, 3]],
      [[0, 53]],
      [
        [4, 8],
        [6, 9],
      ],
      [[3, 3]],
    ] as [number, number][][]) {
      const { sink, library } = memorySink(path.join(root, 'lib-omit-bad'));
      await library.init();
      expect(await codeOf(importParcel(sink, pieces(whole), { omit: ranges })), JSON.stringify(ranges)).toMatch(
        /^bad_request: omitted chunk range .* not within the parcel's 52 chunks/,
      );
    }
  });

  it('a partial parcel installs what is complete and says exactly what is missing', async () => {
    const half = new Set(a.chunks.slice(0, 30).map((c) => c.digest));
    const p = plan([a], (d) => half.has(d));
    const bytes = await bytesOf(p, [a]);
    const { sink, library } = memorySink(path.join(root, 'lib2'));
    await library.init();
    const r = await importParcel(sink, pieces(bytes));
    const missing = a.chunks.slice(30).reduce((n, c) => n + c.raw.length, 0);
    expect(r.packages[0]).toMatchObject({ state: 'incomplete', missingChunks: 10, missingBytes: missing });
  });

  it('refuses a parcel whose manifest is signed by a key this receiver does not trust, before reading any chunk', async () => {
    const stranger = generateSiteKey('CEN');
    const f = makeVersion('CEN00003', 1, 4, 3, stranger);
    const bytes = await bytesOf(plan([f]), [f]);
    const { sink, rows, library } = memorySink(path.join(root, 'lib3'));
    await library.init();
    expect(await codeOf(importParcel(sink, pieces(bytes)))).toMatch(/^bad_signature: parcel .*CEN00003 version 1: /);
    expect(rows.size).toBe(0);
  });

  it('refuses a parcel whose header was rewritten, even with its checksum recomputed, before reading anything else', async () => {
    // Another destination and a zero parcel id, the same length; the trailer's checksum made to match.
    const json = whole.subarray(PREFIX, PREFIX + whole.readUInt32BE(12)).toString('utf8');
    const forged = json
      .replace(`"parcel":"${p0.parcel}"`, '"parcel":"00000000-0000-4000-8000-000000000000"')
      .replace('"destination":"EUR"', '"destination":"ZZZ"');
    expect(forged.length).toBe(json.length);
    const bad = Buffer.from(whole);
    bad.write(forged, PREFIX, 'utf8');
    const toc = await readParcelToc(async (at, n) => bad.subarray(at, at + n));
    crypto
      .createHash('sha256')
      .update(bad.subarray(0, toc?.tocEnd))
      .digest()
      .copy(bad, bad.length - 32);
    // The framing is whole: a reader that does not check the signature takes it.
    const r = new ParcelReader(pieces(bad));
    expect((await r.header()).destination).toBe('ZZZ');
    const { sink, rows, library } = memorySink(path.join(root, 'lib-forged'));
    await library.init();
    expect(await codeOf(importParcel(sink, pieces(bad)))).toMatch(
      /^bad_parcel: parcel 00000000-0000-4000-8000-000000000000: its header is not signed by CEN/,
    );
    expect(rows.size).toBe(0);
  });

  it('refuses an altered chunk (digest check) and installs nothing', async () => {
    // Flip a byte inside the last chunk's data: its digest no longer matches.
    const bad = Buffer.from(whole);
    bad[bad.length - TRAILER - 10] = (bad[bad.length - TRAILER - 10] as number) ^ 0x40;
    const { sink, installed, library } = memorySink(path.join(root, 'lib4'));
    await library.init();
    const msg = await codeOf(importParcel(sink, pieces(bad)));
    expect(msg).toMatch(/^bad_parcel: /);
    expect(installed.size).toBe(0);
  });

  it('refuses a parcel whose trailing checksum does not match, after storing only verified chunks', async () => {
    const bad = Buffer.from(whole);
    bad[bad.length - 1] = (bad[bad.length - 1] as number) ^ 0x01;
    const { sink, installed, library } = memorySink(path.join(root, 'lib5'));
    await library.init();
    expect(await codeOf(importParcel(sink, pieces(bad)))).toMatch(/^bad_parcel: .*checksum does not match/);
    expect(installed.size).toBe(0);
  });

  it('a flipped byte anywhere is caught (framing, manifest, index, chunk data or checksum)', async () => {
    const small = makeVersion('CEN00004', 1, 3, 4);
    const bytes = await bytesOf(plan([small]), [small]);
    const step = Math.max(1, Math.floor(bytes.length / 400));
    for (let i = 0; i < bytes.length; i += step) {
      const bad = Buffer.from(bytes);
      bad[i] = (bad[i] as number) ^ 0x01;
      let caught = false;
      try {
        const r = new ParcelReader(pieces(bad, 1000));
        await r.header();
        const pkgs = await r.packages();
        // What an import checks before chunks: the signature.
        for (const p of pkgs) verifyManifest(p.manifest, trusted);
        const sizes = new Map(pkgs.flatMap((p) => [...manifestChunks(unverifiedManifest(p.manifest).manifest)]));
        await r.index((d) => sizes.get(d));
        // As `courier inspect` reads it: every chunk decoded and checked (an import checks them in its workers).
        await r.skipChunks(undefined, true);
        await r.finish();
      } catch (e) {
        expect(e).toBeInstanceOf(CascadeError);
        caught = true;
      }
      expect(caught, `byte ${i} flipped went unnoticed`).toBe(true);
    }
  });

  it('refuses a truncated parcel wherever it is cut, naming where', async () => {
    const cuts = [0, 5, 16, 100, 2000, whole.length - TRAILER - 1000, whole.length - TRAILER, whole.length - 1];
    const msgs = [];
    for (const n of cuts) msgs.push(await codeOf(readAll(whole.subarray(0, n))));
    for (const m of msgs) expect(m).toMatch(/^bad_parcel: /);
    expect(msgs[0]).toContain('empty');
    expect(msgs.some((m) => m.includes('inside its manifests'))).toBe(true);
    expect(msgs.some((m) => /inside chunk \d+ of 52/.test(m))).toBe(true);
    expect(msgs.at(-1)).toContain('before its trailing checksum');
    // And bytes after the trailer.
    expect(await codeOf(readAll(Buffer.concat([whole, Buffer.from('x')])))).toContain('after its trailer');
  });

  it('refuses hostile headers and indexes with one clear line', async () => {
    const withHeader = (h: unknown, rest = Buffer.alloc(0)) => {
      const json = Buffer.from(typeof h === 'string' ? h : JSON.stringify(h));
      const prefix = Buffer.alloc(16);
      PARCEL_MAGIC.copy(prefix);
      prefix.writeUInt32BE(PARCEL_FORMAT, 8);
      prefix.writeUInt32BE(json.length, 12);
      return Buffer.concat([prefix, json, rest]);
    };
    const good = parcelHeader(plan([a]));
    expect(await codeOf(readAll(Buffer.from('PK\u0003\u0004 a zip file, not a parcel')))).toContain('not a courier parcel');
    const newer = Buffer.from(whole);
    newer.writeUInt32BE(PARCEL_FORMAT + 1, 8);
    expect(await codeOf(readAll(newer))).toContain(`format ${PARCEL_FORMAT + 1}; this Cascade reads format ${PARCEL_FORMAT}`);
    const older = Buffer.from(whole);
    older.writeUInt32BE(1, 8);
    expect(await codeOf(readAll(older))).toContain('made by an older Cascade');
    const huge = Buffer.from(whole);
    huge.writeUInt32BE(0xffffffff, 12);
    expect(await codeOf(readAll(huge))).toContain('header is 4294967295 bytes');
    expect(await codeOf(readAll(withHeader('{not json')))).toContain('not valid JSON');
    expect(await codeOf(readAll(withHeader({ ...good, chunks: 1e12 })))).toMatch(/header is invalid: chunks/);
    expect(await codeOf(readAll(withHeader({ ...good, extra: 1 })))).toMatch(/header is invalid/);
    expect(await codeOf(readAll(withHeader({ ...good, packages: [{ ...good.packages[0], manifestLength: 2 ** 40 }] })))).toMatch(
      /header is invalid: packages\.0\.manifestLength/,
    );
    expect(await codeOf(readAll(withHeader({ ...good, totalBytes: good.totalBytes + 1 })))).toContain('does not add up');
    expect(await codeOf(readAll(withHeader({ ...good, packages: [good.packages[0], good.packages[0]] })))).toMatch(/does not add up|twice/);

    // Index entries: a chunk no manifest names, a wrong size, a duplicate.
    const p = plan([a]);
    const stranger = crypto.randomBytes(32).toString('hex');
    const variants: [string, (e: ParcelPlan['chunks']) => void][] = [
      ['none of its manifests names', (e) => ((e[0] as { digest: string }).digest = stranger)],
      ['its manifest says', (e) => ((e[0] as { size: number }).size += 1)],
      ['twice', (e) => (e[1] = { ...(e[0] as ParcelPlan['chunks'][number]) })],
      ['stored length', (e) => ((e[0] as { stored: number }).stored = (e[0] as { size: number }).size + 50)],
    ];
    for (const [want, edit] of variants) {
      const q = { ...p, chunks: p.chunks.map((c) => ({ ...c })) };
      edit(q.chunks);
      const byDigest = new Map(a.chunks.map((c) => [c.digest, c.stored]));
      const parts: Uint8Array[] = [];
      // Write with lengths that match the (edited) index so only the index is wrong.
      const gen = writeParcel(
        q,
        async (es) =>
          Buffer.concat(
            es.map((e) => {
              const s = byDigest.get(e.digest) ?? Buffer.alloc(e.stored);
              return Buffer.concat([s, Buffer.alloc(Math.max(0, e.stored - s.length))]).subarray(0, e.stored);
            }),
          ),
        signer,
      );
      for await (const x of gen) parts.push(x);
      const sizes = new Map(manifestChunks(a.manifest));
      expect(await codeOf(readAll(Buffer.concat(parts), sizes))).toContain(want);
    }
    expect(INDEX_ENTRY).toBe(40);
  });
});
