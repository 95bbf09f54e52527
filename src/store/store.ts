import crypto from 'node:crypto';
import type { Kysely, Selectable, Transaction } from 'kysely';
import { sql } from 'kysely';
import type { Release } from '../api/dps.js';
import { fail } from '../core/errors.js';
import type { Priority } from '../core/package.js';
import type { TokenRole } from '../core/roles.js';
import { type Dialect, openDb, type RelaxedWriter } from './db.js';
import type { Database } from './schema.js';

export interface TokenInfo {
  id: string;
  role: TokenRole;
  name: string;
  createdAt: string;
}

export interface PackageRow {
  id: string;
  name: string;
  priority: Priority;
  /** Highest version that exists: what "latest" means. */
  latestVersion: number;
  /** Highest version number ever given out; the next version is this + 1 (never reused). */
  lastVersion: number;
  createdAt: string;
  updatedAt: string;
}

export interface VersionRow {
  packageId: string;
  version: number;
  manifestDigest: string;
  files: number;
  bytes: number;
  newBytes: number;
  createdAt: string;
}

export interface ChunkRow {
  digest: string;
  size: number;
  storedSize: number;
  literalBytes: number;
  refs: number;
}

/** self, parent, child, descendant: sites. dp: a DP of this site; dp-below: a DP of a site below. */
export type SiteRelation = 'self' | 'parent' | 'child' | 'descendant' | 'dp' | 'dp-below';

export const DP_RELATIONS: readonly SiteRelation[] = ['dp', 'dp-below'];

export interface SiteRow {
  code: string;
  name: string;
  parent: string | null;
  relation: SiteRelation;
  url: string | null;
  keyId: string;
  publicKey: string;
  certificate: string | null;
  outboundToken: string | null;
  reachable: boolean | null;
  lastContact: string | null;
  createdAt: string;
  /** DPs only: the state they last reported. */
  freeBytes: number | null;
  totalBytes: number | null;
  held: { packageId: string; version: number }[];
  stateAt: string | null;
  /** DPs: where clients fetch content, when not `url`. */
  contentUrl: string | null;
  /** DPs and sites below: the release they run and this site's upgrade of them. */
  release: Release | null;
  /** Neighbours: SHA-256 of the TLS certificate they serve with, pinned at join (null: a CA's, or plain HTTP). */
  tlsPin: string | null;
}

export interface RouteRow {
  child: string;
  /** Bytes per second; null: unlimited. */
  rate: number | null;
  concurrency: number;
  /** JSON of {timeZone, cells}: see core/schedule. */
  schedule: string;
  updatedAt: string;
}

/** Parameters per statement stay well under SQLite's and PostgreSQL's limits. */
const BATCH = 500;

function* batches<T>(items: readonly T[], n = BATCH): Generator<T[]> {
  for (let i = 0; i < items.length; i += n) yield items.slice(i, i + n);
}

export const hashToken = (secret: string): string => crypto.createHash('sha256').update(secret).digest('hex');

/**
 * The site's repository: every query the site server makes goes through here, so SQLite and
 * PostgreSQL answer the same questions the same way (one test suite runs on both).
 */
/** How a sealed credential begins in the store. */
const SEALED = 'sealed1:';

export class Store {
  private constructor(
    readonly db: Kysely<Database>,
    readonly dialect: Dialect,
    /** Timestamps of rows come from here (tests pass a fake clock). */
    readonly clock: () => Date,
    /** SQLite, outside a transaction: the connection for writes a power cut may lose (db.ts). */
    readonly relaxed?: RelaxedWriter,
    private readonly stopCheckpointer?: () => Promise<void>,
  ) {}

  /**
   * The key credentials for calling neighbours are sealed with (AES-256-GCM), derived from the
   * site's private key, which lives in the data folder and never in the database: a copy of the
   * database alone holds no usable credential. Without one (tests), they are kept as given.
   */
  private sealKey: Buffer | null = null;

  useSealingKey(key: Buffer): void {
    if (key.length !== 32) throw new Error('a sealing key is 32 bytes');
    this.sealKey = key;
  }

