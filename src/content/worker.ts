/**
 * Worker-thread tasks: hashing, compression and chunking, so both cores work while the main
 * thread keeps serving. Run through the pool in ./pool.ts.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import { StreamChunker } from './chunker.js';
import { decodeChunk, encodeChunk } from './codec.js';

export interface IngestTask {
  kind: 'ingest';
  buf: Uint8Array;
  items: { digest: string; offset: number; length: number }[];
}
export interface IngestResult {
  kind: 'ingest';
  /** Per item: the stored form, or null when the data does not match the digest. */
  stored: (Uint8Array | null)[];
}

export interface VerifyTask {
  kind: 'verify';
  items: { digest: string; stored: Uint8Array; size: number }[];
}
export interface VerifyResult {
  kind: 'verify';
  /** Per item: null when it matches, otherwise what is wrong. */
  problems: (string | null)[];
}

export interface ChunkFileTask {
  kind: 'chunkFile';
  path: string;
  size: number;
}
export interface ChunkFileResult {
  kind: 'chunkFile';
  chunks: [string, number][];
  size: number;
}

export type Task = IngestTask | VerifyTask | ChunkFileTask;
export type Result = IngestResult | VerifyResult | ChunkFileResult;

export const sha256 = (b: Uint8Array): string => crypto.createHash('sha256').update(b).digest('hex');

function ingest(t: IngestTask): IngestResult {
  const stored = t.items.map((i) => {
    const raw = t.buf.subarray(i.offset, i.offset + i.length);
    return sha256(raw) === i.digest ? new Uint8Array(encodeChunk(raw)) : null;
  });
  return { kind: 'ingest', stored };
}

function verify(t: VerifyTask): VerifyResult {
  return {
    kind: 'verify',
    problems: t.items.map((i) => {
      try {
        const raw = decodeChunk(i.stored, i.size);
        if (raw.length !== i.size) return `holds ${raw.length} bytes, not ${i.size}`;
        return sha256(raw) === i.digest ? null : 'content does not match its digest';
      } catch (e) {
        return (e as Error).message;
      }
    }),
  };
}

const BLOCK = 4 << 20;

function chunkFile(t: ChunkFileTask): ChunkFileResult {
  const fd = fs.openSync(t.path, 'r');
  const chunks: [string, number][] = [];
  let size = 0;
  try {
    const chunker = new StreamChunker();
    const block = Buffer.allocUnsafe(BLOCK);
    for (;;) {
      const n = fs.readSync(fd, block, 0, BLOCK, null);
      if (n === 0) break;
      size += n;
      for (const c of chunker.push(block.subarray(0, n))) chunks.push([sha256(c), c.length]);
    }
    for (const c of chunker.finish()) chunks.push([sha256(c), c.length]);
  } finally {
    fs.closeSync(fd);
  }
  return { kind: 'chunkFile', chunks, size };
}

export default function run(task: Task): Result {
  switch (task.kind) {
    case 'ingest':
      return ingest(task);
    case 'verify':
      return verify(task);
    case 'chunkFile':
      return chunkFile(task);
  }
}
