import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { verifyCertificate } from '../content/certificate.js';
import { type Manifest, manifestChunks, manifestDigest, verifyManifest } from '../content/manifest.js';
import type { TrustedKey } from '../content/signing.js';
import { fail } from '../core/errors.js';
import type { Priority } from '../core/package.js';
import { writeFileAtomic } from '../lib/fsutil.js';
import {
  addMessages,
  addTarget,
  insertReplicaVersion,
  listKeys,
  listTargets,
  listTransfers,
  type MessageRow,
  markForwarded,
  putKey,
  queueTransfer,
  type Severity,
  type TargetRow,
  unforwardedMessages,
  updateTarget,
} from '../store/distribution.js';
import type { SiteContext } from './content.js';
import { callPeer, centralTrust, parentOf } from './hierarchy.js';

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
  for (const k of await listKeys(ctx.store)) add({ keyId: k.keyId, publicKeyPem: k.publicKey });
}

/** Records a status message (it travels up the tree in the next report). */
export async function emit(
  ctx: SiteContext,
  m: { component: string; severity: Severity; code: string; text: string; packageId?: string | null },
): Promise<void> {
  await addMessages(ctx.store, [
    {
      id: crypto.randomUUID(),
      time: ctx.clock().toISOString(),
      site: ctx.code,
      component: m.component,
      severity: m.severity,
      code: m.code,
      text: m.text,
      packageId: m.packageId ?? null,
    },
  ]);
  ctx.log[m.severity === 'error' ? 'error' : m.severity === 'warning' ? 'warn' : 'info']({ code: m.code, package: m.packageId }, m.text);
}

/** The child of this site through which `target` is reached (null: this site itself). */
export async function nextHop(ctx: SiteContext, target: string): Promise<string | null> {
  if (target === ctx.code) return null;
  let at = await ctx.store.getSite(target);
  for (let i = 0; at && i < 64; i++) {
    if (at.relation === 'child') return at.code;
    if (at.relation !== 'descendant' || !at.parent) break;
    at = await ctx.store.getSite(at.parent);
  }
  throw fail('not_found', `site ${target} is not ${ctx.code} or below it (see "cascade site list")`);
}

export const TARGET_SPEC = /^site:([A-Za-z0-9]{3})$/;

/**
 * `cascade distribute`: targets at or below this site; the package goes once down each
 * route that leads to one or more of them.
 */
export async function distribute(
  ctx: SiteContext,
  packageId: string,
  versionWanted: number | undefined,
  to: string[],
): Promise<{ packageId: string; version: number; targets: { site: string; via: string | null; state: string; added: boolean }[] }> {
  const pkg = await ctx.store.getPackage(packageId);
  if (!pkg) throw fail('not_found', `package ${packageId} is not on site ${ctx.code}`);
  const version = versionWanted ?? pkg.latestVersion;
  const row = await ctx.store.getVersion(packageId, version);
  if (!row) throw fail('not_found', `package ${packageId} has no version ${version} on site ${ctx.code}`);
  const sites = to.map((t) => {
    const m = TARGET_SPEC.exec(t);
    if (!m) throw fail('bad_request', `target "${t}" is not site:CODE (DPs and DP groups come later)`);
    return (m[1] as string).toUpperCase();
  });
  const plan: { site: string; via: string | null; state: string; added: boolean }[] = [];
  const byChild = new Map<string, string[]>();
  for (const site of [...new Set(sites)]) {
    const via = await nextHop(ctx, site);
    const added = await addTarget(ctx.store, { packageId, version, site, via, bytesTotal: row.bytes });
    if (via === null) {
      await updateTarget(ctx.store, packageId, version, site, { state: 'installed', bytesDone: row.bytes });
    } else {
      byChild.set(via, [...(byChild.get(via) ?? []), site]);
    }
    plan.push({ site, via, state: via === null ? 'installed' : 'pending', added });
  }
  for (const [child, targets] of byChild) {
    await queueTransfer(ctx.store, { packageId, version, child, priority: pkg.priority, targets, bytesTotal: row.bytes, reopen: true });
  }
  await emit(ctx, {
    component: 'distribution',
    severity: 'info',
    code: 'distribution_started',
    text: `${packageId} version ${version} to ${sites.join(', ')}`,
    packageId,
  });
  return { packageId, version, targets: plan };
}

// --- the receiving half ------------------------------------------------------------------------

export const Offer = z.strictObject({
  packageId: z.string().regex(/^[A-Z0-9]{3}\d{5}$/),
  version: z.number().int().min(1),
  priority: z.enum(['high', 'medium', 'low']),
  manifest: z
    .string()
    .min(1)
    .max(700 << 20)
    .describe('the signed manifest, base64'),
  originCertificate: z.unknown().nullable(),
  targets: z
    .array(z.string().regex(/^[A-Z0-9]{3}$/))
    .min(1)
    .max(10_000),
});
export type Offer = z.infer<typeof Offer>;

const incomingPath = (ctx: SiteContext, id: string, version: number) => path.join(ctx.library.root, 'incoming', id, `${version}.json`);

/** The signed manifest of a version offered here and still arriving (for relaying it on). */
export async function readIncoming(ctx: SiteContext, id: string, version: number): Promise<Buffer> {
  try {
    return await fs.readFile(incomingPath(ctx, id, version));
  } catch {
    throw fail('conflict', `${id} version ${version} is neither installed nor arriving at ${ctx.code}`);
  }
}