  private seal(secret: string | null): string | null {
    if (secret === null || !this.sealKey || secret.startsWith(SEALED)) return secret;
    const iv = crypto.randomBytes(12);
    const c = crypto.createCipheriv('aes-256-gcm', this.sealKey, iv);
    const body = Buffer.concat([c.update(secret, 'utf8'), c.final()]);
    return SEALED + Buffer.concat([iv, c.getAuthTag(), body]).toString('base64');
  }

  private unseal(stored: string | null): string | null {
    if (stored === null || !stored.startsWith(SEALED)) return stored;
    if (!this.sealKey) throw fail('invalid_config', 'a credential in the store is sealed, and the site key that opens it is not loaded');
    const raw = Buffer.from(stored.slice(SEALED.length), 'base64');
    try {
      const d = crypto.createDecipheriv('aes-256-gcm', this.sealKey, raw.subarray(0, 12));
      d.setAuthTag(raw.subarray(12, 28));
      return Buffer.concat([d.update(raw.subarray(28)), d.final()]).toString('utf8');
    } catch {
      throw fail('invalid_config', 'a credential in the store does not open with this site key: the store or the key belongs elsewhere');
    }
  }

  private site(r: Selectable<Database['sites']>): SiteRow {
    return { ...toSite(r), outboundToken: this.unseal(r.outbound_token) };
  }

  /** Seals credentials kept in clear by an earlier release (at start, once the key is loaded). */
  async sealOutboundTokens(): Promise<number> {
    if (!this.sealKey) return 0;
    const rows = await this.db.selectFrom('sites').select(['code', 'outbound_token']).where('outbound_token', 'is not', null).execute();
    let n = 0;
    for (const r of rows)
      if (r.outbound_token && !r.outbound_token.startsWith(SEALED)) {
        await this.db
          .updateTable('sites')
          .set({ outbound_token: this.seal(r.outbound_token) })
          .where('code', '=', r.code)
          .execute();
        n++;
      }
    return n;
  }

  static async open(opts: {
    url?: string | undefined;
    dataDir: string;
    clock?: () => Date;
    /** SQLite: checkpoint in a worker thread (a server's store). */
    checkpointer?: boolean;
  }): Promise<Store> {
    const { db, dialect, relaxed, stopCheckpointer } = await openDb(opts);
    return new Store(db, dialect, opts.clock ?? (() => new Date()), relaxed, stopCheckpointer);
  }

  async close(): Promise<void> {
    await this.stopCheckpointer?.();
    this.relaxed?.close();
    await this.db.destroy();
  }

  transaction<T>(fn: (store: Store) => Promise<T>): Promise<T> {
    return this.db.transaction().execute((trx) => fn(this.within(trx)));
  }

  /**
   * A transaction whose commit does not wait for the disk: what it wrote survives the process
   * being killed at any moment, not a power cut or an operating-system crash in the second after
   * it (SQLite's `synchronous = NORMAL` in WAL mode for this one commit; PostgreSQL's
   * `synchronous_commit = off`). For what agents report (check-ins, a child site's client
   * states), written often and in bursts: a flush per commit held the site's one thread for up to
   * 150 ms on a busy disk, and every waiting check-in with it (docs/performance.md). Packages,
   * versions and everything a neighbour acts on keep the full flush.
   */
  relaxedTransaction<T>(fn: (store: Store) => Promise<T>): Promise<T> {
    if (this.db.isTransaction) return fn(this);
    if (this.dialect === 'postgres')
      return this.db.transaction().execute(async (trx) => {
        await sql`SET LOCAL synchronous_commit = off`.execute(trx);
        return fn(this.within(trx));
      });
    // SQLite cannot change it inside a transaction: on the one connection, around it.
    return this.db.connection().execute(async (conn) => {
      await sql`PRAGMA synchronous = NORMAL`.execute(conn);
      try {
        return await conn.transaction().execute((trx) => fn(this.within(trx)));
      } finally {
        await sql`PRAGMA synchronous = FULL`.execute(conn);
      }
    });
  }

  private within(trx: Transaction<Database>): Store {
    const tx = new Store(trx as unknown as Kysely<Database>, this.dialect, this.clock);
    tx.sealKey = this.sealKey;
    return tx;
  }

  // --- meta -------------------------------------------------------------------------------

