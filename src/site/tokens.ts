import { fail } from '../core/errors.js';
import type { Role } from '../core/roles.js';
import type { SiteContext } from './context.js';

/** API tokens of this site: created with a role, listed without their secrets, revoked. */

export async function createToken(
  ctx: SiteContext,
  role: Role,
  name: string,
): Promise<{ id: string; role: Role; name: string; token: string }> {
  const t = await ctx.store.createToken(role, name);
  return { id: t.id, role, name, token: t.secret };
}

export const listTokens = (ctx: SiteContext) => ctx.store.listTokens();

/** Revokes a token; the caller's own token cannot revoke itself. */
export async function revokeToken(ctx: SiteContext, callerId: string, id: string): Promise<void> {
  if (id === callerId) throw fail('conflict', 'a token cannot revoke itself; use another admin token');
  if (!(await ctx.store.revokeToken(id))) throw fail('not_found', `no token ${id}`);
}
