/**
 * Worker-thread tasks: hashing, compression and chunking, so both cores work while the main
 * thread keeps serving. Run through the pool in ./pool.ts.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { threadId, workerData } from 'node:worker_threads';
import { move } from 'piscina';
import { type CheckChunksResult, type CheckChunksTask, checkChunks } from './check.js';
import { StreamChunker } from './chunker.js';
import { compressChunk, decodeChunk, TAG } from './codec.js';
import { enterWrite, type Gate, leaveWrite } from './gate.js';

export interface IngestTask {
  kind: 'ingest';
  /** Transferred to the worker (no copy). */
  buf: Uint8Array;
  items: { digest: string; offset: number; length: number }[];
  /** Where each good chunk goes, encoded (its temporary file is made beside it). */
  paths: string[];
  /** Flush each file here (when the file system offers no group flush). */
  fsyncEach: boolean;
}
export interface IngestResult {
  kind: 'ingest';
  /** Per item: null when the data does not match the digest, else its temporary file. */
  stored: ({ tmp: string; storedSize: number } | null)[];
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

/**
 * Stores chunks that arrive already encoded (a courier parcel): each is decoded, checked
 * against its size and digest, and written as it came (no re-compression).
 */
export interface StoreTask {
  kind: 'store';
  /** Transferred to the worker (no copy). */
  buf: Uint8Array;
  items: { digest: string; offset: number; length: number; size: number }[];
  paths: string[];
  fsyncEach: boolean;
}
export interface StoreResult {
  kind: 'store';
  /** Per item: null when it does not decode to its digest, else its temporary file. */
  stored: ({ tmp: string } | null)[];
}

/** Reads stored chunk files of known lengths, end to end into one buffer (a courier export). */
export interface ReadTask {
  kind: 'read';
  paths: string[];
  lengths: number[];
}
/** The buffer is moved back to the caller, not copied. */
export type ReadResult = Uint8Array | { kind: 'read'; error: string };

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

export type { CheckChunksResult, CheckChunksTask } from './check.js';

export type Task = IngestTask | VerifyTask | ChunkFilesTask | CheckChunksTask | StoreTask | ReadTask;
export type Result = IngestResult | VerifyResult | ChunkFilesResult | CheckChunksResult | StoreResult | ReadResult;

export const sha256 = (b: Uint8Array): string => crypto.createHash('sha256').update(b).digest('hex');

let tmpCounter = 0;

/** The pool's write gate (./gate.ts), when the pool shares one. */
const gate: Gate | undefined = (workerData as { gate?: Gate } | null)?.gate;

/** Writes files (each one or more parts) to temporary files beside their final names, inside the write gate. */
function writeTemps(files: { path: string; parts: Uint8Array[] }[], fsync: boolean, written: string[]): string[] {
  if (gate) enterWrite(gate);
  try {
    return files.map((f) => {
      // Beside its final name: creating and renaming spread over 256 folders is ~3x cheaper
      // than funnelling every file through one temporary folder (measured: 70 against 250 us).
      const tmp = `${path.dirname(f.path)}/.tmp-${process.pid}-${threadId}-${tmpCounter++}`;
      const fd = fs.openSync(tmp, 'w', 0o644);
      written.push(tmp);
      try {
        const want = f.parts.reduce((n, p) => n + p.length, 0);
        let done = fs.writevSync(fd, f.parts);
        while (done < want) done += fs.writeSync(fd, Buffer.concat(f.parts).subarray(done));
        if (fsync) fs.fdatasyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      return tmp;
    });
  } finally {
    if (gate) leaveWrite(gate);
  }
}

/**
 * Checks each chunk against its digest and compresses what helps, then writes them all (tag
 * byte and payload) to temporary files with synchronous calls: cheaper here than a round trip
 * per call through the main thread's I/O pool.
 */
function ingest(t: IngestTask): IngestResult {
  const written: string[] = [];
  try {
    const encoded = t.items.map((i) => {
      const raw = t.buf.subarray(i.offset, i.offset + i.length);
      if (sha256(raw) !== i.digest) return null;
      const c = compressChunk(raw);
      return c ? [TAG.brotli, c] : [TAG.raw, raw];
    });
    const files: { path: string; parts: Uint8Array[] }[] = [];
    encoded.forEach((parts, n) => {
      if (parts) files.push({ path: t.paths[n] as string, parts });
    });
    const tmps = writeTemps(files, t.fsyncEach, written);
    let k = 0;
    return {
      kind: 'ingest',
      stored: encoded.map((parts) => {
        if (!parts) return null;
        return { tmp: tmps[k++] as string, storedSize: parts.reduce((n, p) => n + p.length, 0) };
      }),
    };
  } catch (e) {
    for (const f of written) fs.rmSync(f, { force: true });
    throw e;
  }
}

function store(t: StoreTask): StoreResult {
  const written: string[] = [];
  try {
    const good = t.items.map((i) => {
      const data = t.buf.subarray(i.offset, i.offset + i.length);
      try {
        const raw = decodeChunk(data, i.size);
        return raw.length === i.size && sha256(raw) === i.digest ? data : null;
      } catch {
        return null;
      }
    });
    const files: { path: string; parts: Uint8Array[] }[] = [];
    good.forEach((data, n) => {
      if (data) files.push({ path: t.paths[n] as string, parts: [data] });
    });
    const tmps = writeTemps(files, t.fsyncEach, written);
    let k = 0;
    return { kind: 'store', stored: good.map((data) => (data ? { tmp: tmps[k++] as string } : null)) };
  } catch (e) {
    for (const f of written) fs.rmSync(f, { force: true });
    throw e;
  }
}

/** Synchronous reads here cost a seventh of fs.promises.readFile on the main thread (measured). */
function read(t: ReadTask): ReadResult {
  const buf = new Uint8Array(t.lengths.reduce((n, l) => n + l, 0));
  let at = 0;
  for (let i = 0; i < t.paths.length; i++) {
    const want = t.lengths[i] as number;
    let fd: number;
    try {
      fd = fs.openSync(t.paths[i] as string, 'r');
    } catch (e) {
      return { kind: 'read', error: `chunk ${path.basename(t.paths[i] as string)} cannot be read: ${(e as NodeJS.ErrnoException).code}` };
    }
    try {
      const size = fs.fstatSync(fd).size;
      if (size !== want)
        return { kind: 'read', error: `chunk ${path.basename(t.paths[i] as string)} is ${size} bytes, not the ${want} recorded` };
      let done = 0;
      while (done < want) {
        const n = fs.readSync(fd, buf, at + done, want - done, done);
        if (n === 0) break;
        done += n;
      }
      if (done !== want) return { kind: 'read', error: `chunk ${path.basename(t.paths[i] as string)} ended early` };
    } finally {
      fs.closeSync(fd);
    }
    at += want;
  }
  return move(buf) as Uint8Array;
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
    case 'checkChunks':
      return checkChunks(task);
    case 'store':
      return store(task);
    case 'read':
      return read(task);
  }
}
