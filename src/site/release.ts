import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Release, ReleaseOrder } from '../api/dps.js';
import { decodeChunk } from '../content/codec.js';
import { verifyManifest } from '../content/manifest.js';

import { fail } from '../core/errors.js';
import { compareReleases, RELEASE_PROGRAM, releaseCommandVersion } from '../core/release.js';
import { installUrl, VERSION } from '../lib/version.js';
import { type Trial, VersionsFile, type VersionsState } from '../lib/versions.js';
import type { SiteContext } from './context.js';

/**
 * A DP's side of following its site's release (docs/dp.md#releases). The site answers the DP's
 * status report with a release order once the DP holds the release's package; the DP writes
 * that package's files to `releases/V/` in its data folder (each chunk checked against the
 * signed manifest), puts it on trial in `releases.json`, and restarts on it through its
 * launcher. The release becomes current at its first status report that its site answers; a
 * release that exits or stays silent before that is rolled back by the launcher, and the DP
 * reports why.
 */

export const RELEASES_FILE = 'releases.json';
export const RELEASES_DIR = 'releases';
/** Set for a DP its launcher started. */
export const DP_SUPERVISED_ENV = 'CASCADE_DP_SUPERVISED';

export interface ReleaseTrial extends Trial {
  /** Which of its site's orders to restart on this release it follows. */
  attempt: number;
  packageId: string;
  packageVersion: number;
  since: string;
}

export const releaseVersions = (dataDir: string) =>
  new VersionsFile<ReleaseTrial, VersionsState<ReleaseTrial>>(dataDir, RELEASES_FILE, RELEASES_DIR, {
    current: null,
    previous: null,
    trying: null,
    rolledBack: null,
  });

/** The file a DP's launcher runs for release V. */
export const releaseEntry = (dataDir: string, version: string): string =>
  path.join(releaseVersions(dataDir).versionDir(version), 'bin', 'cascade');

/** What this process reports of its release: the one it runs, and (a DP) the last that did not start. */
export function ownRelease(ctx: SiteContext): Release {
  const rb = ctx.process ? releaseVersions(ctx.process.dataDir).read().rolledBack : null;
  return {
    running: VERSION,
    upgrade: null,
    rolledBack: rb ? { version: rb.version, attempt: rb.attempt ?? null, reason: rb.reason, at: rb.at } : null,
  };
}

/** A version's manifest from the library, its signature checked. */
const signedManifest = async (ctx: SiteContext, id: string, version: number) =>
  verifyManifest(await ctx.library.readManifest(id, version), ctx.trusted).manifest;

/** The release a package version carries (its one program names it), or null. */
export async function releaseOf(ctx: SiteContext, packageId: string, version: number): Promise<string | null> {
  const m = await signedManifest(ctx, packageId, version);
  return releaseCommandVersion(m.programs.find((p) => p.name === RELEASE_PROGRAM)?.command ?? '');
}

const dependenciesOf = (root: string): string => {
  const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
  return JSON.stringify(Object.entries(pkg.dependencies ?? {}).sort(([a], [b]) => a.localeCompare(b)));
};

/**
 * A DP told to restart on a release: writes the release's files from its library (each chunk
 * checked against the signed manifest), links the installation's `node_modules` beside them,
 * and puts the release on trial. Returns true when the DP should now restart; false when it
 * cannot follow (not run by its launcher), already runs it, or the release needs other
 * dependencies (recorded as rolled back, with the reason, for the site to see).
 */
