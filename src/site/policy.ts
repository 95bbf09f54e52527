import crypto from 'node:crypto';
import {
  type AdvertisementBody,
  type BoundaryBody,
  type ClientSettings,
  type CollectionBody,
  type DpAbove,
  type PolicyKind,
  type PolicyRecord,
  type PolicySet,
  SignedPolicy,
} from '../api/clients.js';
import { canonicalJson } from '../content/canonical.js';
import { verifyCertificate } from '../content/certificate.js';
import { signPolicy, verifyPolicy } from '../content/policy.js';
import { type Cidr, parseCidr } from '../core/cidr.js';
import { fail } from '../core/errors.js';
import { isRestarting } from '../core/release.js';
import { parseRule, type Rule } from '../core/rule.js';
import type { Schedule } from '../core/schedule.js';
import { SITE_CODE } from '../core/site.js';
import { parseWindow } from '../core/window.js';
import { listPolicy, policyFingerprint, putPolicy } from '../store/clients.js';
import { listKeys, listTargets, putKey } from '../store/distribution.js';
import { type SiteContext, sharedByProcesses } from './context.js';
import { type DpEntry, listAllDps } from './dps.js';
import { centralTrust } from './hierarchy.js';

/**
 * Policy: the collections, advertisements and boundaries that apply at this site. Each is a
 * record signed by the site that made it; a site holds its own and those of every site above
 * it, and hands them all to its children with each status answer. Every site and agent checks
 * each record against the keys it trusts (docs/clients.md).
 */

export interface Advertisement {
  body: AdvertisementBody;
  origin: string;
  signed: SignedPolicy;
  updatedAt: string;
}

export interface Snapshot {
  at: number;
  collections: Map<string, { body: CollectionBody; origin: string; rule: Rule | null; window: Schedule | null; updatedAt: string }>;
  advertisements: Map<string, Advertisement>;
  /** The advertisements of each collection (by its key). */
  adsByCollection: Map<string, Advertisement[]>;
  boundaries: { body: BoundaryBody; origin: string; cidr: Cidr }[];
  /** Per package, the versions its origin deleted (and when it last recorded one). */
  deletions: Map<string, { versions: Set<number>; at: string }>;
  /** DPs at and below this site, and those of the sites above (as the parent last said). */
  dps: Map<string, DpView>;
  /** The central site's code, the client cycle, and certificates looked up so far (per site). */
  central: string;
  cycleSeconds: number;
  /** The site's settings for its clients (cycle, download caps). */
  settings: ClientSettings;
  certificates: Map<string, unknown>;
}

export const DEFAULT_CYCLE_SECONDS = 3600;
export const DEFAULT_SLOT_TIMEOUT_SECONDS = 120;
export const DEFAULT_STALE_AFTER_SECONDS = 3600;

/** The site's settings for its clients, as kept in its meta table (absent: the defaults). */
async function readClientSettings(ctx: SiteContext): Promise<ClientSettings> {
  const num = async (k: string) => {
    const v = await ctx.store.getMeta(k);
    return v ? Number(v) : null;
  };
  return {
    clientCycleSeconds: (await num('clients.cycleSeconds')) || DEFAULT_CYCLE_SECONDS,
    downloadSlots: await num('clients.downloadSlots'),
    dpDownloadSlots: await num('clients.dpDownloadSlots'),
    clientRate: await num('clients.clientRate'),
    slotTimeoutSeconds: (await num('clients.slotTimeoutSeconds')) || DEFAULT_SLOT_TIMEOUT_SECONDS,
    staleAfterSeconds: (await num('freshness.staleAfterSeconds')) || DEFAULT_STALE_AFTER_SECONDS,
  };
}

export type DpView = DpAbove;

const SNAPSHOT_MS = 2000;
const snapshots = new WeakMap<SiteContext, Snapshot>();
const building = new WeakMap<SiteContext, Promise<Snapshot>>();
type PolicyPart = Pick<Snapshot, 'collections' | 'advertisements' | 'boundaries' | 'adsByCollection' | 'deletions'> & {
  fingerprint: string;
};
const parsedPolicy = new WeakMap<SiteContext, PolicyPart>();
/** Bumped by every invalidate: a rebuild begun before it does not become the view. */
const generations = new WeakMap<SiteContext, number>();

