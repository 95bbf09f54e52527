import type { Store } from './store.js';

type Job = (tx: Store) => Promise<void>;

/**
 * Group commit: writes that arrive while a transaction is being committed wait and go together
 * in the next one, so a burst of check-ins pays one flush to disk, not one each in a queue
 * (SQLite writes on one connection, and every commit waits for its fsync). Each caller's promise
 * settles once its write is durable. When a group fails, its jobs are tried one by one, so one
 * bad write fails alone.
 */
export class GroupCommit {
  private queue: { job: Job; resolve: () => void; reject: (e: unknown) => void }[] = [];
  private running = false;

  constructor(
    private readonly store: Store,
    private readonly maxGroup = 64,
  ) {}

  run(job: Job): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ job, resolve, reject });
      if (!this.running) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.running = true;
    try {
      while (this.queue.length > 0) {
        const group = this.queue.splice(0, this.maxGroup);
        try {
          await this.store.transaction(async (tx) => {
            for (const g of group) await g.job(tx);
          });
          for (const g of group) g.resolve();
        } catch {
          for (const g of group) {
            try {
              await this.store.transaction((tx) => g.job(tx));
              g.resolve();
            } catch (e) {
              g.reject(e);
            }
          }
        }
      }
    } finally {
      this.running = false;
    }
  }
}

const committers = new WeakMap<Store, GroupCommit>();

/** The store's group committer (one per store). */
export function groupCommit(store: Store): GroupCommit {
  let g = committers.get(store);
  if (!g) {
    g = new GroupCommit(store);
    committers.set(store, g);
  }
  return g;
}
