import crypto from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CHUNK_PARAMS, type ChunkerParams, chunkLengths, findCut, GEAR, StreamChunker, SUBCHUNK_PARAMS } from './chunker.js';

/** Deterministic pseudo-random bytes (same seed, same bytes) so failures reproduce. */
function seeded(size: number, seed: string): Buffer {
  const key = crypto.createHash('sha256').update(seed).digest();
  const cipher = crypto.createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return cipher.update(Buffer.alloc(size));
}

const sha = (b: Uint8Array): string => crypto.createHash('sha256').update(b).digest('hex');

function chunkDigests(buf: Uint8Array, p: ChunkerParams = CHUNK_PARAMS): string[] {
  const out: string[] = [];
  let at = 0;
  for (const n of chunkLengths(buf, p)) {
    out.push(sha(buf.subarray(at, at + n)));
    at += n;
  }
  return out;
}

/** Digests of `b` that `a` does not hold, counted with multiplicity. */
function notIn(a: readonly string[], b: readonly string[]): number {
  const have = new Map<string, number>();
  for (const d of a) have.set(d, (have.get(d) ?? 0) + 1);
  let n = 0;
  for (const d of b) {
    const k = have.get(d) ?? 0;
    if (k > 0) have.set(d, k - 1);
    else n++;
  }
  return n;
}

const SIXTEEN_MIB = 16 << 20;
const big = seeded(SIXTEEN_MIB, 'chunker-16MiB');
const bigDigests = chunkDigests(big);

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

  it('averages near the target size on random data', () => {
    const mean = SIXTEEN_MIB / bigDigests.length;
    expect(mean).toBeGreaterThan(CHUNK_PARAMS.avg * 0.6);
    expect(mean).toBeLessThan(CHUNK_PARAMS.avg * 1.6);
  });

  it('cuts the same input the same way every time (boundaries depend only on content)', () => {
    const again = Buffer.from(big); // a different buffer with the same bytes
    expect(chunkLengths(again)).toEqual(chunkLengths(big));
    expect(chunkDigests(again)).toEqual(bigDigests);
  });

  it('has a fixed gear table and fixed cuts: changing either would re-cut every stored package', () => {
    // Pinned values: if this fails, the chunker's output changed and every library's chunks go stale.
    expect(GEAR.length).toBe(256);
    expect(new Set(GEAR).size).toBe(256);
    expect([GEAR[0], GEAR[255]]).toEqual([1541420728, -253480778]);
    expect(sha(new Uint8Array(GEAR.buffer, GEAR.byteOffset, GEAR.byteLength))).toBe(
      '78c9fbdaa3091c606b03ffaa7dc8daab577889fbf9725056bfb4b4b0781cb86d',
    );
    expect(chunkLengths(seeded(1 << 20, 'pinned'))).toEqual([
      107055, 69189, 76264, 92668, 78219, 73539, 74205, 44260, 67099, 76167, 51546, 86857, 79760, 54813, 16935,
    ]);
  });

  it('a few bytes inserted in 16 MiB change only the chunks next to them', () => {
    for (const at of [0, 5_000_123, 11_111_111, SIXTEEN_MIB - 10]) {
      const ins = crypto.randomBytes(7);
      const edited = Buffer.concat([big.subarray(0, at), ins, big.subarray(at)]);
      const d = chunkDigests(edited);
      const changedNew = notIn(bigDigests, d);
      const changedOld = notIn(d, bigDigests);
      expect(changedNew, `insertion at ${at}`).toBeGreaterThanOrEqual(1);
      expect(changedNew, `insertion at ${at}`).toBeLessThanOrEqual(3);
      expect(changedOld, `insertion at ${at}`).toBeLessThanOrEqual(3);
      // Every other chunk is byte-identical and keeps its order.
      expect(d.length - changedNew).toBe(bigDigests.length - changedOld);
    }
  });

  it('an in-place overwrite changes only the chunks next to it', () => {
    for (const at of [1_000_000, 8_388_608, 15_000_000]) {
      const edited = Buffer.from(big);
      crypto.randomFillSync(edited, at, 100);
      const d = chunkDigests(edited);
      const changed = notIn(bigDigests, d);
      expect(changed, `overwrite at ${at}`).toBeGreaterThanOrEqual(1);
      expect(changed, `overwrite at ${at}`).toBeLessThanOrEqual(3);
      expect(notIn(d, bigDigests)).toBeLessThanOrEqual(3);
    }
  });

  it('a deletion changes only the chunks next to it', () => {
    const at = 9_000_000;
    const edited = Buffer.concat([big.subarray(0, at), big.subarray(at + 300)]);
    const d = chunkDigests(edited);
    expect(notIn(bigDigests, d)).toBeLessThanOrEqual(3);
    expect(notIn(d, bigDigests)).toBeLessThanOrEqual(3);
  });

  it('forces a cut at max on data that never matches (all zeros)', () => {
    const zeros = new Uint8Array(1 << 20);
    const lens = chunkLengths(zeros);
    expect(lens).toEqual([CHUNK_PARAMS.max, CHUNK_PARAMS.max, CHUNK_PARAMS.max, CHUNK_PARAMS.max]);
  });

  it('keeps a short input whole and cuts nothing from an empty one', () => {
    expect(chunkLengths(new Uint8Array(0))).toEqual([]);
    expect(chunkLengths(crypto.randomBytes(100))).toEqual([100]);
    expect(chunkLengths(crypto.randomBytes(CHUNK_PARAMS.min))).toEqual([CHUNK_PARAMS.min]);
  });

  it('findCut asks for more data until it can decide, and never cuts before min', () => {
    const buf = seeded(1 << 20, 'findcut');
    expect(findCut(buf, 0, CHUNK_PARAMS.min, false)).toBe(-1);
    expect(findCut(buf, 0, CHUNK_PARAMS.min, true)).toBe(CHUNK_PARAMS.min);
    const cut = findCut(buf, 0, buf.length, false);
    expect(cut).toBeGreaterThan(CHUNK_PARAMS.min);
    expect(cut).toBeLessThanOrEqual(CHUNK_PARAMS.max);
    // With only the bytes up to the cut available, it finds the same cut.
    expect(findCut(buf, 0, cut, false)).toBe(cut);
    // With one byte fewer, it cannot know yet.
    expect(findCut(buf, 0, cut - 1, false)).toBe(-1);
  });

  it('rejects an average that is not a power of two', () => {
    expect(() => chunkLengths(crypto.randomBytes(10_000), { min: 100, avg: 1000, max: 4000 })).toThrow(/power of two/);
  });

  it('sub-chunk parameters cut within their bounds', () => {
    const lens = chunkLengths(seeded(256 << 10, 'sub'), SUBCHUNK_PARAMS);
    for (const n of lens.slice(0, -1)) {
      expect(n).toBeGreaterThanOrEqual(SUBCHUNK_PARAMS.min);
      expect(n).toBeLessThanOrEqual(SUBCHUNK_PARAMS.max);
    }
    const mean = (256 << 10) / lens.length;
    expect(mean).toBeGreaterThan(SUBCHUNK_PARAMS.avg * 0.6);
    expect(mean).toBeLessThan(SUBCHUNK_PARAMS.avg * 1.6);
  });
});

