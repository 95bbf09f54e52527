import os from 'node:os';
import type { SiteProcess } from '../api/sites.js';
import type { Logger } from '../lib/log.js';
import {
  claimLease,
  listLeases,
  listProcesses,
  pruneProcesses,
  registerProcess,
  releaseLeases,
  renewLeases,
  seeProcess,
  stopProcess,
} from '../store/processes.js';
import type { Store } from '../store/store.js';

/**
 * The processes of one site (docs/operations.md#several-processes). On PostgreSQL a site may
 * run several `site start` processes on one database and one content folder; each registers
 * itself and heartbeats, and work that must happen once (a route's sending, status reports,
 * rollouts, scheduled validation and collection, reads of package sources) goes to the one
 * process holding its lease. A holder renews its leases with every heartbeat; when it dies, its
 * leases expire and the next process to ask takes the work over and resumes it.
 */

/** How long a lease lasts unless renewed (CASCADE_LEASE_SECONDS, default 8). */
export const leaseMs = (): number => Math.max(1, Number(process.env.CASCADE_LEASE_SECONDS) || 8) * 1000;

export class Leases {
  private readonly held = new Set<string>();
  private readonly lostHandlers: ((name: string) => void)[] = [];
  /** When the last renewal succeeded: past the lease's life without one, nothing is assumed held. */
  private renewedAt = Date.now();
  private timer: NodeJS.Timeout | undefined;
  private beating: Promise<void> | null = null;

  constructor(
    private readonly store: Store,
    /** This process's tag (lib/instance.ts). */
    readonly id: string,
    private readonly log: Logger,
  ) {}

  /** Claims the lease `name` (or confirms this process holds it): true when the work is this process's. */
  async claim(name: string): Promise<boolean> {
    if (this.held.has(name) && Date.now() - this.renewedAt < leaseMs() * 0.75) return true;
    let ok = false;
    try {
      ok = await claimLease(this.store, name, this.id, leaseMs());
    } catch (err) {
      this.log.warn({ err: (err as Error).message, lease: name }, 'claiming a lease failed');
    }
    if (ok) {
      if (!this.held.has(name)) this.log.info({ lease: name }, 'lease taken: this process does this work now');
      this.held.add(name);
    } else if (this.held.delete(name)) this.lost(name);
    return ok;
  }

  holds(name: string): boolean {
    return this.held.has(name);
  }

  /** Every lease this process holds, by name. */
  names(): string[] {
    return [...this.held].sort();
  }

  /** Gives the work up at once, for another process to take (a clean stop, or nothing left to do). */
  async release(name: string): Promise<void> {
    if (!this.held.delete(name)) return;
    await releaseLeases(this.store, this.id, [name]).catch(() => {});
  }

  onLost(fn: (name: string) => void): void {
    this.lostHandlers.push(fn);
  }

  private lost(name: string): void {
    this.log.warn({ lease: name }, 'lease lost to another process: its work stops here');
    for (const fn of this.lostHandlers) fn(name);
  }

  /** Renews every lease held; any other process took over is dropped (and its work stopped). */
  async renew(): Promise<void> {
    const kept = new Set(await renewLeases(this.store, this.id, leaseMs()));
    this.renewedAt = Date.now();
    for (const name of [...this.held])
      if (!kept.has(name)) {
        this.held.delete(name);
        this.lost(name);
      }
  }

  /** The heartbeat: the process row's time, and every lease renewed; a quarter of a lease's life apart. */
  start(): void {
    const beat = () => {
      this.beating ??= seeProcess(this.store, this.id)
        .then(() => this.renew())
        .catch((err) => this.log.warn({ err: (err as Error).message }, 'heartbeat to the database failed'))
        .finally(() => (this.beating = null));
    };
    this.timer = setInterval(beat, leaseMs() / 4);
    this.timer.unref();
  }

  /** A clean stop: every lease given up at once (others take the work over without waiting), the row marked stopped. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.beating;
    this.held.clear();
    await releaseLeases(this.store, this.id).catch(() => {});
    await stopProcess(this.store, this.id).catch(() => {});
  }
}

/** Tags of the processes of this site that still run (heartbeat within a few leases' life), but this one. */
export async function runningProcesses(store: Store, me: string): Promise<Set<string>> {
  const since = new Date(Date.now() - 3 * leaseMs()).toISOString();
  return new Set((await listProcesses(store)).filter((p) => p.id !== me && p.stoppedAt === null && p.seenAt >= since).map((p) => p.id));
}

export async function joinProcesses(store: Store, o: { id: string; url: string; release: string }): Promise<void> {
  // Rows of processes gone for a week are history nobody reads.
  await pruneProcesses(store, new Date(Date.now() - 7 * 86400_000).toISOString());
  await registerProcess(store, {
    id: o.id,
    host: os.hostname(),
    pid: process.pid,
    url: o.url,
    release: o.release,
    startedAt: new Date().toISOString(),
  });
}

/** Each process of this site, whether it runs, and the work it holds. */
export async function processView({ store }: { store: Store }): Promise<SiteProcess[]> {
  const now = Date.now();
  const leases = await listLeases(store);
  const since = new Date(now - 3 * leaseMs()).toISOString();
  return (await listProcesses(store)).map((p) => ({
    id: p.id,
    host: p.host,
    pid: p.pid,
    url: p.url,
    release: p.release,
    startedAt: p.startedAt,
    seenAt: p.seenAt,
    state: p.stoppedAt ? 'stopped' : p.seenAt >= since ? 'running' : 'silent',
    holds: leases.filter((l) => l.holder === p.id && l.expiresAt >= new Date(now).toISOString()).map((l) => l.name),
  }));
}
