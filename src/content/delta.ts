import crypto from 'node:crypto';
import { fail } from '../core/errors.js';
import { CHUNK_PARAMS, chunkLengths, SUBCHUNK_PARAMS } from './chunker.js';

/**
 * Deltas: a new chunk described as pieces of chunks the receiver already holds, plus the
 * bytes it does not. An edit of a few KiB inside a 64 KiB chunk then costs about the edit,
 * not the chunk: the receiver rebuilds the chunk and checks it against its digest as usual.
 *
 * Both sides cut chunks into sub-chunks (~512 B, content-defined) and fingerprint each; a
 * sub-chunk of the new chunk whose fingerprint matches one of a base chunk becomes a copy.
 *
 * Payload:  u8 nBases, nBases × 32-byte digest, u32 size, then ops until the end:
 *           0x01 COPY  u8 base, u32 offset, u32 length
 *           0x02 DATA  u32 length, bytes
 */
export const MAX_BASES = 8;
const OP_COPY = 1;
const OP_DATA = 2;

/** One sub-chunk of a base: its length and a 48-bit fingerprint (hex). Offsets are cumulative. */
export type SubchunkSig = [number, string];

export const fingerprint = (b: Uint8Array): string => crypto.createHash('sha256').update(b).digest('hex').slice(0, 12);

export function signature(raw: Uint8Array): SubchunkSig[] {
  const out: SubchunkSig[] = [];
  let at = 0;
  for (const n of chunkLengths(raw, SUBCHUNK_PARAMS)) {
    out.push([n, fingerprint(raw.subarray(at, at + n))]);
    at += n;
  }
  return out;
}

type Op = { op: typeof OP_COPY; base: number; offset: number; length: number } | { op: typeof OP_DATA; data: Uint8Array };

export interface Delta {
  bases: string[];
  size: number;
  ops: Op[];
  literalBytes: number;
}

/**
 * Describes `raw` against base chunks the receiver holds. Returns null when the delta would
 * not save at least a tenth of the chunk (send it whole instead).
 */
export function makeDelta(raw: Uint8Array, bases: readonly { digest: string; sig: readonly SubchunkSig[] }[]): Buffer | null {
  const used = bases.slice(0, MAX_BASES);
  const index = new Map<string, { base: number; offset: number; length: number }>();
  used.forEach((b, bi) => {
    let off = 0;
    for (const [n, fp] of b.sig) {
      if (!index.has(fp)) index.set(fp, { base: bi, offset: off, length: n });
      off += n;
    }
  });
  const ops: Op[] = [];
  let literal = 0;
  let at = 0;
  for (const n of chunkLengths(raw, SUBCHUNK_PARAMS)) {
    const piece = raw.subarray(at, at + n);
    const hit = index.get(fingerprint(piece));
    const last = ops[ops.length - 1];
    if (hit && hit.length === n) {
      if (last && last.op === OP_COPY && last.base === hit.base && last.offset + last.length === hit.offset) last.length += n;
      else ops.push({ op: OP_COPY, base: hit.base, offset: hit.offset, length: n });
    } else {
      literal += n;
      if (last && last.op === OP_DATA) last.data = raw.subarray(at - last.data.length, at + n);
      else ops.push({ op: OP_DATA, data: piece });
    }
    at += n;
  }
  if (literal > raw.length * 0.9) return null;
  return encodeDelta({ bases: used.map((b) => b.digest), size: raw.length, ops, literalBytes: literal });
}

export function encodeDelta(d: Delta): Buffer {
  const parts: Buffer[] = [];
  const head = Buffer.alloc(1 + 32 * d.bases.length + 4);
  head[0] = d.bases.length;
  d.bases.forEach((b, i) => {
    head.write(b, 1 + 32 * i, 32, 'hex');
  });
  head.writeUInt32BE(d.size, 1 + 32 * d.bases.length);
  parts.push(head);
  for (const op of d.ops) {
    if (op.op === OP_COPY) {
      const b = Buffer.alloc(10);
      b[0] = OP_COPY;
      b[1] = op.base;
      b.writeUInt32BE(op.offset, 2);
      b.writeUInt32BE(op.length, 6);
      parts.push(b);
    } else {
      const b = Buffer.alloc(5);
      b[0] = OP_DATA;
      b.writeUInt32BE(op.data.length, 1);
      parts.push(b, Buffer.from(op.data.buffer, op.data.byteOffset, op.data.length));
    }
  }
  return Buffer.concat(parts);
}

/** Parses an untrusted delta payload; every bound is checked. */
export function parseDelta(p: Uint8Array): Delta {
  const b = Buffer.from(p.buffer, p.byteOffset, p.length);
  const bad = (why: string) => fail('bad_request', `delta payload is malformed: ${why}`);
  if (b.length < 1) throw bad('empty');
  const n = b[0] as number;
  if (n < 1 || n > MAX_BASES) throw bad(`${n} bases (1..${MAX_BASES})`);
  let at = 1;
  if (b.length < at + 32 * n + 4) throw bad('truncated header');
  const bases: string[] = [];
  for (let i = 0; i < n; i++, at += 32) bases.push(b.toString('hex', at, at + 32));
  const size = b.readUInt32BE(at);
  at += 4;
  if (size < 1 || size > CHUNK_PARAMS.max) throw bad(`chunk size ${size}`);
  const ops: Op[] = [];
  let total = 0;
  let literalBytes = 0;
  while (at < b.length) {
    const op = b[at];
    if (op === OP_COPY) {
      if (at + 10 > b.length) throw bad('truncated copy');
      const base = b[at + 1] as number;
      if (base >= n) throw bad(`copy from base ${base} of ${n}`);
      const offset = b.readUInt32BE(at + 2);
      const length = b.readUInt32BE(at + 6);
      ops.push({ op: OP_COPY, base, offset, length });
      total += length;
      at += 10;
    } else if (op === OP_DATA) {
      if (at + 5 > b.length) throw bad('truncated data');
      const length = b.readUInt32BE(at + 1);
      if (at + 5 + length > b.length) throw bad('data runs past the end');
      ops.push({ op: OP_DATA, data: b.subarray(at + 5, at + 5 + length) });
      total += length;
      literalBytes += length;
      at += 5 + length;
    } else throw bad(`unknown op ${op}`);
    if (total > size) throw bad('ops write past the chunk size');
  }
  if (total !== size) throw bad(`ops make ${total} bytes, not ${size}`);
  return { bases, size, ops, literalBytes };
}

/** Rebuilds the chunk from its bases; the caller still checks the digest. */
export function applyDelta(d: Delta, bases: ReadonlyMap<string, Uint8Array>): Uint8Array {
  const out = new Uint8Array(d.size);
  let at = 0;
  for (const op of d.ops) {
    if (op.op === OP_COPY) {
      const base = bases.get(d.bases[op.base] as string);
      if (!base) throw fail('missing_chunks', `delta base ${d.bases[op.base]} is not available`);
      if (op.offset + op.length > base.length) throw fail('bad_request', 'delta payload is malformed: copy runs past its base');
      out.set(base.subarray(op.offset, op.offset + op.length), at);
      at += op.length;
    } else {
      out.set(op.data, at);
      at += op.data.length;
    }
  }
  return out;
}
