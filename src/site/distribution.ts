import fs from 'node:fs/promises';
import type { DistributionStatus, DpVersions, Plan, PlanRoute, Summary, Target } from '../api/distributions.js';
import type { DpState } from '../api/dps.js';
import type { Offer, PreviewAnswer, PreviewRequest, RemoveRequest, StatusAnswer, StatusReport } from '../api/transfers.js';
import { transferCalls } from '../api/transfers.js';
import { type Manifest, manifestChunks, manifestDigest, verifyManifest } from '../content/manifest.js';
import type { TrustedKey } from '../content/signing.js';
import { TARGET_STATES } from '../core/distribution.js';
import { fail } from '../core/errors.js';
import type { Priority } from '../core/package.js';
import { backoffSeconds } from '../core/retry.js';
import { etaSeconds, isOpen } from '../core/schedule.js';
import { formatBytes } from '../core/size.js';
import { writeFileAtomic } from '../lib/fsutil.js';
import {
  addMessages,
  addTarget,
  dropTransferTargets,
  insertReplicaVersion,
  listKeys,
  listTargets,
  listTransfers,
  type MessageRow,
  markForwarded,
  queueTransfer,
  type TargetRow,
  unforwardedMessages,
  updateTarget,
} from '../store/distribution.js';
import { listGroups } from '../store/dps.js';
import { acceptClientSync, clientSyncSince, reevaluate } from './clients.js';
import { deleteVersion, lackedChunks, listPackages } from './content.js';
import type { SiteContext } from './context.js';
import { acceptRemovals } from './decommission.js';
import { listAllDps, ownDpState, recordDpStates, resolveTargets, siteOfDp } from './dps.js';
import { acceptFreshness, freshnessForChild } from './freshness.js';
import { centralTrust, nextHop, parentOf, trustOrigin } from './hierarchy.js';
import { emit } from './messages.js';
import { peerClient } from './peers.js';
import { acceptPolicy, deletedAtOrigin, invalidate, policyForChild } from './policy.js';
import { prepareRelease, releaseOrderFor, settleRelease } from './release.js';
import { clearPending, pendingRemovals } from './removals.js';
import { routeSchedule } from './routes.js';

/**
 * Distribution down the tree (see docs/distribution.md): targets, the path to each, the
 * receiving half of a transfer (offer, chunks, commit), and status reported up the tree.
 * The sending half is ./sender.ts.
 */

/** Every key this site accepts manifests from: its own, the central site's, and vouched ones. */
export async function loadTrust(ctx: SiteContext): Promise<void> {
  const central = await centralTrust(ctx);
  const add = (k: TrustedKey) => {
    if (!ctx.trusted.some((t) => t.keyId === k.keyId)) ctx.trusted.push(k);
  };
  add(central.key);
  for (const k of await listKeys(ctx.store)) add({ keyId: k.keyId, publicKeyPem: k.publicKey, site: k.site });
}

const maxEta = (a: number | null, b: number | null): number | null => (a === null || b === null ? null : Math.max(a, b));

/**
 * What sending a version to these targets would cost from here down: each route's bytes
 * (after what each receiver already holds, asked of the receiver itself) and ETA from the
 * route's rate and schedule. Asked of each next hop in turn, so each site answers for its
 * own routes.
 */
