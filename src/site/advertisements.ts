import type {
  AdvertisementBody,
  AdvertisementEntry,
  AdvertisementStatus,
  AdvertiseRequest,
  BoundaryEntry,
  BoundaryRequest,
  ClientStatus,
  CollectionDetail,
  CollectionEntry,
  CollectionRequest,
  Inventory,
  WhyAnswer,
} from '../api/clients.js';
import { verifyManifest } from '../content/manifest.js';
import { parseCidr } from '../core/cidr.js';
import { type ClientState, formatAdvertisementId } from '../core/client.js';
import { fail } from '../core/errors.js';
import { parseRule } from '../core/rule.js';
import { SITE_CODE } from '../core/site.js';
import { formatWindow, longestOpenSeconds, parseWindow } from '../core/window.js';
import {
  type ClientRow,
  type ClientStateRow,
  collectionsOf,
  getClient,
  listClientStates,
  listClients,
  memberCounts,
  membersOf,
} from '../store/clients.js';
import { listTargets } from '../store/distribution.js';
import {
  agentUpgradeOf,
  allowedDps,
  clientWindow,
  offeredVersion,
  reevaluate,
  rolloutReason,
  ruleInventory,
  upgradeTurn,
} from './clients.js';
import type { SiteContext } from './context.js';
import { collectionKey, currentSnapshot, type DpView, makePolicy, type Snapshot } from './policy.js';

/**
 * Collections, advertisements and boundaries as an administrator makes and reads them, each
 * advertisement's status over every client at and below this site, and `why`: the chain of
 * reasons an advertisement does or does not run on a client (docs/clients.md).
 */

// --- collections --------------------------------------------------------------------------

function checkCollectionRefs(snap: Snapshot, key: string, names: readonly string[]): void {
  for (const n of names) if (!snap.collections.has(collectionKey(n))) throw fail('not_found', `no collection "${n}" to include or exclude`);
  // A collection may not include or exclude itself, directly or through others.
  const reaches = (from: string, seen: Set<string>): boolean => {
    if (from === key) return true;
    if (seen.has(from)) return false;
    seen.add(from);
    const c = snap.collections.get(from);
    return !!c && [...c.body.include, ...c.body.exclude].some((n) => reaches(collectionKey(n), seen));
  };
  for (const n of names)
    if (reaches(collectionKey(n), new Set())) throw fail('conflict', `collection "${n}" already depends on this one: that would be a loop`);
}

export async function createCollection(ctx: SiteContext, req: CollectionRequest, replace = false): Promise<CollectionDetail> {
  const key = collectionKey(req.name);
  const snap = await currentSnapshot(ctx);
  const held = snap.collections.get(key);
  if (held && !replace) throw fail('conflict', `collection "${held.body.name}" already exists (names are compared without regard to case)`);
  if (!held && replace) throw fail('not_found', `no collection "${req.name}"`);
  if (req.rule) parseRule(req.rule);
  // A window is kept in its canonical form, checked here so a bad one never travels.
  const window =
    req.window === undefined
      ? (held?.body.window ?? null)
      : req.window && { spec: formatWindow(parseWindow(req.window.spec, req.window.timeZone)), timeZone: req.window.timeZone };
  if (window && held) checkWindowFits(snap, held.body.name, window);
  const body = {
    name: held?.body.name ?? req.name,
    clients: [...new Set((req.clients ?? held?.body.clients ?? []).map((c) => c.toUpperCase()))],
    rule: req.rule === undefined ? (held?.body.rule ?? null) : req.rule,
    include: req.include ?? held?.body.include ?? [],
    exclude: req.exclude ?? held?.body.exclude ?? [],
    ...(window ? { window } : {}),
  };
  checkCollectionRefs(snap, key, [...body.include, ...body.exclude]);
  await makePolicy(ctx, 'collection', key, body);
  await reevaluate(ctx);
  return collectionDetail(ctx, key);
}

const hours = (seconds: number) =>
  seconds % 3600 === 0 ? `${seconds / 3600} h` : seconds >= 3600 ? `${(seconds / 3600).toFixed(1)} h` : `${Math.ceil(seconds / 60)} min`;