export async function prepareRelease(ctx: SiteContext, order: ReleaseOrder): Promise<boolean> {
  const proc = ctx.process;
  if (!proc?.switchRelease) {
    ctx.log.warn({ release: order.version }, 'told to restart on a newer release, but not run by "cascade dp start": not upgrading');
    return false;
  }
  if (compareReleases(order.version, VERSION) === 0) return false;
  const versions = releaseVersions(proc.dataDir);
  const before = versions.read();
  if (before.trying?.version === order.version) return true;
  // The release failed here on this order: the site has been told; a new order tries again.
  if (before.rolledBack?.version === order.version && before.rolledBack.attempt === order.attempt) return false;
  const carried = await releaseOf(ctx, order.packageId, order.packageVersion);
  if (carried !== order.version)
    throw fail(
      'bad_request',
      `${order.packageId} version ${order.packageVersion} carries release ${carried ?? '(none)'}, not ${order.version}`,
    );
  const manifest = await signedManifest(ctx, order.packageId, order.packageVersion);
  const dir = versions.versionDir(order.version);
  const staging = `${dir}.tmp`;
  fs.rmSync(staging, { recursive: true, force: true });
  fs.mkdirSync(staging, { recursive: true });
  for (const e of manifest.files) {
    const out = path.join(staging, ...e.path.split('/'));
    if (!out.startsWith(staging + path.sep)) throw fail('bad_request', `release file ${e.path} leaves its folder`);
    if (e.type === 'dir') {
      fs.mkdirSync(out, { recursive: true });
      continue;
    }
    if (e.type !== 'file') continue;
    fs.mkdirSync(path.dirname(out), { recursive: true });
    const parts: Buffer[] = [];
    for (const [digest, size] of e.chunks) {
      const data = decodeChunk(await ctx.library.readStored(digest), size);
      if (crypto.createHash('sha256').update(data).digest('hex') !== digest)
        throw fail('damaged', `chunk ${digest} of release ${order.version} does not match its manifest`);
      parts.push(data);
    }
    fs.writeFileSync(out, Buffer.concat(parts), { mode: e.mode & 0o777 });
  }
  // The release runs on the dependencies installed with this DP: refuse one that needs others.
  const install = fs.realpathSync(fileURLToPath(installUrl()));
  const now = ctx.clock().toISOString();
  if (dependenciesOf(staging) !== dependenciesOf(install)) {
    fs.rmSync(staging, { recursive: true, force: true });
    const reason = `release ${order.version} needs other dependencies than those installed with this DP (${install}): install it there with npm`;
    versions.write({
      ...before,
      rolledBack: {
        version: order.version,
        attempt: order.attempt,
        from: VERSION,
        packageId: order.packageId,
        packageVersion: order.packageVersion,
        since: now,
        reason,
        at: now,
      },
    });
    ctx.log.error({ release: order.version }, reason);
    return false;
  }
  fs.symlinkSync(path.join(install, 'node_modules'), path.join(staging, 'node_modules'), 'dir');
  fs.rmSync(dir, { recursive: true, force: true });
  fs.renameSync(staging, dir);
  versions.write({
    ...before,
    trying: {
      version: order.version,
      attempt: order.attempt,
      from: before.current,
      packageId: order.packageId,
      packageVersion: order.packageVersion,
      since: now,
    },
  });
  ctx.log.info({ release: order.version, from: VERSION }, 'restarting on a newer release');
  return true;
}

/** After a status report its site answered: a release on trial is now current. */
export function settleRelease(ctx: SiteContext): void {
  if (!ctx.process) return;
  const versions = releaseVersions(ctx.process.dataDir);
  const v = versions.read();
  if (v.trying?.version !== VERSION) return;
  const from = v.trying.from;
  versions.write({ ...v, current: VERSION, previous: from, trying: null, rolledBack: null });
  ctx.log.info({ release: VERSION, from }, 'running the new release: confirmed by its site');
  // Older releases are no longer needed: keep the one before, for going back by hand.
  const root = path.join(ctx.process.dataDir, RELEASES_DIR);
  for (const d of fs.existsSync(root) ? fs.readdirSync(root) : [])
    if (d !== VERSION && d !== from) fs.rmSync(path.join(root, d), { recursive: true, force: true });
}

/** The release a site published to its DPs and child sites (src/site/upgrades.ts). */
export const META_PUBLISHED = 'release.published';

export interface Published {
  version: string;
  packageId: string;
  packageVersion: number;
}

export async function published(ctx: SiteContext): Promise<Published | null> {
  const p = await ctx.store.getMeta(META_PUBLISHED);
  return p ? (JSON.parse(p) as Published) : null;
}

/** The answer to a DP's status report: restart on the release, once it is its turn. */
export async function releaseOrderFor(ctx: SiteContext, dp: string): Promise<ReleaseOrder | undefined> {
  const row = await ctx.store.getSite(dp);
  const u = row?.release?.upgrade;
  if (row?.relation !== 'dp' || !u || u.state !== 'upgrading') return undefined;
  const pub = await published(ctx);
  if (!pub || pub.version !== u.target) return undefined;
  return { version: pub.version, packageId: pub.packageId, packageVersion: pub.packageVersion, attempt: u.attempt };
}