export async function previewBelow(ctx: SiteContext, req: PreviewRequest): Promise<PreviewAnswer> {
  const have = await ctx.store.haveChunks(req.chunks.map((c) => c[0]));
  const installed = Boolean(await ctx.store.getVersion(req.packageId, req.version));
  const missingBytes = installed ? 0 : req.chunks.reduce((n, [d, size]) => n + (have.has(d) ? 0 : size), 0);
  const unique = req.chunks.reduce((n, c) => n + c[1], 0);
  const routes: PlanRoute[] = [];
  const targets: PreviewAnswer['targets'] = [];
  const byHop = new Map<string, string[]>();
  for (const t of req.targets) {
    const via = await nextHop(ctx, t);
    if (via === null) targets.push({ dp: t, site: ctx.code, path: [ctx.code], bytes: 0, etaSeconds: 0 });
    else byHop.set(via, [...(byHop.get(via) ?? []), t]);
  }
  const now = ctx.clock();
  for (const [hop, below] of byHop) {
    const peer = await ctx.store.getSite(hop);
    const r = await ctx.store.getRoute(hop);
    const schedule = routeSchedule(r);
    const rate = r?.rate ?? null;
    let answer: PreviewAnswer;
    let note: string | null = null;
    try {
      if (!peer) throw fail('not_found', `${hop} is unknown`);
      answer = await peerClient(peer).call(transferCalls.preview, { ...req, targets: below });
    } catch (e) {
      // Cannot ask: assume it lacks everything, and say so.
      note = `${hop} did not answer (${(e as Error).message}); assumed to hold nothing`;
      answer = {
        missingBytes: unique,
        routes: [],
        targets: below.map((dp) => ({ dp, site: hop, path: [hop], bytes: unique, etaSeconds: null })),
      };
    }
    // No rate limit: only the schedule's closed hours count.
    const raw =
      rate === null && (answer.missingBytes === 0 || isOpen(schedule, req.priority, now))
        ? 0
        : etaSeconds(schedule, req.priority, now, answer.missingBytes, rate ?? 1e12);
    const eta = raw === null ? null : Math.ceil(raw);
    routes.push({ from: ctx.code, to: hop, bytes: answer.missingBytes, rate, etaSeconds: eta, note }, ...answer.routes);
    for (const t of answer.targets) {
      // A DP does not name its own site: this site knows it.
      const site = await siteOfDp(ctx, t.dp);
      targets.push({
        dp: t.dp,
        site: site === '?' ? t.site : site,
        path: [ctx.code, ...t.path],
        bytes: t.path.length === 1 ? answer.missingBytes : t.bytes,
        etaSeconds: maxEta(eta, t.etaSeconds),
      });
    }
  }
  return { missingBytes, routes, targets };
}

/**
 * `cascade distribute`: the DPs named by the specs (site:, dp:, group:) at or below this site;
 * the package goes once down each route that leads to one or more of them. With `dryRun`
 * nothing changes: the answer is the plan. Targets already installed are left alone, so
 * expanding a distribution sends only to the new ones.
 */
export async function distribute(
  ctx: SiteContext,
  packageId: string,
  versionWanted: number | undefined,
  to: string[],
  opts: { dryRun?: boolean } = {},
): Promise<Plan> {
  const pkg = await ctx.store.getPackage(packageId);
  if (!pkg) throw fail('not_found', `package ${packageId} is not on site ${ctx.code}`);
  const version = versionWanted ?? pkg.latestVersion;
  const row = await ctx.store.getVersion(packageId, version);
  if (!row) throw fail('not_found', `package ${packageId} has no version ${version} on site ${ctx.code}`);
  const dps = await resolveTargets(ctx, to);
  const manifest = verifyManifest(await ctx.library.readManifest(packageId, version), ctx.trusted).manifest;
  const chunks = [...manifestChunks(manifest)];
  const preview = await previewBelow(ctx, { packageId, version, priority: pkg.priority, chunks, targets: dps });
  const existing = new Map((await listTargets(ctx.store, { packageId, version })).map((t) => [t.site, t]));
  const plan: Plan = {
    packageId,
    version,
    dryRun: opts.dryRun === true,
    bytes: row.bytes,
    uniqueBytes: chunks.reduce((n, c) => n + c[1], 0),
    routes: preview.routes,
    targets: [],
  };
  const byChild = new Map<string, string[]>();
  // A DP that said it has less room than it would receive: warned before anything moves.
  const free = new Map((await listAllDps(ctx)).map((d) => [d.name, d.freeBytes]));
  const warning = (dp: string, bytes: number, state: string): string | null => {
    const f = free.get(dp);
    if (state === 'installed' || f === null || f === undefined || f >= bytes) return null;
    return `${dp} reported ${formatBytes(f)} free, less than the ${formatBytes(bytes)} it would receive: free space there (cascade gc) or it will fail with disk_full`;
  };
  for (const t of preview.targets) {
    const before = existing.get(t.dp);
    const via = t.path.length > 1 ? (t.path[1] as string) : null;
    let state = before && before.state !== 'removed' ? before.state : 'pending';
    let added = !before;
    if (!opts.dryRun) {
      added = await addTarget(ctx.store, { packageId, version, site: t.dp, via, bytesTotal: row.bytes });
      if (before?.state === 'failed' || before?.state === 'removed' || before?.state === 'removing') state = 'pending';
      if (via === null) {
        await updateTarget(ctx.store, packageId, version, t.dp, { state: 'installed', bytesDone: row.bytes });
        state = 'installed';
      } else if (state !== 'installed') {
        byChild.set(via, [...(byChild.get(via) ?? []), t.dp]);
      }
    } else if (via === null) {
      state = 'installed';
    }
    plan.targets.push({ ...t, state, added, warning: warning(t.dp, t.bytes, state) });
  }
  if (opts.dryRun) return plan;
  for (const [child, targets] of byChild) {
    await queueTransfer(ctx.store, { packageId, version, child, priority: pkg.priority, targets, bytesTotal: row.bytes, reopen: true });
  }
  await emit(ctx, {
    component: 'distribution',
    severity: 'info',
    code: 'distribution_started',
    text: `${packageId} version ${version} to ${dps.join(', ')}`,
    packageId,
  });
  return plan;
}

