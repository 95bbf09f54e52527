import { sql } from 'kysely';
import type { DownloadSlotTable } from './schema.js';
import type { Store } from './store.js';

/**
 * The processes of a site and the leases on its once-only work (docs/operations.md#several-processes).
 * Times are the processes' own wall clocks (ISO strings), not the store's clock: a lease is
 * about real seconds passing, and several machines must keep their clocks in step (NTP).
 */

export interface ProcessRow {
  id: string;
  host: string;
  pid: number;
  url: string;
  release: string;
  startedAt: string;
  seenAt: string;
  stoppedAt: string | null;
}

export interface LeaseRow {
  name: string;
  holder: string;
  expiresAt: string;
}

const iso = (ms: number): string => new Date(ms).toISOString();

export async function registerProcess(s: Store, p: Omit<ProcessRow, 'seenAt' | 'stoppedAt'>): Promise<void> {
  await s.db
    .insertInto('site_processes')
    .values({
      id: p.id,
      host: p.host,
      pid: p.pid,
      url: p.url,
      release: p.release,
      started_at: p.startedAt,
      seen_at: iso(Date.now()),
      stopped_at: null,
    })
    .execute();
}

/** The heartbeat: this process still runs. */
export async function seeProcess(s: Store, id: string): Promise<void> {
  await s.db
    .updateTable('site_processes')
    .set({ seen_at: iso(Date.now()) })
    .where('id', '=', id)
    .execute();
}

export async function stopProcess(s: Store, id: string): Promise<void> {
  const now = iso(Date.now());
  await s.db.updateTable('site_processes').set({ seen_at: now, stopped_at: now }).where('id', '=', id).execute();
}

export async function listProcesses(s: Store): Promise<ProcessRow[]> {
  const rows = await s.db.selectFrom('site_processes').selectAll().orderBy('started_at').execute();
  return rows.map((r) => ({
    id: r.id,
    host: r.host,
    pid: r.pid,
    url: r.url,
    release: r.release,
    startedAt: r.started_at,
    seenAt: r.seen_at,
    stoppedAt: r.stopped_at,
  }));
}

/** Rows of processes stopped or silent since before `before`: history an operator no longer needs. */
export async function pruneProcesses(s: Store, before: string): Promise<void> {
  await s.db.deleteFrom('site_processes').where('seen_at', '<', before).execute();
}

export async function listLeases(s: Store): Promise<LeaseRow[]> {
  const rows = await s.db.selectFrom('leases').selectAll().orderBy('name').execute();
  return rows.map((r) => ({ name: r.name, holder: r.holder, expiresAt: r.expires_at }));
}

/**
 * Claims (or renews) a lease for `holder` until `ttlMs` from now: taken when nobody holds it,
 * when the holder is `holder` already, or when the holder let it expire. One statement, so two
 * processes claiming at once cannot both win.
 */
export async function claimLease(s: Store, name: string, holder: string, ttlMs: number): Promise<boolean> {
  const now = Date.now();
  const row = await s.db
    .insertInto('leases')
    .values({ name, holder, expires_at: iso(now + ttlMs) })
    .onConflict((oc) =>
      oc
        .column('name')
        .doUpdateSet({ holder, expires_at: iso(now + ttlMs) })
        .where((eb) => eb.or([eb('leases.holder', '=', holder), eb('leases.expires_at', '<', iso(now))])),
    )
    .returning('holder')
    .executeTakeFirst();
  return row?.holder === holder;
}

/** Renews every lease `holder` still holds; answers the names it holds (any other was taken over). */
export async function renewLeases(s: Store, holder: string, ttlMs: number): Promise<string[]> {
  const rows = await s.db
    .updateTable('leases')
    .set({ expires_at: iso(Date.now() + ttlMs) })
    .where('holder', '=', holder)
    .returning('name')
    .execute();
  return rows.map((r) => r.name);
}

export async function releaseLeases(s: Store, holder: string, names?: readonly string[]): Promise<void> {
  let q = s.db.deleteFrom('leases').where('holder', '=', holder);
  if (names) {
    if (names.length === 0) return;
    q = q.where('name', 'in', names);
  }
  await q.execute();
}

/** A download slot as shared by the processes of a site (src/site/slots.ts). */
export type SlotRow = DownloadSlotTable;

/**
 * Runs `fn` with the site's download slots to itself: on PostgreSQL an advisory lock held to
 * the end of the transaction serialises the processes of the site; SQLite has one writer anyway.
 */
export function withSlots<T>(s: Store, fn: (tx: Store) => Promise<T>): Promise<T> {
  return s.transaction(async (tx) => {
    if (tx.dialect === 'postgres') await sql`select pg_advisory_xact_lock(${SLOTS_LOCK})`.execute(tx.db);
    return fn(tx);
  });
}
const SLOTS_LOCK = 0x63617363; // "casc"

export async function listSlots(s: Store): Promise<SlotRow[]> {
  return s.db.selectFrom('download_slots').selectAll().execute();
}

/** Drops slots not renewed since `before` (ms); answers how many. */
export async function expireSlots(s: Store, before: number): Promise<number> {
  const r = await s.db.deleteFrom('download_slots').where('renewed', '<', before).executeTakeFirst();
  return Number(r.numDeletedRows);
}

export async function putSlot(s: Store, row: SlotRow): Promise<void> {
  await s.db
    .insertInto('download_slots')
    .values(row)
    .onConflict((oc) => oc.column('slot').doUpdateSet({ renewed: row.renewed }))
    .execute();
}

export async function renewSlot(s: Store, slot: string, at: number): Promise<boolean> {
  const r = await s.db.updateTable('download_slots').set({ renewed: at }).where('slot', '=', slot).executeTakeFirst();
  return Number(r.numUpdatedRows) > 0;
}

/** Frees a slot; the row it had, if it was held. */
export async function freeSlot(s: Store, slot: string): Promise<SlotRow | undefined> {
  return s.db.deleteFrom('download_slots').where('slot', '=', slot).returningAll().executeTakeFirst();
}
