/**
 * Worker side of validation (`validate.ts`): reads stored chunk files itself (no copy through
 * the main thread), decodes them and compares each with its digest and listed size.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import zlib from 'node:zlib';
import { CHUNK_PARAMS } from './chunker.js';
import { CODEC_BROTLI, CODEC_RAW } from './codec.js';

export type ChunkProblemKind = 'missing' | 'damaged' | 'size';

export interface CheckChunksTask {
  kind: 'checkChunks';
  /** Stored chunk files, each with its digest and the raw size the manifest lists. */
  items: { file: string; digest: string; size: number }[];
  /** Nice value for this thread (a low-priority pool's own thread); absent: leave it. */
  nice?: number;
}
export interface CheckChunksResult {
  kind: 'checkChunks';
  /** Raw bytes of the items checked (their listed sizes). */
  bytes: number;
  /** Only the items that are not fine, by index: most validations return an empty list. */
  problems: { i: number; kind: ChunkProblemKind; detail: string }[];
}

/**
 * A valid stored chunk is at most its size + 1 bytes (a raw chunk and its tag; Brotli is kept
 * only when smaller). One buffer of that bound, reused: no allocation per raw chunk.
 */
const BOUND = CHUNK_PARAMS.max + 2;
let readBuf: Buffer | undefined;

/** Reads a whole file into the reused buffer, or a fresh one if it is larger than any chunk. */
function readStored(file: string): Buffer {
  readBuf ??= Buffer.allocUnsafe(BOUND);
  const fd = fs.openSync(file, 'r');
  try {
    let n = 0;
    for (;;) {
      const r = fs.readSync(fd, readBuf, n, BOUND - n, null);
      if (r === 0) return readBuf.subarray(0, n);
      n += r;
      if (n === BOUND) break;
    }
  } finally {
    fs.closeSync(fd);
  }
  // Over the bound: no valid chunk is this long, but read it all to say why (Brotli bomb, junk).
  return fs.readFileSync(file);
}

const hex = (b: Uint8Array): string => crypto.createHash('sha256').update(b).digest('hex');

/** What is wrong with one stored chunk, or null when it decodes to `size` bytes matching `digest`. */
export function checkStoredChunk(file: string, digest: string, size: number): { kind: ChunkProblemKind; detail: string } | null {
  let stored: Buffer;
  try {
    stored = readStored(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { kind: 'missing', detail: 'the stored chunk is missing' };
    return { kind: 'damaged', detail: `the stored chunk cannot be read: ${code ?? (e as Error).message}` };
  }
  if (stored.length === 0) return { kind: 'damaged', detail: 'the stored chunk is empty (no codec tag)' };
  const tag = stored[0];
  const payload = stored.subarray(1);
  let raw: Uint8Array;
  if (tag === CODEC_RAW) {
    raw = payload;
  } else if (tag === CODEC_BROTLI) {
    try {
      // One byte over the listed size is enough to tell "too long" from "right"; an output
      // buffer of that size at once, not 16 KiB pieces joined (~5 % faster, measured).
      raw = zlib.brotliDecompressSync(payload, { maxOutputLength: size + 1, chunkSize: Math.max(64, size + 1) });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE')
        return { kind: 'size', detail: `decodes to more than the ${size} bytes listed` };
      return { kind: 'damaged', detail: `does not decompress: ${(e as Error).message}` };
    }
  } else {
    return { kind: 'damaged', detail: `has an unknown codec tag ${tag}` };
  }
  if (raw.length !== size) return { kind: 'size', detail: `holds ${raw.length} bytes, not the ${size} listed` };
  if (hex(raw) !== digest) return { kind: 'damaged', detail: 'does not match its digest' };
  return null;
}

let niced: number | undefined;

/** Sets this worker thread's nice value (once; on Linux it is per thread). */
export function lowerPriority(nice: number | undefined): void {
  if (nice === undefined || niced === nice) return;
  try {
    os.setPriority(nice);
  } catch {}
  niced = nice;
}

export function checkChunks(t: CheckChunksTask): CheckChunksResult {
  lowerPriority(t.nice);
  let bytes = 0;
  const problems: CheckChunksResult['problems'] = [];
  t.items.forEach((it, i) => {
    bytes += it.size;
    const p = checkStoredChunk(it.file, it.digest, it.size);
    if (p) problems.push({ i, ...p });
  });
  return { kind: 'checkChunks', bytes, problems };
}