describe('stream chunker', () => {
  it('cuts the same chunks as the whole-buffer chunker, whatever the block size', () => {
    const buf = crypto.randomBytes(3 << 20);
    const whole = chunkLengths(buf);
    for (const block of [4093, 100_003, 1 << 20]) {
      const sc = new StreamChunker();
      const got: number[] = [];
      for (let at = 0; at < buf.length; at += block) for (const c of sc.push(buf.subarray(at, at + block))) got.push(c.length);
      for (const c of sc.finish()) got.push(c.length);
      expect(got, `block ${block}`).toEqual(whole);
    }
  });

  it('returns the same bytes as the input, even when the caller reuses its block', () => {
    const buf = seeded(1 << 20, 'reuse');
    const sc = new StreamChunker();
    const block = Buffer.alloc(65_537);
    const digests: string[] = [];
    for (let at = 0; at < buf.length; at += block.length) {
      const n = buf.copy(block, 0, at, Math.min(buf.length, at + block.length));
      for (const c of sc.push(block.subarray(0, n))) digests.push(sha(c));
      block.fill(0xaa); // scribble over the block: the chunker must have kept its own copy of the tail
    }
    for (const c of sc.finish()) digests.push(sha(c));
    expect(digests).toEqual(chunkDigests(buf));
  });

  it('works with tiny pushes on sub-chunk parameters', () => {
    const buf = seeded(20_000, 'tiny');
    const sc = new StreamChunker(SUBCHUNK_PARAMS);
    const got: number[] = [];
    for (let at = 0; at < buf.length; at += 3) for (const c of sc.push(buf.subarray(at, at + 3))) got.push(c.length);
    for (const c of sc.finish()) got.push(c.length);
    expect(got).toEqual(chunkLengths(buf, SUBCHUNK_PARAMS));
    expect(new StreamChunker().finish()).toEqual([]);
  });
});
