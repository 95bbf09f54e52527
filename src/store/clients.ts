import crypto from 'node:crypto';
import type { Selectable } from 'kysely';
import type { Database } from './schema.js';
import { hashToken, type Store } from './store.js';

/** Rows of clients, policy records, collection members and client states (docs/clients.md). */

export interface ClientRow {
  id: string;
  site: string;
  inventory: unknown;
  boundary: string | null;
  dps: string[];
  enrolledAt: string;
  lastSeen: string | null;
  revoked: boolean;
  updatedAt: string;
}

const toClient = (r: Selectable<Database['clients']>): ClientRow => ({
  id: r.id,
  site: r.site,
  inventory: JSON.parse(r.inventory),
  boundary: r.boundary,
  dps: JSON.parse(r.dps) as string[],
  enrolledAt: r.enrolled_at,
  lastSeen: r.last_seen,
  revoked: Boolean(r.revoked),
  updatedAt: r.updated_at,
});

// --- join tokens for agents ----------------------------------------------------------------

/**
 * An enrolment token usable `uses` times until it expires. `suffix` ends the secret (the
 * central key's fingerprint, so an agent can check the key it is handed).
 */
export async function createAgentJoinToken(
  s: Store,
  uses: number,
  ttlSeconds: number,
  suffix: string,
): Promise<{ id: string; secret: string; expiresAt: string }> {
  const id = crypto.randomBytes(6).toString('hex');
  const secret = `casj_agent_${id}_${crypto.randomBytes(24).toString('base64url')}_${suffix}`;
  const now = s.clock();
  const expiresAt = new Date(now.getTime() + ttlSeconds * 1000).toISOString();
  await s.db
    .insertInto('join_tokens')
    .values({
      id,
      hash: hashToken(secret),
      kind: 'agent',
      expires_at: expiresAt,
      used_at: null,
      used_by: null,
      created_at: now.toISOString(),
      max_uses: uses,
      use_count: 0,
    })
    .execute();
  return { id, secret, expiresAt };
}

/** Uses an agent join token once, atomically; says why when it cannot. */
export async function useAgentJoinToken(s: Store, secret: string): Promise<'ok' | 'unknown' | 'exhausted' | 'expired'> {
  const now = s.clock().toISOString();
  const hash = hashToken(secret);
  const r = await s.db
    .updateTable('join_tokens')
    .set((eb) => ({ use_count: eb('use_count', '+', 1), used_at: now }))
    .where('hash', '=', hash)
    .where('kind', '=', 'agent')
    .where((eb) => eb('use_count', '<', eb.ref('max_uses')))
    .where('expires_at', '>', now)
    .executeTakeFirst();
  if (Number(r.numUpdatedRows) === 1) return 'ok';
  const row = await s.db.selectFrom('join_tokens').selectAll().where('hash', '=', hash).executeTakeFirst();
  if (row?.kind !== 'agent') return 'unknown';
  return row.use_count >= row.max_uses ? 'exhausted' : 'expired';
}

// --- clients -------------------------------------------------------------------------------

export async function insertClient(
  s: Store,
  c: { id: string; site: string; credential: string | null; inventory: unknown; boundary: string | null; dps: string[] },
): Promise<void> {
  const now = s.clock().toISOString();
  await s.db
    .insertInto('clients')
    .values({
      id: c.id,
      site: c.site,
      credential_hash: c.credential === null ? null : hashToken(c.credential),
      inventory: JSON.stringify(c.inventory),
      boundary: c.boundary,
      dps: JSON.stringify(c.dps),
      enrolled_at: now,
      last_seen: now,
      revoked: 0,
      updated_at: now,
    })
    .execute();
}

export async function clientByCredential(s: Store, credential: string): Promise<ClientRow | undefined> {
  const r = await s.db.selectFrom('clients').selectAll().where('credential_hash', '=', hashToken(credential)).executeTakeFirst();
  return r && toClient(r);
}

export async function getClient(s: Store, id: string): Promise<ClientRow | undefined> {
  const r = await s.db.selectFrom('clients').selectAll().where('id', '=', id).executeTakeFirst();
  return r && toClient(r);
}