/**
 * A new version of a package goes by itself to every DP at or below this site that holds (or is
 * getting) an older one. Each of those DPs then keeps the new version and the one before it
 * (clients may still be fetching that one); older versions are removed from it.
 */
export async function followNewVersion(ctx: SiteContext, packageId: string, version: number): Promise<string[]> {
  const rows = await listTargets(ctx.store, { packageId });
  const live = rows.filter((t) => t.version < version && t.state !== 'removed' && t.state !== 'removing' && t.state !== 'failed');
  const dps = [...new Set(live.map((t) => t.site))].sort();
  if (dps.length === 0) return [];
  await distribute(
    ctx,
    packageId,
    version,
    dps.map((d) => `dp:${d}`),
  );
  // Per DP, the newest older version stays; the ones before it go.
  const drop = new Map<number, string[]>();
  for (const dp of dps) {
    const older = live.filter((t) => t.site === dp).map((t) => t.version);
    const keep = Math.max(...older);
    for (const v of new Set(older)) if (v !== keep) drop.set(v, [...(drop.get(v) ?? []), dp]);
  }
  for (const [v, sites] of drop) await removeTargets(ctx, packageId, v, sites);
  return dps;
}

// --- the receiving half ------------------------------------------------------------------------

/** The signed manifest of a version offered here and still arriving (for relaying it on). */
export async function readIncoming(ctx: SiteContext, id: string, version: number): Promise<Buffer> {
  try {
    return await fs.readFile(ctx.library.incomingPath(id, version));
  } catch {
    throw fail('conflict', `${id} version ${version} is neither installed nor arriving at ${ctx.code}`);
  }
}

/**
 * A parent offers a version: the signed manifest is checked before anything else; the answer
 * is which chunks this site lacks and which versions of the package it holds (delta bases).
 */
export async function acceptOffer(
  ctx: SiteContext,
  from: string,
  o: Offer,
): Promise<{ missing: string[]; versions: number[]; installed: boolean; bytesTotal: number }> {
  await trustOrigin(ctx, o.originCertificate);
  const bytes = Buffer.from(o.manifest, 'base64');
  const { manifest } = verifyManifest(bytes, ctx.trusted);
  if (manifest.id !== o.packageId || manifest.version !== o.version) {
    throw fail(
      'bad_signature',
      `the offered manifest is ${manifest.id} version ${manifest.version}, not ${o.packageId} version ${o.version}`,
    );
  }
  const deleted = await deletedAtOrigin(ctx, o.packageId, o.version);
  if (deleted) throw fail('conflict', `${o.packageId} version ${o.version}: ${deleted}`);
  for (const t of o.targets) {
    const via = await nextHop(ctx, t);
    await addTarget(ctx.store, { packageId: o.packageId, version: o.version, site: t, via, bytesTotal: manifest.bytes });
  }
  const versions = (await ctx.store.listVersions(o.packageId)).map((v) => v.version);
  const installed = versions.includes(o.version);
  if (!installed) await writeFileAtomic(ctx.library.tmpDir, ctx.library.incomingPath(o.packageId, o.version), bytes);
  const chunks = manifestChunks(manifest);
  const missing = await lackedChunks(ctx, [...chunks.keys()]);
  if (!installed && o.targets.includes(ctx.code)) {
    // A courier transfer offers again while it waits for the parcel: what it waits for stands.
    const [mine] = await listTargets(ctx.store, { packageId: o.packageId, version: o.version, site: ctx.code });
    if (mine?.awaiting !== 'courier')
      await updateTarget(ctx.store, o.packageId, o.version, ctx.code, { state: 'sending', detail: `receiving from ${from}` });
  }
  // Relay: the targets below start at once; each chunk goes on as soon as it is verified here.
  // (Offered again while installed here: the targets below that lack it go again.)
  await queueOnward(ctx, manifest);
  return { missing, versions, installed, bytesTotal: manifest.bytes };
}

/**
 * The parent says the version is complete: every chunk must be here (verified on arrival),
 * then the version is installed in one transaction and sent on towards the targets below.
 */
