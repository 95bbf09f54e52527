import crypto from 'node:crypto';
import type { Selectable } from 'kysely';
import type { Severity, TargetAwait, TargetState, TransferState } from '../core/distribution.js';
import type { Priority } from '../core/package.js';
import type { Database } from './schema.js';
import { type Store, versionRow } from './store.js';

/**
 * The distribution repository: targets (package version × site) and their states, the
 * sender's transfers per route, status messages, and the keys of other sites. Functions
 * over a Store, so SQLite and PostgreSQL answer alike.
 */

/** A target is a DP (a site's code names its local DP). removing/removed: undistributed. */

export interface TargetRow {
  packageId: string;
  version: number;
  site: string;
  via: string | null;
  state: TargetState;
  bytesDone: number;
  bytesTotal: number;
  rate: number;
  retries: number;
  nextRetryAt: string | null;
  lastError: string | null;
  detail: string | null;
  /** What it waits for before it moves on; cleared by any change of state. */
  awaiting: TargetAwait | null;
  updatedAt: string;
}

const toTarget = (r: Selectable<Database['targets']>): TargetRow => ({
  packageId: r.package_id,
  version: r.version,
  site: r.site,
  via: r.via,
  state: r.state as TargetState,
  bytesDone: Number(r.bytes_done),
  bytesTotal: Number(r.bytes_total),
  rate: Number(r.rate),
  retries: r.retries,
  nextRetryAt: r.next_retry_at,
  lastError: r.last_error,
  detail: r.detail,
  awaiting: r.awaiting as TargetAwait | null,
  updatedAt: r.updated_at,
});

/** Adds a target, or leaves an existing one alone (a distribution expanded twice). */
export async function addTarget(
  s: Store,
  t: { packageId: string; version: number; site: string; via: string | null; bytesTotal: number },
): Promise<boolean> {
  // One that failed is set pending again: distributing again is how an admin retries it.
  await s.db
    .updateTable('targets')
    .set({ state: 'pending', retries: 0, last_error: null, next_retry_at: null, updated_at: s.clock().toISOString() })
    .where('package_id', '=', t.packageId)
    .where('version', '=', t.version)
    .where('site', '=', t.site)
    .where('state', '=', 'failed')
    .execute();
  const r = await s.db
    .insertInto('targets')
    .values({
      package_id: t.packageId,
      version: t.version,
      site: t.site,
      via: t.via,
      state: 'pending',
      bytes_done: 0,
      bytes_total: t.bytesTotal,
      rate: 0,
      retries: 0,
      next_retry_at: null,
      last_error: null,
      detail: null,
      awaiting: null,
      updated_at: s.clock().toISOString(),
    })
    .onConflict((oc) => oc.columns(['package_id', 'version', 'site']).doNothing())
    .executeTakeFirst();
  return Number(r.numInsertedOrUpdatedRows ?? 0) > 0;
}

export type TargetPatch = Partial<
  Pick<TargetRow, 'state' | 'bytesDone' | 'bytesTotal' | 'rate' | 'retries' | 'nextRetryAt' | 'lastError' | 'detail' | 'awaiting'>
>;

export async function updateTarget(s: Store, packageId: string, version: number, site: string, p: TargetPatch): Promise<void> {
  await s.db
    .updateTable('targets')
    .set({
      ...(p.state !== undefined ? { state: p.state } : {}),
      ...(p.bytesDone !== undefined ? { bytes_done: p.bytesDone } : {}),
      ...(p.bytesTotal !== undefined ? { bytes_total: p.bytesTotal } : {}),
      ...(p.rate !== undefined ? { rate: Math.round(p.rate) } : {}),
      ...(p.retries !== undefined ? { retries: p.retries } : {}),
      ...(p.nextRetryAt !== undefined ? { next_retry_at: p.nextRetryAt } : {}),
      ...(p.lastError !== undefined ? { last_error: p.lastError } : {}),
      ...(p.detail !== undefined ? { detail: p.detail } : {}),
      // A new state ends whatever the target waited for, unless the patch says what it waits for now.
      ...(p.awaiting !== undefined ? { awaiting: p.awaiting } : p.state !== undefined ? { awaiting: null } : {}),
      updated_at: s.clock().toISOString(),
    })
    .where('package_id', '=', packageId)
    .where('version', '=', version)
    .where('site', '=', site)
    .execute();
}

