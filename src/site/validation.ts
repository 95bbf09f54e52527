import type { DpValidation } from '../api/distributions.js';
import type { ValidateRequest } from '../api/transfers.js';
import { REPAIR_HEADER, transferCalls } from '../api/transfers.js';
import { encodeRecordHeader, RECORD_WHOLE } from '../content/batch.js';
import { decodeChunk } from '../content/codec.js';
import { type Manifest, manifestChunks, verifyManifest } from '../content/manifest.js';
import { validateVersion } from '../content/validate.js';
import { fail } from '../core/errors.js';
import { listTargets } from '../store/distribution.js';
import type { SiteRow } from '../store/store.js';
import type { SiteContext } from './context.js';
import { siteOfDp } from './dps.js';
import { nextHop } from './hierarchy.js';
import { emit } from './messages.js';
import { peerClient } from './peers.js';

/**
 * Validation ("testing the distribution", docs/dp.md): each DP re-hashes the content it holds
 * and checks every file of the tree against the signed manifest. Asked down the tree hop by
 * hop, like a distribution; a problem raises a status message naming package, DP, file and
 * chunk. Repair re-sends only the damaged chunks, from the site that feeds the DP.
 */

async function manifestOf(ctx: SiteContext, packageId: string, version: number): Promise<Manifest> {
  return verifyManifest(await ctx.library.readManifest(packageId, version), ctx.trusted).manifest;
}

/** Validates this process's own copy. */
async function validateOwn(ctx: SiteContext, packageId: string, version: number, lowPriority: boolean): Promise<DpValidation> {
  const base = { dp: ctx.code, site: await siteOfDp(ctx, ctx.code) };
  if (!(await ctx.store.getVersion(packageId, version)))
    return {
      ...base,
      ok: false,
      checkedFiles: 0,
      checkedBytes: 0,
      problems: [],
      error: `${packageId} version ${version} is not installed here`,
    };
  let manifest: Manifest;
  try {
    manifest = await manifestOf(ctx, packageId, version);
  } catch (e) {
    return {
      ...base,
      ok: false,
      checkedFiles: 0,
      checkedBytes: 0,
      problems: [{ path: `manifests/${packageId}/${version}.json`, chunk: null, kind: 'damaged', detail: (e as Error).message }],
    };
  }
  const r = await validateVersion(ctx.library, manifest, { lowPriority });
  return { ...base, ok: r.ok, checkedFiles: r.checkedFiles, checkedBytes: r.checkedBytes, problems: r.problems };
}

/** Re-sends these chunks (whole, verified on arrival there) from this library to a neighbour. */
async function resend(ctx: SiteContext, peer: SiteRow, manifest: Manifest, digests: readonly string[]): Promise<number> {
  const sizes = manifestChunks(manifest);
  const parts: Uint8Array[] = [];
  for (const d of new Set(digests)) {
    const raw = decodeChunk(await ctx.library.readStored(d), sizes.get(d) ?? 0);
    parts.push(encodeRecordHeader(RECORD_WHOLE, d, raw.length), raw);
  }
  if (parts.length === 0) return 0;
  // The sender's own path for a chunk batch; a repair is small and not held to the route's rate.
  await peerClient(peer, { timeoutMs: 300_000 }).upload(transferCalls.chunks, parts, { headers: { [REPAIR_HEADER]: 'damaged copies' } });
  return parts.length / 2;
}

/**
 * Validates a version on these DPs (at or below this site), optionally repairing them. Each
 * hop answers for the DPs below it; the damage of a neighbour's own copy is repaired from here.
 */
