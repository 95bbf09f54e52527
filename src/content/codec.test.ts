import crypto from 'node:crypto';
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { CascadeError } from '../core/errors.js';
import { CODEC_BROTLI, CODEC_RAW, decodeChunk, encodeChunk, sampleEntropy } from './codec.js';

const MAX = 256 << 10;

function text(size: number): Buffer {
  const words = ['setup', 'install', 'msiexec', '/quiet', 'C:\\Program Files\\Office', 'REBOOT=ReallySuppress', 'license', '\n'];
  const out: string[] = [];
  let n = 0;
  let i = 0;
  while (n < size) {
    const w = `${words[(i * 7 + (i >> 3)) % words.length]} ${i % 1000} `;
    out.push(w);
    n += w.length;
    i++;
  }
  return Buffer.from(out.join('')).subarray(0, size);
}

function damagedError(fn: () => unknown): CascadeError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(CascadeError);
    expect((e as CascadeError).code).toBe('damaged');
    return e as CascadeError;
  }
  throw new Error('expected a damaged error, but nothing was thrown');
}

describe('chunk codec', () => {
  it('measures the entropy of the middle 4 KiB as the textbook formula does', () => {
    const naive = (raw: Uint8Array) => {
      const probe = raw.subarray((raw.length >> 1) - 2048, (raw.length >> 1) + 2048);
      const c = new Map<number, number>();
      for (const b of probe) c.set(b, (c.get(b) ?? 0) + 1);
      let h = 0;
      for (const n of c.values()) h -= (n / 4096) * Math.log2(n / 4096);
      return h;
    };
    const cycle = Buffer.from(Array.from({ length: 16384 }, (_, i) => i & 255));
    expect(sampleEntropy(cycle)).toBeCloseTo(8, 10);
    expect(sampleEntropy(Buffer.alloc(16384, 7))).toBe(0);
    for (const raw of [crypto.randomBytes(64 << 10), text(64 << 10), crypto.randomBytes(8192)]) {
      expect(sampleEntropy(raw)).toBeCloseTo(naive(raw), 10);
      // The counts are reused between calls: a second look at the same bytes agrees.
      expect(sampleEntropy(raw)).toBe(sampleEntropy(raw));
    }
  });

  it('keeps random data raw (tag byte + the bytes themselves)', () => {
    for (const size of [1, 100, 8191, 8192, 64 << 10, MAX]) {
      const raw = crypto.randomBytes(size);
      const stored = encodeChunk(raw);
      expect(stored[0], `size ${size}`).toBe(CODEC_RAW);
      expect(stored.length).toBe(size + 1);
      expect(stored.subarray(1).equals(raw)).toBe(true);
      expect(decodeChunk(stored, MAX).equals(raw)).toBe(true);
    }
  });

  it('compresses text with brotli and decodes it back', () => {
    const raw = text(64 << 10);
    const stored = encodeChunk(raw);
    expect(stored[0]).toBe(CODEC_BROTLI);
    expect(stored.length).toBeLessThan(raw.length / 4);
    expect(decodeChunk(stored, raw.length).equals(raw)).toBe(true);
  });

  it('compresses small text too (no probe below 8 KiB)', () => {
    const raw = text(3000);
    const stored = encodeChunk(raw);
    expect(stored[0]).toBe(CODEC_BROTLI);
    expect(decodeChunk(stored, 3000).equals(raw)).toBe(true);
  });

  it('round-trips mixed content of every shape', () => {
    const cases: Buffer[] = [
      Buffer.alloc(MAX),
      Buffer.concat([crypto.randomBytes(30_000), text(30_000)]),
      Buffer.concat([text(30_000), crypto.randomBytes(30_000)]),
      Buffer.from([0]),
      Buffer.from([1]),
    ];
    for (const raw of cases) {
      const stored = encodeChunk(raw);
      expect([CODEC_RAW, CODEC_BROTLI]).toContain(stored[0]);
      expect(decodeChunk(stored, raw.length).equals(raw)).toBe(true);
    }
  });

  it('decodes a view into a larger buffer (byteOffset honoured)', () => {
    const raw = text(20_000);
    const stored = encodeChunk(raw);
    const big = Buffer.concat([Buffer.from('garbage before'), stored, Buffer.from('garbage after')]);
    const view = big.subarray(14, 14 + stored.length);
    expect(decodeChunk(view, raw.length).equals(raw)).toBe(true);
    const rawStored = encodeChunk(crypto.randomBytes(10_000));
    const big2 = Buffer.concat([Buffer.from([CODEC_BROTLI, 9, 9]), rawStored, Buffer.from([7])]);
    expect(decodeChunk(big2.subarray(3, 3 + rawStored.length), 10_000).equals(rawStored.subarray(1))).toBe(true);
  });

  it('rejects an unknown codec tag as damaged', () => {
    for (const tag of [2, 7, 255]) {
      const e = damagedError(() => decodeChunk(Buffer.from([tag, 1, 2, 3]), MAX));
      expect(e.message).toContain(`unknown codec tag ${tag}`);
    }
  });

  it('rejects an empty stored chunk as damaged', () => {
    damagedError(() => decodeChunk(new Uint8Array(0), MAX));
  });

  it('rejects corrupt brotli as damaged', () => {
    const stored = encodeChunk(text(64 << 10));
    expect(stored[0]).toBe(CODEC_BROTLI);
    // Cut short.
    damagedError(() => decodeChunk(stored.subarray(0, stored.length >> 1), MAX));
    // Garbage after a brotli tag.
    damagedError(() => decodeChunk(Buffer.concat([Buffer.from([CODEC_BROTLI]), Buffer.alloc(100, 0xff)]), MAX));
    // A tag with nothing behind it.
    damagedError(() => decodeChunk(Buffer.from([CODEC_BROTLI]), MAX));
  });

  it('a flipped byte inside brotli data never decodes silently to the original', () => {
    const raw = text(32 << 10);
    const stored = encodeChunk(raw);
    for (let i = 1; i < stored.length; i += 37) {
      const bad = Buffer.from(stored);
      bad[i] = (bad[i] as number) ^ 0x55;
      let out: Buffer | undefined;
      try {
        out = decodeChunk(bad, MAX);
      } catch (e) {
        expect((e as CascadeError).code).toBe('damaged');
      }
      if (out) expect(out.equals(raw)).toBe(false);
    }
  });

  it('bounds what a brotli bomb may expand to', () => {
    const bomb = Buffer.concat([
      Buffer.from([CODEC_BROTLI]),
      zlib.brotliCompressSync(Buffer.alloc(64 << 20), { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 1 } }),
    ]);
    expect(bomb.length).toBeLessThan(64 << 10);
    const e = damagedError(() => decodeChunk(bomb, MAX));
    expect(e.message).toMatch(/decompress/);
    // Exactly at the bound is fine; one byte over is not.
    const raw = text(10_000);
    const stored = encodeChunk(raw);
    expect(decodeChunk(stored, 10_000).length).toBe(10_000);
    damagedError(() => decodeChunk(stored, 9_999));
  });

  it('bounds a raw chunk by maxSize too', () => {
    const raw = crypto.randomBytes(20_000);
    const stored = encodeChunk(raw);
    expect(stored[0]).toBe(CODEC_RAW);
    expect(decodeChunk(stored, 20_000).length).toBe(20_000);
    damagedError(() => decodeChunk(stored, 19_999));
  });
});