/**
 * A program that could never run: its time limit is longer than the longest stretch its
 * collection's maintenance window is open. Refused when advertised (or when the window is
 * narrowed under an advertisement), not discovered never to run.
 */
function windowRefusal(collection: string, window: { spec: string; timeZone: string }, ad: string, maxRunSeconds: number): string | null {
  const longest = longestOpenSeconds(parseWindow(window.spec, window.timeZone));
  if (maxRunSeconds <= longest) return null;
  return (
    `${ad} may run for up to ${hours(maxRunSeconds)}, longer than the maintenance window of collection "${collection}" ` +
    `("${window.spec}", ${window.timeZone}) is ever open at a stretch (${hours(longest)}): its mandatory runs would never start; ` +
    'lower --max-run or widen the window'
  );
}

function checkWindowFits(snap: Snapshot, collection: string, window: { spec: string; timeZone: string }): void {
  for (const a of snap.advertisements.values()) {
    if (collectionKey(a.body.collection) !== collectionKey(collection) || !a.body.enabled || a.body.mandatory.length === 0) continue;
    const no = windowRefusal(collection, window, `advertisement ${a.body.id}`, a.body.maxRunSeconds);
    if (no) throw fail('bad_request', no);
  }
}

export async function deleteCollection(ctx: SiteContext, name: string): Promise<void> {
  const snap = await currentSnapshot(ctx);
  const key = collectionKey(name);
  const c = snap.collections.get(key);
  if (!c) throw fail('not_found', `no collection "${name}"`);
  const users = [...snap.advertisements.values()].filter((a) => collectionKey(a.body.collection) === key).map((a) => a.body.id);
  if (users.length > 0)
    throw fail('conflict', `collection "${c.body.name}" is used by advertisement ${users.join(', ')}; delete or disable those first`);
  const nests = [...snap.collections.values()].filter((o) => [...o.body.include, ...o.body.exclude].some((n) => collectionKey(n) === key));
  if (nests.length > 0)
    throw fail('conflict', `collection "${c.body.name}" is included or excluded by ${nests.map((n) => `"${n.body.name}"`).join(', ')}`);
  await makePolicy(ctx, 'collection', key, c.body, true);
  await reevaluate(ctx);
}

export async function collectionEntries(ctx: SiteContext): Promise<CollectionEntry[]> {
  const snap = await currentSnapshot(ctx);
  const counts = await memberCounts(ctx.store);
  return [...snap.collections.entries()].map(([key, c]) => ({
    ...c.body,
    origin: c.origin,
    members: counts.get(key) ?? 0,
    updatedAt: c.updatedAt,
  }));
}

export async function collectionDetail(ctx: SiteContext, name: string): Promise<CollectionDetail> {
  const key = collectionKey(name);
  const c = (await currentSnapshot(ctx)).collections.get(key);
  if (!c) throw fail('not_found', `no collection "${name}"`);
  const memberIds = await membersOf(ctx.store, key);
  return { ...c.body, origin: c.origin, members: memberIds.length, updatedAt: c.updatedAt, memberIds };
}

// --- advertisements ------------------------------------------------------------------------

function isoTime(s: string | null | undefined, what: string): string | null {
  if (s === null || s === undefined) return null;
  const t = Date.parse(s);
  if (Number.isNaN(t)) throw fail('bad_request', `${what} "${s}" is not a time (use ISO 8601, e.g. 2026-12-24T18:00:00Z)`);
  return new Date(t).toISOString();
}