  async getMeta(key: string): Promise<string | undefined> {
    const row = await this.db.selectFrom('meta').select('value').where('key', '=', key).executeTakeFirst();
    return row?.value;
  }

  async setMeta(key: string, value: string): Promise<void> {
    await this.db
      .insertInto('meta')
      .values({ key, value })
      .onConflict((oc) => oc.column('key').doUpdateSet({ value }))
      .execute();
  }

  /** Atomically increments a named counter and returns the new value (first call: 1). */
  /**
   * Records `key` once: true the first time, false when it was recorded already (atomic; used
   * for single-use tickets).
   */
  async claimOnce(key: string, value: string): Promise<boolean> {
    const r = await this.db
      .insertInto('meta')
      .values({ key, value })
      .onConflict((oc) => oc.column('key').doNothing())
      .executeTakeFirst();
    return Number(r.numInsertedOrUpdatedRows ?? 0) > 0;
  }

  async nextCounter(name: string): Promise<number> {
    const row = await this.db
      .insertInto('counters')
      .values({ name, value: 1 })
      .onConflict((oc) => oc.column('name').doUpdateSet({ value: sql`counters.value + 1` }))
      .returning('value')
      .executeTakeFirstOrThrow();
    return Number(row.value);
  }

  // --- tokens -----------------------------------------------------------------------------

  /** Creates a bearer token; the secret is returned once and only its hash is kept. */
  async createToken(role: TokenRole, name: string): Promise<{ id: string; secret: string }> {
    const id = crypto.randomBytes(6).toString('hex');
    const secret = `cas_${id}_${crypto.randomBytes(24).toString('base64url')}`;
    await this.db
      .insertInto('tokens')
      .values({ id, hash: hashToken(secret), role, name, created_at: this.clock().toISOString() })
      .execute();
    return { id, secret };
  }

  /** Records a token whose secret was made elsewhere (a peer credential handed over at join). */
  async insertTokenSecret(role: TokenRole, name: string, secret: string): Promise<string> {
    const id = crypto.randomBytes(6).toString('hex');
    await this.db
      .insertInto('tokens')
      .values({ id, hash: hashToken(secret), role, name, created_at: this.clock().toISOString() })
      .execute();
    return id;
  }

  async findToken(secret: string): Promise<TokenInfo | undefined> {
    const row = await this.db.selectFrom('tokens').selectAll().where('hash', '=', hashToken(secret)).executeTakeFirst();
    return row && { id: row.id, role: row.role as TokenRole, name: row.name, createdAt: row.created_at };
  }

  async listTokens(): Promise<TokenInfo[]> {
    const rows = await this.db.selectFrom('tokens').selectAll().orderBy('created_at').execute();
    return rows.map((r) => ({ id: r.id, role: r.role as TokenRole, name: r.name, createdAt: r.created_at }));
  }

  async revokeToken(id: string): Promise<boolean> {
    const r = await this.db.deleteFrom('tokens').where('id', '=', id).executeTakeFirst();
    return Number(r.numDeletedRows) > 0;
  }

  // --- join tokens and sites ---------------------------------------------------------------

  /** A one-time join token: the secret is returned once; only its hash is kept. */
  /** A one-time join token; `suffix` ends the secret (the issuing site's TLS pin, when it has one). */
  async createJoinToken(kind: 'site' | 'dp', ttlSeconds: number, suffix = ''): Promise<{ id: string; secret: string; expiresAt: string }> {
    const id = crypto.randomBytes(6).toString('hex');
    const secret = `casj_${kind}_${id}_${crypto.randomBytes(24).toString('base64url')}${suffix}`;
    const now = this.clock();
    const expiresAt = new Date(now.getTime() + ttlSeconds * 1000).toISOString();
    await this.db
      .insertInto('join_tokens')
      .values({
        id,
        hash: hashToken(secret),
        kind,
        expires_at: expiresAt,
        used_at: null,
        used_by: null,
        created_at: now.toISOString(),
        max_uses: 1,
        use_count: 0,
      })
      .execute();
    return { id, secret, expiresAt };
  }