export async function commitOffer(
  ctx: SiteContext,
  from: string,
  packageId: string,
  version: number,
): Promise<{ installed: boolean; missing: number }> {
  let manifest: Manifest;
  const existing = await ctx.store.getVersion(packageId, version);
  if (existing) {
    manifest = verifyManifest(await ctx.library.readManifest(packageId, version), ctx.trusted).manifest;
  } else {
    let bytes: Buffer;
    try {
      bytes = await fs.readFile(ctx.library.incomingPath(packageId, version));
    } catch {
      throw fail('conflict', `no offer of ${packageId} version ${version} is pending here; offer it first`);
    }
    manifest = verifyManifest(bytes, ctx.trusted).manifest;
    const chunks = manifestChunks(manifest);
    const have = await ctx.store.haveChunks([...chunks.keys()]);
    const missing = [...chunks.keys()].filter((d) => !have.has(d));
    if (missing.length > 0) return { installed: false, missing: missing.length };
    await ctx.store.transaction(async (tx) => {
      const fresh = await insertReplicaVersion(
        tx,
        { id: manifest.id, name: manifest.name, priority: manifest.priority },
        {
          version,
          manifestDigest: manifestDigest(manifest),
          files: manifest.files.filter((f) => f.type === 'file').length,
          bytes: manifest.bytes,
        },
      );
      if (fresh) {
        await tx.addRefs(chunks.keys(), 1);
        await ctx.library.writeManifest(packageId, version, bytes);
      }
    });
    await fs.rm(ctx.library.incomingPath(packageId, version), { force: true });
  }
  await onInstalled(ctx, manifest, from);
  return { installed: true, missing: 0 };
}

/** Queues the version towards every target below this site that does not have it yet. */
async function queueOnward(ctx: SiteContext, manifest: Manifest): Promise<void> {
  const targets = (await listTargets(ctx.store, { packageId: manifest.id, version: manifest.version, below: true })).filter(
    (t) => t.state !== 'installed',
  );
  const byChild = new Map<string, string[]>();
  for (const t of targets) byChild.set(t.via as string, [...(byChild.get(t.via as string) ?? []), t.site]);
  for (const [child, sites] of byChild) {
    await queueTransfer(ctx.store, {
      packageId: manifest.id,
      version: manifest.version,
      child,
      priority: manifest.priority as Priority,
      targets: sites,
      bytesTotal: manifest.bytes,
      reopen: true,
    });
  }
}

/** The version is here: this site's own target is installed; the rest go on down. */
async function onInstalled(ctx: SiteContext, manifest: Manifest, from: string): Promise<void> {
  const targets = await listTargets(ctx.store, { packageId: manifest.id, version: manifest.version });
  for (const t of targets) {
    if (t.via === null) {
      if (t.state !== 'installed') {
        await updateTarget(ctx.store, manifest.id, manifest.version, t.site, {
          state: 'installed',
          bytesDone: manifest.bytes,
          detail: null,
          lastError: null,
        });
        await emit(ctx, {
          component: 'receiver',
          severity: 'info',
          code: 'package_installed',
          text: `${manifest.id} version ${manifest.version} installed at ${ctx.code} (from ${from})`,
          packageId: manifest.id,
        });
      }
    }
  }
  await queueOnward(ctx, manifest);
}

// --- status up the tree ----------------------------------------------------------------------

/** The sites and DPs a neighbour below may speak for: itself and everything below it. */
async function speaksFor(ctx: SiteContext, from: string): Promise<Set<string>> {
  const below = new Set([from]);
  const all = [...(await ctx.store.listSites()), ...(await ctx.store.listDps())];
  const byCode = new Map(all.map((x) => [x.code, x]));
  for (const row of all) {
    let at = row;
    for (let i = 0; i < 64 && (at.relation === 'descendant' || at.relation === 'dp-below') && at.parent; i++) {
      const up = byCode.get(at.parent);
      if (!up) break;
      at = up;
    }
    if (at.code === from) below.add(row.code);
  }
  return below;
}

/**
 * A child site or a DP reports the targets at and below it, its status messages and the
 * state of the DPs; kept, and sent on up.
 */
