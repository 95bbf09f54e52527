import type { Store } from '../store/store.js';

/**
 * Sites and DPs removed at or below this site (src/site/decommission.ts), kept until the
 * parent has heard of them: they go up with the status reports, and the central site frees
 * their names.
 */

const META_PENDING = 'removed.pending';

/** Codes removed here or below, not yet told to the parent. */
export async function pendingRemovals(store: Store): Promise<string[]> {
  const v = await store.getMeta(META_PENDING);
  return v ? (JSON.parse(v) as string[]) : [];
}

export async function addPending(store: Store, codes: readonly string[]): Promise<void> {
  // The central site has nobody to tell: the names are free.
  if (!(await store.listSites()).some((s) => s.relation === 'parent')) return;
  const all = new Set([...(await pendingRemovals(store)), ...codes]);
  await store.setMeta(META_PENDING, JSON.stringify([...all].sort()));
}

/** After a report the parent answered: those codes are known above now. */
export async function clearPending(store: Store, sent: readonly string[]): Promise<void> {
  if (sent.length === 0) return;
  const left = (await pendingRemovals(store)).filter((c) => !sent.includes(c));
  await store.setMeta(META_PENDING, JSON.stringify(left));
}

/** A join registered above that did not complete here: its code is freed above. */
export const freeAbove = (store: Store, code: string): Promise<void> => addPending(store, [code]);