/** The origin's key, through its certificate, or the central key when the central site is the origin. */
async function trustOrigin(ctx: SiteContext, certificate: unknown): Promise<void> {
  if (certificate === null || certificate === undefined) return;
  const central = await centralTrust(ctx);
  const c = verifyCertificate(certificate, central.key);
  await putKey(ctx.store, { keyId: c.keyId, site: c.code, publicKey: c.publicKey, certificate: JSON.stringify(certificate) });
  if (!ctx.trusted.some((t) => t.keyId === c.keyId)) ctx.trusted.push(c.trusted);
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
  for (const t of o.targets) {
    const via = await nextHop(ctx, t);
    await addTarget(ctx.store, { packageId: o.packageId, version: o.version, site: t, via, bytesTotal: manifest.bytes });
  }
  const versions = (await ctx.store.listVersions(o.packageId)).map((v) => v.version);
  const installed = versions.includes(o.version);
  if (!installed) await writeFileAtomic(ctx.library.tmpDir, incomingPath(ctx, o.packageId, o.version), bytes);
  const chunks = manifestChunks(manifest);
  const have = await ctx.store.haveChunks([...chunks.keys()]);
  const missing = [...chunks.keys()].filter((d) => !have.has(d));
  if (!installed && o.targets.includes(ctx.code)) {
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
      bytes = await fs.readFile(incomingPath(ctx, packageId, version));
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
    await fs.rm(incomingPath(ctx, packageId, version), { force: true });
  }
  await onInstalled(ctx, manifest, from);
  return { installed: true, missing: 0 };
}

/** Queues the version towards every target below this site that does not have it yet. */
async function queueOnward(ctx: SiteContext, manifest: Manifest): Promise<void> {
  const targets = (await listTargets(ctx.store, manifest.id)).filter(
    (t) => t.version === manifest.version && t.via !== null && t.state !== 'installed',
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
  const targets = (await listTargets(ctx.store, manifest.id)).filter((t) => t.version === manifest.version);
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

export const StatusReport = z.strictObject({
  targets: z
    .array(
      z.strictObject({
        packageId: z.string(),
        version: z.number().int(),
        site: z.string(),
        state: z.enum(['pending', 'sending', 'installed', 'retrying', 'failed']),
        bytesDone: z.number(),
        bytesTotal: z.number(),
        rate: z.number(),
        retries: z.number().int(),
        nextRetryAt: z.string().nullable(),
        lastError: z.string().nullable(),
        detail: z.string().nullable(),
      }),
    )
    .max(100_000),
  messages: z
    .array(
      z.strictObject({
        id: z.string().min(1).max(64),
        time: z.string().max(64),
        site: z.string().max(8),
        component: z.string().max(64),
        severity: z.enum(['info', 'warning', 'error']),
        code: z.string().max(64),
        text: z.string().max(4096),
        packageId: z.string().max(16).nullable(),
      }),
    )
    .max(10_000),
});
export type StatusReport = z.infer<typeof StatusReport>;

/** A child reports the targets at and below it and its status messages; kept, and sent on up. */
export async function acceptStatus(ctx: SiteContext, from: string, r: StatusReport): Promise<{ targets: number; messages: number }> {
  let n = 0;
  const sending = (await listTransfers(ctx.store, { child: from })).filter((x) => x.state !== 'done' && x.state !== 'failed');
  for (const t of r.targets) {
    // Only targets this site routed through that child.
    const mine = (await listTargets(ctx.store, t.packageId)).find((x) => x.version === t.version && x.site === t.site);
    if (!mine || mine.via !== from) continue;
    // While this site still sends that version to the child, its own sender's progress is the
    // truth for the hop; the child's view takes over once the hop is done.
    if (t.state !== 'installed' && sending.some((x) => x.packageId === t.packageId && x.version === t.version)) continue;
    // The report carries exactly the fields of a target's state.
    await updateTarget(ctx.store, t.packageId, t.version, t.site, t);
    n++;
  }
  // A child speaks for itself and the sites below it, not for anyone else.
  const below = new Set([from]);
  for (const site of await ctx.store.listSites()) {
    let at = site;
    for (let i = 0; i < 64 && at.relation === 'descendant' && at.parent; i++) {
      const up = await ctx.store.getSite(at.parent);
      if (!up) break;
      at = up;
    }
    if (at.code === from) below.add(site.code);
  }
  await addMessages(
    ctx.store,
    (r.messages as MessageRow[]).filter((m) => below.has(m.site)),
  );
  return { targets: n, messages: r.messages.length };
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
  const targets = (await listTargets(ctx.store)).filter((t) => t.updatedAt > mark);
  const messages = await unforwardedMessages(ctx.store, 1000);
  if (targets.length === 0 && messages.length === 0) return false;
  const newest = targets.reduce((m, t) => (t.updatedAt > m ? t.updatedAt : m), mark);
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
  };
  await callPeer(parent, 'POST', '/api/v1/status', body);
  await markForwarded(
    ctx.store,
    messages.map((m) => m.id),
  );
  await ctx.store.setMeta('status.reportedUpTo', newest);
  return true;
}

export interface StatusSummary {
  targeted: number;
  installed: number;
  sending: number;
  pending: number;
  retrying: number;
  failed: number;
}

export function summarise(targets: readonly TargetRow[]): StatusSummary {
  const s: StatusSummary = { targeted: targets.length, installed: 0, sending: 0, pending: 0, retrying: 0, failed: 0 };
  for (const t of targets) s[t.state]++;
  return s;
}
