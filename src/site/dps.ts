import fs from 'node:fs/promises';
import type { DpEntry as DpEntryView, DpJoinRequest, DpState, Group, Release } from '../api/dps.js';
import type { JoinAnswer } from '../api/sites.js';
import { normaliseTarget, parseDpName, parseGroupName, parseTargetSpec } from '../core/dp.js';
import { fail } from '../core/errors.js';
import { addMembers, createGroup, deleteGroup, getGroup, listGroups, removeMembers } from '../store/dps.js';
import type { SiteRow } from '../store/store.js';
import type { SiteContext } from './context.js';
import { admit } from './hierarchy.js';
import { ownRelease } from './release.js';

/** A DP joins this site: one-time token, a name unique in the hierarchy, credentials both ways. */
export function acceptDpJoin(ctx: SiteContext, req: DpJoinRequest, ownUrl: string | null): Promise<JoinAnswer> {
  return admit(ctx, 'dp', { ...req, code: req.name }, ownUrl);
}

/** What this process holds and has room for: every process is a DP of its own library. */
export async function ownDpState(ctx: SiteContext, site: string, url: string | null): Promise<DpState> {
  let freeBytes: number | null = null;
  let totalBytes: number | null = null;
  try {
    const st = await fs.statfs(ctx.library.root);
    freeBytes = st.bavail * st.bsize;
    totalBytes = st.blocks * st.bsize;
  } catch {
    // statfs is missing on some platforms: the space is then unknown.
  }
  const held: { packageId: string; version: number }[] = [];
  for (const p of await ctx.store.listPackages()) {
    for (const v of await ctx.store.listVersions(p.id)) held.push({ packageId: p.id, version: v.version });
  }
  return {
    name: ctx.code,
    site,
    url,
    reachable: true,
    lastContact: ctx.clock().toISOString(),
    freeBytes,
    totalBytes,
    held,
    at: ctx.clock().toISOString(),
    contentUrl: (await ctx.store.getMeta('site.contentUrl')) ?? null,
    release: ownRelease(ctx),
    tlsPin: ctx.tlsPin ?? null,
  };
}

export interface DpEntry extends DpState {
  kind: 'local' | 'remote';
}

const entryOf = (r: SiteRow, kind: 'local' | 'remote', site: string): DpEntry => ({
  name: r.code,
  site,
  kind,
  url: r.url,
  reachable: r.reachable,
  lastContact: r.lastContact,
  freeBytes: r.freeBytes,
  totalBytes: r.totalBytes,
  held: r.held,
  at: r.stateAt ?? r.createdAt,
  contentUrl: r.contentUrl,
  release: r.release,
  tlsPin: r.tlsPin,
});

/** Every DP at or below this site: the local DPs of this site and of every site below, and remote DPs. */
export async function listAllDps(ctx: SiteContext): Promise<DpEntry[]> {
  const url = (await ctx.store.getMeta('site.url')) ?? (await ctx.store.getMeta('site.listenUrl')) ?? null;
  const out: DpEntry[] = [{ ...(await ownDpState(ctx, ctx.code, url)), kind: 'local' }];
  for (const s of await ctx.store.listSites()) {
    if (s.relation === 'child' || s.relation === 'descendant') out.push(entryOf(s, 'local', s.code));
  }
  for (const d of await ctx.store.listDps()) out.push(entryOf(d, 'remote', d.parent ?? '?'));
  return out;
}

/**
 * A reported release as this site keeps it: what the DP or child site runs and what failed
 * there come from its report; this site's upgrade of its own DPs and child sites is its own
 * (a DP or site further below: as its own site reported it).
 */
function mergeRelease(row: SiteRow, reported: Release | null): Release | null {
  if (row.relation !== 'dp' && row.relation !== 'child') return reported;
  if (reported === null) return row.release;
  return { ...reported, upgrade: row.release?.upgrade ?? null };
}

/** Records the states a DP or a child site reported (only for DPs it may speak for). */
export async function recordDpStates(ctx: SiteContext, states: readonly DpState[], allowed: (name: string) => boolean): Promise<void> {
  for (const s of states) {
    if (!allowed(s.name)) continue;
    const row = await ctx.store.getSite(s.name);
    if (!row || row.relation === 'parent') continue;
    await ctx.store.setDpState(s.name, {
      freeBytes: s.freeBytes,
      totalBytes: s.totalBytes,
      held: s.held,
      at: s.at,
      contentUrl: s.contentUrl,
      release: s.release === undefined ? undefined : mergeRelease(row, s.release),
    });
    // A DP below: its address as its own site knows it (shown in `dp list` here).
    if (row.relation === 'dp-below' && s.url && row.url !== s.url && URL.canParse(s.url)) await ctx.store.setSiteUrl(s.name, s.url);
    // Contact with DPs below is what their own site last saw.
    if (row.relation === 'dp-below' || row.relation === 'descendant') await ctx.store.setContact(s.name, s.reachable, s.lastContact);
  }
}

