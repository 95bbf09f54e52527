import crypto from 'node:crypto';
import type {
  AdvertisementBody,
  AgentJoinTokenAnswer,
  AgentReport,
  AgentVersions,
  AllowedDp,
  CheckinAnswer,
  CheckinRequest,
  ClientEntry,
  ClientSettings,
  ClientSettingsRequest,
  ClientSync,
  CollectionBody,
  EnrolAnswer,
  EnrolRequest,
  Inventory,
  Offer,
} from '../api/clients.js';
import { type Cidr, cidrHolds, parseAddress, parseCidr } from '../core/cidr.js';
import { compareAgentVersions, formatClientId } from '../core/client.js';
import { fail } from '../core/errors.js';
import { type Wave, waveOf, waveText } from '../core/rollout.js';
import type { RuleInventory } from '../core/rule.js';
import type { Schedule } from '../core/schedule.js';
import { windowState } from '../core/window.js';
import { readSiteConfig } from '../lib/site-config.js';
import {
  type ClientRow,
  clientByCredential,
  collectionsOf,
  createAgentJoinToken,
  getClient,
  insertClient,
  listClientStates,
  listClients,
  noteClientsSeen,
  putClientStates,
  setMemberships,
  updateClient,
  upsertRemoteClient,
  useAgentJoinToken,
} from '../store/clients.js';
import { groupCommit } from '../store/group-commit.js';
import type { Store } from '../store/store.js';
import type { SiteContext } from './context.js';
import { centralTrust, tlsSuffix } from './hierarchy.js';
import { emit } from './messages.js';
import {
  type Advertisement,
  certificatesOf,
  collectionKey,
  type DpView,
  invalidate,
  rolloutBucket,
  type Snapshot,
  snapshot,
} from './policy.js';
import { noteSlotReports } from './slots.js';

/**
 * Clients: enrolment with a many-use join token, the agent's check-in (inventory, reports,
 * offers), which DPs a client may use (boundaries), collection membership, and the clients
 * of the sites below as they report up. See docs/clients.md.
 */

/** The trusted proxies of each data folder, read again at most every few seconds (`site set --trusted-proxy`). */
const proxiesRead = new Map<string, { at: number; cidrs: Cidr[] }>();

/**
 * The address a client called from: the socket's peer, or, when that is a trusted proxy (a
 * load balancer in front of the site's processes), the last address in X-Forwarded-For that is
 * not one. Without trusted proxies the header is ignored: anyone could write it.
 */
export function clientAddress(ctx: SiteContext, peer: string | undefined, forwardedFor: string | undefined): string | undefined {
  if (!peer || !ctx.process) return peer;
  const dir = ctx.process.dataDir;
  let read = proxiesRead.get(dir);
  if (!read || Date.now() - read.at > 5000) {
    read = { at: Date.now(), cidrs: (readSiteConfig(dir).trustedProxies ?? []).map((c) => parseCidr(c)) };
    proxiesRead.set(dir, read);
  }
  const trusted = (a: string) => read.cidrs.some((c) => cidrHolds(c, a.replace(/^::ffff:/, '')));
  if (read.cidrs.length === 0 || !trusted(peer) || !forwardedFor) return peer;
  const hops = forwardedFor
    .split(',')
    .map((h) => h.trim())
    .filter(Boolean);
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hops[i] as string;
    if (parseAddress(hop) === undefined) return peer;
    if (!trusted(hop)) return hop;
  }
  return hops[0] ?? peer;
}

export async function clientCycleSeconds(ctx: SiteContext): Promise<number> {
  return (await snapshot(ctx)).cycleSeconds;
}

export async function clientSettings(ctx: SiteContext): Promise<ClientSettings> {
  return (await snapshot(ctx)).settings;
}

