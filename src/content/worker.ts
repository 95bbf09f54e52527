/**
 * Worker-thread tasks: hashing, compression and chunking, so both cores work while the main
 * thread keeps serving. Run through the pool in ./pool.ts.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parentPort, threadId } from 'node:worker_threads';
import { move, transferableSymbol, valueSymbol } from 'piscina';
import { CascadeError, type ErrorCode } from '../core/errors.js';
import { type CheckChunksResult, type CheckChunksTask, checkChunks, lowerPriority } from './check.js';
import { compressChunk, decodeChunk, TAG } from './codec.js';
import { FileChunker } from './gear.js';
import { WORKER_LOADED } from './pool-messages.js';
import { type SourceEntry, walkSourceSync } from './source.js';

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

/** Renames temporary files into place, making folders as needed; optionally flushes them. */
export interface RenameTask {
  kind: 'rename';
  moves: [string, string][];
  fsyncDirs: boolean;
}
export interface RenameResult {
  kind: 'rename';
  renamed: number;
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
  /** The task's buffer, moved back (the caller reuses it for the next task). */
  buf: Uint8Array;
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

/**
 * Reads files of a package source on the site and stores their chunks in one pass: cut, hash,
 * compress where it helps, write each new chunk to a temporary file beside its final name.
 * The caller makes them visible (`RenameTask`) once it knows which the library lacks.
 */
export interface IngestFilesTask {
  kind: 'ingestFiles';
  paths: string[];
  /** The library's chunks folder (ROOT/chunks). */
  chunksDir: string;
  /** Digests known to be stored already (the files' chunks in the previous version): not written. */
  known: string[];
  fsyncEach: boolean;
  /** Run at this nice value (scheduled refreshes). */
  nice?: number;
}
export interface IngestFilesResult {
  kind: 'ingestFiles';
  /** Per file: its chunks, the bytes read and its size and time after reading; or why it failed. */
  files: ({ chunks: [string, number][]; size: number; statSize: number; mtimeMs: number } | { error: string })[];
  /** The chunks written (each digest once per task), to be renamed into place or discarded. */
  staged: { digest: string; tmp: string; size: number; storedSize: number }[];
}

/** Walks a source folder (`walkSourceSync`); a refusal comes back as its code and message. */
export interface WalkTask {
  kind: 'walk';
  root: string;
}
export interface WalkResult {
  kind: 'walk';
  entries?: SourceEntry[];
  error?: { code: ErrorCode; message: string };
}

export type { CheckChunksResult, CheckChunksTask } from './check.js';

export type Task =
  | WalkTask
  | IngestFilesTask
  | IngestTask
  | RenameTask
  | VerifyTask
  | ChunkFilesTask
  | CheckChunksTask
  | StoreTask
  | ReadTask;
export type Result =
  | WalkResult
  | IngestFilesResult
  | IngestResult
  | RenameResult
  | VerifyResult
  | ChunkFilesResult
  | CheckChunksResult
  | StoreResult
  | ReadResult;

/**
 * Tells the pool this thread has loaded its modules (./pool.ts `closePool` waits for it):
 * terminating a thread while Node 20 is still loading this module through `require` kills the
 * whole process ("FATAL ERROR: v8::ToLocalChecked Empty MaybeLocal").
 */
parentPort?.postMessage({ [WORKER_LOADED]: threadId });

export const sha256 = (b: Uint8Array): string => crypto.createHash('sha256').update(b).digest('hex');

let tmpCounter = 0;
/** Whose temporary files these are (lib/instance.ts): the process's tag, inherited from its environment. */
const owner = (): string => process.env.CASCADE_INSTANCE ?? `pid${process.pid}`;

/**
 * Checks each chunk against its digest, compresses what helps, and writes it (tag byte and
 * payload) to a temporary file with synchronous calls: cheaper here than a round trip per
 * call through the main thread's I/O pool.
 */
function ingest(t: IngestTask): IngestResult {
  const written: string[] = [];
  try {
    const stored = t.items.map((i, n) => {
      const raw = t.buf.subarray(i.offset, i.offset + i.length);
      if (sha256(raw) !== i.digest) return null;
      const c = compressChunk(raw);
      const parts = c ? [TAG.brotli, c] : [TAG.raw, raw];
      // Beside its final name: creating and renaming spread over 256 folders is ~3x cheaper
      // than funnelling every file through one temporary folder (measured: 70 against 250 us).
      const tmp = `${path.dirname(t.paths[n] as string)}/.tmp-${owner()}-${threadId}-${tmpCounter++}`;
      const fd = fs.openSync(tmp, 'w', 0o644);
      written.push(tmp);
      try {
        const want = 1 + (parts[1] as Uint8Array).length;
        let done = fs.writevSync(fd, parts);
        while (done < want) done += fs.writeSync(fd, Buffer.concat(parts).subarray(done));
        if (t.fsyncEach) fs.fdatasyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      return { tmp, storedSize: 1 + (parts[1] as Uint8Array).length };
    });
    return { kind: 'ingest', stored };
  } catch (e) {
    for (const f of written) fs.rmSync(f, { force: true });
    throw e;
  }
}

function writeTemp(finalPath: string, data: Uint8Array, fsync: boolean, written: string[]): string {
  const tmp = `${path.dirname(finalPath)}/.tmp-${owner()}-${threadId}-${tmpCounter++}`;
  const fd = fs.openSync(tmp, 'w', 0o644);
  written.push(tmp);
  try {
    let done = 0;
    while (done < data.length) done += fs.writeSync(fd, data, done);
    if (fsync) fs.fdatasyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  return tmp;
}

/** The result, with the task's buffer moved back to the caller rather than copied. */
function storeResult(r: StoreResult): StoreResult {
  const movable = { [transferableSymbol]: [r.buf.buffer], [valueSymbol]: r };
  return move(movable as unknown as ArrayBuffer) as unknown as StoreResult;
}

function store(t: StoreTask): StoreResult {
  const written: string[] = [];
  try {
    const stored = t.items.map((i, n) => {
      const data = t.buf.subarray(i.offset, i.offset + i.length);
      try {
        const raw = decodeChunk(data, i.size);
        if (raw.length !== i.size || sha256(raw) !== i.digest) return null;
      } catch {
        return null;
      }
      return { tmp: writeTemp(t.paths[n] as string, data, t.fsyncEach, written) };
    });
    return storeResult({ kind: 'store', stored, buf: t.buf });
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

function rename(t: RenameTask): RenameResult {
  const dirs = new Set<string>();
  for (const [from, to] of t.moves) {
    try {
      fs.renameSync(from, to);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      fs.mkdirSync(path.dirname(to), { recursive: true });
      fs.renameSync(from, to);
      dirs.add(path.dirname(path.dirname(to)));
    }
    dirs.add(path.dirname(to));
  }
  if (t.fsyncDirs) {
    for (const d of dirs) {
      const fd = fs.openSync(d, 'r');
      try {
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
    }
  }
  return { kind: 'rename', renamed: t.moves.length };
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

let chunker: FileChunker | undefined;

function chunkFile(path: string): { chunks: [string, number][]; size: number } {
  const fd = fs.openSync(path, 'r');
  const chunks: [string, number][] = [];
  try {
    chunker ??= new FileChunker();
    const size = chunker.chunkFd(fd, (c) => {
      chunks.push([sha256(c), c.length]);
    });
    return { chunks, size };
  } finally {
    fs.closeSync(fd);
  }
}

function ingestFiles(t: IngestFilesTask): IngestFilesResult {
  lowerPriority(t.nice);
  const known = new Set(t.known);
  const staged: IngestFilesResult['staged'] = [];
  try {
    const files = t.paths.map((p): IngestFilesResult['files'][number] => {
      let fd: number;
      try {
        // Not through a link: one swapped in since the folder was walked could lead anywhere.
        fd = fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
      } catch (e) {
        return { error: (e as NodeJS.ErrnoException).code ?? (e as Error).message };
      }
      const chunks: [string, number][] = [];
      try {
        chunker ??= new FileChunker();
        const size = chunker.chunkFd(fd, (c) => {
          const digest = sha256(c);
          chunks.push([digest, c.length]);
          if (known.has(digest)) return;
          known.add(digest);
          const z = compressChunk(c);
          const parts = z ? [TAG.brotli, z] : [TAG.raw, c];
          const tmp = `${t.chunksDir}/${digest.slice(0, 2)}/.tmp-${owner()}-${threadId}-${tmpCounter++}`;
          const out = fs.openSync(tmp, 'w', 0o644);
          staged.push({ digest, tmp, size: c.length, storedSize: 1 + (parts[1] as Uint8Array).length });
          try {
            const want = 1 + (parts[1] as Uint8Array).length;
            let done = fs.writevSync(out, parts);
            while (done < want) done += fs.writeSync(out, Buffer.concat(parts).subarray(done));
            if (t.fsyncEach) fs.fdatasyncSync(out);
          } finally {
            fs.closeSync(out);
          }
        });
        // Its size and time after the read: a file written to meanwhile is read again later.
        const st = fs.fstatSync(fd);
        return { chunks, size, statSize: st.size, mtimeMs: st.mtimeMs };
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOSPC' || code === 'EDQUOT') throw e;
        return { error: code ?? (e as Error).message };
      } finally {
        fs.closeSync(fd);
      }
    });
    return { kind: 'ingestFiles', files, staged };
  } catch (e) {
    for (const s of staged) fs.rmSync(s.tmp, { force: true });
    throw e;
  }
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
    case 'walk':
      try {
        return { kind: 'walk', entries: walkSourceSync(task.root) };
      } catch (e) {
        if (e instanceof CascadeError) return { kind: 'walk', error: { code: e.code, message: e.message } };
        throw e;
      }
    case 'ingestFiles':
      return ingestFiles(task);
    case 'ingest':
      return ingest(task);
    case 'rename':
      return rename(task);
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
