import type { Transfer } from '../api/distributions.js';
import { fail } from '../core/errors.js';
import { getTransfer, listTargets, type TransferRow, updateTarget, updateTransfer } from '../store/distribution.js';
import type { SiteContext } from './context.js';
import { emit } from './messages.js';

/** An operator's control of the sender's transfers: retry one now, or cancel one. */

async function transferOf(ctx: SiteContext, id: string): Promise<TransferRow> {
  const t = await getTransfer(ctx.store, id);
  if (!t) throw fail('not_found', `no transfer ${id} at site ${ctx.code} (see "cascade queue")`);
  return t;
}

/** A transfer waiting for its next attempt goes now, not after its backoff. */
export async function retryNow(ctx: SiteContext, id: string): Promise<Transfer> {
  const t = await transferOf(ctx, id);
  if (t.state !== 'retrying' && t.state !== 'queued')
    throw fail(
      'conflict',
      t.state === 'failed'
        ? `transfer ${id} failed: distribute ${t.packageId} again to retry it`
        : `transfer ${id} is ${t.state}: nothing to retry`,
    );
  await updateTransfer(ctx.store, id, { state: 'queued', nextAttemptAt: null });
  for (const x of await listTargets(ctx.store, { packageId: t.packageId, version: t.version, sites: t.targets }))
    if (x.state === 'retrying') await updateTarget(ctx.store, x.packageId, x.version, x.site, { nextRetryAt: null });
  return (await getTransfer(ctx.store, id)) as TransferRow;
}

/**
 * Stops a transfer that has not finished: it and its targets not yet installed become `failed`
 * ("cancelled by NAME"); distributing the package again resumes it from what arrived.
 */
export async function cancelTransfer(ctx: SiteContext, id: string, by: string, stop?: (id: string) => void): Promise<Transfer> {
  const t = await transferOf(ctx, id);
  if (t.state === 'done' || t.state === 'failed') throw fail('conflict', `transfer ${id} is ${t.state} already: nothing to cancel`);
  const why = `cancelled by ${by}`;
  await updateTransfer(ctx.store, id, { state: 'failed', nextAttemptAt: null, lastError: why });
  stop?.(id);
  for (const x of await listTargets(ctx.store, { packageId: t.packageId, version: t.version, sites: t.targets }))
    if (x.state !== 'installed' && x.state !== 'removing' && x.state !== 'removed')
      await updateTarget(ctx.store, x.packageId, x.version, x.site, {
        state: 'failed',
        lastError: why,
        nextRetryAt: null,
        detail: null,
        rate: 0,
      });
  await emit(ctx, {
    component: 'sender',
    severity: 'warning',
    code: 'transfer_cancelled',
    text: `${t.packageId} version ${t.version} to ${t.child}: ${why}; distribute it again to resume`,
    packageId: t.packageId,
  });
  return (await getTransfer(ctx.store, id)) as TransferRow;
}
