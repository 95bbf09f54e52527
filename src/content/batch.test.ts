import crypto from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CascadeError } from '../core/errors.js';
import {
  type BatchRecord,
  encodeRecordHeader,
  MAX_RECORD_PAYLOAD,
  MAX_STORED_PAYLOAD,
  RECORD_DELTA,
  RECORD_HEADER,
  RECORD_STORED,
  RECORD_WHOLE,
  readBatch,
  storedRecordParts,
} from './batch.js';
import { encodeChunk } from './codec.js';

const sha = (b: Uint8Array): string => crypto.createHash('sha256').update(b).digest('hex');

function record(kind: number, payload: Buffer, digest = sha(payload)): Buffer {
  return Buffer.concat([encodeRecordHeader(kind, digest, payload.length), payload]);
}

async function* pieces(buf: Buffer, cuts: number[]): AsyncGenerator<Uint8Array> {
  let at = 0;
  for (const c of [...cuts, buf.length]) {
    if (c < at) continue;
    yield new Uint8Array(buf.subarray(at, c)); // a fresh copy, as a socket would give
    at = c;
  }
}

async function collect(src: AsyncIterable<Uint8Array>): Promise<{ kind: number; digest: string; payload: Buffer }[]> {
  const out: { kind: number; digest: string; payload: Buffer }[] = [];
  for await (const r of readBatch(src)) out.push({ kind: r.kind, digest: r.digest, payload: Buffer.from(r.payload) });
  return out;
}

async function rejection(src: AsyncIterable<Uint8Array>): Promise<CascadeError> {
  try {
    await collect(src);
  } catch (e) {
    expect(e).toBeInstanceOf(CascadeError);
    expect((e as CascadeError).code).toBe('bad_request');
    return e as CascadeError;
  }
  throw new Error('expected the batch to be rejected');
}