export async function advertise(
  ctx: SiteContext,
  req: AdvertiseRequest,
  rollout?: AdvertisementBody['rollout'],
): Promise<AdvertisementEntry> {
  const snap = await currentSnapshot(ctx);
  if (!snap.collections.has(collectionKey(req.collection)))
    throw fail('not_found', `no collection "${req.collection}" (make it with "cascade collection create")`);
  const pkg = await ctx.store.getPackage(req.packageId);
  if (!pkg) throw fail('not_found', `package ${req.packageId} is not known at site ${ctx.code}`);
  const versions = await ctx.store.listVersions(req.packageId);
  const version = req.version ?? null;
  if (version !== null && !versions.some((v) => v.version === version))
    throw fail('not_found', `${req.packageId} has no version ${version} here`);
  // The program must be named in the signed manifest of the version(s) offered.
  const check = version ?? pkg.latestVersion;
  const manifest = await ctx.library.readManifest(req.packageId, check).catch(() => undefined);
  if (!manifest) throw fail('not_found', `the manifest of ${req.packageId} version ${check} is not held here`);
  const m = verifyManifest(manifest, ctx.trusted).manifest;
  if (!m.programs.some((p) => p.name === req.program))
    throw fail(
      'bad_request',
      `${req.packageId} version ${check} has no program "${req.program}" (its programs: ${m.programs.map((p) => `"${p.name}"`).join(', ') || 'none'})`,
    );
  const available = isoTime(req.available, '--available') ?? ctx.clock().toISOString();
  const mandatory = (req.mandatory ?? []).map((t) => isoTime(t, '--mandatory') as string);
  const expires = isoTime(req.expires, '--expires');
  if (expires && expires <= available) throw fail('bad_request', '--expires must be after --available');
  const target = snap.collections.get(collectionKey(req.collection));
  if (target?.body.window && mandatory.length > 0) {
    const no = windowRefusal(target.body.name, target.body.window, `program "${req.program}"`, req.maxRunSeconds ?? 3600);
    if (no) throw fail('bad_request', no);
  }
  const id = formatAdvertisementId(ctx.code, await ctx.store.nextCounter('advertisement'));
  const body: AdvertisementBody = {
    id,
    packageId: req.packageId,
    version,
    program: req.program,
    collection: snap.collections.get(collectionKey(req.collection))?.body.name ?? req.collection,
    available,
    mandatory,
    expires,
    slowLink: req.slowLink ?? 'download',
    fallback: req.fallback ?? false,
    rerun: req.rerun ?? 'never',
    maxRunSeconds: req.maxRunSeconds ?? 3600,
    enabled: true,
    ...(rollout ? { rollout } : {}),
  };
  await makePolicy(ctx, 'advertisement', id, body);
  return advertisementEntry(ctx, id);
}

export async function advertisementEntry(ctx: SiteContext, id: string): Promise<AdvertisementEntry> {
  const a = (await currentSnapshot(ctx)).advertisements.get(id);
  if (!a) throw fail('not_found', `no advertisement ${id} at site ${ctx.code}`);
  return { ...a.body, origin: a.origin, updatedAt: a.updatedAt };
}

export async function advertisementEntries(ctx: SiteContext): Promise<AdvertisementEntry[]> {
  return [...(await currentSnapshot(ctx)).advertisements.values()].map((a) => ({ ...a.body, origin: a.origin, updatedAt: a.updatedAt }));
}

export async function setAdvertisementEnabled(ctx: SiteContext, id: string, enabled: boolean): Promise<AdvertisementEntry> {
  const a = await advertisementEntry(ctx, id);
  const { origin: _o, updatedAt: _u, ...body } = a;
  await makePolicy(ctx, 'advertisement', id, { ...body, enabled });
  return advertisementEntry(ctx, id);
}

export async function deleteAdvertisement(ctx: SiteContext, id: string): Promise<void> {
  const a = await advertisementEntry(ctx, id);
  const { origin: _o, updatedAt: _u, ...body } = a;
  await makePolicy(ctx, 'advertisement', id, body, true);
}

// --- boundaries ----------------------------------------------------------------------------

const boundaryId = (site: string, cidr: string) => `${site} ${cidr}`;

