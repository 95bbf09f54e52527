import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Release, UpgradeAnswer } from '../api/dps.js';
import type { Entry } from '../content/manifest.js';
import { fail } from '../core/errors.js';
import {
  compareReleases,
  isRestarting,
  RELEASE_PACKAGE_NAME,
  RELEASE_PROGRAM,
  releaseCommand,
  type UpgradeState,
} from '../core/release.js';
import { installUrl, VERSION } from '../lib/version.js';
import type { SiteRow } from '../store/store.js';
import { storeBuffer } from './content.js';
import type { SiteContext } from './context.js';
import { distribute } from './distribution.js';
import { emit } from './messages.js';
import { commitOwnVersion, ownPackage } from './own-package.js';
import { invalidate, snapshot } from './policy.js';
import { META_PUBLISHED, type Published, published } from './release.js';
import { slotTable } from './slots.js';

/**
 * A site's side of following its release (docs/dp.md#releases): a site server started on a
 * newer release stores that release's code (`package.json`, `bin/`, `dist/`) as a version of
 * the site's "Cascade release" package, sends it to its own DPs and to its child sites, and
 * upgrades its DPs one at a time: the next DP is drained of clients (steered to the others),
 * told to restart on the release, and awaited; only when it reports the release does the next
 * one start. A DP that rolls back or does not come back halts the upgrade, saying which and why;
 * `cascade dp upgrade` resumes it. Child sites are offered the release: their operators start
 * it there, and their own DPs then follow them.
 */

const META_PACKAGE = 'release.package';
const META_HALTED = 'release.halted';

/** How long clients are steered away from a DP before it restarts, when downloads from it are not counted. */
const drainSeconds = () => Math.max(0, Number(process.env.CASCADE_DP_DRAIN_SECONDS ?? 30));
/** How long a DP told to restart has to report the new release (or its rollback). */
const backSeconds = () => Math.max(10, Number(process.env.CASCADE_DP_UPGRADE_SECONDS ?? 900));

