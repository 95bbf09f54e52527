import crypto from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CHUNK_PARAMS, StreamChunker, chunkLengths } from './chunker.js';

describe('chunker', () => {
  it('cuts within min and max and covers every byte', () => {
    const buf = crypto.randomBytes(4 << 20);
    const lens = chunkLengths(buf);
    expect(lens.reduce((a, b) => a + b, 0)).toBe(buf.length);
    for (const n of lens.slice(0, -1)) {
      expect(n).toBeGreaterThanOrEqual(CHUNK_PARAMS.min);
      expect(n).toBeLessThanOrEqual(CHUNK_PARAMS.max);
    }
  });
});

describe('stream chunker', () => {
  it('cuts the same chunks as the whole-buffer chunker, whatever the block size', () => {
    const buf = crypto.randomBytes(3 << 20);
    const whole = chunkLengths(buf);
    const sc = new StreamChunker();
    const got: number[] = [];
    for (let at = 0; at < buf.length; at += 100_003) for (const c of sc.push(buf.subarray(at, at + 100_003))) got.push(c.length);
    for (const c of sc.finish()) got.push(c.length);
    expect(got).toEqual(whole);
  });
});
