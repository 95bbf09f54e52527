import type { Store } from './store.js';

type Job = (tx: Store) => Promise<void>;

/**
 * Group commit: writes that arrive while a transaction is being committed wait and go together
 * in the next one, so a burst of check-ins pays one commit, not one each in a queue (SQLite
 * writes on one connection). Each caller's promise settles once its write is committed, in a
 * transaction that survives the process being killed but does not wait for the disk
 * (Store.relaxedTransaction): a flush per group held the site's one thread while every check-in
 * waited. A power cut in the second after a commit may cost the newest reports of a few
 * clients. When a group fails, its jobs are tried one by one, so one bad write fails alone.
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
          await this.store.relaxedTransaction(async (tx) => {
            for (const g of group) await g.job(tx);
          });
          for (const g of group) g.resolve();
        } catch {
          for (const g of group) {
            try {
              await this.store.relaxedTransaction((tx) => g.job(tx));
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
