import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { chunkLengths } from './chunker.js';
import { CODEC_BROTLI, CODEC_RAW, decodeChunk, encodeChunk } from './codec.js';
import run, { type ChunkFilesResult, type IngestResult, type RenameResult, sha256, type VerifyResult } from './worker.js';

/** The worker's tasks, run in this thread (the pool only moves them to other threads). */
describe('worker tasks', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-worker-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  const expectedChunks = (data: Uint8Array): [string, number][] => {
    const out: [string, number][] = [];
    let at = 0;
    for (const n of chunkLengths(data)) {
      out.push([sha256(data.subarray(at, at + n)), n]);
      at += n;
    }
    return out;
  };

  it('chunkFiles cuts files read in reused 4 MiB blocks exactly as the whole-buffer chunker', () => {
    // Over two blocks, so chunks straddle block boundaries and the chunker's tail must survive
    // the next read into the same block; then a second file through the same block.
    const big = crypto.randomBytes((9 << 20) + 12_345);
    const small = crypto.randomBytes(300_000);
    fs.writeFileSync(path.join(dir, 'big.bin'), big);
    fs.writeFileSync(path.join(dir, 'small.bin'), small);
    fs.writeFileSync(path.join(dir, 'empty'), '');
    const r = run({
      kind: 'chunkFiles',
      paths: ['big.bin', 'small.bin', 'empty', 'missing'].map((f) => path.join(dir, f)),
    }) as ChunkFilesResult;
    expect(r.files[0]).toEqual({ chunks: expectedChunks(big), size: big.length });
    expect(r.files[1]).toEqual({ chunks: expectedChunks(small), size: small.length });
    expect(r.files[2]).toEqual({ chunks: [], size: 0 });
    expect(r.files[3]).toEqual({ error: 'ENOENT' });
  });

  it('ingest writes encoded chunks that match their digest and refuses data that does not', () => {
    const a = crypto.randomBytes(70_000);
    const b = Buffer.from('text '.repeat(10_000));
    const buf = new Uint8Array(Buffer.concat([a, b]));
    const tmpDir = fs.mkdtempSync(path.join(dir, 'tmp-'));
    const r = run({
      kind: 'ingest',
      buf,
      paths: ['a1', 'b1', 'b2'].map((n) => path.join(tmpDir, n)),
      fsyncEach: false,
      items: [
        { digest: sha256(a), offset: 0, length: a.length },
        { digest: sha256(b), offset: a.length, length: b.length },
        { digest: sha256(b), offset: 0, length: b.length },
      ],
    }) as IngestResult;
    const [ra, rb, bad] = r.stored;
    expect(bad).toBeNull();
    const fa = fs.readFileSync(ra?.tmp as string);
    const fb = fs.readFileSync(rb?.tmp as string);
    expect(fa[0]).toBe(CODEC_RAW);
    expect(fb[0]).toBe(CODEC_BROTLI);
    expect(fa.length).toBe(ra?.storedSize);
    expect(fb.length).toBe(rb?.storedSize);
    expect(decodeChunk(fa, a.length)).toEqual(a);
    expect(decodeChunk(fb, b.length)).toEqual(b);
    expect(fs.readdirSync(tmpDir)).toHaveLength(2);
  });

  it('rename moves files into folders it makes', () => {
    const from = path.join(dir, 'r1.tmp');
    fs.writeFileSync(from, 'x');
    const to = path.join(dir, 'chunks', 'ab', 'abc');
    const r = run({ kind: 'rename', moves: [[from, to]], fsyncDirs: true }) as RenameResult;
    expect(r.renamed).toBe(1);
    expect(fs.readFileSync(to, 'utf8')).toBe('x');
    expect(fs.existsSync(from)).toBe(false);
  });

  it('verify reports each problem and passes good chunks', () => {
    const raw = Buffer.from('hello '.repeat(3000));
    const stored = encodeChunk(raw);
    const r = run({
      kind: 'verify',
      items: [
        { digest: sha256(raw), stored, size: raw.length },
        { digest: sha256(Buffer.from('other')), stored, size: raw.length },
        { digest: sha256(raw), stored: stored.subarray(0, 10), size: raw.length },
        { digest: sha256(raw), stored: Buffer.from([9, 1]), size: raw.length },
        { digest: sha256(raw), stored, size: raw.length - 1 },
      ],
    }) as VerifyResult;
    expect(r.problems[0]).toBeNull();
    expect(r.problems[1]).toMatch(/does not match/);
    expect(r.problems[2]).toMatch(/decompress/);
    expect(r.problems[3]).toMatch(/unknown codec/);
    expect(r.problems[4]).not.toBeNull();
  });
});