/** `limit` with `changedAfter`: the oldest changes first, at most that many (oldest first). */
export async function listClients(
  s: Store,
  f: { changedAfter?: string; site?: string; limit?: number; changedAt?: string } = {},
): Promise<ClientRow[]> {
  let q = s.db.selectFrom('clients').selectAll();
  if (f.changedAfter !== undefined) q = q.where('updated_at', '>', f.changedAfter);
  if (f.changedAt !== undefined) q = q.where('updated_at', '=', f.changedAt);
  if (f.site) q = q.where('site', '=', f.site);
  if (f.limit !== undefined) return (await q.orderBy('updated_at').limit(f.limit).execute()).map(toClient);
  return (await q.orderBy('id').execute()).map(toClient);
}

export async function updateClient(
  s: Store,
  id: string,
  p: { inventory?: unknown; boundary?: string | null; dps?: string[]; lastSeen?: string; revoked?: boolean },
): Promise<void> {
  await s.db
    .updateTable('clients')
    .set({
      ...(p.inventory !== undefined ? { inventory: JSON.stringify(p.inventory) } : {}),
      ...(p.boundary !== undefined ? { boundary: p.boundary } : {}),
      ...(p.dps !== undefined ? { dps: JSON.stringify(p.dps) } : {}),
      ...(p.lastSeen !== undefined ? { last_seen: p.lastSeen } : {}),
      ...(p.revoked !== undefined ? { revoked: p.revoked ? 1 : 0 } : {}),
      updated_at: s.clock().toISOString(),
    })
    .where('id', '=', id)
    .execute();
}

/** Only the time they were last seen: not a change worth reporting up on its own. */
export async function touchClients(s: Store, ids: readonly string[], at: string): Promise<void> {
  for (let i = 0; i < ids.length; i += 500)
    await s.db
      .updateTable('clients')
      .set({ last_seen: at })
      .where('id', 'in', ids.slice(i, i + 500))
      .execute();
}

/**
 * Notes when clients were last seen, without waiting for the disk (a power cut may lose the last
 * second of them; a killed process loses nothing): on SQLite through the relaxed connection
 * (false, with nothing written, when the database is busy); otherwise (PostgreSQL) in a
 * relaxed transaction.
 */
export async function noteClientsSeen(s: Store, ids: readonly string[], at: string): Promise<boolean> {
  if (!s.relaxed) {
    await s.relaxedTransaction((tx) => touchClients(tx, ids, at));
    return true;
  }
  if (ids.length > 500) throw new Error('noteClientsSeen takes at most 500 ids');
  return s.relaxed.run(`UPDATE clients SET last_seen = ? WHERE id IN (${ids.map(() => '?').join(', ')})`, [at, ...ids]);
}

/** Clients reported by a site below: inserted or replaced (they poll there, so no credential here). */
export async function upsertRemoteClient(s: Store, c: Omit<ClientRow, 'updatedAt'>): Promise<void> {
  const v = {
    site: c.site,
    inventory: JSON.stringify(c.inventory),
    boundary: c.boundary,
    dps: JSON.stringify(c.dps),
    enrolled_at: c.enrolledAt,
    last_seen: c.lastSeen,
    revoked: c.revoked ? 1 : 0,
    updated_at: s.clock().toISOString(),
  };
  await s.db
    .insertInto('clients')
    .values({ id: c.id, credential_hash: null, ...v })
    .onConflict((oc) => oc.column('id').doUpdateSet(v))
    .execute();
}

// --- policy records ------------------------------------------------------------------------

export interface PolicyRow {
  kind: string;
  id: string;
  origin: string;
  revision: number;
  deleted: boolean;
  /** The signed record as it travels. */
  signed: unknown;
  updatedAt: string;
}

export async function listPolicy(s: Store, kind?: string): Promise<PolicyRow[]> {
  let q = s.db.selectFrom('policy').selectAll();
  if (kind) q = q.where('kind', '=', kind);
  const rows = await q.orderBy('kind').orderBy('id').execute();
  return rows.map((r) => ({
    kind: r.kind,
    id: r.id,
    origin: r.origin,
    revision: r.revision,
    deleted: Boolean(r.deleted),
    signed: JSON.parse(r.signed),
    updatedAt: r.updated_at,
  }));
}

/** Changes whenever a record is added or changed: the row count and the newest change. */
export async function policyFingerprint(s: Store): Promise<string> {
  const r = await s.db
    .selectFrom('policy')
    .select([(eb) => eb.fn.countAll<number>().as('n'), (eb) => eb.fn.max('updated_at').as('newest')])
    .executeTakeFirst();
  return `${Number(r?.n ?? 0)} ${r?.newest ?? ''}`;
}