export async function validateBelow(ctx: SiteContext, req: ValidateRequest): Promise<DpValidation[]> {
  const out: DpValidation[] = [];
  const byHop = new Map<string, string[]>();
  // A DP's problems are raised by its site, which knows the whole picture; each site speaks for
  // its own DPs (the sites below raised theirs already). Raised as found, so that a repair's
  // message comes after the damage it repaired.
  const isDp = (await ctx.store.getMeta('site.role')) === 'dp';
  const raise = async (r: DpValidation) => {
    if (isDp || (r.dp !== ctx.code && r.site !== ctx.code)) return;
    for (const p of r.problems.slice(0, 100)) {
      await emit(ctx, {
        component: 'validation',
        severity: 'error',
        code: `content_${p.kind}`,
        text: `${req.packageId} version ${req.version} on DP ${r.dp}: ${p.path}${p.chunk ? ` chunk ${p.chunk}` : ''}: ${p.kind} (${p.detail})`,
        packageId: req.packageId,
      });
    }
  };
  for (const t of req.targets) {
    const via = await nextHop(ctx, t);
    if (via === null) {
      const own = await validateOwn(ctx, req.packageId, req.version, req.lowPriority);
      await raise(own);
      out.push(own);
    } else byHop.set(via, [...(byHop.get(via) ?? []), t]);
  }
  for (const [hop, targets] of byHop) {
    const peer = await ctx.store.getSite(hop);
    let results: DpValidation[];
    try {
      if (!peer) throw fail('not_found', `${hop} is unknown here`);
      results = (await peerClient(peer).call(transferCalls.validate, { ...req, targets })).results;
    } catch (e) {
      for (const dp of targets)
        out.push({
          dp,
          site: await siteOfDp(ctx, dp),
          ok: false,
          checkedFiles: 0,
          checkedBytes: 0,
          problems: [],
          error: (e as Error).message,
        });
      continue;
    }
    for (const r of results) {
      // A DP does not name its own site: this site knows it.
      const site = await siteOfDp(ctx, r.dp);
      if (site !== '?') r.site = site;
      await raise(r);
      // The neighbour's own copy is fed from here: re-send its damaged chunks.
      if (req.repair && r.dp === hop && peer && !r.ok && r.problems.length > 0) {
        try {
          const manifest = await manifestOf(ctx, req.packageId, req.version);
          const chunks = r.problems.map((p) => p.chunk).filter((c): c is string => c !== null);
          const n = await resend(ctx, peer, manifest, chunks);
          const again = (await peerClient(peer).call(transferCalls.validate, { ...req, targets: [hop], repair: false })).results[0];
          r.repaired = { chunks: n, ok: again?.ok ?? false };
          await emit(ctx, {
            component: 'validation',
            severity: again?.ok ? 'info' : 'error',
            code: again?.ok ? 'package_repaired' : 'repair_failed',
            text: `${req.packageId} version ${req.version} on ${hop}: ${n} damaged chunk(s) re-sent from ${ctx.code}; ${again?.ok ? 'valid again' : 'still invalid'}`,
            packageId: req.packageId,
          });
        } catch (e) {
          r.error = `repair failed: ${(e as Error).message}`;
        }
      }
      out.push(r);
    }
  }
  return out;
}

/**
 * `cascade validate` / `cascade repair` at a site: the DPs holding the version at or below
 * this site (or the one named).
 */
export async function validateDistribution(
  ctx: SiteContext,
  packageId: string,
  versionWanted: number | undefined,
  dp: string | undefined,
  opts: { repair: boolean },
): Promise<{ packageId: string; version: number; results: DpValidation[] }> {
  const pkg = await ctx.store.getPackage(packageId);
  const targets = await listTargets(ctx.store, { packageId });
  if (!pkg && targets.length === 0) throw fail('not_found', `package ${packageId} is not known at site ${ctx.code}`);
  const version = versionWanted ?? pkg?.latestVersion ?? Math.max(...targets.map((t) => t.version));
  let names: string[];
  if (dp) {
    names = [dp];
  } else {
    names = targets.filter((t) => t.version === version && t.state === 'installed').map((t) => t.site);
    if (!names.includes(ctx.code) && (await ctx.store.getVersion(packageId, version))) names.unshift(ctx.code);
  }
  if (names.length === 0) throw fail('not_found', `${packageId} version ${version} is installed on no DP at or below ${ctx.code}`);
  const results = await validateBelow(ctx, { packageId, version, targets: names, repair: opts.repair, lowPriority: false });
  return { packageId, version, results };
}

/** The scheduled validation: every version this site holds and on its own DPs, at low priority. */
export async function scheduledValidation(ctx: SiteContext, autoRepair: boolean): Promise<number> {
  let problems = 0;
  const own = (await ctx.store.listDps()).filter((d) => d.relation === 'dp').map((d) => d.code);
  for (const p of await ctx.store.listPackages()) {
    for (const v of await ctx.store.listVersions(p.id)) {
      const installedOn = (await listTargets(ctx.store, { packageId: p.id, version: v.version, states: ['installed'], sites: own })).map(
        (t) => t.site,
      );
      const results = await validateBelow(ctx, {
        packageId: p.id,
        version: v.version,
        targets: [ctx.code, ...installedOn],
        repair: autoRepair,
        lowPriority: true,
      });
      problems += results.reduce((n, r) => n + r.problems.length, 0);
    }
  }
  return problems;
}
