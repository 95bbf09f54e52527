import zlib from 'node:zlib';
import { fail } from '../core/errors.js';

/**
 * Stored chunk format: one tag byte, then the payload. Self-describing, so a chunk file served
 * by any static web server can be decoded by whoever fetched it.
 */
export const CODEC_RAW = 0;
export const CODEC_BROTLI = 1;

const PROBE = 4096;
const BROTLI_OPTS = {
  params: {
    [zlib.constants.BROTLI_PARAM_QUALITY]: 1,
    [zlib.constants.BROTLI_PARAM_MODE]: zlib.constants.BROTLI_MODE_GENERIC,
  },
};

/** c * log2(c) for every count a probe can hold: the probe's entropy without a logarithm per byte value. */
const C_LOG_C = Float64Array.from({ length: PROBE + 1 }, (_, c) => (c > 0 ? c * Math.log2(c) : 0));
/** The probe's byte counts, reused (each thread has its own module instance). */
const counts = new Uint32Array(256);

/**
 * Shannon entropy, in bits per byte, of a sample from the middle of the chunk:
 * H = log2(N) - (1/N) * sum(c * log2(c)) over the byte counts c of the N sampled bytes.
 */
export function sampleEntropy(raw: Uint8Array): number {
  const at = (raw.length >> 1) - (PROBE >> 1);
  const end = at + PROBE;
  counts.fill(0);
  for (let i = at; i < end; i++) (counts[raw[i] as number] as number)++;
  let sum = 0;
  for (let b = 0; b < 256; b++) sum += C_LOG_C[counts[b] as number] as number;
  return Math.log2(PROBE) - sum / PROBE;
}

/**
 * Compresses a chunk with Brotli quality 1 when that helps; keeps it raw when it does not.
 * A 4 KiB entropy probe spots incompressible data (most installers' cabinets) before a full
 * compression is wasted on it: 4,096 byte counts cost far less than starting a compressor.
 */
export function encodeChunk(raw: Uint8Array): Buffer {
  const c = compressChunk(raw);
  return c ? tagged(CODEC_BROTLI, c) : tagged(CODEC_RAW, raw);
}

/** The Brotli payload when compression helps, or null: store the raw bytes (no copy made). */
export function compressChunk(raw: Uint8Array): Buffer | null {
  if (raw.length >= 2 * PROBE && sampleEntropy(raw) > 7.2) return null;
  const br = zlib.brotliCompressSync(raw, {
    ...BROTLI_OPTS,
    params: { ...BROTLI_OPTS.params, [zlib.constants.BROTLI_PARAM_SIZE_HINT]: raw.length },
  });
  return br.length < raw.length * 0.97 ? br : null;
}

/** The tag byte of each codec, shared so writers need not copy the payload behind it. */
export const TAG = { raw: Buffer.from([CODEC_RAW]), brotli: Buffer.from([CODEC_BROTLI]) } as const;

function tagged(tag: number, payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(payload.length + 1);
  out[0] = tag;
  out.set(payload, 1);
  return out;
}

/** Decodes a stored chunk; `maxSize` bounds what a hostile payload may expand to. */
export function decodeChunk(stored: Uint8Array, maxSize: number): Buffer {
  if (stored.length === 0) throw fail('damaged', 'chunk is empty (no codec tag)');
  const tag = stored[0];
  const payload = Buffer.from(stored.buffer, stored.byteOffset + 1, stored.length - 1);
  if (tag === CODEC_RAW) {
    if (payload.length > maxSize) throw fail('damaged', `chunk holds ${payload.length} bytes, over the expected ${maxSize}`);
    return payload;
  }
  if (tag === CODEC_BROTLI) {
    try {
      return zlib.brotliDecompressSync(payload, { maxOutputLength: maxSize });
    } catch (e) {
      throw fail('damaged', `chunk payload does not decompress: ${(e as Error).message}`);
    }
  }
  throw fail('damaged', `chunk has an unknown codec tag ${tag}`);
}