describe('chunk batch', () => {
  const payloads = [
    crypto.randomBytes(1),
    crypto.randomBytes(1000),
    crypto.randomBytes(70_000),
    crypto.randomBytes(MAX_RECORD_PAYLOAD),
    crypto.randomBytes(37),
  ];
  const kinds = [RECORD_WHOLE, RECORD_DELTA, RECORD_WHOLE, RECORD_DELTA, RECORD_WHOLE];
  const stream = Buffer.concat(payloads.map((p, i) => record(kinds[i] as number, p)));

  function expectAll(got: { kind: number; digest: string; payload: Buffer }[]): void {
    expect(got.length).toBe(payloads.length);
    got.forEach((r, i) => {
      expect(r.kind).toBe(kinds[i]);
      expect(r.digest).toBe(sha(payloads[i] as Buffer));
      expect(r.payload.equals(payloads[i] as Buffer)).toBe(true);
    });
  }

  it('encodes a 37-byte header', () => {
    const d = 'ab'.repeat(32);
    const h = encodeRecordHeader(RECORD_DELTA, d, 0x01020304);
    expect(h.length).toBe(RECORD_HEADER);
    expect(h[0]).toBe(RECORD_DELTA);
    expect(h.toString('hex', 1, 33)).toBe(d);
    expect([...h.subarray(33)]).toEqual([1, 2, 3, 4]);
  });

  it('reads records from one piece', async () => {
    expectAll(await collect(pieces(stream, [])));
  });

  it('reads records split across arbitrary pieces', async () => {
    // Every boundary a record header could be split at, and random cuts.
    const starts: number[] = [];
    let at = 0;
    for (const p of payloads) {
      starts.push(at);
      at += RECORD_HEADER + p.length;
    }
    for (const s of starts) for (const off of [1, 2, 32, 33, 34, 36, 37, 38]) expectAll(await collect(pieces(stream, [s + off])));
    for (let round = 0; round < 20; round++) {
      const cuts = Array.from({ length: 1 + (round % 30) }, () => crypto.randomInt(stream.length)).sort((a, b) => a - b);
      expectAll(await collect(pieces(stream, cuts)));
    }
  });

  it('reads records delivered one byte at a time', async () => {
    const small = Buffer.concat([record(RECORD_WHOLE, Buffer.from('hello')), record(RECORD_DELTA, Buffer.from('world!'))]);
    const got = await collect(
      pieces(
        small,
        Array.from({ length: small.length }, (_, i) => i),
      ),
    );
    expect(got.map((r) => r.payload.toString())).toEqual(['hello', 'world!']);
  });

  it('payloads stay intact after later pieces arrive', async () => {
    const kept: BatchRecord[] = [];
    for await (const r of readBatch(pieces(stream, [100, 5000, 80_000, 200_000]))) kept.push(r);
    for (const [i, r] of kept.entries()) expect(Buffer.from(r.payload).equals(payloads[i] as Buffer)).toBe(true);
  });

  it('reads an empty body as no records', async () => {
    expect(await collect(pieces(Buffer.alloc(0), []))).toEqual([]);
  });

  it('rejects an unknown kind', async () => {
    for (const kind of [0, 4, 255]) {
      const e = await rejection(pieces(Buffer.concat([record(RECORD_WHOLE, Buffer.from('ok')), record(kind, Buffer.from('x'))]), []));
      expect(e.message).toContain(`record 1 has unknown kind ${kind}`);
    }
  });

  it('fails the whole task when a record is bad (nothing of it is yielded)', async () => {
    const got: string[] = [];
    await expect(
      (async () => {
        for await (const r of readBatch(
          pieces(Buffer.concat([record(RECORD_WHOLE, Buffer.from('first')), record(9, Buffer.from('x'))]), [50]),
        )) {
          got.push(Buffer.from(r.payload).toString());
        }
      })(),
    ).rejects.toThrow(/unknown kind 9/);
    // Records travel in task buffers: the good one shared its task with the bad one.
    expect(got).toEqual([]);
  });

  it('rejects a zero or oversized length before waiting for the payload', async () => {
    const zero = encodeRecordHeader(RECORD_WHOLE, sha(Buffer.alloc(0)), 0);
    expect((await rejection(pieces(zero, []))).message).toMatch(/payload of 0 bytes/);
    const huge = encodeRecordHeader(RECORD_DELTA, 'cd'.repeat(32), MAX_RECORD_PAYLOAD + 1);
    expect((await rejection(pieces(huge, []))).message).toMatch(/payload of \d+ bytes/);
    const max = encodeRecordHeader(RECORD_WHOLE, 'cd'.repeat(32), 0xffffffff);
    // The header alone is enough to refuse: no need to buffer gigabytes first.
    expect((await rejection(pieces(max, []))).message).toContain(`${0xffffffff}`);
  });

  it('carries a stored chunk as it is, after its raw size', async () => {
    const raw = Buffer.alloc(70_000, 'cascade ');
    const stored = encodeChunk(raw);
    expect(stored.length).toBeLessThan(raw.length / 10);
    const parts = storedRecordParts(sha(raw), raw.length, stored);
    // No copy of the stored bytes: they are the record's second part.
    expect(parts[1]).toBe(stored);
    const got = await collect(pieces(Buffer.concat([record(RECORD_WHOLE, Buffer.from('x')), ...parts]), [40, 45]));
    expect(got.map((r) => r.kind)).toEqual([RECORD_WHOLE, RECORD_STORED]);
    expect(got[1]?.digest).toBe(sha(raw));
    expect(got[1]?.payload.readUInt32BE(0)).toBe(raw.length);
    expect(got[1]?.payload.subarray(4).equals(stored)).toBe(true);
  });

  it('rejects a stored record too short to hold a size and a chunk, or longer than any stored chunk', async () => {
    const short = encodeRecordHeader(RECORD_STORED, 'cd'.repeat(32), 5);
    expect((await rejection(pieces(short, []))).message).toContain('payload of 5 bytes (6..');
    const long = encodeRecordHeader(RECORD_STORED, 'cd'.repeat(32), MAX_STORED_PAYLOAD + 1);
    expect((await rejection(pieces(long, []))).message).toContain(`payload of ${MAX_STORED_PAYLOAD + 1} bytes`);
  });

  it('rejects truncated trailing bytes', async () => {
    const two = Buffer.concat([record(RECORD_WHOLE, crypto.randomBytes(500)), record(RECORD_WHOLE, crypto.randomBytes(500))]);
    for (const cut of [1, 36, 37, 38, 536, 537 + 10, 537 + 37, two.length - 1]) {
      const e = await rejection(pieces(two.subarray(0, cut), [Math.floor(cut / 2)]));
      expect(e.message).toMatch(/ends inside record/);
    }
  });
});