export const collectionKey = (name: string): string => name.toLowerCase();

/** Forgets the cached view (policy or DPs changed). */
export function invalidate(ctx: SiteContext): void {
  generations.set(ctx, (generations.get(ctx) ?? 0) + 1);
  snapshots.delete(ctx);
  building.delete(ctx);
  parsedPolicy.delete(ctx);
}

/**
 * What an administrator's command reads: on a site served by several processes another may
 * have changed the policy a moment ago (this process's view is up to two seconds old), so the
 * view is read afresh; with one process, changes made here already renewed it.
 */
export function currentSnapshot(ctx: SiteContext): Promise<Snapshot> {
  if (sharedByProcesses(ctx)) invalidate(ctx);
  return snapshot(ctx);
}

/**
 * What the poll path reads: policy parsed once and the DPs' holdings, cached for two seconds
 * (or until the policy changes here), so a check-in costs a few indexed reads.
 */
export async function snapshot(ctx: SiteContext): Promise<Snapshot> {
  const held = snapshots.get(ctx);
  if (held && Date.now() - held.at < SNAPSHOT_MS) return held;
  // One rebuild at a time. An aged view serves meanwhile (check-ins do not wait for the
  // rebuild's reads); after a change here (invalidate), everyone waits for the new one.
  let p = building.get(ctx);
  if (!p) {
    const mine: Promise<Snapshot> = build(ctx).finally(() => {
      if (building.get(ctx) === mine) building.delete(ctx);
    });
    p = mine;
    building.set(ctx, p);
    if (held) p.catch((err) => ctx.log.warn({ err: (err as Error).message }, 'rebuilding the policy view failed; the last one serves'));
  }
  return held ?? p;
}

/** The records parsed, again only when the table changed (its row count and newest change differ). */
async function policyPart(ctx: SiteContext): Promise<PolicyPart> {
  const fingerprint = await policyFingerprint(ctx.store);
  const held = parsedPolicy.get(ctx);
  if (held && held.fingerprint === fingerprint) return held;
  const s: PolicyPart = {
    fingerprint,
    collections: new Map(),
    advertisements: new Map(),
    boundaries: [],
    adsByCollection: new Map(),
    deletions: new Map(),
  };
  for (const row of await listPolicy(ctx.store)) {
    if (row.deleted) continue;
    const rec = (row.signed as SignedPolicy).record as PolicyRecord;
    if (rec.kind === 'collection') {
      let rule: Rule | null = null;
      try {
        rule = rec.body.rule ? parseRule(rec.body.rule) : null;
      } catch {
        rule = () => false;
      }
      let window: Schedule | null = null;
      try {
        window = rec.body.window ? parseWindow(rec.body.window.spec, rec.body.window.timeZone) : null;
      } catch {
        // a window that does not parse here (an unknown time zone) never opens: nothing runs outside it
        window = { timeZone: 'UTC', cells: new Array(168).fill('closed') };
      }
      s.collections.set(row.id, { body: rec.body, origin: rec.origin, rule, window, updatedAt: row.updatedAt });
    } else if (rec.kind === 'advertisement') {
      const ad = { body: rec.body, origin: rec.origin, signed: row.signed as SignedPolicy, updatedAt: row.updatedAt };
      s.advertisements.set(row.id, ad);
      const key = collectionKey(rec.body.collection);
      s.adsByCollection.set(key, [...(s.adsByCollection.get(key) ?? []), ad]);
    } else if (rec.kind === 'boundary') {
      try {
        s.boundaries.push({ body: rec.body, origin: rec.origin, cidr: parseCidr(rec.body.cidr) });
      } catch {
        // a record that does not parse applies to nobody
      }
    } else if (rec.kind === 'deletion') {
      s.deletions.set(rec.body.packageId, { versions: new Set(rec.body.versions), at: rec.at });
    }
  }
  parsedPolicy.set(ctx, s);
  return s;
}