  /**
   * Uses a join token once: atomically marks it used by `by`. Says why when it cannot:
   * unknown, already used, or expired.
   */
  async consumeJoinToken(secret: string, kind: 'site' | 'dp', by: string): Promise<'ok' | 'unknown' | 'used' | 'expired'> {
    const now = this.clock().toISOString();
    const r = await this.db
      .updateTable('join_tokens')
      .set({ used_at: now, used_by: by })
      .where('hash', '=', hashToken(secret))
      .where('kind', '=', kind)
      .where('used_at', 'is', null)
      .where('expires_at', '>', now)
      .executeTakeFirst();
    if (Number(r.numUpdatedRows) === 1) return 'ok';
    const row = await this.db.selectFrom('join_tokens').selectAll().where('hash', '=', hashToken(secret)).executeTakeFirst();
    if (!row || row.kind !== kind) return 'unknown';
    return row.used_at ? 'used' : 'expired';
  }

  /** Makes a used join token usable again (its join failed after using it). */
  async releaseJoinToken(secret: string): Promise<void> {
    await this.db.updateTable('join_tokens').set({ used_at: null, used_by: null }).where('hash', '=', hashToken(secret)).execute();
  }

  async getSite(code: string): Promise<SiteRow | undefined> {
    const r = await this.db.selectFrom('sites').selectAll().where('code', '=', code).executeTakeFirst();
    return r && this.site(r);
  }

  /** The sites this site knows (not DPs: see listDps). */
  async listSites(): Promise<SiteRow[]> {
    const rows = await this.db.selectFrom('sites').selectAll().where('relation', 'not in', DP_RELATIONS).orderBy('code').execute();
    return rows.map((r) => this.site(r));
  }

  /** The DPs this site knows: its own and those of the sites below it. */
  async listDps(): Promise<SiteRow[]> {
    const rows = await this.db.selectFrom('sites').selectAll().where('relation', 'in', DP_RELATIONS).orderBy('code').execute();
    return rows.map((r) => this.site(r));
  }

  /** Records what a DP last reported (or what a child site reported of a DP below it). */
  async setDpState(
    name: string,
    s: {
      freeBytes: number | null;
      totalBytes: number | null;
      held: { packageId: string; version: number }[];
      at: string;
      contentUrl?: string | null | undefined;
      release?: Release | null | undefined;
    },
  ): Promise<void> {
    await this.db
      .updateTable('sites')
      .set({
        free_bytes: s.freeBytes,
        total_bytes: s.totalBytes,
        held: JSON.stringify(s.held),
        state_at: s.at,
        ...(s.contentUrl !== undefined ? { content_url: s.contentUrl } : {}),
        ...(s.release !== undefined ? { release: s.release === null ? null : JSON.stringify(s.release) } : {}),
      })
      .where('code', '=', name)
      .execute();
  }

  /** A DP's or a site's release as this site records it (its upgrade included). */
  async setRelease(code: string, release: Release | null): Promise<void> {
    await this.db
      .updateTable('sites')
      .set({ release: release === null ? null : JSON.stringify(release) })
      .where('code', '=', code)
      .execute();
  }

  /** Contact as another site saw it (for sites and DPs further below). */
  async setContact(code: string, reachable: boolean | null, lastContact: string | null): Promise<void> {
    await this.db
      .updateTable('sites')
      .set({ reachable: reachable === null ? null : reachable ? 1 : 0, last_contact: lastContact })
      .where('code', '=', code)
      .execute();
  }

  async setSiteUrl(code: string, url: string): Promise<void> {
    await this.db.updateTable('sites').set({ url }).where('code', '=', code).execute();
  }

  async deleteSite(code: string): Promise<void> {
    await this.db.deleteFrom('sites').where('code', '=', code).execute();
  }

