/**
 * Content-defined chunking: FastCDC-style gear hash with normalised chunking.
 *
 * Boundaries depend only on the bytes inside a 32-byte window, so an edit moves at most the
 * boundaries next to it: the rest of the file cuts into the same chunks as before, and those
 * chunks are already in the library. See docs/content.md for why the sizes are what they are.
 */

import { CHUNK_SIZES } from '../core/chunk.js';

export interface ChunkerParams {
  /** No cut before this many bytes: also the stretch of each chunk the hash skips. */
  min: number;
  /** Target average; a power of two. */
  avg: number;
  /** A cut is forced here. */
  max: number;
}

/** Library chunks: 16 KiB / 64 KiB / 256 KiB (min / average / max). */
export const CHUNK_PARAMS: ChunkerParams = { ...CHUNK_SIZES };

/** Sub-chunks used only to describe a new chunk as a delta of one the receiver holds. */
export const SUBCHUNK_PARAMS: ChunkerParams = { min: 128, avg: 512, max: 2048 };

/** 256 pseudo-random 32-bit values, fixed forever: changing them changes every boundary. */
export const GEAR: Int32Array = (() => {
  const t = new Int32Array(256);
  // splitmix32-style generator with a fixed seed.
  let s = 0x9e3779b9 | 0;
  for (let i = 0; i < 256; i++) {
    s = (s + 0x6d2b79f5) | 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    t[i] = z ^ (z >>> 14);
  }
  return t;
})();

function log2(n: number): number {
  const b = Math.log2(n);
  if (!Number.isInteger(b)) throw new Error(`chunker average ${n} is not a power of two`);
  return b;
}

/** Masks on the high bits of the 32-bit gear hash (they depend on the most bytes). */
function masks(p: ChunkerParams): { small: number; large: number } {
  const bits = log2(p.avg);
  const hi = (n: number) => (n >= 32 ? -1 : ((2 ** n - 1) * 2 ** (32 - n)) | 0);
  // Normalised chunking, level 2: harder before the average, easier after.
  return { small: hi(bits + 2), large: hi(bits - 2) };
}

/**
 * Finds the end of the chunk that starts at `start`, looking at `buf[start..end)`.
 * Returns the cut offset (exclusive), or -1 when no cut was found and more data may follow
 * (`final` false and fewer than `max` bytes available).
 */
export function findCut(
  buf: Uint8Array,
  start: number,
  end: number,
  final: boolean,
  p: ChunkerParams = CHUNK_PARAMS,
  m: { small: number; large: number } = masksFor(p),
): number {
  const avail = end - start;
  if (avail <= p.min) return final ? end : -1;
  const limit = avail >= p.max ? start + p.max : end;
  const normal = Math.min(start + p.avg, limit);
  const gear = GEAR;
  let h = 0;
  let i = start + p.min;
  const small = m.small;
  for (; i < normal; i++) {
    h = ((h << 1) + (gear[buf[i] as number] as number)) | 0;
    if ((h & small) === 0) return i + 1;
  }
  const large = m.large;
  for (; i < limit; i++) {
    h = ((h << 1) + (gear[buf[i] as number] as number)) | 0;
    if ((h & large) === 0) return i + 1;
  }
  if (limit === start + p.max) return limit;
  return final ? end : -1;
}

const maskCache = new Map<ChunkerParams, { small: number; large: number }>();
/** The two masks of `p` (computed once per parameter set). */
export function masksFor(p: ChunkerParams): { small: number; large: number } {
  let m = maskCache.get(p);
  if (!m) {
    m = masks(p);
    maskCache.set(p, m);
  }
  return m;
}

/** Cuts a whole buffer; returns chunk lengths. */
export function chunkLengths(buf: Uint8Array, p: ChunkerParams = CHUNK_PARAMS): number[] {
  const out: number[] = [];
  const m = masksFor(p);
  let start = 0;
  while (start < buf.length) {
    const cut = findCut(buf, start, buf.length, true, p, m);
    out.push(cut - start);
    start = cut;
  }
  return out;
}

/**
 * Streaming chunker: feed blocks in order, receive whole chunks, then `finish()` for the rest.
 * Returned chunks are views: consume them before the next `push` or before reusing `block`.
 */
export class StreamChunker {
  private pending: Uint8Array = new Uint8Array(0);
  private readonly m: { small: number; large: number };

  constructor(private readonly p: ChunkerParams = CHUNK_PARAMS) {
    this.m = masksFor(p);
  }

  /** Returns the complete chunks found so far; keeps the unfinished tail. */
  push(block: Uint8Array): Uint8Array[] {
    const out: Uint8Array[] = [];
    let start = 0;
    const p = this.pending;
    if (p.length > 0) {
      // Only the chunks that start in the tail need it joined to the block's first bytes: at
      // most `max` of them, not the whole block (a 4 MiB copy per block otherwise).
      const head = block.subarray(0, Math.min(block.length, this.p.max));
      const join = new Uint8Array(p.length + head.length);
      join.set(p, 0);
      join.set(head, p.length);
      let s = 0;
      while (s < p.length) {
        const cut = findCut(join, s, join.length, false, this.p, this.m);
        if (cut < 0) {
          // Fewer than `max` bytes in all: the block was short; keep everything for later.
          this.pending = join.slice(s);
          return out;
        }
        out.push(join.subarray(s, cut));
        s = cut;
      }
      start = s - p.length;
    }
    for (;;) {
      const cut = findCut(block, start, block.length, false, this.p, this.m);
      if (cut < 0) break;
      out.push(block.subarray(start, cut));
      start = cut;
    }
    // Copy the tail so the caller may reuse `block`. (Not `block.slice`: on a Buffer that is a
    // view, and the next read into the caller's block would overwrite the tail.)
    const tail = new Uint8Array(block.length - start);
    tail.set(block.subarray(start));
    this.pending = tail;
    return out;
  }

  finish(): Uint8Array[] {
    const out: Uint8Array[] = [];
    let start = 0;
    const buf = this.pending;
    while (start < buf.length) {
      const cut = findCut(buf, start, buf.length, true, this.p, this.m);
      out.push(buf.subarray(start, cut));
      start = cut;
    }
    this.pending = new Uint8Array(0);
    return out;
  }
}
