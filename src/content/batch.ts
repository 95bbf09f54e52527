import { fail } from '../core/errors.js';
import { CHUNK_PARAMS } from './chunker.js';

/**
 * Chunk batch wire format (request body of POST /api/v1/chunks), a sequence of records:
 *
 *   u8  kind      1 = whole chunk, 2 = delta (see delta.ts), 3 = stored chunk
 *   32  digest    SHA-256 of the chunk's raw bytes
 *   u32 length    payload bytes, big-endian
 *   ... payload   the raw chunk; the delta encoding; or, for a stored chunk, u32 raw size
 *                 (big-endian) then the chunk as the sender stores it (codec.ts: tag byte and
 *                 raw or Brotli bytes), kept as it is by a receiver that verified it
 *
 * Records are self-delimiting, so a batch streams and a receiver can stop at any record. A
 * sender uses kind 3 only with a receiver whose offer answer says it reads them
 * (`storedRecords`): a chunk compressed once at the site that ingested it then crosses every
 * hop compressed, and no relay recompresses it.
 */
export const RECORD_WHOLE = 1;
export const RECORD_DELTA = 2;
export const RECORD_STORED = 3;
export const RECORD_HEADER = 37;
/** A delta payload is never longer than the chunk plus its op headers. */
export const MAX_RECORD_PAYLOAD = CHUNK_PARAMS.max + 64 * 1024;
/** A stored record: the raw size, the codec tag, and at most the raw bytes (Brotli is kept only when smaller). */
export const MAX_STORED_PAYLOAD = 4 + 1 + CHUNK_PARAMS.max;

export type RecordKind = typeof RECORD_WHOLE | typeof RECORD_DELTA | typeof RECORD_STORED;

export interface BatchRecord {
  kind: RecordKind;
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

/** A stored-chunk record: its header with the raw size, then the stored bytes as they are (no copy). */
export function storedRecordParts(digest: string, size: number, stored: Uint8Array): Uint8Array[] {
  const h = Buffer.allocUnsafe(RECORD_HEADER + 4);
  h[0] = RECORD_STORED;
  h.write(digest, 1, 32, 'hex');
  h.writeUInt32BE(4 + stored.length, 33);
  h.writeUInt32BE(size, RECORD_HEADER);
  return [h, stored];
}

/** Records parsed into one task buffer: payloads laid end to end, each at its offset. */
export interface BatchTask {
  /** Owns its ArrayBuffer, so it can be moved to a worker thread without a copy. */
  buf: Uint8Array;
  used: number;
  records: { kind: RecordKind; digest: string; offset: number; length: number }[];
}

/**
 * Parses a batch stream into task buffers of about `taskBytes`, copying each payload once,
 * straight from the network buffers into place. Rejects malformed input with one clear error.
 */
export async function* readBatchTasks(body: AsyncIterable<Uint8Array>, taskBytes = 4 << 20): AsyncGenerator<BatchTask> {
  const header = Buffer.alloc(RECORD_HEADER);
  let headerFill = 0;
  let index = 0;
  let task: BatchTask = newTask(taskBytes);
  let pending: BatchTask['records'][number] | null = null;
  let remaining = 0;
  for await (const piece of body) {
    let at = 0;
    while (at < piece.length) {
      if (!pending) {
        const n = Math.min(RECORD_HEADER - headerFill, piece.length - at);
        header.set(piece.subarray(at, at + n), headerFill);
        headerFill += n;
        at += n;
        if (headerFill < RECORD_HEADER) break;
        headerFill = 0;
        const kind = header[0] as number;
        if (kind !== RECORD_WHOLE && kind !== RECORD_DELTA && kind !== RECORD_STORED)
          throw fail('bad_request', `chunk batch record ${index} has unknown kind ${kind}`);
        const len = header.readUInt32BE(33);
        const max = kind === RECORD_WHOLE ? CHUNK_PARAMS.max : kind === RECORD_STORED ? MAX_STORED_PAYLOAD : MAX_RECORD_PAYLOAD;
        const min = kind === RECORD_STORED ? 6 : 1;
        if (len < min || len > max) throw fail('bad_request', `chunk batch record ${index} has a payload of ${len} bytes (${min}..${max})`);
        if (task.used + len > task.buf.length) {
          if (task.records.length > 0) yield task;
          task = newTask(Math.max(taskBytes, len));
        }
        pending = { kind, digest: header.toString('hex', 1, 33), offset: task.used, length: len };
        remaining = len;
        task.used += len;
      }
      const n = Math.min(remaining, piece.length - at);
      task.buf.set(piece.subarray(at, at + n), pending.offset + pending.length - remaining);
      remaining -= n;
      at += n;
      if (remaining === 0) {
        task.records.push(pending);
        pending = null;
        index++;
        if (task.used >= taskBytes) {
          yield task;
          task = newTask(taskBytes);
        }
      }
    }
  }
  if (pending || headerFill > 0) throw fail('bad_request', `chunk batch ends inside record ${index}`);
  if (task.records.length > 0) yield task;
}

function newTask(bytes: number): BatchTask {
  // Not zeroed: only the payloads copied in are ever read (a 4 MiB memset per task otherwise).
  const buf = Buffer.allocUnsafeSlow(bytes);
  return { buf: new Uint8Array(buf.buffer, buf.byteOffset, bytes), used: 0, records: [] };
}

/** Parses a batch stream record by record (payloads are views into task buffers). */
export async function* readBatch(body: AsyncIterable<Uint8Array>): AsyncGenerator<BatchRecord> {
  for await (const t of readBatchTasks(body)) {
    for (const r of t.records) yield { kind: r.kind, digest: r.digest, payload: t.buf.subarray(r.offset, r.offset + r.length) };
  }
}