/** Changes the settings given; null removes a cap. */
export async function setClientSettings(ctx: SiteContext, req: ClientSettingsRequest): Promise<ClientSettings> {
  const keys: [keyof ClientSettingsRequest, string][] = [
    ['clientCycleSeconds', 'clients.cycleSeconds'],
    ['downloadSlots', 'clients.downloadSlots'],
    ['dpDownloadSlots', 'clients.dpDownloadSlots'],
    ['clientRate', 'clients.clientRate'],
    ['slotTimeoutSeconds', 'clients.slotTimeoutSeconds'],
    ['staleAfterSeconds', 'freshness.staleAfterSeconds'],
  ];
  for (const [k, meta] of keys) {
    const v = req[k];
    if (v === undefined) continue;
    await ctx.store.setMeta(meta, v === null ? '' : String(v));
  }
  invalidate(ctx);
  return clientSettings(ctx);
}

/** The fingerprint half of the central key id: an agent join token ends with it. */
const fingerprintOf = (keyId: string): string => keyId.split(':')[1] ?? '';

export async function issueAgentJoinToken(ctx: SiteContext, uses: number, ttlSeconds: number): Promise<AgentJoinTokenAnswer> {
  const central = await centralTrust(ctx);
  const t = await createAgentJoinToken(ctx.store, uses, ttlSeconds, `${fingerprintOf(central.key.keyId)}${tlsSuffix(ctx)}`);
  return { token: t.secret, uses, expiresAt: t.expiresAt, site: ctx.code };
}

export const ruleInventory = (c: { id: string; site: string; inventory: unknown }): RuleInventory => {
  const inv = c.inventory as Inventory;
  return {
    id: c.id,
    site: c.site,
    hostname: inv.hostname,
    os: inv.os,
    arch: inv.arch,
    version: inv.version,
    addresses: inv.addresses,
    freeDisk: inv.freeDisk,
    linkSpeed: inv.linkSpeed,
  };
};

/**
 * Which collections hold a client: static members, rule matches, members of included
 * collections, less members of excluded ones (include and exclude may nest; a loop counts as
 * not a member).
 */
export function memberships(snap: Snapshot, client: RuleInventory): string[] {
  const memo = new Map<string, boolean>();
  const visit = (key: string, stack: Set<string>): boolean => {
    const known = memo.get(key);
    if (known !== undefined) return known;
    const c = snap.collections.get(key);
    if (!c || stack.has(key)) return false;
    stack.add(key);
    let inside = c.body.clients.includes(client.id) || c.rule?.(client) || c.body.include.some((i) => visit(collectionKey(i), stack));
    if (inside && c.body.exclude.some((x) => visit(collectionKey(x), stack))) inside = false;
    stack.delete(key);
    memo.set(key, inside);
    return inside;
  };
  return [...snap.collections.keys()].filter((k) => visit(k, new Set()));
}

/**
 * The DPs a client may use, in order: those named by the boundaries holding one of its
 * addresses, most specific first (a boundary without --dp names every DP of its site). A site
 * without boundaries lets its clients use every DP of the site. `fallback` adds the other DPs
 * of its site, then those of the sites above.
 */
export function allowedDps(
  snap: Snapshot,
  site: string,
  addresses: readonly string[],
  fallback: boolean,
): { boundary: string | null; dps: (DpView & { why: string; rank: number })[] } {
  const ofSite = [...snap.dps.values()].filter((d) => d.site === site && !d.above && d.url);
  const mine = snap.boundaries.filter((b) => b.body.site === site);
  const out: (DpView & { why: string; rank: number })[] = [];
  const add = (d: DpView | undefined, why: string, rank: number) => {
    if (!d?.url || out.some((o) => o.name === d.name)) return;
    // A DP restarting on a new release comes after the others of its rank.
    if (d.state === 'upgrading') out.push({ ...d, why: `${why}; restarting on a new release, so after the others`, rank: rank + 50 });
    else out.push({ ...d, why, rank });
  };
  let boundary: string | null = null;
  if (mine.length === 0) {
    for (const d of ofSite) add(d, `site ${site} has no boundaries: every DP of the site serves its clients`, 0);
  } else {
    const holding = mine.filter((b) => addresses.some((a) => cidrHolds(b.cidr, a))).sort((a, b) => b.cidr.bits - a.cidr.bits);
    boundary = holding[0]?.body.cidr ?? null;
    holding.forEach((b, rank) => {
      if (b.body.dps.length === 0) for (const d of ofSite) add(d, `boundary ${b.body.cidr}`, rank);
      else for (const n of b.body.dps) add(snap.dps.get(n), `boundary ${b.body.cidr}`, rank);
    });
  }
  if (fallback) {
    for (const d of ofSite) add(d, `fallback: another DP of site ${site}`, 100);
    for (const d of snap.dps.values()) if (d.above) add(d, `fallback: a DP of site ${d.site}, above`, 200);
  }
  return { boundary, dps: out };
}