export async function acceptStatus(ctx: SiteContext, from: string, r: StatusReport): Promise<StatusAnswer> {
  let n = 0;
  const sending = (await listTransfers(ctx.store, { child: from })).filter((x) => x.state !== 'done' && x.state !== 'failed');
  // A neighbour speaks for itself and the sites and DPs below it, not for anyone else.
  const below = await speaksFor(ctx, from);
  for (const t of r.targets) {
    // Targets this site routed through that neighbour; and those of distributions made below it
    // (a package this site does not hold), so that status here shows them too.
    let [mine] = await listTargets(ctx.store, { packageId: t.packageId, version: t.version, site: t.site });
    if (!mine && below.has(t.site) && !(await ctx.store.getPackage(t.packageId))) {
      await addTarget(ctx.store, { packageId: t.packageId, version: t.version, site: t.site, via: from, bytesTotal: t.bytesTotal });
      [mine] = await listTargets(ctx.store, { packageId: t.packageId, version: t.version, site: t.site });
    }
    if (!mine || mine.via !== from) continue;
    // A removal this site ordered is finished only when the neighbour says so.
    if (mine.state === 'removing' && t.state !== 'removed') continue;
    // While this site still sends that version to the neighbour, its own sender's progress is
    // the truth for the hop; the neighbour's view takes over once the hop is done.
    if (t.state !== 'installed' && t.state !== 'removed' && sending.some((x) => x.packageId === t.packageId && x.version === t.version))
      continue;
    await updateTarget(ctx.store, t.packageId, t.version, t.site, t);
    n++;
  }
  await addMessages(
    ctx.store,
    (r.messages as MessageRow[]).filter((m) => below.has(m.site)),
  );
  const row = await ctx.store.getSite(from);
  if (r.dps) {
    const self = r.dps.find((d) => d.name === from);
    // A DP tells its own address (it may move between starts).
    if (self?.url && row?.relation === 'dp' && row.url !== self.url && URL.canParse(self.url)) await ctx.store.setSiteUrl(from, self.url);
    await recordDpStates(ctx, r.dps, (name) => below.has(name));
    invalidate(ctx);
  }
  if (r.clients) await acceptClientSync(ctx, r.clients, below);
  if (r.removed) await acceptRemovals(ctx, from, r.removed, below);
  // Packages made below: listed here; only those whose origin is the neighbour or below it.
  if (r.packages && row?.relation === 'child')
    await ctx.store.setMeta(`packagesBelow.${from}`, JSON.stringify(r.packages.filter((p) => below.has(p.id.slice(0, 3)))));
  // A child site gets this site's policy (collections, advertisements, boundaries) when its copy differs.
  if (row?.relation === 'child' && r.policyDigest !== undefined) {
    // With this site's signed word on what it published, and those of the sites above it.
    const freshness = await freshnessForChild(ctx);
    const policy = await policyForChild(ctx);
    if (policy.digest !== r.policyDigest) return { targets: n, messages: r.messages.length, policy, freshness };
    return { targets: n, messages: r.messages.length, freshness };
  }
  // A DP whose turn it is restarts on this site's release (docs/dp.md#releases).
  const release = row?.relation === 'dp' ? await releaseOrderFor(ctx, from) : undefined;
  return { targets: n, messages: r.messages.length, ...(release ? { release } : {}) };
}

/** Every so often a DP reports even with nothing new: its state, and to hear its site's orders. */
const DP_STATE_SECONDS = Math.max(0.2, Number(process.env.CASCADE_DP_STATE_SECONDS) || 30);
const lastDpReport = new WeakMap<SiteContext, { at: number; fingerprint: string }>();
const lastPackagesReport = new WeakMap<SiteContext, string>();

/** This process's own DP state, and (at a site) every DP below it as last seen here. */
async function dpStates(ctx: SiteContext, parentCode: string): Promise<DpState[]> {
  const role = await ctx.store.getMeta('site.role');
  const url = (await ctx.store.getMeta('site.url')) ?? null;
  if (role === 'dp') return [await ownDpState(ctx, parentCode, url)];
  return (await listAllDps(ctx)).map(({ kind: _kind, ...d }) => d);
}

/**
 * Sends what changed since the last report to the parent: targets at or below this site and
 * status messages not yet forwarded. On failure everything stays for the next attempt, so
 * nothing is lost while the parent is down.
 */
