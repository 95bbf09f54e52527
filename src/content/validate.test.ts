import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { checkStoredChunk } from './check.js';
import { chunkLengths } from './chunker.js';
import { CODEC_BROTLI, CODEC_RAW, encodeChunk } from './codec.js';
import { ContentLibrary } from './library.js';
import { type Manifest, parseManifest } from './manifest.js';
import { closePool } from './pool.js';
import { validateVersion } from './validate.js';
import { sha256 } from './worker.js';

/** A real library on disk holding one version: raw and Brotli chunks, a shared file, links. */
describe('validateVersion', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-validate-'));
  afterAll(async () => {
    await closePool();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const random = crypto.randomBytes(600_000); // several raw chunks
  const text = Buffer.from('setup install server client package site\n'.repeat(8_000)); // Brotli
  const twice = crypto.randomBytes(200_000);
  let library: ContentLibrary;
  let manifest: Manifest;
  let n = 0;

  const chunksOf = (data: Buffer): [string, number][] => {
    const out: [string, number][] = [];
    let at = 0;
    for (const len of chunkLengths(data)) {
      out.push([sha256(data.subarray(at, at + len)), len]);
      at += len;
    }
    return out;
  };

  beforeEach(async () => {
    library = new ContentLibrary(path.join(dir, `lib${n++}`));
    await library.init();
    const files: [string, Buffer][] = [
      ['setup.exe', random],
      ['i386/copy.exe', random], // the same chunks as setup.exe
      ['docs/readme.txt', text],
      ['empty.txt', Buffer.alloc(0)],
    ];
    const stored = new Map<string, Buffer>();
    for (const [, data] of files) {
      let at = 0;
      for (const len of chunkLengths(data)) {
        const raw = data.subarray(at, at + len);
        stored.set(sha256(raw), encodeChunk(raw));
        at += len;
      }
    }
    await library.writeChunks([...stored].map(([digest, s]) => ({ digest, stored: s })));
    manifest = parseManifest({
      format: 1,
      id: 'CEN00001',
      version: 1,
      name: 'Test',
      priority: 'medium',
      origin: 'CEN',
      created: '2026-11-21T00:00:00.000Z',
      programs: [],
      files: [
        { type: 'dir', path: 'i386', mode: 0o755 },
        { type: 'dir', path: 'docs', mode: 0o755 },
        ...files.map(([p, data]) => ({ type: 'file', path: p, mode: 0o644, size: data.length, chunks: chunksOf(data) })),
        { type: 'link', path: 'docs/setup', target: '../setup.exe' },
      ],
      bytes: files.reduce((s, [, d]) => s + d.length, 0),
    });
  });

  const fileOf = (p: string) => {
    const e = manifest.files.find((f) => f.path === p);
    if (e?.type !== 'file') throw new Error(`no file ${p}`);
    return e;
  };
  const chunkFile = (digest: string) => library.chunkPath(digest);
  const distinct = () => new Set(manifest.files.flatMap((e) => (e.type === 'file' ? e.chunks.map(([d]) => d) : []))).size;

  it('passes an intact version, reading each distinct chunk once', async () => {
    expect(fs.readFileSync(chunkFile(fileOf('setup.exe').chunks[0]?.[0] as string))[0]).toBe(CODEC_RAW);
    expect(fs.readFileSync(chunkFile(fileOf('docs/readme.txt').chunks[0]?.[0] as string))[0]).toBe(CODEC_BROTLI);
    const r = await validateVersion(library, manifest);
    expect(r).toEqual({
      ok: true,
      checkedFiles: 4,
      checkedChunks: distinct(),
      checkedBytes: random.length + text.length, // copy.exe shares setup.exe's chunks
      problems: [],
    });
  });

  it('names every file using a damaged chunk, and the chunk', async () => {
    const [digest, size] = fileOf('setup.exe').chunks[1] as [string, number];
    const f = chunkFile(digest);
    const b = fs.readFileSync(f);
    b[1 + (size >> 1)] = (b[1 + (size >> 1)] as number) ^ 0xff;
    fs.writeFileSync(f, b);
    const r = await validateVersion(library, manifest);
    expect(r.ok).toBe(false);
    expect(r.problems.map(({ path, chunk, kind }) => ({ path, chunk, kind }))).toEqual([
      { path: 'setup.exe', chunk: digest, kind: 'damaged' },
      { path: 'i386/copy.exe', chunk: digest, kind: 'damaged' },
    ]);
    const at = fileOf('setup.exe').chunks[0]?.[1];
    expect(r.problems[0]?.detail).toBe(`does not match its digest (at byte ${at} of the file)`);
  });

  it('reports a damaged Brotli chunk', async () => {
    const [digest] = fileOf('docs/readme.txt').chunks[0] as [string, number];
    const b = fs.readFileSync(chunkFile(digest));
    b[5] = (b[5] as number) ^ 0x55;
    fs.writeFileSync(chunkFile(digest), b);
    const r = await validateVersion(library, manifest);
    expect(r.problems.map(({ path, chunk, kind }) => ({ path, chunk, kind }))).toEqual([
      { path: 'docs/readme.txt', chunk: digest, kind: expect.stringMatching(/^(damaged|size)$/) },
    ]);
  });

  it('reports a deleted chunk file as missing', async () => {
    const [digest, size] = fileOf('docs/readme.txt').chunks.at(-1) as [string, number];
    await library.deleteChunk(digest);
    const r = await validateVersion(library, manifest);
    expect(r.problems).toEqual([
      {
        path: 'docs/readme.txt',
        chunk: digest,
        kind: 'missing',
        detail: `the stored chunk is missing (at byte ${text.length - size} of the file)`,
      },
    ]);
    expect(r.checkedChunks).toBe(distinct());
  });

  it('reports truncated stored chunks: a raw one by its size, a Brotli one as undecodable', async () => {
    const [rawDigest, rawSize] = fileOf('setup.exe').chunks[0] as [string, number];
    const [brDigest] = fileOf('docs/readme.txt').chunks[0] as [string, number];
    fs.truncateSync(chunkFile(rawDigest), 1 + rawSize - 100);
    fs.truncateSync(chunkFile(brDigest), fs.statSync(chunkFile(brDigest)).size >> 1);
    const r = await validateVersion(library, manifest);
    expect(r.problems).toEqual([
      {
        path: 'setup.exe',
        chunk: rawDigest,
        kind: 'size',
        detail: `holds ${rawSize - 100} bytes, not the ${rawSize} listed (at byte 0 of the file)`,
      },
      { path: 'i386/copy.exe', chunk: rawDigest, kind: 'size', detail: expect.any(String) },
      { path: 'docs/readme.txt', chunk: brDigest, kind: 'damaged', detail: expect.stringContaining('does not decompress') },
    ]);
  });

  it('reports an emptied chunk file and an unknown codec', async () => {
    const [a] = fileOf('setup.exe').chunks[0] as [string, number];
    const [b] = fileOf('docs/readme.txt').chunks[0] as [string, number];
    fs.writeFileSync(chunkFile(a), '');
    const s = fs.readFileSync(chunkFile(b));
    s[0] = 7;
    fs.writeFileSync(chunkFile(b), s);
    const r = await validateVersion(library, manifest);
    expect(r.problems.map((p) => [p.path, p.chunk, p.kind, p.detail.replace(/ \(at byte.*/, '')])).toEqual([
      ['setup.exe', a, 'damaged', 'the stored chunk is empty (no codec tag)'],
      ['i386/copy.exe', a, 'damaged', 'the stored chunk is empty (no codec tag)'],
      ['docs/readme.txt', b, 'damaged', 'has an unknown codec tag 7'],
    ]);
  });

  it('names a chunk used twice in one file once for that file', async () => {
    const chunks = chunksOf(twice);
    const doubled: [string, number][] = [...chunks, ...chunks];
    const m = parseManifest({
      ...manifest,
      files: [...manifest.files, { type: 'file', path: 'twice.bin', mode: 0o644, size: 2 * twice.length, chunks: doubled }],
      bytes: manifest.bytes + 2 * twice.length,
    });
    let at = 0;
    for (const [digest, size] of chunks) {
      await library.writeChunks([{ digest, stored: encodeChunk(twice.subarray(at, at + size)) }]);
      at += size;
    }
    const [digest] = chunks[0] as [string, number];
    await library.deleteChunk(digest);
    const r = await validateVersion(library, m);
    expect(r.problems.filter((p) => p.path === 'twice.bin').map((p) => p.chunk)).toEqual([digest]);
  });

  it('catches a file whose chunk sizes disagree with its size (which manifest checks refuse too)', async () => {
    const wrong = {
      ...manifest,
      files: manifest.files.map((e) => (e.path === 'docs/readme.txt' && e.type === 'file' ? { ...e, size: e.size + 1 } : e)),
      bytes: manifest.bytes + 1,
    };
    expect(() => parseManifest(wrong)).toThrow(/docs\/readme.txt: its chunks add up to \d+ bytes, not its size/);
    const r = await validateVersion(library, wrong);
    expect(r.problems).toEqual([
      {
        path: 'docs/readme.txt',
        chunk: null,
        kind: 'size',
        detail: `its chunks add up to ${text.length} bytes, not its size ${text.length + 1}`,
      },
    ]);
  });

  it('catches a chunk listed with the wrong size, even when the file sizes add up', async () => {
    // The first two chunks of setup.exe trade 10 bytes in the listing: the sum is unchanged.
    const e = fileOf('setup.exe');
    const [[d0, n0], [d1, n1], ...rest] = e.chunks as [[string, number], [string, number], ...[string, number][]];
    const wrong = parseManifest({
      ...manifest,
      files: manifest.files.map((f) => (f.path === 'setup.exe' ? { ...e, chunks: [[d0, n0 + 10], [d1, n1 - 10], ...rest] } : f)),
    });
    const r = await validateVersion(library, wrong);
    expect(r.problems.map(({ path, chunk, kind }) => ({ path, chunk, kind }))).toEqual([
      { path: 'setup.exe', chunk: d0, kind: 'size' },
      { path: 'setup.exe', chunk: d1, kind: 'size' },
    ]);
    // copy.exe lists the same chunks with their true sizes: it is fine.
    expect(r.problems.some((p) => p.path === 'i386/copy.exe')).toBe(false);
  });

  it('at low priority finds the same, reports progress and stops when aborted', async () => {
    const [digest] = fileOf('setup.exe').chunks[0] as [string, number];
    await library.deleteChunk(digest);
    const seen: [number, number][] = [];
    const low = await validateVersion(library, manifest, { lowPriority: true, onProgress: (b, t) => seen.push([b, t]) });
    expect(low).toEqual(await validateVersion(library, manifest));
    expect(seen.at(-1)).toEqual([low.checkedBytes, low.checkedBytes]);
    const ac = new AbortController();
    ac.abort(new Error('stopped'));
    await expect(validateVersion(library, manifest, { signal: ac.signal })).rejects.toThrow('stopped');
  });
});

/** The worker's check of one stored file, run in this thread. */
describe('checkStoredChunk', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-check-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('tells a chunk that decodes to more than listed, and a file over any chunk size, from a good one', () => {
    const text = Buffer.from('abc '.repeat(20_000));
    const digest = sha256(text);
    const f = path.join(dir, 'c');
    fs.writeFileSync(f, encodeChunk(text));
    expect(checkStoredChunk(f, digest, text.length)).toBeNull();
    expect(checkStoredChunk(f, digest, 1000)).toEqual({ kind: 'size', detail: 'decodes to more than the 1000 bytes listed' });
    const big = crypto.randomBytes(300_000); // over the 256 KiB bound of the reused buffer
    fs.writeFileSync(f, Buffer.concat([Buffer.from([CODEC_RAW]), big]));
    expect(checkStoredChunk(f, sha256(big), 1000)).toEqual({ kind: 'size', detail: 'holds 300000 bytes, not the 1000 listed' });
    expect(checkStoredChunk(path.join(dir, 'none'), digest, 1)).toEqual({ kind: 'missing', detail: 'the stored chunk is missing' });
  });
});
