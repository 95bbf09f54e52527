import type { RemoveNeighbourAnswer } from '../api/sites.js';
import { fail } from '../core/errors.js';
import { PEER_ROLE } from '../core/roles.js';
import { dropTransferTargets, listTransfers } from '../store/distribution.js';
import { listGroups, removeMembers } from '../store/dps.js';
import type { SiteRow, Store } from '../store/store.js';
import type { SiteContext } from './context.js';
import { emit } from './messages.js';
import { invalidate } from './policy.js';
import { addPending } from './removals.js';

/**
 * Taking a DP or a child site out of the hierarchy (docs/hierarchy.md#removing-a-site-or-a-dp):
 * `cascade dp remove NAME` and `cascade site remove CODE`. At the site that removes it, the
 * neighbour and everything below it go: their targets (so status no longer counts them), open
 * transfers to them, DP group memberships, the neighbour's credential, their rows. The codes and
 * names then travel up with the status reports: each site above forgets them, and the central
 * site frees them, so they can join again. A join that failed after it was registered above
 * frees its code the same way.
 */

/** `code` and every site and DP whose chain of parents leads to it. */
function atAndBelow(code: string, rows: readonly SiteRow[]): string[] {
  const byCode = new Map(rows.map((r) => [r.code, r]));
  const out = [code];
  for (const r of rows) {
    let at: SiteRow | undefined = r;
    for (let i = 0; i < 64 && at && at.code !== code && at.parent; i++) at = byCode.get(at.parent);
    if (at?.code === code && r.code !== code) out.push(r.code);
  }
  return out;
}

/** Forgets sites and DPs: targets, open transfers, group memberships, rows. */
async function forget(store: Store, codes: readonly string[]): Promise<{ targets: number; transfers: number }> {
  if (codes.length === 0) return { targets: 0, transfers: 0 };
  const gone = new Set(codes);
  let transfers = 0;
  for (const t of await listTransfers(store, { states: ['queued', 'sending', 'retrying'] })) {
    if (!t.targets.some((x) => gone.has(x)) && !gone.has(t.child)) continue;
    transfers++;
    if (gone.has(t.child))
      await store.db
        .updateTable('transfers')
        .set({ state: 'done', last_error: `cancelled: ${t.child} was removed`, updated_at: store.clock().toISOString() })
        .where('id', '=', t.id)
        .execute();
    else await dropTransferTargets(store, t.packageId, t.version, [...gone]);
  }
  const r = await store.db
    .deleteFrom('targets')
    .where('site', 'in', [...gone])
    .executeTakeFirst();
  for (const g of await listGroups(store)) await removeMembers(store, g.name, [...gone]);
  for (const c of gone) await store.deleteSite(c);
  return { targets: Number(r.numDeletedRows ?? 0), transfers };
}

/** `cascade dp remove NAME` (a DP of this site) or `cascade site remove CODE` (a child site, with everything below it). */
export async function removeNeighbour(ctx: SiteContext, kind: 'dp' | 'site', name: string): Promise<RemoveNeighbourAnswer> {
  const row = await ctx.store.getSite(name);
  const want = kind === 'dp' ? 'dp' : 'child';
  if (!row || row.relation !== want) {
    const what = kind === 'dp' ? `a DP of site ${ctx.code}` : `a child site of ${ctx.code}`;
    const further =
      row && (row.relation === 'dp-below' || row.relation === 'descendant') ? `: remove it at its own site, ${row.parent}` : '';
    throw fail('not_found', `${name} is not ${what}${further} (see "cascade ${kind} list")`);
  }
  const rows = [...(await ctx.store.listSites()), ...(await ctx.store.listDps())];
  const codes = atAndBelow(name, rows);
  const result = await ctx.store.transaction(async (tx) => {
    const r = await forget(tx, codes);
    // Its credential for calling this site is refused from now on.
    for (const t of await tx.listTokens()) if (t.role === PEER_ROLE && t.name === name) await tx.revokeToken(t.id);
    await addPending(tx, codes);
    return r;
  });
  invalidate(ctx);
  await emit(ctx, {
    component: 'hierarchy',
    severity: 'warning',
    code: kind === 'dp' ? 'dp_removed' : 'site_removed',
    text: `${kind === 'dp' ? 'DP' : 'site'} ${name} removed${codes.length > 1 ? ` with ${codes.slice(1).join(', ')} below it` : ''}: ${result.targets} target(s) and ${result.transfers} open transfer(s) dropped, its credential revoked; the name is freed once the sites above hear of it`,
  });
  return { removed: codes, targets: result.targets, transfers: result.transfers };
}

/** A child reports codes removed at or below it: forgotten here too, and passed on up. */
export async function acceptRemovals(ctx: SiteContext, from: string, codes: readonly string[], below: ReadonlySet<string>): Promise<void> {
  // Only what lies below the reporter, and never the reporter itself.
  const mine = codes.filter((c) => c !== from && below.has(c));
  if (mine.length === 0) return;
  await ctx.store.transaction(async (tx) => {
    await forget(tx, mine);
    await addPending(tx, mine);
  });
  invalidate(ctx);
  ctx.log.info({ removed: mine }, 'sites and DPs removed below');
}