export async function reportUp(ctx: SiteContext): Promise<boolean> {
  const parent = await parentOf(ctx.store);
  if (!parent) return false;
  const mark = (await ctx.store.getMeta('status.reportedUpTo')) ?? '';
  const targets = await listTargets(ctx.store, { changedAfter: mark });
  const messages = await unforwardedMessages(ctx.store, 1000);
  // The DPs' state goes up with every report: at once when it changed, else every DP_STATE_SECONDS.
  const dps = await dpStates(ctx, parent.code);
  const fingerprint = JSON.stringify(
    dps.map(({ at: _at, lastContact: _c, freeBytes, ...d }) => ({ ...d, free: Math.round((freeBytes ?? 0) / 2 ** 26) })),
  );
  const last = lastDpReport.get(ctx);
  const stateDue = !last || last.fingerprint !== fingerprint || Date.now() - last.at > DP_STATE_SECONDS * 1000;
  // A site reports every time, even with nothing new: the answer brings the parent's policy down.
  const isSite = (await ctx.store.getMeta('site.role')) !== 'dp';
  if (targets.length === 0 && messages.length === 0 && !stateDue && !isSite && (await pendingRemovals(ctx.store)).length === 0)
    return false;
  const clientMark = (await ctx.store.getMeta('clients.reportedUpTo')) ?? '';
  const clients = isSite ? await clientSyncSince(ctx, clientMark) : undefined;
  // The packages made here and below go up when they changed (and with the DP state's cadence).
  const ownAndBelow = new Set([
    ctx.code,
    ...(await ctx.store.listSites()).filter((s) => s.relation === 'child' || s.relation === 'descendant').map((s) => s.code),
  ]);
  const packages = isSite ? (await listPackages(ctx)).filter((p) => ownAndBelow.has(p.id.slice(0, 3))) : undefined;
  const packagesPrint = JSON.stringify(packages ?? []);
  const sendPackages = isSite && (lastPackagesReport.get(ctx) !== packagesPrint || stateDue);
  // biome-ignore lint/complexity/useMathMinMax: ISO timestamps, compared as strings
  const newest = targets.reduce((m, t) => (t.updatedAt > m ? t.updatedAt : m), mark);
  const removed = await pendingRemovals(ctx.store);
  const body: StatusReport = {
    targets: targets.map((t: TargetRow) => ({
      packageId: t.packageId,
      version: t.version,
      site: t.site,
      state: t.state,
      bytesDone: t.bytesDone,
      bytesTotal: t.bytesTotal,
      rate: t.rate,
      retries: t.retries,
      nextRetryAt: t.nextRetryAt,
      lastError: t.lastError,
      detail: t.detail,
    })),
    messages,
    dps,
    ...(clients ? { clients: { clients: clients.clients, states: clients.states } } : {}),
    ...(isSite ? { policyDigest: (await ctx.store.getMeta('policy.digest')) ?? '' } : {}),
    ...(sendPackages ? { packages } : {}),
    ...(removed.length > 0 ? { removed } : {}),
  };
  const answer = await peerClient(parent).call(transferCalls.status, body);
  await clearPending(ctx.store, removed);
  if (answer.freshness) await acceptFreshness(ctx, answer.freshness, parent.code);
  if (answer.policy) {
    await acceptPolicy(ctx, answer.policy, (text) => emit(ctx, { component: 'policy', severity: 'error', code: 'policy_refused', text }));
    await reevaluate(ctx);
  }
  // A release on trial is confirmed by its site's answer; a release order is followed.
  settleRelease(ctx);
  if (answer.release && (await prepareRelease(ctx, answer.release))) ctx.process?.switchRelease?.();
  if (clients) await ctx.store.setMeta('clients.reportedUpTo', clients.newest);
  if (sendPackages) lastPackagesReport.set(ctx, packagesPrint);
  lastDpReport.set(ctx, { at: Date.now(), fingerprint });
  await markForwarded(
    ctx.store,
    messages.map((m) => m.id),
  );
  await ctx.store.setMeta('status.reportedUpTo', newest);
  return true;
}

/**
 * The row that speaks for each DP: its newest version not removed (a DP with every version
 * removed: its newest). A DP serving version 1 while version 2 arrives counts once, as sending.
 */
export function perDp(targets: readonly TargetRow[]): TargetRow[] {
  const best = new Map<string, TargetRow>();
  for (const t of targets) {
    const b = best.get(t.site);
    const live = (x: TargetRow) => x.state !== 'removed';
    if (!b || (live(t) && !live(b)) || (live(t) === live(b) && t.version > b.version)) best.set(t.site, t);
  }
  return [...best.values()];
}

/** Counts DPs per state (by their newest version); removed DPs are no longer targeted. */
export function summarise(targets: readonly TargetRow[]): Summary {
  const s: Summary = { targeted: 0, installed: 0, sending: 0, pending: 0, retrying: 0, failed: 0, removing: 0, removed: 0 };
  for (const t of perDp(targets)) {
    s[t.state]++;
    if (t.state !== 'removed') s.targeted++;
  }
  return s;
}

// --- removal -----------------------------------------------------------------------------------

/**
 * Removes a version from this process's own DP (its library) unless something still needs it
 * here: the origin keeps the package it made, and a site keeps what it still relays to
 * targets below. Unreferenced chunks are freed by garbage collection afterwards.
 */