/** The files of a release as installed: `package.json`, `bin/` and `dist/` (not node_modules). */
export function releaseFiles(root: string): { rel: string; abs: string; mode: number }[] {
  const out: { rel: string; abs: string; mode: number }[] = [];
  const walk = (rel: string) => {
    const abs = path.join(root, rel);
    for (const d of fs.readdirSync(abs, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const r = `${rel}/${d.name}`;
      if (d.isDirectory()) walk(r);
      else if (d.isFile()) out.push({ rel: r, abs: path.join(root, r), mode: fs.statSync(path.join(root, r)).mode & 0o777 });
    }
  };
  out.push({ rel: 'package.json', abs: path.join(root, 'package.json'), mode: 0o644 });
  walk('bin');
  walk('dist');
  return out;
}

/**
 * Stores the release this process runs as a version of the site's release package (none new
 * when the same files are there already), sends it to the site's own DPs and child sites, and
 * starts upgrading the DPs. Null when the release's files are not there (not built).
 */
export async function publishRelease(ctx: SiteContext, root = fileURLToPath(installUrl()), version = VERSION): Promise<Published | null> {
  if (!fs.existsSync(path.join(root, 'dist')) || !fs.existsSync(path.join(root, 'bin'))) {
    ctx.log.warn({ root, release: version }, 'the release files (bin/, dist/) are missing (npm run build): DPs not upgraded');
    return null;
  }
  const files: Entry[] = [];
  for (const f of releaseFiles(root)) files.push(await storeBuffer(ctx, fs.readFileSync(f.abs), f.rel, f.mode));
  const own = await ownPackage(ctx, META_PACKAGE);
  const { id: packageId, version: packageVersion } = await commitOwnVersion(ctx, META_PACKAGE, own, {
    name: RELEASE_PACKAGE_NAME,
    program: { name: RELEASE_PROGRAM, command: releaseCommand(version) },
    files,
  });
  const pub: Published = { version, packageId, packageVersion };
  await ctx.store.setMeta(META_PUBLISHED, JSON.stringify(pub));
  const sites = await ctx.store.listSites();
  const dps = (await ctx.store.listDps()).filter((d) => d.relation === 'dp');
  const children = sites.filter((s) => s.relation === 'child');
  const targets = [...dps.map((d) => `dp:${d.code}`), ...children.map((c) => `dp:${c.code}`)];
  if (targets.length > 0) await distribute(ctx, pub.packageId, pub.packageVersion, targets);
  const now = ctx.clock().toISOString();
  for (const c of children)
    if (!c.release?.running || compareReleases(version, c.release.running) > 0)
      await setUpgrade(ctx, c, {
        target: version,
        state: 'offered',
        attempt: 0,
        since: now,
        detail: `sent as ${pub.packageId} version ${pub.packageVersion}; its operator starts it there`,
      });
  await emit(ctx, {
    component: 'release',
    severity: 'info',
    code: 'release_published',
    text: `release ${version} stored as ${pub.packageId} version ${pub.packageVersion}: its ${dps.length} DP(s) follow one at a time; offered to ${children.length} child site(s)`,
    packageId: pub.packageId,
  });
  await tickUpgrades(ctx);
  return pub;
}

async function setUpgrade(ctx: SiteContext, row: SiteRow, upgrade: NonNullable<Release['upgrade']>): Promise<void> {
  const release: Release = { running: row.release?.running ?? null, rolledBack: row.release?.rolledBack ?? null, upgrade };
  row.release = release;
  await ctx.store.setRelease(row.code, release);
}

/**
 * One step of the DPs' upgrade: settles the DP being upgraded (back on the release, rolled
 * back, or not back in time), else drains the next DP that holds the release. At most one DP
 * is draining or restarting at a time.
 */
export function tickUpgrades(ctx: SiteContext): Promise<void> {
  // One step at a time (the site's timer and a caller may ask at once).
  let p = ticking.get(ctx);
  if (!p) {
    p = step(ctx).finally(() => ticking.delete(ctx));
    ticking.set(ctx, p);
  }
  return p;
}

const ticking = new WeakMap<SiteContext, Promise<void>>();

async function step(ctx: SiteContext): Promise<void> {
  const pub = await published(ctx);
  if (!pub) return;
  const now = ctx.clock();
  const since = (u: { since: string }) => (now.getTime() - Date.parse(u.since)) / 1000;
  const dps = (await ctx.store.listDps()).filter((d) => d.relation === 'dp');
  const move = async (d: SiteRow, state: UpgradeState, detail: string, attempt: number, severity?: 'info' | 'error') => {
    await setUpgrade(ctx, d, { target: pub.version, state, attempt, since: now.toISOString(), detail });
    invalidate(ctx);
    if (severity)
      await emit(ctx, { component: 'release', severity, code: `dp_${state.replace('-', '_')}`, text: `DP ${d.code}: ${detail}` });
  };
  const halt = async (why: string) => {
    await ctx.store.setMeta(META_HALTED, pub.version);
    await emit(ctx, {
      component: 'release',
      severity: 'error',
      code: 'dp_upgrade_halted',
      text: `upgrade of site ${ctx.code}'s DPs to release ${pub.version} halted: ${why}; the other DPs stay on their release ("cascade dp upgrade" resumes)`,
    });
  };
  let busy = false;
  for (const d of dps) {
    const r = d.release;
    const u = r?.upgrade;
    if (!r || !u || u.target !== pub.version) continue;
    if (r.running === pub.version) {
      if (u.state !== 'upgraded') await move(d, 'upgraded', `runs release ${pub.version}`, u.attempt, 'info');
      continue;
    }
    if (!isRestarting(u.state)) continue;
    const rb = r.rolledBack;
    if (rb && rb.version === pub.version && rb.attempt === u.attempt) {
      await move(
        d,
        'rolled-back',
        `release ${pub.version} did not start there (${rb.reason}); back on ${r.running ?? 'its release'}`,
        u.attempt,
        'error',
      );
      await halt(`DP ${d.code} rolled back`);
      continue;
    }
    if (u.state === 'draining') {
      // With a cap per DP the site counts the downloads from each: a drained DP is seen to be idle.
      const downloads = [...slotTable(ctx).slots.values()].filter((s) => s.dp === d.code).length;
      const counted = (await snapshot(ctx)).settings.dpDownloadSlots !== null && downloads === 0 && since(u) >= 2;
      if (counted || since(u) >= drainSeconds()) await move(d, 'upgrading', `told to restart on release ${pub.version}`, u.attempt, 'info');
      busy = true;
      continue;
    }
    if (since(u) > backSeconds()) {
      await move(
        d,
        'failed',
        `not back on release ${pub.version} or ${r.running ?? 'its own'} within ${backSeconds()} s`,
        u.attempt,
        'error',
      );
      await halt(`DP ${d.code} did not come back`);
      continue;
    }
    busy = true;
  }
  if (busy || (await ctx.store.getMeta(META_HALTED)) === pub.version) return;
  for (const d of dps) {
    const r = d.release;
    // A DP that does not report its release (an older one) is upgraded by hand.
    if (!r?.running || compareReleases(pub.version, r.running) <= 0) continue;
    const u = r.upgrade?.target === pub.version ? r.upgrade : null;
    if (u && (u.state === 'rolled-back' || u.state === 'failed' || u.state === 'upgraded')) continue;
    const attempt = (u?.attempt ?? 0) + 1;
    if (!d.held.some((h) => h.packageId === pub.packageId && h.version === pub.packageVersion)) {
      if (u?.state !== 'waiting')
        await move(
          d,
          'waiting',
          `waiting for ${pub.packageId} version ${pub.packageVersion} (release ${pub.version}) to arrive`,
          attempt - 1,
        );
      continue;
    }
    if (d.reachable === false) continue;
    await move(d, 'draining', `steering clients to the other DPs before restarting on release ${pub.version}`, attempt, 'info');
    return;
  }
}

/** `cascade dp upgrade [NAME...]`: DPs whose upgrade rolled back or failed are tried again; a halted upgrade resumes. */
export async function resumeUpgrades(ctx: SiteContext, names: readonly string[]): Promise<UpgradeAnswer> {
  const pub = await published(ctx);
  if (!pub || pub.version !== VERSION)
    throw fail(
      'conflict',
      `site ${ctx.code} has published no release of its own to its DPs (it runs ${VERSION}; DPs follow a newer release when the site starts on one)`,
    );
  const dps = (await ctx.store.listDps()).filter((d) => d.relation === 'dp');
  for (const n of names)
    if (!dps.some((d) => d.code === n)) throw fail('not_found', `DP ${n} is not a DP of site ${ctx.code} (see "cascade dp list")`);
  const resumed: string[] = [];
  for (const d of dps) {
    const u = d.release?.upgrade;
    if (names.length > 0 && !names.includes(d.code)) continue;
    if (u?.target === pub.version && (u.state === 'rolled-back' || u.state === 'failed')) {
      await setUpgrade(ctx, d, { ...u, state: 'waiting', since: ctx.clock().toISOString(), detail: 'to be tried again' });
      resumed.push(d.code);
    }
  }
  await ctx.store.setMeta(META_HALTED, '');
  await tickUpgrades(ctx);
  return { release: pub.version, resumed };
}