  /** Adds a site; a code already present is a conflict (codes are unique in the hierarchy). */
  async insertSite(
    s: Omit<
      SiteRow,
      'createdAt' | 'reachable' | 'lastContact' | 'freeBytes' | 'totalBytes' | 'held' | 'stateAt' | 'contentUrl' | 'release' | 'tlsPin'
    > & { tlsPin?: string | null | undefined },
  ): Promise<void> {
    const existing = await this.getSite(s.code);
    if (existing) {
      const what = DP_RELATIONS.includes(s.relation) ? 'DP name' : 'site code';
      throw fail('conflict', `${what} ${s.code} is already taken in this hierarchy (by ${existing.name})`);
    }
    await this.db
      .insertInto('sites')
      .values({
        code: s.code,
        name: s.name,
        parent: s.parent,
        relation: s.relation,
        url: s.url,
        key_id: s.keyId,
        public_key: s.publicKey,
        certificate: s.certificate,
        outbound_token: this.seal(s.outboundToken),
        tls_pin: s.tlsPin ?? null,
        reachable: null,
        last_contact: null,
        created_at: this.clock().toISOString(),
      })
      .execute();
  }

  async setSiteContact(code: string, reachable: boolean): Promise<void> {
    await this.db
      .updateTable('sites')
      .set(reachable ? { reachable: 1, last_contact: this.clock().toISOString() } : { reachable: 0 })
      .where('code', '=', code)
      .execute();
  }

  // --- routes -------------------------------------------------------------------------------

  async getRoute(child: string): Promise<RouteRow | undefined> {
    const r = await this.db.selectFrom('routes').selectAll().where('child', '=', child).executeTakeFirst();
    return (
      r && {
        child: r.child,
        rate: r.rate === null ? null : Number(r.rate),
        concurrency: r.concurrency,
        schedule: r.schedule,
        updatedAt: r.updated_at,
      }
    );
  }

  async listRoutes(): Promise<RouteRow[]> {
    const rows = await this.db.selectFrom('routes').selectAll().orderBy('child').execute();
    return rows.map((r) => ({
      child: r.child,
      rate: r.rate === null ? null : Number(r.rate),
      concurrency: r.concurrency,
      schedule: r.schedule,
      updatedAt: r.updated_at,
    }));
  }

  async putRoute(r: Omit<RouteRow, 'updatedAt'>): Promise<void> {
    const now = this.clock().toISOString();
    await this.db
      .insertInto('routes')
      .values({ child: r.child, rate: r.rate, concurrency: r.concurrency, schedule: r.schedule, updated_at: now })
      .onConflict((oc) =>
        oc.column('child').doUpdateSet({ rate: r.rate, concurrency: r.concurrency, schedule: r.schedule, updated_at: now }),
      )
      .execute();
  }

  // --- packages ---------------------------------------------------------------------------

  async getPackage(id: string): Promise<PackageRow | undefined> {
    const r = await this.db.selectFrom('packages').selectAll().where('id', '=', id).executeTakeFirst();
    return r && toPackage(r);
  }

  async listPackages(): Promise<PackageRow[]> {
    const rows = await this.db.selectFrom('packages').selectAll().orderBy('id').execute();
    return rows.map(toPackage);
  }

  async getVersion(packageId: string, version: number): Promise<VersionRow | undefined> {
    const r = await this.db
      .selectFrom('package_versions')
      .selectAll()
      .where('package_id', '=', packageId)
      .where('version', '=', version)
      .executeTakeFirst();
    return r && toVersion(r);
  }

  async listVersions(packageId: string): Promise<VersionRow[]> {
    const rows = await this.db.selectFrom('package_versions').selectAll().where('package_id', '=', packageId).orderBy('version').execute();
    return rows.map(toVersion);
  }

  /**
   * Records a new package (version 1) or the next version of an existing one. Atomic, and safe
   * when several site servers share the database: the package row's last version number only
   * moves from N-1 to N (a conditional write), so of racing writers of one version exactly one
   * succeeds and the others get `conflict`. Version numbers only move forward: the next version
   * is one more than the highest ever given out, even when that version has been deleted.
   */
  async insertVersion(p: { id: string; name: string; priority: Priority }, v: Omit<VersionRow, 'packageId' | 'createdAt'>): Promise<void> {
    if (!this.db.isTransaction) return this.transaction((s) => s.insertVersion(p, v));
    const now = this.clock().toISOString();
    if (v.version === 1) {
      const r = await this.db
        .insertInto('packages')
        .values({
          id: p.id,
          name: p.name,
          priority: p.priority,
          latest_version: 1,
          last_version: 1,
          created_at: now,
          updated_at: now,
        })
        .onConflict((oc) => oc.column('id').doNothing())
        .executeTakeFirst();
      if (Number(r.numInsertedOrUpdatedRows ?? 0) === 0) throw notNext(p.id, v.version, await this.getPackage(p.id));
    } else {
      const r = await this.db
        .updateTable('packages')
        .set({ name: p.name, priority: p.priority, latest_version: v.version, last_version: v.version, updated_at: now })
        .where('id', '=', p.id)
        .where('last_version', '=', v.version - 1)
        .executeTakeFirst();
      if (Number(r.numUpdatedRows) === 0) throw notNext(p.id, v.version, await this.getPackage(p.id));
    }
    await this.db
      .insertInto('package_versions')
      .values(versionRow(p.id, v, now))
      .execute();
  }

