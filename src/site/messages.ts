import crypto from 'node:crypto';
import type { Severity } from '../core/distribution.js';
import { addMessages, listMessages } from '../store/distribution.js';
import type { SiteContext } from './context.js';

/** Status messages: what happened at this site, recorded here and reported up the tree. */

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

/** Status messages of this site and the sites below it, newest first. */
export const messagesOf = (ctx: SiteContext, f: Parameters<typeof listMessages>[1]) => listMessages(ctx.store, f);
