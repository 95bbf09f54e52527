import os from 'node:os';
import { Piscina } from 'piscina';
import { CascadeError } from '../core/errors.js';
import { workerScript } from '../lib/worker-script.js';
import type { SourceEntry } from './source.js';
import type {
  CheckChunksResult,
  CheckChunksTask,
  ChunkFilesResult,
  ChunkFilesTask,
  IngestFilesResult,
  IngestFilesTask,
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
  WalkResult,
} from './worker.js';

/** The worker pool, one per process, as many threads as cores, running ./worker.js. */
let pool: Piscina | undefined;

/** Threads of the shared pool. */
export const poolThreads = (): number => Math.max(1, Math.min(os.availableParallelism(), 8));

let keepThreads = 1;

function getPool(): Piscina {
  if (!pool) {
    pool = new Piscina({
      filename: workerScript(import.meta.url, 'worker'),
      minThreads: keepThreads,
      maxThreads: poolThreads(),
      idleTimeout: 30_000,
    });
  }
  return pool;
}

/**
 * Starts every thread of the pool now and keeps them until `closePool`. A thread takes ~0.1 s
 * of CPU to start (Node's bootstrap and the worker's modules). Servers call it at start: on
 * demand, that cost came out of the first batch or parcel after each idle spell while the
 * transfer waited (measured on a courier import: 0.2 CPU-s of 3.2). `package create` calls it
 * before walking the folder, so the threads start while it walks.
 */
export function startPool(): void {
  keepThreads = poolThreads();
  getPool();
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

/** Walks a source folder in a worker thread (`walkSourceSync`); refusals are thrown here as they were there. */
export async function walkSource(root: string): Promise<SourceEntry[]> {
  const r: WalkResult = await getPool().run({ kind: 'walk', root });
  if (r.error) throw new CascadeError(r.error.code, r.error.message);
  return r.entries ?? [];
}

/** Low priority: on the single nice-19 thread scheduled work shares (see runCheckChunks). */
export function runIngestFiles(t: IngestFilesTask, lowPriority = false): Promise<IngestFilesResult> {
  if (!lowPriority) return getPool().run(t);
  return getLowPool().run({ ...t, nice: LOW_NICE });
}

export function runChunkFiles(t: ChunkFilesTask): Promise<ChunkFilesResult> {
  return getPool().run(t);
}

/**
 * Checking stored chunks (validation, `validate.ts`). Normal priority shares the pool. Low
 * priority (scheduled validation) runs on its own single thread, which lowers its nice value to
 * 19 on its first task: it takes at most one core, and the kernel gives that core to the pool's
 * threads (transfers, ingest) and the main thread (serving) whenever they want it.
 */
export function runCheckChunks(t: CheckChunksTask, lowPriority = false): Promise<CheckChunksResult> {
  if (!lowPriority) return getPool().run(t);
  return getLowPool().run({ ...t, nice: LOW_NICE });
}

function getLowPool(): Piscina {
  lowPool ??= new Piscina({ filename: workerScript(import.meta.url, 'worker'), minThreads: 0, maxThreads: 1, idleTimeout: 10_000 });
  return lowPool;
}

export const LOW_NICE = 19;
let lowPool: Piscina | undefined;

export async function closePool(): Promise<void> {
  const p = pool;
  const l = lowPool;
  pool = undefined;
  lowPool = undefined;
  await Promise.all([p?.destroy(), l?.destroy()]);
}