export async function addBoundary(ctx: SiteContext, req: BoundaryRequest): Promise<BoundaryEntry> {
  const site = req.site.toUpperCase();
  if (!SITE_CODE.test(site)) throw fail('bad_request', `"${req.site}" is not a site code`);
  const known = site === ctx.code || (await ctx.store.getSite(site));
  if (!known) throw fail('not_found', `site ${site} is not this site or below it`);
  let cidr: string;
  try {
    cidr = parseCidr(req.cidr).text;
  } catch (e) {
    throw fail('bad_request', (e as Error).message);
  }
  const snap = await currentSnapshot(ctx);
  for (const d of req.dps ?? []) {
    const dp = snap.dps.get(d);
    if (!dp || dp.above) throw fail('not_found', `no DP "${d}" at or below site ${ctx.code}`);
    if (dp.site !== site) throw fail('bad_request', `DP ${d} belongs to site ${dp.site}, not ${site}`);
  }
  await makePolicy(ctx, 'boundary', boundaryId(site, cidr), { site, cidr, dps: req.dps ?? [] });
  await reevaluate(ctx);
  return (await boundaryEntries(ctx)).find((b) => b.site === site && b.cidr === cidr) as BoundaryEntry;
}

export async function removeBoundary(ctx: SiteContext, site: string, cidrText: string): Promise<void> {
  const cidr = parseCidr(cidrText).text;
  const b = (await currentSnapshot(ctx)).boundaries.find((x) => x.body.site === site.toUpperCase() && x.body.cidr === cidr);
  if (!b) throw fail('not_found', `no boundary ${cidr} for site ${site.toUpperCase()}`);
  await makePolicy(ctx, 'boundary', boundaryId(b.body.site, cidr), b.body, true);
  await reevaluate(ctx);
}

export async function boundaryEntries(ctx: SiteContext): Promise<BoundaryEntry[]> {
  const snap = await currentSnapshot(ctx);
  const clients = await listClients(ctx.store);
  return snap.boundaries.map((b) => ({
    ...b.body,
    origin: b.origin,
    clients: clients.filter((c) => c.site === b.body.site && c.boundary === b.body.cidr).length,
  }));
}

// --- status and why ------------------------------------------------------------------------

const pct = (done: number, total: number) => (total > 0 ? `${Math.floor((done / total) * 100)} %` : '0 %');

/** Where the advertisement stands on one member client, from its report or, failing that, from here. */
function stateOf(
  snap: Snapshot,
  ad: AdvertisementBody,
  client: ClientRow,
  reported: ClientStateRow | undefined,
  now: number,
  here: string,
  wave: { ok: boolean; text: string } | null,
): { state: ClientState; version: number | null; detail: string | null } {
  let report = reported;
  if (ad.expires && Date.parse(ad.expires) <= now && !report)
    return { state: 'expired', version: null, detail: `expired at ${ad.expires}` };
  const up = ad.agentUpgrade;
  if (up) {
    // An agent upgrade: done once the client runs the version (however it got there).
    if ((client.inventory as Inventory).version === up.version)
      return { state: 'succeeded', version: ad.version, detail: `runs agent ${up.version}` };
    // A report of an earlier publication does not count for this one.
    if (report && report.version !== ad.version) report = undefined;
    const turn = upgradeTurn(ad, client.id);
    if (!report && turn > now)
      return { state: 'scheduled', version: ad.version, detail: `its turn in the agent upgrade comes at ${new Date(turn).toISOString()}` };
  }
  if (report) return { state: report.state as ClientState, version: report.version, detail: report.detail };
  if (Date.parse(ad.available) > now) return { state: 'scheduled', version: null, detail: `available from ${ad.available}` };
  if (wave && !wave.ok) return { state: 'waiting-wave', version: ad.version, detail: wave.text };
  const dps = clientDps(snap, ad, client, here);
  const version = offeredVersion(ad, dps);
  if (version === null) return { state: 'waiting-content', version: null, detail: 'no DP this client may use holds the package yet' };
  return { state: 'available', version, detail: null };
}

/** The DPs this client may use for this advertisement, as known here. */
function clientDps(snap: Snapshot, ad: AdvertisementBody, client: ClientRow, here: string): DpView[] {
  const inv = client.inventory as Inventory;
  if (client.site === here) return allowedDps(snap, client.site, inv.addresses, ad.fallback).dps;
  // A client of a site below: the DPs its own site said it may use (boundaries may be made there),
  // then, with fallback, the others as this site sees them.
  const out = client.dps.map((n) => snap.dps.get(n)).filter((d) => d !== undefined);
  if (ad.fallback)
    for (const d of allowedDps(snap, client.site, inv.addresses, true).dps) if (!out.some((o) => o.name === d.name)) out.push(d);
  return out;
}