/** Stores a record unless one of the same kind and id with the same or a later revision is held. */
export async function putPolicy(s: Store, p: Omit<PolicyRow, 'updatedAt'>): Promise<boolean> {
  const held = await s.db
    .selectFrom('policy')
    .select(['revision', 'origin'])
    .where('kind', '=', p.kind)
    .where('id', '=', p.id)
    .executeTakeFirst();
  if (held && held.revision >= p.revision) return false;
  const v = {
    origin: p.origin,
    revision: p.revision,
    deleted: p.deleted ? 1 : 0,
    signed: JSON.stringify(p.signed),
    updated_at: s.clock().toISOString(),
  };
  await s.db
    .insertInto('policy')
    .values({ kind: p.kind, id: p.id, ...v })
    .onConflict((oc) => oc.columns(['kind', 'id']).doUpdateSet(v))
    .execute();
  return true;
}

// --- collection members --------------------------------------------------------------------

export async function setMemberships(s: Store, client: string, collections: readonly string[]): Promise<void> {
  await s.db.deleteFrom('collection_members').where('client', '=', client).execute();
  if (collections.length > 0)
    await s.db
      .insertInto('collection_members')
      .values(collections.map((collection) => ({ collection, client })))
      .execute();
}

export async function membersOf(s: Store, collection: string): Promise<string[]> {
  const rows = await s.db
    .selectFrom('collection_members')
    .select('client')
    .where('collection', '=', collection)
    .orderBy('client')
    .execute();
  return rows.map((r) => r.client);
}

export async function collectionsOf(s: Store, client: string): Promise<string[]> {
  const rows = await s.db.selectFrom('collection_members').select('collection').where('client', '=', client).execute();
  return rows.map((r) => r.collection);
}

export async function memberCounts(s: Store): Promise<Map<string, number>> {
  const rows = await s.db
    .selectFrom('collection_members')
    .select(['collection', (eb) => eb.fn.countAll<number>().as('n')])
    .groupBy('collection')
    .execute();
  return new Map(rows.map((r) => [r.collection, Number(r.n)]));
}

// --- client states -------------------------------------------------------------------------

export interface ClientStateRow {
  client: string;
  advertisement: string;
  packageId: string;
  version: number;
  state: string;
  bytesDone: number;
  bytesTotal: number;
  exitCode: number | null;
  output: string | null;
  detail: string | null;
  at: string;
  updatedAt: string;
}

const toState = (r: Selectable<Database['client_states']>): ClientStateRow => ({
  client: r.client,
  advertisement: r.advertisement,
  packageId: r.package_id,
  version: r.version,
  state: r.state,
  bytesDone: Number(r.bytes_done),
  bytesTotal: Number(r.bytes_total),
  exitCode: r.exit_code,
  output: r.output,
  detail: r.detail,
  at: r.at,
  updatedAt: r.updated_at,
});

/** Keeps the newest report per client and advertisement (an older one arriving late is ignored). */
export async function putClientStates(s: Store, rows: readonly Omit<ClientStateRow, 'updatedAt'>[]): Promise<void> {
  const now = s.clock().toISOString();
  for (const r of rows) {
    const v = {
      package_id: r.packageId,
      version: r.version,
      state: r.state,
      bytes_done: r.bytesDone,
      bytes_total: r.bytesTotal,
      exit_code: r.exitCode,
      output: r.output,
      detail: r.detail,
      at: r.at,
      updated_at: now,
    };
    await s.db
      .insertInto('client_states')
      .values({ client: r.client, advertisement: r.advertisement, ...v })
      .onConflict((oc) => oc.columns(['client', 'advertisement']).doUpdateSet(v).where('client_states.at', '<=', r.at))
      .execute();
  }
}

export async function listClientStates(
  s: Store,
  f: { advertisement?: string; client?: string; changedAfter?: string; limit?: number; changedAt?: string } = {},
): Promise<ClientStateRow[]> {
  let q = s.db.selectFrom('client_states').selectAll();
  if (f.advertisement) q = q.where('advertisement', '=', f.advertisement);
  if (f.client) q = q.where('client', '=', f.client);
  if (f.changedAfter !== undefined) q = q.where('updated_at', '>', f.changedAfter);
  if (f.changedAt !== undefined) q = q.where('updated_at', '=', f.changedAt);
  if (f.limit !== undefined) return (await q.orderBy('updated_at').limit(f.limit).execute()).map(toState);
  return (await q.orderBy('client').execute()).map(toState);
}