/** Which targets to list; every field given narrows the list, in SQL. */
export interface TargetFilter {
  packageId?: string;
  version?: number;
  /** One target, or any of these. */
  site?: string;
  sites?: readonly string[];
  states?: readonly TargetState[];
  /** Only targets reached through a child (`via` not null). */
  below?: boolean;
  awaiting?: TargetAwait;
  /** Only targets whose retry is due by then (no retry time, or one at or before it). */
  dueBy?: string;
  /** Only targets changed after this time. */
  changedAfter?: string;
}

export async function listTargets(s: Store, f: TargetFilter = {}): Promise<TargetRow[]> {
  let q = s.db.selectFrom('targets').selectAll();
  if (f.packageId !== undefined) q = q.where('package_id', '=', f.packageId);
  if (f.version !== undefined) q = q.where('version', '=', f.version);
  if (f.site !== undefined) q = q.where('site', '=', f.site);
  if (f.sites !== undefined) {
    if (f.sites.length === 0) return [];
    q = q.where('site', 'in', [...f.sites]);
  }
  if (f.states !== undefined) {
    if (f.states.length === 0) return [];
    q = q.where('state', 'in', [...f.states]);
  }
  if (f.below) q = q.where('via', 'is not', null);
  if (f.awaiting !== undefined) q = q.where('awaiting', '=', f.awaiting);
  const due = f.dueBy;
  if (due !== undefined) q = q.where((eb) => eb.or([eb('next_retry_at', 'is', null), eb('next_retry_at', '<=', due)]));
  if (f.changedAfter !== undefined) q = q.where('updated_at', '>', f.changedAfter);
  const rows = await q.orderBy('package_id').orderBy('version').orderBy('site').execute();
  return rows.map(toTarget);
}

// --- transfers -----------------------------------------------------------------------------

export interface TransferRow {
  id: string;
  packageId: string;
  version: number;
  child: string;
  priority: Priority;
  targets: string[];
  state: TransferState;
  bytesTotal: number;
  bytesDone: number;
  wireBytes: number;
  retries: number;
  nextAttemptAt: string | null;
  lastError: string | null;
  createdAt: string;
  updatedAt: string;
}