/**
 * The DPs named by `site:CODE`, `dp:NAME` and `group:NAME` specs, in order, without repeats.
 * `site:CODE` is every DP of that site: its local DP and its remote ones.
 */
export async function resolveTargets(ctx: SiteContext, specs: readonly string[]): Promise<string[]> {
  const dps = await listAllDps(ctx);
  const known = new Map(dps.map((d) => [d.name, d]));
  const out = new Set<string>();
  const one = (name: string, how: string) => {
    if (!known.has(name)) throw fail('not_found', `${how}: DP ${name} is not at or below site ${ctx.code} (see "cascade dp list")`);
    out.add(name);
  };
  for (const spec of specs) {
    const t = parseTargetSpec(spec);
    if (t.kind === 'site') {
      if (!known.has(t.code)) throw fail('not_found', `site ${t.code} is not ${ctx.code} or below it (see "cascade site list")`);
      for (const d of dps) if (d.site === t.code) out.add(d.name);
    } else if (t.kind === 'dp') {
      one(t.name, spec);
    } else {
      const g = await getGroup(ctx.store, t.name);
      if (!g) throw fail('not_found', `DP group ${t.name} does not exist (see "cascade dp-group list")`);
      if (g.members.length === 0) throw fail('bad_request', `DP group ${t.name} has no DPs; add some with "cascade dp-group add"`);
      for (const m of g.members) one(m, spec);
    }
  }
  return [...out];
}

/** The site a DP belongs to (a site's code names its local DP). */
export async function siteOfDp(ctx: SiteContext, name: string): Promise<string> {
  if (name === ctx.code) return ctx.code;
  const r = await ctx.store.getSite(name);
  if (!r) return '?';
  return r.relation === 'dp' || r.relation === 'dp-below' ? (r.parent ?? '?') : r.code;
}

/** Every DP at or below this site, with its state as clients and admins read it. */
export async function dpEntries(ctx: SiteContext): Promise<DpEntryView[]> {
  return (await listAllDps(ctx)).map(({ held, ...d }) => ({
    ...d,
    contentUrl: d.contentUrl ?? null,
    state: d.reachable === null ? ('unknown' as const) : d.reachable ? ('online' as const) : ('unreachable' as const),
    packages: held,
    release: d.release ?? null,
  }));
}

/** DP names as typed, each a DP at or below this site; not_found names the first that is not. */
async function knownDps(ctx: SiteContext, names: readonly string[]): Promise<string[]> {
  const all = new Set((await listAllDps(ctx)).map((d) => d.name));
  for (const n of names) {
    const name = n.length === 3 ? normaliseTarget(n) : parseDpName(n);
    if (!all.has(name)) throw fail('not_found', `DP ${n} is not at or below site ${ctx.code} (see "cascade dp list")`);
  }
  return names.map(normaliseTarget);
}

export const groups = (ctx: SiteContext) => listGroups(ctx.store);

export async function dpGroup(ctx: SiteContext, name: string): Promise<Group> {
  const g = await getGroup(ctx.store, name);
  if (!g) throw fail('not_found', `DP group ${name} does not exist (see "cascade dp-group list")`);
  return g;
}

export async function createDpGroup(ctx: SiteContext, name: string, dps: readonly string[]): Promise<Group> {
  return createGroup(ctx.store, parseGroupName(name), await knownDps(ctx, dps));
}

/** Adds DPs to a group (each must be a DP at or below this site) or takes them out. */
export async function changeDpGroup(ctx: SiteContext, typed: string, op: 'add' | 'remove', dps: readonly string[]): Promise<Group> {
  const { name } = await dpGroup(ctx, typed);
  if (op === 'add') await addMembers(ctx.store, name, await knownDps(ctx, dps));
  else await removeMembers(ctx.store, name, dps.map(normaliseTarget));
  return dpGroup(ctx, name);
}

export async function deleteDpGroup(ctx: SiteContext, name: string): Promise<void> {
  if (!(await deleteGroup(ctx.store, name))) throw fail('not_found', `DP group ${name} does not exist`);
}