export async function advertisementStatus(ctx: SiteContext, id: string): Promise<AdvertisementStatus> {
  const snap = await currentSnapshot(ctx);
  const a = snap.advertisements.get(id);
  if (!a) throw fail('not_found', `no advertisement ${id} at site ${ctx.code}`);
  const members = new Set(await membersOf(ctx.store, collectionKey(a.body.collection)));
  const reports = new Map((await listClientStates(ctx.store, { advertisement: id })).map((r) => [r.client, r]));
  const now = ctx.clock().getTime();
  // A rollout's pilots: the members of its collection waves.
  const pilots = new Map<string, Set<string>>();
  for (const w of a.body.rollout?.waves ?? [])
    if ('collection' in w) pilots.set(collectionKey(w.collection), new Set(await membersOf(ctx.store, collectionKey(w.collection))));
  const clients: ClientStatus[] = [];
  for (const c of await listClients(ctx.store)) {
    if (!members.has(c.id) && !reports.has(c.id)) continue;
    const r = reports.get(c.id);
    const inPilot = new Set([...pilots].filter(([, m]) => m.has(c.id)).map(([k]) => k));
    const s = stateOf(snap, a.body, c, r, now, ctx.code, rolloutReason(a.body, c.id, inPilot));
    clients.push({
      client: c.id,
      site: c.site,
      hostname: (c.inventory as Inventory).hostname,
      state: s.state,
      version: s.version,
      bytesDone: r?.bytesDone ?? 0,
      bytesTotal: r?.bytesTotal ?? 0,
      exitCode: r?.exitCode ?? null,
      detail: s.detail,
      at: r?.at ?? null,
    });
  }
  const summary: Record<string, number> = { clients: clients.length };
  for (const c of clients) summary[c.state] = (summary[c.state] ?? 0) + 1;
  return { advertisement: { ...a.body, origin: a.origin, updatedAt: a.updatedAt }, summary, clients };
}

/** Why a collection holds a client or not, in words. */
function explainMembership(snap: Snapshot, name: string, client: ClientRow, depth = 0): { member: boolean; text: string } {
  const c = snap.collections.get(collectionKey(name));
  if (!c) return { member: false, text: `collection "${name}" does not exist here` };
  const inv = ruleInventory(client);
  const why: string[] = [];
  let member = false;
  if (c.body.clients.includes(client.id)) {
    member = true;
    why.push('listed by ID');
  }
  if (c.rule) {
    if (c.rule(inv)) {
      member = true;
      why.push(`matches the rule ${c.body.rule}`);
    } else if (!member) why.push(`does not match the rule ${c.body.rule} (os=${inv.os}, arch=${inv.arch}, hostname=${inv.hostname})`);
  }
  if (depth < 8)
    for (const i of c.body.include) {
      const sub = explainMembership(snap, i, client, depth + 1);
      if (sub.member) {
        member = true;
        why.push(`included through "${i}"`);
      }
    }
  if (member && depth < 8)
    for (const x of c.body.exclude) {
      if (explainMembership(snap, x, client, depth + 1).member) {
        return { member: false, text: `excluded: it is a member of "${x}", which "${c.body.name}" excludes` };
      }
    }
  if (!member && c.body.clients.length === 0 && !c.rule && c.body.include.length === 0)
    why.push('the collection has no members, rules or includes');
  return { member, text: why.join('; ') || 'not listed, no rule matches' };
}

const ago = (iso: string) => iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z');

