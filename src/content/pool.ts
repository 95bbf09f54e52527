import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import type {
  ChunkFilesResult,
  ChunkFilesTask,
  IngestResult,
  IngestTask,
  ReadResult,
  ReadTask,
  RenameResult,
  RenameTask,
  StoreResult,
  StoreTask,
  VerifyResult,
  VerifyTask,
} from './worker.js';

/**
 * The worker pool, one per process, as many threads as cores. Workers run compiled code:
 * under vitest (TypeScript sources) the pool loads dist/, which the test setup builds first.
 */
function workerFile(): string {
  const here = fileURLToPath(import.meta.url);
  return here.endsWith('.ts')
    ? fileURLToPath(new URL('../../dist/content/worker.js', import.meta.url))
    : fileURLToPath(new URL('./worker.js', import.meta.url));
}

let pool: Piscina | undefined;

function getPool(): Piscina {
  if (!pool) {
    const threads = Math.max(1, Math.min(os.availableParallelism(), 8));
    pool = new Piscina({ filename: workerFile(), minThreads: 1, maxThreads: threads, idleTimeout: 30_000 });
  }
  return pool;
}

/** The task buffer is moved to the worker, not copied: the caller must not touch it again. */
export function runIngest(t: IngestTask): Promise<IngestResult> {
  return getPool().run(t, { transferList: [t.buf.buffer as ArrayBuffer] });
}

/** The task buffer is moved to the worker, not copied. */
export function runStore(t: StoreTask): Promise<StoreResult> {
  return getPool().run(t, { transferList: [t.buf.buffer as ArrayBuffer] });
}

export function runRead(t: ReadTask): Promise<ReadResult> {
  return getPool().run(t);
}

export function runRename(t: RenameTask): Promise<RenameResult> {
  return getPool().run(t);
}

export function runVerify(t: VerifyTask): Promise<VerifyResult> {
  return getPool().run(t);
}

export function runChunkFiles(t: ChunkFilesTask): Promise<ChunkFilesResult> {
  return getPool().run(t);
}

export async function closePool(): Promise<void> {
  const p = pool;
  pool = undefined;
  if (p) await p.destroy();
}