async function build(ctx: SiteContext): Promise<Snapshot> {
  const generation = generations.get(ctx) ?? 0;
  const { fingerprint: _f, ...policy } = await policyPart(ctx);
  const s: Snapshot = {
    at: Date.now(),
    ...policy,
    dps: new Map(),
    central: (await centralTrust(ctx)).code,
    cycleSeconds: 0,
    settings: await readClientSettings(ctx),
    certificates: new Map(),
  };
  s.cycleSeconds = s.settings.clientCycleSeconds;
  for (const d of await listAllDps(ctx)) s.dps.set(d.name, dpView(d, false));
  // A version this site's sender installed on a DP counts at once, before the DP's next report.
  for (const t of await listTargets(ctx.store, { states: ['installed'] })) {
    const d = s.dps.get(t.site);
    if (d && !d.held.some((h) => h.packageId === t.packageId && h.version === t.version))
      d.held = [...d.held, { packageId: t.packageId, version: t.version }];
  }
  const above = await ctx.store.getMeta('policy.dpsAbove');
  if (above) for (const d of JSON.parse(above) as DpView[]) if (!s.dps.has(d.name)) s.dps.set(d.name, { ...d, above: true });
  if ((generations.get(ctx) ?? 0) === generation) snapshots.set(ctx, s);
  return s;
}

const dpView = (d: DpEntry, above: boolean): DpView => ({
  name: d.name,
  site: d.site,
  // Clients fetch where the DP's content is served to them (nginx, a CDN), else from the DP.
  url: d.contentUrl ?? d.url,
  held: d.held,
  // A DP restarting on a new release (or about to) is offered last: its clients use the others.
  state: d.reachable === false ? 'unreachable' : isRestarting(d.release?.upgrade?.state) ? 'upgrading' : 'online',
  above,
  // A content URL is another server (nginx, a CDN): the DP's own certificate is not its.
  tlsPin: d.contentUrl ? null : (d.tlsPin ?? null),
});

/**
 * Why a version may not be installed here: its origin deleted it (the deletion travels down
 * the tree as a signed record). Null: it may be.
 */
export async function deletedAtOrigin(ctx: SiteContext, packageId: string, version: number): Promise<string | null> {
  const d = (await snapshot(ctx)).deletions.get(packageId);
  if (!d?.versions.has(version)) return null;
  return `deleted at its origin, site ${packageId.slice(0, 3)} (recorded ${d.at}): not installed again here (an old parcel or offer cannot bring it back)`;
}

/** At a package's own site: its deleted versions are recorded, signed, for every site below. */
export async function recordDeletion(ctx: SiteContext, packageId: string, versions: readonly number[]): Promise<void> {
  const held = (await snapshot(ctx)).deletions.get(packageId)?.versions ?? new Set<number>();
  const all = [...new Set([...held, ...versions])].sort((a, b) => a - b);
  await makePolicy(ctx, 'deletion', packageId, { packageId, versions: all });
}

/** Makes (or changes, or deletes) a record of this site's own, signed with its key. */
export async function makePolicy<K extends PolicyKind>(
  ctx: SiteContext,
  kind: K,
  id: string,
  body: Extract<PolicyRecord, { kind: K }>['body'],
  deleted = false,
): Promise<void> {
  const held = (await listPolicy(ctx.store, kind)).find((r) => r.id === id);
  if (held && held.origin !== ctx.code)
    throw fail('forbidden', `${kind} ${id} was made at site ${held.origin}; change it there (it travels down to this site)`);
  const record = {
    kind,
    id,
    origin: ctx.code,
    revision: (held?.revision ?? 0) + 1,
    deleted,
    at: ctx.clock().toISOString(),
    body,
  } as PolicyRecord;
  const signed = signPolicy(ctx.key, record);
  await putPolicy(ctx.store, { kind, id, origin: ctx.code, revision: record.revision, deleted, signed });
  invalidate(ctx);
}

