import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CHUNK_PARAMS, chunkLengths } from './chunker.js';
import { FileChunker } from './gear.js';

function seeded(size: number, seed: string): Buffer {
  const key = crypto.createHash('sha256').update(seed).digest();
  return crypto.createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(size));
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-gear-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Chunk lengths and digests the WebAssembly chunker gives for `data`, read from a file. */
function wasmChunks(chunker: FileChunker, data: Uint8Array): { lengths: number[]; size: number; digests: string[] } {
  const file = path.join(dir, 'f');
  fs.writeFileSync(file, data);
  const fd = fs.openSync(file, 'r');
  try {
    const lengths: number[] = [];
    const digests: string[] = [];
    const size = chunker.chunkFd(fd, (c) => {
      lengths.push(c.length);
      digests.push(crypto.createHash('sha256').update(c).digest('hex'));
    });
    return { lengths, size, digests };
  } finally {
    fs.closeSync(fd);
  }
}

function jsDigests(data: Uint8Array): string[] {
  let at = 0;
  return chunkLengths(data).map((n) => {
    at += n;
    return crypto
      .createHash('sha256')
      .update(data.subarray(at - n, at))
      .digest('hex');
  });
}

describe('FileChunker (WebAssembly gear hash)', () => {
  const chunker = new FileChunker();
  const { min, max } = CHUNK_PARAMS;
  const sizes = [0, 1, min - 1, min, min + 1, max - 1, max, max + 1, 1 << 20];

  it.each(sizes)('cuts %i random bytes where the JavaScript chunker does', (n) => {
    const data = seeded(n, `gear-${n}`);
    const got = wasmChunks(chunker, data);
    expect(got.size).toBe(n);
    expect(got.lengths).toEqual(chunkLengths(data));
  });

  it('agrees across read blocks, on random, repetitive and zero data, and hands out the right bytes', () => {
    // 4 MiB blocks: a file of 13 MiB crosses three block ends with a tail carried over each.
    const data = Buffer.concat([
      seeded(5 << 20, 'gear-a'),
      Buffer.alloc(2 << 20), // all zero: only forced cuts at max
      Buffer.from('the quick brown fox jumps over the lazy dog\n'.repeat(60_000)),
      seeded((3 << 20) + 12_345, 'gear-b'),
    ]);
    const got = wasmChunks(chunker, data);
    expect(got.size).toBe(data.length);
    expect(got.lengths).toEqual(chunkLengths(data));
    expect(got.digests).toEqual(jsDigests(data));
    expect(got.lengths.filter((l) => l === max).length).toBeGreaterThanOrEqual(8);
  });

  it('is reusable: a second file after a first gives its own chunks', () => {
    const a = seeded(3 << 20, 'gear-reuse-a');
    const b = seeded(2 << 20, 'gear-reuse-b');
    wasmChunks(chunker, a);
    expect(wasmChunks(chunker, b).lengths).toEqual(chunkLengths(b));
  });
});
