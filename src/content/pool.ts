import os from 'node:os';
import { Piscina } from 'piscina';
import { CascadeError } from '../core/errors.js';
import { workerScript } from '../lib/worker-script.js';
import { WORKER_LOADED } from './pool-messages.js';
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

/** Threads (by threadId) of each pool that have loaded ./worker.js (it says so when it has). */
const loadedThreads = new WeakMap<Piscina, Set<number>>();

export function newPool(o: ConstructorParameters<typeof Piscina>[0]): Piscina {
  const p = new Piscina(o);
  const loaded = new Set<number>();
  loadedThreads.set(p, loaded);
  p.on('message', (m: unknown) => {
    if (m && typeof m === 'object' && WORKER_LOADED in m) loaded.add((m as Record<string, number>)[WORKER_LOADED] as number);
  });
  return p;
}

/**
 * Ends a pool's threads, once each has loaded its modules: Node 20 aborts the whole process when
 * a thread is terminated in the middle of loading one (a CLI upload that ended before its threads
 * had started: "FATAL ERROR: v8::ToLocalChecked Empty MaybeLocal"). Waits 10 s at most.
 */
export async function destroyPool(p: Piscina): Promise<void> {
  const loaded = loadedThreads.get(p) ?? new Set<number>();
  const until = Date.now() + 10_000;
  // A thread that has exited has threadId -1.
  while (p.threads.some((w) => w.threadId >= 0 && !loaded.has(w.threadId)) && Date.now() < until)
    await new Promise((r) => setTimeout(r, 5));
  await p.destroy();
}

/** Threads of the shared pool. */
export const poolThreads = (): number => Math.max(1, Math.min(os.availableParallelism(), 8));

let keepThreads = 1;

function getPool(): Piscina {
  if (!pool) {
    pool = newPool({
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
  lowPool ??= newPool({ filename: workerScript(import.meta.url, 'worker'), minThreads: 0, maxThreads: 1, idleTimeout: 10_000 });
  return lowPool;
}

export const LOW_NICE = 19;
let lowPool: Piscina | undefined;

export async function closePool(): Promise<void> {
  const p = pool;
  const l = lowPool;
  pool = undefined;
  lowPool = undefined;
  await Promise.all([p && destroyPool(p), l && destroyPool(l)]);
}