/** The chain of reasons an advertisement does, or does not, run on a client. */
export async function why(ctx: SiteContext, clientId: string, adId: string): Promise<WhyAnswer> {
  const snap = await currentSnapshot(ctx);
  const client = await getClient(ctx.store, clientId);
  if (!client) throw fail('not_found', `no client ${clientId} at or below site ${ctx.code}`);
  const a = snap.advertisements.get(adId);
  if (!a) throw fail('not_found', `no advertisement ${adId} at site ${ctx.code}`);
  const ad = a.body;
  const now = ctx.clock().getTime();
  const reasons: WhyAnswer['reasons'] = [];
  const out = (state: ClientState | null): WhyAnswer => ({ client: clientId, advertisement: adId, state, reasons });
  const inv = client.inventory as Inventory;
  reasons.push({
    ok: true,
    text: `advertisement ${adId} offers program "${ad.program}" of ${ad.packageId}${ad.version ? ` version ${ad.version} (pinned)` : ' (newest version a usable DP holds)'} to collection "${ad.collection}"`,
  });
  if (client.revoked) {
    reasons.push({ ok: false, text: `client ${clientId} (${inv.hostname}) is revoked: its agent is refused` });
    return out(null);
  }
  const m = explainMembership(snap, ad.collection, client);
  reasons.push({ ok: m.member, text: `${m.member ? 'member' : 'not a member'} of "${ad.collection}": ${m.text}` });
  if (!m.member) return out(null);
  if (!ad.enabled) {
    reasons.push({ ok: false, text: 'the advertisement is disabled ("cascade advertisement enable" turns it back on)' });
    return out(null);
  }
  if (Date.parse(ad.available) > now) {
    reasons.push({ ok: false, text: `not available until ${ago(ad.available)}` });
    return out('scheduled');
  }
  reasons.push({ ok: true, text: `available since ${ago(ad.available)}` });
  const member = new Set(await collectionsOf(ctx.store, clientId));
  const up = ad.agentUpgrade;
  if (up) {
    const newer = agentUpgradeOf([...member].flatMap((k) => snap.adsByCollection.get(k) ?? []));
    if (newer && newer !== a) {
      reasons.push({
        ok: false,
        text: `advertisement ${newer.body.id} of site ${newer.origin} upgrades it to a newer agent (${newer.body.agentUpgrade?.version}); that one applies`,
      });
      return out(null);
    }
    if (inv.version === up.version) {
      reasons.push({ ok: true, text: `it runs agent ${up.version} already` });
      return out('succeeded');
    }
    const turn = upgradeTurn(ad, clientId);
    reasons.push({
      ok: turn <= now,
      text: `agent upgrade from ${inv.version} to ${up.version}, spread over ${Math.round(up.spreadSeconds / 360) / 10} h: its turn ${turn <= now ? 'came' : 'comes'} at ${ago(new Date(turn).toISOString())}`,
    });
    if (turn > now) return out('scheduled');
  }
  const wave = rolloutReason(ad, clientId, member);
  if (wave) {
    reasons.push(wave);
    if (!wave.ok) return out('waiting-wave');
  }
  if (ad.expires && Date.parse(ad.expires) <= now) {
    reasons.push({ ok: false, text: `expired at ${ago(ad.expires)}` });
    return out('expired');
  }
  // Which DPs it may use: worked out here for this site's clients, as its own site reported for the others.
  const local = client.site === ctx.code;
  const place = local ? allowedDps(snap, client.site, inv.addresses, ad.fallback) : { boundary: client.boundary, dps: [] };
  const dps = clientDps(snap, ad, client, ctx.code);
  const siteBoundaries = local
    ? snap.boundaries.some((b) => b.body.site === client.site)
    : client.boundary !== null || client.dps.length === 0;
  const bounded = place.boundary
    ? `in boundary ${place.boundary} of site ${client.site}`
    : siteBoundaries
      ? `outside every boundary of site ${client.site} (addresses ${inv.addresses.join(', ')})`
      : `site ${client.site} has no boundaries`;
  reasons.push({
    ok: dps.length > 0,
    text: `${bounded}: may use ${dps.length > 0 ? dps.map((d) => d.name).join(', ') : 'no DP'}${ad.fallback ? ' (fallback allowed)' : ' (fallback not allowed)'}`,
  });
  const version = offeredVersion(ad, dps);
  if (version === null) {
    const targets = await listTargets(ctx.store, { packageId: ad.packageId });
    const lines: string[] = [];
    for (const d of dps) {
      const t = targets
        .filter((x) => x.site === d.name && (ad.version === null || x.version === ad.version))
        .sort((x, y) => y.version - x.version)[0];
      if (!t) lines.push(`${d.name}: not targeted (cascade distribute ${ad.packageId} --to dp:${d.name})`);
      else if (t.state === 'sending' && t.bytesTotal > 0)
        lines.push(
          `${d.name}: version ${t.version} sending, ${pct(t.bytesDone, t.bytesTotal)}${t.rate > 0 ? `, ETA ${Math.max(1, Math.ceil((t.bytesTotal - t.bytesDone) / t.rate / 60))} min` : ''}`,
        );
      else
        lines.push(`${d.name}: version ${t.version} ${t.state}${t.detail ? ` (${t.detail})` : ''}${t.lastError ? `: ${t.lastError}` : ''}`);
    }
    reasons.push({
      ok: false,
      text: `no DP it may use holds ${ad.packageId}${ad.version ? ` version ${ad.version}` : ''} yet${lines.length ? `: ${lines.join('; ')}` : ''}`,
    });
    return out('waiting-content');
  }
  const holders = dps.filter((d) => d.held.some((h) => h.packageId === ad.packageId && h.version === version)).map((d) => d.name);
  reasons.push({ ok: true, text: `version ${version} is on ${holders.join(', ')}` });
  // Mandatory runs wait for the client's maintenance windows, where it has any.
  const window = ad.mandatory.length > 0 ? clientWindow(snap, member, new Date(now)) : undefined;
  let shut = false;
  if (window) {
    const ends = window.closesAt ? Date.parse(window.closesAt) : Number.POSITIVE_INFINITY;
    shut = !window.open || now + ad.maxRunSeconds * 1000 > ends;
    reasons.push({
      ok: !shut,
      text: !window.open
        ? `outside its maintenance window (${window.text})${window.opensAt ? `; the next opens at ${ago(window.opensAt)}` : ''}: the mandatory run waits for it`
        : shut
          ? `its maintenance window (${window.text}) closes at ${ago(window.closesAt as string)}, before the program's time limit (${ad.maxRunSeconds} s) would end: the mandatory run waits for the next`
          : `inside its maintenance window (${window.text})${window.closesAt ? ` until ${ago(window.closesAt)}` : ''}`,
    });
  }
  const [report] = await listClientStates(ctx.store, { client: clientId, advertisement: adId });
  if (!report && shut) return out('available');
  if (!report) {
    const due = ad.mandatory.filter((t) => Date.parse(t) <= now);
    reasons.push({
      ok: true,
      text:
        ad.mandatory.length === 0
          ? 'optional: it runs when someone runs "cascade agent install" on the client'
          : due.length > 0
            ? `mandatory since ${ago(due[0] as string)}: the agent runs it at its next check-in (last seen ${client.lastSeen ? ago(client.lastSeen) : 'never'})`
            : `mandatory at ${ago(ad.mandatory[0] as string)}`,
    });
    return out('available');
  }
  const s = report.state as ClientState;
  const text: Record<string, string> = {
    downloading: `downloading version ${report.version}: ${pct(report.bytesDone, report.bytesTotal)} (${report.bytesDone} of ${report.bytesTotal} bytes) at ${ago(report.at)}`,
    running: `running since ${ago(report.at)}`,
    succeeded: `succeeded at ${ago(report.at)}${report.exitCode ? ` (exit code ${report.exitCode}: restart needed)` : ''}`,
    failed: `failed at ${ago(report.at)}${report.exitCode !== null ? ` with exit code ${report.exitCode}` : ''}${report.detail ? `: ${report.detail}` : ''}${report.output ? `\n  output (last lines): ${report.output.trim().split('\n').slice(-5).join('\n  ')}` : ''}`,
    'deferred-slow-link': `deferred: ${report.detail ?? 'the client is on a slow link and the advertisement skips slow links'}`,
  };
  reasons.push({ ok: s !== 'failed' && s !== 'deferred-slow-link', text: text[s] ?? `${s}${report.detail ? `: ${report.detail}` : ''}` });
  return out(s);
}
