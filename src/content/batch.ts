import { fail } from '../core/errors.js';
import { CHUNK_PARAMS } from './chunker.js';

/**
 * Chunk batch wire format (request body of POST /api/v1/chunks), a sequence of records:
 *
 *   u8  kind      1 = whole chunk, 2 = delta (see delta.ts)
 *   32  digest    SHA-256 of the chunk's raw bytes
 *   u32 length    payload bytes, big-endian
 *   ... payload   the raw chunk, or the delta encoding
 *
 * Records are self-delimiting, so a batch streams and a receiver can stop at any record.
 */
export const RECORD_WHOLE = 1;
export const RECORD_DELTA = 2;
export const RECORD_HEADER = 37;
/** A delta payload is never longer than the chunk plus its op headers. */
export const MAX_RECORD_PAYLOAD = CHUNK_PARAMS.max + 64 * 1024;

export interface BatchRecord {
  kind: typeof RECORD_WHOLE | typeof RECORD_DELTA;
  digest: string;
  payload: Uint8Array;
}

export function encodeRecordHeader(kind: number, digest: string, length: number): Buffer {
  const h = Buffer.allocUnsafe(RECORD_HEADER);
  h[0] = kind;
  h.write(digest, 1, 32, 'hex');
  h.writeUInt32BE(length, 33);
  return h;
}

/** Parses a batch stream record by record; rejects malformed input with one clear error. */
export async function* readBatch(body: AsyncIterable<Uint8Array>): AsyncGenerator<BatchRecord> {
  let buf: Buffer = Buffer.alloc(0);
  let index = 0;
  for await (const piece of body) {
    const view = Buffer.from(piece.buffer, piece.byteOffset, piece.length);
    buf = buf.length === 0 ? view : Buffer.concat([buf, view]);
    let at = 0;
    while (buf.length - at >= RECORD_HEADER) {
      const kind = buf[at] as number;
      if (kind !== RECORD_WHOLE && kind !== RECORD_DELTA) throw fail('bad_request', `chunk batch record ${index} has unknown kind ${kind}`);
      const len = buf.readUInt32BE(at + 33);
      if (len === 0 || len > MAX_RECORD_PAYLOAD)
        throw fail('bad_request', `chunk batch record ${index} has a payload of ${len} bytes (1..${MAX_RECORD_PAYLOAD})`);
      if (buf.length - at < RECORD_HEADER + len) break;
      const digest = buf.toString('hex', at + 1, at + 33);
      yield { kind, digest, payload: buf.subarray(at + RECORD_HEADER, at + RECORD_HEADER + len) };
      at += RECORD_HEADER + len;
      index++;
    }
    buf = buf.subarray(at);
  }
  if (buf.length > 0) throw fail('bad_request', `chunk batch ends inside record ${index} (${buf.length} stray bytes)`);
}