/** Where the client's addresses put it, for the client row. */
function placement(snap: Snapshot, site: string, inv: Inventory): { boundary: string | null; dps: string[] } {
  const a = allowedDps(snap, site, inv.addresses, false);
  return { boundary: a.boundary, dps: a.dps.map((d) => d.name) };
}

/** An agent enrols: the join token is spent once, the client gets an ID and a credential of its own. */
export async function enrol(ctx: SiteContext, req: EnrolRequest, peerAddress: string | undefined): Promise<EnrolAnswer> {
  const inventory = withPeerAddress(req.inventory, peerAddress);
  const snap = await snapshot(ctx);
  const place = placement(snap, ctx.code, inventory);
  // One transaction (one flush to disk): the token's use, the ID, the client and its collections.
  const { id, credential } = await ctx.store.transaction(async (tx) => {
    const used = await useAgentJoinToken(tx, req.token);
    if (used !== 'ok')
      throw fail(
        'unauthorized',
        {
          unknown: 'the join token is not valid at this site (make one with "cascade agent join-token")',
          exhausted: 'the join token has been used as many times as it allows; make another with "cascade agent join-token --uses N"',
          expired: 'the join token has expired; make another with "cascade agent join-token"',
        }[used],
      );
    const id = formatClientId(ctx.code, await tx.nextCounter('client'));
    const credential = `casc_${id}_${crypto.randomBytes(24).toString('base64url')}`;
    await insertClient(tx, { id, site: ctx.code, credential, inventory, ...place });
    await setMemberships(tx, id, memberships(snap, ruleInventory({ id, site: ctx.code, inventory })));
    return { id, credential };
  });
  const central = await centralTrust(ctx);
  return {
    client: id,
    site: ctx.code,
    credential,
    central: { code: central.code, keyId: central.key.keyId, publicKey: central.key.publicKeyPem },
    cycleSeconds: await clientCycleSeconds(ctx),
  };
}

/** The address the site saw the agent call from belongs to its inventory too (first, as it is the one that routes). */
function withPeerAddress(inv: Inventory, peer: string | undefined): Inventory {
  const a = peer?.replace(/^::ffff:/, '');
  if (!a || inv.addresses.includes(a)) return inv;
  return { ...inv, addresses: [a, ...inv.addresses].slice(0, 64) };
}

/** The client a credential belongs to; unauthorized, saying why, otherwise. */
export async function clientOf(ctx: SiteContext, credential: string): Promise<ClientRow> {
  const c = await clientByCredential(ctx.store, credential);
  if (!c) throw fail('unauthorized', 'this client credential is not known at this site; enrol again with "cascade agent init"');
  if (c.revoked) throw fail('unauthorized', `client ${c.id} has been revoked at site ${ctx.code}; enrol again with a new join token`);
  return c;
}

const isoMs = (s: string | null | undefined): number => (s ? Date.parse(s) : Number.NaN);

/** The version an advertisement offers a client: pinned, or the newest one of its DPs holds. */
export function offeredVersion(ad: { packageId: string; version: number | null }, dps: readonly DpView[]): number | null {
  let best: number | null = null;
  for (const d of dps)
    for (const h of d.held)
      if (h.packageId === ad.packageId && (ad.version === null ? best === null || h.version > best : h.version === ad.version))
        best = h.version;
  return best;
}

/**
 * When each client was last seen, kept in memory (to the second) and written about every second
 * in slices of a hundred rows with a turn of the event loop between them, on SQLite through the
 * connection that does not fsync (RelaxedWriter in store/db.ts): a check-in that changes nothing
 * writes nothing itself, and no poll waits behind one long write of every client seen lately.
 */