async function removeLocal(ctx: SiteContext, packageId: string, version: number): Promise<string | null> {
  const v = await ctx.store.getVersion(packageId, version);
  if (!v) return null;
  const manifest = verifyManifest(await ctx.library.readManifest(packageId, version), ctx.trusted).manifest;
  if (manifest.origin === ctx.code && (await ctx.store.getMeta('site.role')) !== 'dp')
    return `content kept: ${ctx.code} is where ${packageId} was made (delete the version there to drop it)`;
  const relayed = await listTargets(ctx.store, {
    packageId,
    version,
    below: true,
    states: TARGET_STATES.filter((s) => s !== 'removed' && s !== 'removing'),
  });
  if (relayed.length > 0) return `content kept: still sent on to ${relayed.map((t) => t.site).join(', ')}`;
  await deleteVersion(ctx, packageId, version);
  return null;
}

/** Marks targets removed here or removing further down; the sender carries removals down. */
async function removeTargets(ctx: SiteContext, packageId: string, version: number, names: readonly string[]): Promise<void> {
  const all = await listTargets(ctx.store, { packageId, version, sites: names });
  await dropTransferTargets(ctx.store, packageId, version, names);
  const local = names.filter((n) => n === ctx.code);
  for (const name of names) {
    const t = all.find((x) => x.site === name);
    const via = t ? t.via : await nextHop(ctx, name);
    if (!t) await addTarget(ctx.store, { packageId, version, site: name, via, bytesTotal: 0 });
    if (via !== null) {
      await updateTarget(ctx.store, packageId, version, name, {
        state: 'removing',
        awaiting: 'removal',
        detail: 'removal queued',
        nextRetryAt: null,
        lastError: null,
      });
    }
  }
  // Own content last: once nothing routed through here still needs it.
  for (const name of local) {
    const kept = await removeLocal(ctx, packageId, version);
    await updateTarget(ctx.store, packageId, version, name, { state: 'removed', bytesDone: 0, detail: kept, lastError: null, rate: 0 });
    await emit(ctx, {
      component: 'distribution',
      severity: 'info',
      code: 'package_removed',
      text: `${packageId} version ${version} removed from ${name}${kept ? ` (${kept})` : ''}`,
      packageId,
    });
  }
}

/** `cascade undistribute`: removes a version from DPs at or below this site. */
export async function undistribute(
  ctx: SiteContext,
  packageId: string,
  versionWanted: number | undefined,
  from: string[],
): Promise<{ packageId: string; version: number; targets: { dp: string; site: string; state: string }[] }> {
  const pkg = await ctx.store.getPackage(packageId);
  const targets = await listTargets(ctx.store, { packageId });
  if (!pkg && targets.length === 0) throw fail('not_found', `package ${packageId} is not known at site ${ctx.code}`);
  const version = versionWanted ?? pkg?.latestVersion ?? Math.max(...targets.map((t) => t.version));
  const dps = await resolveTargets(ctx, from);
  const on = new Set(targets.filter((t) => t.version === version && t.state !== 'removed').map((t) => t.site));
  const chosen = dps.filter((d) => on.has(d));
  if (chosen.length === 0)
    throw fail('not_found', `${packageId} version ${version} is not distributed to ${from.join(', ')} (see "cascade status ${packageId}")`);
  await removeTargets(ctx, packageId, version, chosen);
  const after = await listTargets(ctx.store, { packageId, version, sites: chosen });
  const out = [];
  for (const t of after) out.push({ dp: t.site, site: await siteOfDp(ctx, t.site), state: t.state });
  return { packageId, version, targets: out };
}

/** A parent orders a removal: own content goes now, the rest is carried further down. */
export async function acceptRemove(ctx: SiteContext, r: RemoveRequest): Promise<{ removed: string[]; removing: string[] }> {
  await removeTargets(ctx, r.packageId, r.version, r.targets);
  const after = await listTargets(ctx.store, { packageId: r.packageId, version: r.version, sites: r.targets });
  return {
    removed: after.filter((t) => t.state === 'removed').map((t) => t.site),
    removing: after.filter((t) => t.state === 'removing').map((t) => t.site),
  };
}

