import type { ContentLibrary } from '../content/library.js';
import type { SiteKey, TrustedKey } from '../content/signing.js';
import type { Logger } from '../lib/log.js';
import type { Store } from '../store/store.js';
import type { Leases } from './processes.js';

/**
 * What every service of a site works with: its store, its content library, its key and the
 * keys it trusts, its identity, a clock and a logger. `createApp` and the services take it as
 * an argument, so tests build one in-process with an in-memory store and a fake clock.
 */
export interface SiteContext {
  store: Store;
  library: ContentLibrary;
  key: SiteKey;
  /** Keys whose manifests this site accepts (its own, and later its parents'). */
  trusted: TrustedKey[];
  code: string;
  name: string;
  clock: () => Date;
  log: Logger;
  /**
   * The process's data folder and, for a DP run by its launcher, how to restart on a release
   * it prepared (docs/dp.md#releases). Absent in tests that build a context in-process.
   */
  process?: { dataDir: string; switchRelease: (() => void) | null };
  /**
   * Once-only work among the processes sharing this site (./processes.ts). Absent in tests that
   * build a context in-process: the one process does everything.
   */
  leases?: Leases;
  /** SHA-256 of the certificate this process serves HTTPS with; absent: it serves plain HTTP. */
  tlsPin?: string;
}

/**
 * Whether this site may be served by several processes at once (PostgreSQL, with leases): state
 * they must agree on (the policy view, download slots) is then read from the database.
 */
export const sharedByProcesses = (ctx: SiteContext): boolean => ctx.leases !== undefined && ctx.store.dialect === 'postgres';
