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

/** Chunk and hash several files (small files travel together: one round trip each task). */
export interface ChunkFilesTask {
  kind: 'chunkFiles';
  paths: string[];
}
export interface ChunkFilesResult {
  kind: 'chunkFiles';
  /** Per file: its chunks and the bytes read, or the error code that stopped the read. */
  files: ({ chunks: [string, number][]; size: number } | { error: string })[];
}

export type Task = IngestTask | VerifyTask | ChunkFilesTask;
export type Result = IngestResult | VerifyResult | ChunkFilesResult;

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

let block: Buffer | undefined;

function chunkFile(path: string): { chunks: [string, number][]; size: number } {
  const fd = fs.openSync(path, 'r');
  const chunks: [string, number][] = [];
  let size = 0;
  try {
    const chunker = new StreamChunker();
    block ??= Buffer.allocUnsafe(BLOCK);
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
  return { chunks, size };
}

function chunkFiles(t: ChunkFilesTask): ChunkFilesResult {
  return {
    kind: 'chunkFiles',
    files: t.paths.map((p) => {
      try {
        return chunkFile(p);
      } catch (e) {
        return { error: (e as NodeJS.ErrnoException).code ?? (e as Error).message };
      }
    }),
  };
}

export default function run(task: Task): Result {
  switch (task.kind) {
    case 'ingest':
      return ingest(task);
    case 'verify':
      return verify(task);
    case 'chunkFiles':
      return chunkFiles(task);
  }
}