interface SeenBuffer {
  times: Map<string, string>;
  since: number;
  flushing?: Promise<void>;
}
const seen = new WeakMap<SiteContext, SeenBuffer>();
const SEEN_FLUSH_MS = 1000;
const SEEN_SLICE = 100;

function noteSeen(ctx: SiteContext, id: string, at: Date): SeenBuffer {
  let s = seen.get(ctx);
  if (!s) {
    s = { times: new Map(), since: Date.now() };
    seen.set(ctx, s);
  }
  s.times.set(id, `${at.toISOString().slice(0, 19)}.000Z`);
  return s;
}

/** Writes the buffered last-seen times (the site's report timer calls this too); one flush at a time. */
export function flushSeen(ctx: SiteContext): Promise<void> {
  const s = seen.get(ctx);
  if (!s) return Promise.resolve();
  if (s.flushing) return s.flushing;
  if (s.times.size === 0) return Promise.resolve();
  const byTime = new Map<string, string[]>();
  for (const [id, at] of s.times) {
    const ids = byTime.get(at);
    if (ids) ids.push(id);
    else byTime.set(at, [id]);
  }
  s.times.clear();
  s.since = Date.now();
  const slices: { at: string; ids: string[] }[] = [];
  for (const [at, ids] of byTime) for (let i = 0; i < ids.length; i += SEEN_SLICE) slices.push({ at, ids: ids.slice(i, i + SEEN_SLICE) });
  s.flushing = (async () => {
    try {
      for (const [n, { at, ids }] of slices.entries()) {
        if (!(await noteClientsSeen(ctx.store, ids, at))) {
          // The database is busy (a long transaction): the rest waits for the next flush.
          for (const rest of slices.slice(n)) for (const id of rest.ids) if (!s.times.has(id)) s.times.set(id, rest.at);
          return;
        }
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    } finally {
      s.flushing = undefined;
    }
  })();
  return s.flushing;
}

/** Whether a client whose collections are `member` (keys) may act on the advertisement now. */
export function releasedTo(ad: AdvertisementBody, clientId: string, member: ReadonlySet<string>): { ok: boolean; wave: number } {
  const r = ad.rollout;
  if (!r) return { ok: true, wave: 0 };
  const wave = waveOf(rolloutBucket(ad.id, clientId), r.waves, (name) => member.has(collectionKey(name)));
  return { ok: !r.paused && wave < r.released, wave };
}

/** For `why`: where a client stands in a rollout, in words. */
export function rolloutReason(ad: AdvertisementBody, clientId: string, member: ReadonlySet<string>): { ok: boolean; text: string } | null {
  const r = ad.rollout;
  if (!r) return null;
  const { ok, wave } = releasedTo(ad, clientId, member);
  const w = `wave ${wave + 1} of ${r.waves.length} (${waveText(r.waves[wave] as Wave)})`;
  if (r.paused)
    return {
      ok: false,
      text: `in ${w} of a rollout that is paused, halted or cancelled ("cascade rollout show ${ad.id}" at site ${ad.id.slice(0, 3)})`,
    };
  return ok ? { ok, text: `in ${w}, released` } : { ok, text: `in ${w}: ${r.released} of ${r.waves.length} waves released so far` };
}

/**
 * When a client's turn in an agent upgrade comes: the advertisement's available time plus the
 * client's stable share (a hash of its ID) of the spread; for other advertisements, available.
 */
export function upgradeTurn(ad: AdvertisementBody, clientId: string): number {
  const u = ad.agentUpgrade;
  const from = isoMs(ad.available);
  if (!u) return from;
  return from + Math.floor(rolloutBucket(`${ad.id}\n${u.version}`, clientId) * u.spreadSeconds * 1000);
}

/**
 * Of the agent upgrades a client's collections hold (a site and a site above may each have
 * published one), only the one with the newest agent version applies.
 */
export function agentUpgradeOf(ads: readonly Advertisement[]): Advertisement | undefined {
  let best: Advertisement | undefined;
  for (const a of ads) {
    const u = a.body.agentUpgrade;
    if (!u || !a.body.enabled) continue;
    if (!best || compareAgentVersions(u.version, best.body.agentUpgrade?.version ?? '0.0.0') > 0) best = a;
  }
  return best;
}

/** The check-in: inventory kept (memberships re-evaluated when it changed), reports stored, offers computed. */
export async function checkin(
  ctx: SiteContext,
  client: ClientRow,
  req: CheckinRequest,
  peerAddress: string | undefined,
): Promise<CheckinAnswer> {
  const now = ctx.clock();
  const snap = await snapshot(ctx);
  let c = client;
  let buffered: SeenBuffer | undefined;
  let changed: { inventory: Inventory; boundary: string | null; dps: string[] } | null = null;
  if (req.inventory) {
    const inventory = withPeerAddress(req.inventory, peerAddress);
    if (JSON.stringify(inventory) !== JSON.stringify(client.inventory)) {
      changed = { inventory, ...placement(snap, ctx.code, inventory) };
      c = { ...client, ...changed };
    } else buffered = noteSeen(ctx, client.id, now);
  } else buffered = noteSeen(ctx, client.id, now);
  // What the check-in changes is written in one transaction, with those of the check-ins that
  // arrive meanwhile (group commit): one flush to disk for a burst, not one per row.
  if (changed || req.reports.length > 0)
    await groupCommit(ctx.store).run(async (tx) => {
      if (changed) {
        await updateClient(tx, client.id, { ...changed, lastSeen: now.toISOString() });
        await setMemberships(tx, client.id, memberships(snap, ruleInventory(c)));
      }
      if (req.reports.length > 0)
        await putClientStates(
          tx,
          req.reports.map((r) => ({ ...r, client: client.id })),
        );
    });
  // Flushed in the background; a failed write is logged, and each client's next check-in notes it again.
  if (buffered && !buffered.flushing && Date.now() - buffered.since > SEEN_FLUSH_MS)
    flushSeen(ctx).catch((err) => ctx.log.warn({ err: (err as Error).message }, 'writing last-seen times failed'));
  // Agents ask for slots whenever downloads are capped (a shared rate too): their reports keep and free them.
  if (capped(snap.settings)) noteSlotReports(ctx, client.id, req.reports);
  for (const p of req.problems)
    await emit(ctx, {
      component: 'agent',
      severity: 'error',
      code: 'chunk_mismatch_at_dp',
      text: `client ${client.id} (${(c.inventory as Inventory).hostname}): DP ${p.dp} served chunk ${p.chunk} of ${p.file} in ${p.packageId} version ${p.version} that does not match the signed manifest (${p.text}); the agent used another DP. Run "cascade validate ${p.packageId} --repair" for that DP.`,
      packageId: p.packageId,
    });

  const member = new Set(await collectionsOf(ctx.store, client.id));
  const offers: Offer[] = [];
  const cycle = snap.cycleSeconds;
  let next = cycle;
  const origins = new Set<string>();
  const mine = [...new Set([...member].flatMap((m) => snap.adsByCollection.get(m) ?? []))];
  const upgrade = agentUpgradeOf(mine);
  for (const ad of mine) {
    const b = ad.body;
    if (!b.enabled) continue;
    if (b.agentUpgrade) {
      // One agent upgrade, not to a client already running its version, each client at its turn.
      if (ad !== upgrade || (c.inventory as Inventory).version === b.agentUpgrade.version) continue;
      const turn = upgradeTurn(b, client.id);
      if (turn > now.getTime()) {
        next = Math.min(next, Math.ceil((turn - now.getTime()) / 1000));
        continue;
      }
    }
    const from = isoMs(b.available);
    if (from > now.getTime()) {
      next = Math.min(next, Math.ceil((from - now.getTime()) / 1000));
      continue;
    }
    if (b.expires && isoMs(b.expires) <= now.getTime()) continue;
    for (const m of b.mandatory) {
      const t = isoMs(m);
      if (t > now.getTime()) next = Math.min(next, Math.ceil((t - now.getTime()) / 1000));
    }
    if (!releasedTo(b, client.id, member).ok) continue;
    const allowed = allowedDps(snap, ctx.code, (c.inventory as Inventory).addresses, b.fallback).dps;
    const version = offeredVersion(b, allowed);
    if (version === null) continue;
    const dps: AllowedDp[] = allowed
      .filter((d) => d.held.some((h) => h.packageId === b.packageId && h.version === version))
      .map((d) => ({ name: d.name, url: d.url as string, why: d.why, rank: d.rank, tlsPin: d.tlsPin ?? null }));
    offers.push({ advertisement: ad.signed, version, dps });
    origins.add(ad.origin);
    origins.add(b.packageId.slice(0, 3));
  }
  const window = offers.length > 0 ? clientWindow(snap, member, now) : undefined;
  if (window?.opensAt) next = Math.min(next, Math.max(1, Math.ceil((Date.parse(window.opensAt) - now.getTime()) / 1000)));
  return {
    client: client.id,
    site: ctx.code,
    nextCheckinSeconds: Math.max(1, next),
    offers,
    ...(window ? { window } : {}),
    certificates: await certificatesOf(ctx, origins),
    ...(capped(snap.settings) ? { downloadSlots: true } : {}),
  };
}

/**
 * The maintenance windows that hold for a client: the union of its collections' (any of them
 * open lets a mandatory run start). Undefined when none of its collections has one.
 */
export function clientWindow(snap: Snapshot, member: ReadonlySet<string>, now: Date): CheckinAnswer['window'] {
  const own = [...member].map((k) => snap.collections.get(k)).filter((c) => c?.window) as {
    body: CollectionBody;
    window: Schedule;
  }[];
  if (own.length === 0) return undefined;
  const st = windowState(
    own.map((c) => c.window),
    now,
  );
  return {
    open: st.open,
    closesAt: st.closesAt?.toISOString() ?? null,
    opensAt: st.opensAt?.toISOString() ?? null,
    text: own.map((c) => `"${c.body.window?.spec}" (${c.body.window?.timeZone}) of "${c.body.name}"`).join(', '),
  };
}

const capped = (s: ClientSettings) => s.downloadSlots !== null || s.dpDownloadSlots !== null || s.clientRate !== null;

export async function clientEntries(ctx: SiteContext): Promise<ClientEntry[]> {
  const all = await listClients(ctx.store);
  const out: ClientEntry[] = [];
  for (const c of all) out.push(entryOf(c, await collectionsOf(ctx.store, c.id)));
  return out;
}

function entryOf(c: ClientRow, collections: string[]): ClientEntry {
  return {
    id: c.id,
    site: c.site,
    inventory: c.inventory as Inventory,
    boundary: c.boundary,
    dps: c.dps,
    enrolledAt: c.enrolledAt,
    lastSeen: c.lastSeen,
    revoked: c.revoked,
    collections,
  };
}

/** How many clients (not revoked) run each agent version, per site, at and below this one. */
export async function agentVersions(ctx: SiteContext): Promise<AgentVersions> {
  const count = new Map<string, { site: string; version: string; clients: number }>();
  for (const c of await listClients(ctx.store)) {
    if (c.revoked) continue;
    const version = (c.inventory as Inventory).version;
    const key = `${c.site}\n${version}`;
    const held = count.get(key) ?? { site: c.site, version, clients: 0 };
    held.clients++;
    count.set(key, held);
  }
  const versions = [...count.values()].sort(
    (a, b) => a.site.localeCompare(b.site) || b.version.localeCompare(a.version, undefined, { numeric: true }),
  );
  return { versions };
}

export async function clientEntry(ctx: SiteContext, id: string): Promise<ClientEntry> {
  const c = await getClient(ctx.store, id);
  if (!c) throw fail('not_found', `no client ${id} at or below site ${ctx.code}`);
  return entryOf(c, await collectionsOf(ctx.store, id));
}

/** Refuses the client's credential from now on (only at the site it polls). */
export async function revokeClient(ctx: SiteContext, id: string): Promise<ClientEntry> {
  const c = await getClient(ctx.store, id);
  if (!c) throw fail('not_found', `no client ${id} at or below site ${ctx.code}`);
  if (c.site !== ctx.code) throw fail('conflict', `client ${id} polls site ${c.site}; revoke it there`);
  await updateClient(ctx.store, id, { revoked: true });
  return clientEntry(ctx, id);
}

/** Re-evaluates every client's memberships and DPs (policy changed). */
export async function reevaluate(ctx: SiteContext): Promise<void> {
  const snap = await snapshot(ctx);
  await inSlices(ctx, await listClients(ctx.store), async (tx, c) => {
    await setMemberships(tx, c.id, memberships(snap, ruleInventory(c)));
    if (c.site !== ctx.code) return;
    const place = placement(snap, ctx.code, c.inventory as Inventory);
    if (place.boundary !== c.boundary || JSON.stringify(place.dps) !== JSON.stringify(c.dps)) await updateClient(tx, c.id, place);
  });
}

/**
 * Writes for many clients, in transactions of a hundred, with a turn of the event loop between
 * them so check-ins are answered meanwhile. What they write is derived (memberships) or reported
 * (a child's clients and states): their commits do not wait for the disk (Store.relaxedTransaction).
 */
async function inSlices<T>(ctx: SiteContext, items: readonly T[], each: (tx: Store, item: T) => Promise<void>, size = 100): Promise<void> {
  for (let i = 0; i < items.length; i += size) {
    await ctx.store.relaxedTransaction(async (tx) => {
      for (const item of items.slice(i, i + size)) await each(tx, item);
    });
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/**
 * What goes up to the parent: clients and states changed since the last report, the oldest
 * changes first and about `limit` of each at most (the rest goes with the next reports), so
 * neither side stops to encode or check one huge report while its clients wait.
 */
export async function clientSyncSince(ctx: SiteContext, mark: string, limit = 1000): Promise<ClientSync & { newest: string }> {
  let clients = await listClients(ctx.store, { changedAfter: mark, limit: limit + 1 });
  let states = await listClientStates(ctx.store, { changedAfter: mark, limit: limit + 1 });
  // Cut where a list was cut: everything older than its first row left out goes now, so the mark
  // (the newest change sent) never passes over a change not sent.
  const cuts = [clients, states].filter((l) => l.length > limit).map((l) => (l[limit] as { updatedAt: string }).updatedAt);
  if (cuts.length > 0) {
    const cut = cuts.sort()[0] as string;
    clients = clients.filter((c) => c.updatedAt < cut);
    states = states.filter((x) => x.updatedAt < cut);
    // More than `limit` changes at one instant: that instant goes whole.
    if (clients.length === 0 && states.length === 0) {
      clients = await listClients(ctx.store, { changedAt: cut });
      states = await listClientStates(ctx.store, { changedAt: cut });
    }
  }
  let newest = mark;
  for (const x of [...clients, ...states]) if (x.updatedAt > newest) newest = x.updatedAt;
  return {
    newest,
    clients: clients.map(({ updatedAt: _u, ...c }) => ({ ...c, inventory: c.inventory as Inventory })),
    states: states.map(({ updatedAt: _u, ...s }) => ({ ...s, state: s.state as AgentReport['state'] })),
  };
}

/** Clients and states a child reports: kept (only for clients of the sites it speaks for). */
export async function acceptClientSync(ctx: SiteContext, sync: ClientSync, speaksFor: Set<string>): Promise<void> {
  const snap = await snapshot(ctx);
  const known = new Set<string>();
  const mine = sync.clients.filter((c) => speaksFor.has(c.site));
  await inSlices(ctx, mine, async (tx, c) => {
    await upsertRemoteClient(tx, c);
    await setMemberships(tx, c.id, memberships(snap, ruleInventory(c)));
  });
  for (const c of mine) known.add(c.id);
  const states = [];
  for (const s of sync.states) {
    if (!known.has(s.client)) {
      const c = await getClient(ctx.store, s.client);
      if (!c || !speaksFor.has(c.site)) continue;
      known.add(s.client);
    }
    states.push(s);
  }
  await inSlices(ctx, states, (tx, st) => putClientStates(tx, [st]));
}