  /**
   * Deletes one version's row; the package row goes with its last version. Latest moves back to
   * the highest version left, but the last number given out stays: a number is never reused.
   */
  async deleteVersion(packageId: string, version: number): Promise<void> {
    await this.db.deleteFrom('package_versions').where('package_id', '=', packageId).where('version', '=', version).execute();
    const left = await this.listVersions(packageId);
    if (left.length === 0) await this.db.deleteFrom('packages').where('id', '=', packageId).execute();
    else {
      const latest = left[left.length - 1] as VersionRow;
      await this.db.updateTable('packages').set({ latest_version: latest.version }).where('id', '=', packageId).execute();
    }
  }

  // --- chunks -----------------------------------------------------------------------------

  /** Which of these digests the library holds (a row exists: its file is durable). */
  async haveChunks(digests: readonly string[]): Promise<Set<string>> {
    const have = new Set<string>();
    for (const b of batches([...new Set(digests)])) {
      const rows = await this.db.selectFrom('chunks').select('digest').where('digest', 'in', b).execute();
      for (const r of rows) have.add(r.digest);
    }
    return have;
  }

  async getChunks(digests: readonly string[]): Promise<Map<string, ChunkRow>> {
    const out = new Map<string, ChunkRow>();
    for (const b of batches([...new Set(digests)])) {
      const rows = await this.db.selectFrom('chunks').selectAll().where('digest', 'in', b).execute();
      for (const r of rows) out.set(r.digest, toChunk(r));
    }
    return out;
  }

  /** Adds chunk rows; a digest already present is left as it is. Returns how many were new. */
  async insertChunks(rows: readonly Omit<ChunkRow, 'refs'>[]): Promise<number> {
    const now = this.clock().toISOString();
    if (rows.length > 200 && this.db.isTransaction === false) return this.transaction((tx) => tx.insertChunks(rows));
    let inserted = 0;
    for (const b of batches(rows, 200)) {
      const [r] = await this.db
        .insertInto('chunks')
        .values(
          b.map((r) => ({ digest: r.digest, size: r.size, stored_size: r.storedSize, literal_bytes: r.literalBytes, created_at: now })),
        )
        .onConflict((oc) => oc.column('digest').doNothing())
        .execute();
      inserted += Number(r?.numInsertedOrUpdatedRows ?? 0);
    }
    return inserted;
  }

  /**
   * Adds `delta` to the reference count of each digest (each digest once per call). Returns how
   * many of them have a row: fewer than the distinct digests given when some are missing.
   */
  async addRefs(digests: Iterable<string>, delta: number): Promise<number> {
    let updated = 0;
    for (const b of batches([...new Set(digests)])) {
      const r = await this.db
        .updateTable('chunks')
        .set({ refs: sql`refs + ${delta}` })
        .where('digest', 'in', b)
        .executeTakeFirst();
      updated += Number(r.numUpdatedRows);
    }
    return updated;
  }

  /**
   * Takes one reference on each digest (each once) and returns the rows as they are after it: a
   * digest missing from the answer has no row; one whose `refs` is now 1 was unreferenced.
   */
  async takeRefs(digests: Iterable<string>): Promise<Map<string, ChunkRow>> {
    const out = new Map<string, ChunkRow>();
    for (const b of batches([...new Set(digests)])) {
      const rows = await this.db.updateTable('chunks').set({ refs: sql`refs + 1` }).where('digest', 'in', b).returningAll().execute();
      for (const r of rows) out.set(r.digest, toChunk(r));
    }
    return out;
  }