/** Carries pending removals one hop down; what cannot be sent now is tried again later. */
export async function sendRemovals(ctx: SiteContext): Promise<void> {
  // Only what waits for a removal to go down, and is due: one indexed query per tick.
  const due = await listTargets(ctx.store, {
    states: ['removing'],
    below: true,
    awaiting: 'removal',
    dueBy: ctx.clock().toISOString(),
  });
  const groups = new Map<string, TargetRow[]>();
  for (const t of due) {
    const k = `${t.via}\n${t.packageId}\n${t.version}`;
    groups.set(k, [...(groups.get(k) ?? []), t]);
  }
  for (const ts of groups.values()) {
    const first = ts[0] as TargetRow;
    const peer = await ctx.store.getSite(first.via as string);
    try {
      if (!peer) throw fail('not_found', `${first.via} is no longer known here`);
      const r = await peerClient(peer).call(transferCalls.remove, {
        packageId: first.packageId,
        version: first.version,
        targets: ts.map((t) => t.site),
      });
      for (const t of ts) {
        const done = r.removed.includes(t.site);
        await updateTarget(ctx.store, t.packageId, t.version, t.site, {
          state: done ? 'removed' : 'removing',
          awaiting: null,
          detail: done ? null : `removal sent to ${first.via}`,
          bytesDone: 0,
          rate: 0,
        });
      }
    } catch (e) {
      const retries = first.retries + 1;
      const next = new Date(ctx.clock().getTime() + backoffSeconds(retries) * 1000).toISOString();
      for (const t of ts)
        await updateTarget(ctx.store, t.packageId, t.version, t.site, { lastError: (e as Error).message, retries, nextRetryAt: next });
    }
  }
}

/** Where a package is: every target DP at or below this site, with roll-ups per site and per DP group. */
export async function distributionStatus(ctx: SiteContext, id: string): Promise<DistributionStatus> {
  const rows = await listTargets(ctx.store, { packageId: id });
  if (rows.length === 0 && !(await ctx.store.getPackage(id))) throw fail('not_found', `package ${id} is not known at site ${ctx.code}`);
  const targets: Target[] = [];
  for (const t of rows) {
    targets.push({
      dp: t.site,
      site: await siteOfDp(ctx, t.site),
      via: t.via,
      version: t.version,
      state: t.state,
      bytesDone: t.bytesDone,
      bytesTotal: t.bytesTotal,
      rate: t.rate,
      etaSeconds: t.state === 'sending' && t.rate > 0 ? Math.ceil((t.bytesTotal - t.bytesDone) / t.rate) : null,
      retries: t.retries,
      nextRetryAt: t.nextRetryAt,
      lastError: t.lastError,
      detail: t.detail,
      updatedAt: t.updatedAt,
    });
  }
  const sites = [...new Set(targets.map((t) => t.site))].sort();
  const groups = (await listGroups(ctx.store)).filter((g) => rows.some((t) => g.members.includes(t.site)));
  const dps: DpVersions[] = perDp(rows).map((t) => {
    const mine = rows.filter((x) => x.site === t.site);
    const held = mine
      .filter((x) => x.state === 'installed')
      .map((x) => x.version)
      .sort((a, b) => a - b);
    const serving = held.length > 0 ? (held.at(-1) as number) : null;
    const i = rows.indexOf(t);
    return {
      dp: t.site,
      site: targets[i]?.site ?? t.site,
      serving,
      arriving:
        t.state !== 'installed' && t.state !== 'removed' && t.state !== 'removing' && (serving === null || t.version > serving)
          ? t.version
          : null,
      state: t.state,
      bytesDone: t.bytesDone,
      bytesTotal: t.bytesTotal,
      rate: t.rate,
      etaSeconds: targets[i]?.etaSeconds ?? null,
      retries: t.retries,
      nextRetryAt: t.nextRetryAt,
      note: t.lastError ?? t.detail,
      held,
    };
  });
  return {
    packageId: id,
    summary: summarise(rows),
    sites: sites.map((site) => ({ site, summary: summarise(rows.filter((_, i) => targets[i]?.site === site)) })),
    groups: groups.map((g) => ({ group: g.name, summary: summarise(rows.filter((t) => g.members.includes(t.site))) })),
    dps: dps.sort((a, b) => a.site.localeCompare(b.site) || a.dp.localeCompare(b.dp)),
    targets,
  };
}

/** Every package with targets at or below this site, summarised. */
export async function distributionSummaries(ctx: SiteContext): Promise<{ packageId: string; summary: Summary }[]> {
  const all = await listTargets(ctx.store);
  const ids = [...new Set(all.map((t) => t.packageId))];
  return ids.map((id) => ({ packageId: id, summary: summarise(all.filter((t) => t.packageId === id)) }));
}

/** The sender's transfers on this site's routes. */
export const transfers = (ctx: SiteContext) => listTransfers(ctx.store);
