import { sql } from 'kysely';
import { fail } from '../core/errors.js';
import type { Store } from './store.js';

/**
 * DP groups: named sets of DPs, possibly across sites. Functions over a Store. Names are unique
 * regardless of case, and found in any case; a group keeps the spelling it was created with.
 */

/** The stored spelling of a group name typed in any case, if the group exists. */
async function storedName(s: Store, name: string): Promise<string | undefined> {
  const g = await s.db.selectFrom('dp_groups').select('name').where(sql<string>`lower(name)`, '=', name.toLowerCase()).executeTakeFirst();
  return g?.name;
}

export interface DpGroup {
  name: string;
  members: string[];
  createdAt: string;
}

export async function createGroup(s: Store, name: string, members: readonly string[]): Promise<DpGroup> {
  return s.transaction(async (tx) => {
    const taken = await storedName(tx, name);
    if (taken !== undefined)
      throw fail(
        'conflict',
        `DP group ${taken} already exists${taken === name ? '' : ` (names are unique regardless of case)`}; add DPs to it with "cascade dp-group add ${taken}"`,
      );
    const now = tx.clock().toISOString();
    await tx.db.insertInto('dp_groups').values({ name, created_at: now }).execute();
    await addMembers(tx, name, members);
    return (await getGroup(tx, name)) as DpGroup;
  });
}

export async function getGroup(s: Store, typed: string): Promise<DpGroup | undefined> {
  const name = await storedName(s, typed);
  if (name === undefined) return undefined;
  const g = await s.db.selectFrom('dp_groups').selectAll().where('name', '=', name).executeTakeFirstOrThrow();
  const m = await s.db.selectFrom('dp_group_members').select('dp').where('group_name', '=', name).orderBy('dp').execute();
  return { name: g.name, createdAt: g.created_at, members: m.map((x) => x.dp) };
}

export async function listGroups(s: Store): Promise<DpGroup[]> {
  const gs = await s.db.selectFrom('dp_groups').selectAll().orderBy('name').execute();
  const ms = await s.db.selectFrom('dp_group_members').selectAll().orderBy('dp').execute();
  return gs.map((g) => ({ name: g.name, createdAt: g.created_at, members: ms.filter((m) => m.group_name === g.name).map((m) => m.dp) }));
}

export async function addMembers(s: Store, name: string, members: readonly string[]): Promise<void> {
  for (const dp of new Set(members)) {
    await s.db
      .insertInto('dp_group_members')
      .values({ group_name: name, dp })
      .onConflict((oc) => oc.columns(['group_name', 'dp']).doNothing())
      .execute();
  }
}

export async function removeMembers(s: Store, name: string, members: readonly string[]): Promise<void> {
  if (members.length === 0) return;
  await s.db
    .deleteFrom('dp_group_members')
    .where('group_name', '=', name)
    .where('dp', 'in', [...members])
    .execute();
}

export async function deleteGroup(s: Store, typed: string): Promise<boolean> {
  return s.transaction(async (tx) => {
    const name = await storedName(tx, typed);
    if (name === undefined) return false;
    await tx.db.deleteFrom('dp_group_members').where('group_name', '=', name).execute();
    const r = await tx.db.deleteFrom('dp_groups').where('name', '=', name).executeTakeFirst();
    return Number(r.numDeletedRows) > 0;
  });
}