  /** Chunks no version references, recorded before `before` (so uploads in progress are spared). */
  async unreferencedChunks(before: string, limit = 10_000): Promise<ChunkRow[]> {
    const rows = await this.db
      .selectFrom('chunks')
      .selectAll()
      .where('refs', '<=', 0)
      .where('created_at', '<', before)
      .limit(limit)
      .execute();
    return rows.map(toChunk);
  }

  /** Deletes chunk rows that are still unreferenced; returns the digests deleted. */
  async deleteUnreferenced(digests: readonly string[]): Promise<string[]> {
    const out: string[] = [];
    for (const b of batches(digests)) {
      const rows = await this.db.deleteFrom('chunks').where('digest', 'in', b).where('refs', '<=', 0).returning('digest').execute();
      for (const r of rows) out.push(r.digest);
    }
    return out;
  }

  async chunkTotals(): Promise<{ chunks: number; bytes: number; storedBytes: number }> {
    const r = await this.db
      .selectFrom('chunks')
      .select((eb) => [
        eb.fn.countAll<number>().as('n'),
        eb.fn.coalesce(eb.fn.sum<number>('size'), sql<number>`0`).as('bytes'),
        eb.fn.coalesce(eb.fn.sum<number>('stored_size'), sql<number>`0`).as('stored'),
      ])
      .executeTakeFirstOrThrow();
    return { chunks: Number(r.n), bytes: Number(r.bytes), storedBytes: Number(r.stored) };
  }
}

/** A package_versions row: what the origin committed, or what a replica received (newBytes 0). */
export function versionRow(
  packageId: string,
  v: { version: number; manifestDigest: string; files: number; bytes: number; newBytes?: number },
  createdAt: string,
): Database['package_versions'] {
  return {
    package_id: packageId,
    version: v.version,
    manifest_digest: v.manifestDigest,
    files: v.files,
    bytes: v.bytes,
    new_bytes: v.newBytes ?? 0,
    created_at: createdAt,
  };
}

function toPackage(r: Database['packages']): PackageRow {
  return {
    id: r.id,
    name: r.name,
    priority: r.priority as Priority,
    latestVersion: r.latest_version,
    lastVersion: r.last_version,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

function notNext(id: string, version: number, existing: PackageRow | undefined) {
  if (!existing) return fail('conflict', `package ${id} does not exist yet, so its first version must be 1`);
  const next = existing.lastVersion + 1;
  if (version >= 1 && version < next)
    return fail('conflict', `package ${id}: version ${version} was already given out; the next is ${next}`);
  return fail('conflict', `package ${id}: version ${version} is not next; the next is ${next}`);
}

function toVersion(r: Database['package_versions']): VersionRow {
  return {
    packageId: r.package_id,
    version: r.version,
    manifestDigest: r.manifest_digest,
    files: r.files,
    bytes: Number(r.bytes),
    newBytes: Number(r.new_bytes),
    createdAt: r.created_at,
  };
}

function toChunk(r: Selectable<Database['chunks']>): ChunkRow {
  return { digest: r.digest, size: r.size, storedSize: r.stored_size, literalBytes: r.literal_bytes, refs: Number(r.refs) };
}

function toSite(r: Selectable<Database['sites']>): SiteRow {
  return {
    code: r.code,
    name: r.name,
    parent: r.parent,
    relation: r.relation as SiteRelation,
    url: r.url,
    keyId: r.key_id,
    publicKey: r.public_key,
    certificate: r.certificate,
    outboundToken: r.outbound_token,
    reachable: r.reachable === null ? null : Boolean(r.reachable),
    lastContact: r.last_contact,
    createdAt: r.created_at,
    freeBytes: r.free_bytes === null ? null : Number(r.free_bytes),
    totalBytes: r.total_bytes === null ? null : Number(r.total_bytes),
    held: r.held ? (JSON.parse(r.held) as { packageId: string; version: number }[]) : [],
    stateAt: r.state_at,
    contentUrl: r.content_url,
    release: r.release ? (JSON.parse(r.release) as Release) : null,
    tlsPin: r.tls_pin ?? null,
  };
}