const toTransfer = (r: Selectable<Database['transfers']>): TransferRow => ({
  id: r.id,
  packageId: r.package_id,
  version: r.version,
  child: r.child,
  priority: r.priority as Priority,
  targets: JSON.parse(r.targets) as string[],
  state: r.state as TransferState,
  bytesTotal: Number(r.bytes_total),
  bytesDone: Number(r.bytes_done),
  wireBytes: Number(r.wire_bytes),
  retries: r.retries,
  nextAttemptAt: r.next_attempt_at,
  lastError: r.last_error,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

/**
 * Queues the package version on the route to `child` for these targets; when a transfer of
 * the same version to that child is already open, its targets are widened instead (a route
 * carries each version once however many targets lie below it).
 */
export async function queueTransfer(
  s: Store,
  t: { packageId: string; version: number; child: string; priority: Priority; targets: string[]; bytesTotal: number; reopen?: boolean },
): Promise<TransferRow> {
  const open = (await listTransfers(s, { child: t.child })).find((x) => x.packageId === t.packageId && x.version === t.version);
  const now = s.clock().toISOString();
  if (open) {
    const targets = [...new Set([...open.targets, ...t.targets])].sort();
    // A finished or failed transfer goes again for new targets, or when asked to (the admin
    // distributed again: targets below that failed get another chance).
    const finished = open.state === 'done' || open.state === 'failed';
    const reopen = finished && (targets.length > open.targets.length || t.reopen === true);
    await s.db
      .updateTable('transfers')
      .set({
        targets: JSON.stringify(targets),
        ...(reopen ? { state: 'queued', next_attempt_at: null, retries: 0, last_error: null } : {}),
        updated_at: now,
      })
      .where('id', '=', open.id)
      .execute();
    return { ...open, targets, state: reopen ? 'queued' : open.state };
  }
  const id = crypto.randomUUID();
  await s.db
    .insertInto('transfers')
    .values({
      id,
      package_id: t.packageId,
      version: t.version,
      child: t.child,
      priority: t.priority,
      targets: JSON.stringify([...new Set(t.targets)].sort()),
      state: 'queued',
      bytes_total: t.bytesTotal,
      bytes_done: 0,
      wire_bytes: 0,
      retries: 0,
      next_attempt_at: null,
      last_error: null,
      created_at: now,
      updated_at: now,
    })
    .execute();
  return (await getTransfer(s, id)) as TransferRow;
}

/** Takes targets out of the open transfers of a version; a transfer left with none is done. */
export async function dropTransferTargets(s: Store, packageId: string, version: number, targets: readonly string[]): Promise<void> {
  const drop = new Set(targets);
  for (const t of await listTransfers(s, { states: ['queued', 'sending', 'retrying'] })) {
    if (t.packageId !== packageId || t.version !== version || !t.targets.some((x) => drop.has(x))) continue;
    const left = t.targets.filter((x) => !drop.has(x));
    await s.db
      .updateTable('transfers')
      .set({
        targets: JSON.stringify(left),
        ...(left.length === 0 ? { state: 'done', last_error: 'cancelled: every target was undistributed' } : {}),
        updated_at: s.clock().toISOString(),
      })
      .where('id', '=', t.id)
      .execute();
  }
}

export async function getTransfer(s: Store, id: string): Promise<TransferRow | undefined> {
  const r = await s.db.selectFrom('transfers').selectAll().where('id', '=', id).executeTakeFirst();
  return r && toTransfer(r);
}

export async function listTransfers(s: Store, f: { child?: string; states?: readonly TransferState[] } = {}): Promise<TransferRow[]> {
  let q = s.db.selectFrom('transfers').selectAll();
  if (f.child) q = q.where('child', '=', f.child);
  if (f.states) q = q.where('state', 'in', [...f.states]);
  const rows = await q.orderBy('created_at').execute();
  return rows.map(toTransfer);
}

export type TransferPatch = Partial<
  Pick<TransferRow, 'state' | 'bytesDone' | 'wireBytes' | 'retries' | 'nextAttemptAt' | 'lastError' | 'bytesTotal'>
>;

export async function updateTransfer(s: Store, id: string, p: TransferPatch): Promise<void> {
  await s.db
    .updateTable('transfers')
    .set({
      ...(p.state !== undefined ? { state: p.state } : {}),
      ...(p.bytesDone !== undefined ? { bytes_done: p.bytesDone } : {}),
      ...(p.bytesTotal !== undefined ? { bytes_total: p.bytesTotal } : {}),
      ...(p.wireBytes !== undefined ? { wire_bytes: p.wireBytes } : {}),
      ...(p.retries !== undefined ? { retries: p.retries } : {}),
      ...(p.nextAttemptAt !== undefined ? { next_attempt_at: p.nextAttemptAt } : {}),
      ...(p.lastError !== undefined ? { last_error: p.lastError } : {}),
      updated_at: s.clock().toISOString(),
    })
    .where('id', '=', id)
    .execute();
}

// --- status messages -------------------------------------------------------------------------

export interface MessageRow {
  id: string;
  time: string;
  site: string;
  component: string;
  severity: Severity;
  code: string;
  text: string;
  packageId: string | null;
}

const toMessage = (r: Selectable<Database['messages']>): MessageRow => ({
  id: r.id,
  time: r.time,
  site: r.site,
  component: r.component,
  severity: r.severity as Severity,
  code: r.code,
  text: r.text,
  packageId: r.package_id,
});

/** Records a status message (idempotent on its id: a batch sent twice is kept once). */
export async function addMessages(s: Store, ms: readonly MessageRow[], forwarded = false): Promise<void> {
  for (const m of ms) {
    await s.db
      .insertInto('messages')
      .values({
        id: m.id,
        time: m.time,
        site: m.site,
        component: m.component,
        severity: m.severity,
        code: m.code,
        text: m.text,
        package_id: m.packageId,
        forwarded: forwarded ? 1 : 0,
      })
      .onConflict((oc) => oc.column('id').doNothing())
      .execute();
  }
}

export async function listMessages(
  s: Store,
  f: { site?: string; packageId?: string; severity?: Severity; limit?: number } = {},
): Promise<MessageRow[]> {
  let q = s.db.selectFrom('messages').selectAll();
  if (f.site) q = q.where('site', '=', f.site);
  if (f.packageId) q = q.where('package_id', '=', f.packageId);
  if (f.severity === 'error') q = q.where('severity', '=', 'error');
  else if (f.severity === 'warning') q = q.where('severity', 'in', ['warning', 'error']);
  const rows = await q
    .orderBy('time', 'desc')
    .limit(f.limit ?? 200)
    .execute();
  return rows.map(toMessage);
}

/** Messages not yet sent up to the parent, oldest first. */
export async function unforwardedMessages(s: Store, limit = 500): Promise<MessageRow[]> {
  const rows = await s.db.selectFrom('messages').selectAll().where('forwarded', '=', 0).orderBy('time').limit(limit).execute();
  return rows.map(toMessage);
}

/** Forgets messages older than `before` that have gone up already (or have nowhere to go). */
export async function pruneMessages(s: Store, before: string, centralSite: boolean): Promise<number> {
  let q = s.db.deleteFrom('messages').where('time', '<', before);
  if (!centralSite) q = q.where('forwarded', '=', 1);
  const r = await q.executeTakeFirst();
  return Number(r.numDeletedRows);
}

export async function markForwarded(s: Store, ids: readonly string[]): Promise<void> {
  for (let i = 0; i < ids.length; i += 500) {
    await s.db
      .updateTable('messages')
      .set({ forwarded: 1 })
      .where('id', 'in', ids.slice(i, i + 500))
      .execute();
  }
}

// --- keys of other sites ---------------------------------------------------------------------

export async function putKey(s: Store, k: { keyId: string; site: string; publicKey: string; certificate: string | null }): Promise<void> {
  await s.db
    .insertInto('keys')
    .values({ key_id: k.keyId, site: k.site, public_key: k.publicKey, certificate: k.certificate })
    .onConflict((oc) => oc.column('key_id').doNothing())
    .execute();
}

export async function listKeys(s: Store): Promise<{ keyId: string; site: string; publicKey: string; certificate: string | null }[]> {
  const rows = await s.db.selectFrom('keys').selectAll().execute();
  return rows.map((r) => ({ keyId: r.key_id, site: r.site, publicKey: r.public_key, certificate: r.certificate }));
}

// --- replicated package versions -------------------------------------------------------------

/**
 * Records a version that arrived from a parent: its number is the origin's. Versions only move
 * forward: an older one arriving after a newer one is kept, but latest stays the newest.
 */
export async function insertReplicaVersion(
  s: Store,
  p: { id: string; name: string; priority: Priority },
  v: { version: number; manifestDigest: string; files: number; bytes: number },
): Promise<boolean> {
  const run = async (tx: Store): Promise<boolean> => {
    if (await tx.getVersion(p.id, v.version)) return false;
    const now = tx.clock().toISOString();
    const pkg = await tx.getPackage(p.id);
    if (!pkg) {
      await tx.db
        .insertInto('packages')
        .values({
          id: p.id,
          name: p.name,
          priority: p.priority,
          latest_version: v.version,
          last_version: v.version,
          created_at: now,
          updated_at: now,
        })
        .execute();
    } else if (v.version > pkg.latestVersion) {
      await tx.db
        .updateTable('packages')
        .set({ name: p.name, priority: p.priority, latest_version: v.version, last_version: v.version, updated_at: now })
        .where('id', '=', p.id)
        .execute();
    }
    await tx.db
      .insertInto('package_versions')
      .values(versionRow(p.id, v, now))
      .execute();
    return true;
  };
  return s.db.isTransaction ? run(s) : s.transaction(run);
}
