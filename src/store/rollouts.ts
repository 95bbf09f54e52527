import type { Store } from './store.js';

/** Rows of the rollouts this site made: settings fixed at creation, control as it advances. */

export interface RolloutSettings {
  successPercent: number;
  failurePercent: number;
  holdSeconds: number;
  approval: boolean;
}

export interface RolloutControl {
  state: import('../core/rollout.js').RolloutState;
  message: string | null;
  /** When each released wave was released (index = wave). */
  releasedAt: string[];
  /** When the newest released wave reached its success threshold; null until it does. */
  reachedAt: string | null;
  /** Failures accepted by a resume after a halt: only failures beyond these count again. */
  failedBaseline: number;
}

export interface RolloutRow {
  id: string;
  settings: RolloutSettings;
  control: RolloutControl;
  createdAt: string;
  updatedAt: string;
}

const toRow = (r: { id: string; settings: string; control: string; created_at: string; updated_at: string }): RolloutRow => ({
  id: r.id,
  settings: JSON.parse(r.settings) as RolloutSettings,
  control: JSON.parse(r.control) as RolloutControl,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

export async function insertRollout(s: Store, id: string, settings: RolloutSettings, control: RolloutControl): Promise<void> {
  const now = s.clock().toISOString();
  await s.db
    .insertInto('rollouts')
    .values({ id, settings: JSON.stringify(settings), control: JSON.stringify(control), created_at: now, updated_at: now })
    .execute();
}

export async function setRolloutControl(s: Store, id: string, control: RolloutControl): Promise<void> {
  await s.db
    .updateTable('rollouts')
    .set({ control: JSON.stringify(control), updated_at: s.clock().toISOString() })
    .where('id', '=', id)
    .execute();
}

export async function getRollout(s: Store, id: string): Promise<RolloutRow | undefined> {
  const r = await s.db.selectFrom('rollouts').selectAll().where('id', '=', id).executeTakeFirst();
  return r ? toRow(r) : undefined;
}

export async function listRollouts(s: Store): Promise<RolloutRow[]> {
  return (await s.db.selectFrom('rollouts').selectAll().orderBy('id').execute()).map(toRow);
}