/** The certificates that vouch for the keys of these sites (none is needed for the central site). */
export async function certificatesOf(ctx: SiteContext, sites: Iterable<string>): Promise<unknown[]> {
  const snap = await snapshot(ctx);
  const out: unknown[] = [];
  for (const code of new Set(sites)) {
    if (code === snap.central) continue;
    if (!snap.certificates.has(code)) {
      let cert: string | null | undefined;
      if (code === ctx.code) cert = await ctx.store.getMeta('site.certificate');
      else
        cert =
          (await ctx.store.getSite(code))?.certificate ??
          (await listKeys(ctx.store)).find((k) => k.site === code && k.certificate)?.certificate;
      snap.certificates.set(code, cert ? JSON.parse(cert) : null);
    }
    const c = snap.certificates.get(code);
    if (c) out.push(c);
  }
  return out;
}

/** Every record this site holds, with what a child needs to check them, for a status answer. */
export async function policyForChild(ctx: SiteContext): Promise<PolicySet> {
  const rows = await listPolicy(ctx.store);
  const records = rows.map((r) => r.signed as SignedPolicy);
  const snap = await snapshot(ctx);
  // The DPs a child's clients may fall back to: this site's own, and those above it.
  const dpsAbove = [...snap.dps.values()].filter((d) => d.above || d.site === ctx.code).map((d) => ({ ...d, above: true }));
  const digest = crypto
    .createHash('sha256')
    .update(canonicalJson({ records: rows.map((r) => [r.kind, r.id, r.revision]), dpsAbove }))
    .digest('hex');
  return { digest, records, certificates: await certificatesOf(ctx, new Set(rows.map((r) => r.origin))), dpsAbove };
}

/**
 * Takes the records a parent handed down: each certificate is checked against the pinned
 * central key, each record against its origin's key; a record that fails is refused (and
 * reported), the others are kept when newer than what is held.
 */
export async function acceptPolicy(ctx: SiteContext, set: PolicySet, onRefused: (text: string) => Promise<void>): Promise<number> {
  const central = await centralTrust(ctx);
  for (const c of set.certificates) {
    try {
      const v = verifyCertificate(c, central.key);
      if (!SITE_CODE.test(v.code)) continue;
      await putKey(ctx.store, { keyId: v.keyId, site: v.code, publicKey: v.publicKey, certificate: JSON.stringify(c) });
      if (!ctx.trusted.some((t) => t.keyId === v.keyId)) ctx.trusted.push(v.trusted);
    } catch (e) {
      await onRefused(`a certificate from the parent was refused: ${(e as Error).message}`);
    }
  }
  let changed = 0;
  for (const raw of set.records) {
    const parsed = SignedPolicy.safeParse(raw);
    let rec: PolicyRecord;
    try {
      if (!parsed.success) throw fail('bad_signature', 'a policy record from the parent is malformed');
      rec = verifyPolicy(parsed.data, ctx.trusted);
    } catch (e) {
      await onRefused(`a policy record from the parent was refused: ${(e as Error).message}`);
      continue;
    }
    // This site's own records are made here, never replaced from above.
    if (rec.origin === ctx.code) continue;
    if (
      await putPolicy(ctx.store, {
        kind: rec.kind,
        id: rec.id,
        origin: rec.origin,
        revision: rec.revision,
        deleted: rec.deleted,
        signed: raw,
      })
    )
      changed++;
  }
  await ctx.store.setMeta('policy.dpsAbove', JSON.stringify(set.dpsAbove.slice(0, 10_000)));
  await ctx.store.setMeta('policy.digest', set.digest);
  invalidate(ctx);
  return changed;
}

/** Where a client falls in a rollout, in [0, 1): the first 48 bits of SHA-256 over the rollout's and the client's IDs. */
export function rolloutBucket(rolloutId: string, clientId: string): number {
  const h = crypto.createHash('sha256').update(`${rolloutId}\n${clientId}`).digest();
  return h.readUIntBE(0, 6) / 2 ** 48;
}
