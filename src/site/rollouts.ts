import type { AdvertisementBody } from '../api/clients.js';
import type { RolloutAction, RolloutEntry, RolloutRequest, RolloutStatus, WaveEntry } from '../api/rollouts.js';
import { fail } from '../core/errors.js';
import { checkWaves, nextStep, type Wave, type WaveCount, waveOf, waveText } from '../core/rollout.js';
import { listClientStates, membersOf } from '../store/clients.js';
import { getRollout, insertRollout, listRollouts, type RolloutControl, type RolloutRow, setRolloutControl } from '../store/rollouts.js';
import { advertise, advertisementEntry, advertisementStatus } from './advertisements.js';
import type { SiteContext } from './context.js';
import { emit } from './messages.js';
import { collectionKey, makePolicy, rolloutBucket, snapshot } from './policy.js';

/**
 * Rollouts (docs/rollouts.md): an advertisement whose signed record carries its waves and how
 * many are released; every site offers it only to clients in a released wave. The site that
 * made it counts each wave's reports (they come up the tree with the status reports) and
 * advances, halts or completes it on its own.
 */

/** The wave of each member, by client ID; pilots by their collections' members here. */
async function wavesOfMembers(ctx: SiteContext, id: string, collection: string, waves: readonly Wave[]): Promise<Map<string, number>> {
  const pilots = new Map<string, Set<string>>();
  for (const w of waves)
    if ('collection' in w) pilots.set(collectionKey(w.collection), new Set(await membersOf(ctx.store, collectionKey(w.collection))));
  const out = new Map<string, number>();
  for (const c of await membersOf(ctx.store, collectionKey(collection)))
    out.set(
      c,
      waveOf(rolloutBucket(id, c), waves, (name) => pilots.get(collectionKey(name))?.has(c) ?? false),
    );
  return out;
}

async function adBody(ctx: SiteContext, id: string): Promise<AdvertisementBody> {
  const a = await advertisementEntry(ctx, id);
  const { origin: _o, updatedAt: _u, ...body } = a;
  return body;
}

async function setAdRollout(ctx: SiteContext, id: string, patch: Partial<NonNullable<AdvertisementBody['rollout']>>, enabled?: boolean) {
  const body = await adBody(ctx, id);
  if (!body.rollout) throw fail('conflict', `advertisement ${id} is not a rollout`);
  await makePolicy(ctx, 'advertisement', id, { ...body, enabled: enabled ?? body.enabled, rollout: { ...body.rollout, ...patch } });
}

export async function createRollout(ctx: SiteContext, req: RolloutRequest): Promise<RolloutEntry> {
  const waves = req.waves as Wave[];
  try {
    checkWaves(waves);
  } catch (e) {
    throw fail('bad_request', (e as Error).message);
  }
  const snap = await snapshot(ctx);
  for (const w of waves)
    if ('collection' in w && !snap.collections.has(collectionKey(w.collection)))
      throw fail('not_found', `wave ${waveText(w)}: no such collection (make it with "cascade collection create")`);
  const pkg = await ctx.store.getPackage(req.packageId);
  if (!pkg) throw fail('not_found', `package ${req.packageId} is not known at site ${ctx.code}`);
  // A rollout rolls out one version: the newest, unless named.
  const version = req.version ?? pkg.latestVersion;
  const ad = await advertise(
    ctx,
    {
      packageId: req.packageId,
      version,
      program: req.program,
      collection: req.collection,
      mandatory: req.mandatory === false ? [] : [ctx.clock().toISOString()],
      maxRunSeconds: req.maxRunSeconds ?? 3600,
      slowLink: req.slowLink ?? 'download',
      fallback: req.fallback ?? false,
    },
    { waves, released: 1, paused: false },
  );
  const now = ctx.clock().toISOString();
  await insertRollout(
    ctx.store,
    ad.id,
    {
      successPercent: req.successPercent ?? 95,
      failurePercent: req.failurePercent ?? 5,
      holdSeconds: req.holdSeconds ?? 3600,
      approval: req.approval ?? false,
    },
    {
      state: 'running',
      message: `released wave 1 of ${waves.length} (${waveText(waves[0] as Wave)})`,
      releasedAt: [now],
      reachedAt: null,
      failedBaseline: 0,
    },
  );
  await emit(ctx, {
    component: 'rollout',
    severity: 'info',
    code: 'rollout_created',
    text: `rollout ${ad.id}: ${req.packageId} version ${version} "${req.program}" to "${ad.collection}" in ${waves.length} waves (${waves.map(waveText).join(', ')}); wave 1 released`,
    packageId: req.packageId,
  });
  return rolloutEntry(ctx, ad.id);
}

async function rowOf(ctx: SiteContext, id: string): Promise<RolloutRow> {
  const r = await getRollout(ctx.store, id);
  if (!r) {
    const ad = (await snapshot(ctx)).advertisements.get(id);
    if (ad?.body.rollout) throw fail('forbidden', `rollout ${id} was made at site ${ad.origin}; it is shown and changed there`);
    throw fail('not_found', `no rollout ${id} at site ${ctx.code}`);
  }
  return r;
}

/** Each wave's members and their reports for the rollout's version. */
async function countWaves(
  ctx: SiteContext,
  ad: AdvertisementBody,
): Promise<{ counts: WaveCount[]; active: number[]; waveOfClient: Map<string, number> }> {
  const waves = ad.rollout?.waves ?? [];
  const waveOfClient = await wavesOfMembers(ctx, ad.id, ad.collection, waves);
  const counts: WaveCount[] = waves.map(() => ({ members: 0, succeeded: 0, failed: 0, exitCodes: [] }));
  const active = waves.map(() => 0);
  for (const w of waveOfClient.values()) (counts[w] as WaveCount).members++;
  for (const s of await listClientStates(ctx.store, { advertisement: ad.id })) {
    const w = waveOfClient.get(s.client);
    if (w === undefined || s.version !== ad.version) continue;
    const c = counts[w] as WaveCount;
    if (s.state === 'succeeded') c.succeeded++;
    else if (s.state === 'failed') {
      c.failed++;
      c.exitCodes.push(s.exitCode);
    } else if (s.state === 'downloading' || s.state === 'running' || s.state === 'restart-pending') active[w] = (active[w] ?? 0) + 1;
  }
  return { counts, active, waveOfClient };
}

async function entryOf(ctx: SiteContext, row: RolloutRow, ad: AdvertisementBody): Promise<RolloutEntry> {
  const { counts, active } = await countWaves(ctx, ad);
  const r = ad.rollout as NonNullable<AdvertisementBody['rollout']>;
  const waves: WaveEntry[] = r.waves.map((w, i) => ({
    index: i,
    wave: w,
    text: waveText(w),
    released: i < r.released,
    releasedAt: row.control.releasedAt[i] ?? null,
    members: counts[i]?.members ?? 0,
    succeeded: counts[i]?.succeeded ?? 0,
    failed: counts[i]?.failed ?? 0,
    active: active[i] ?? 0,
  }));
  return {
    id: row.id,
    packageId: ad.packageId,
    version: ad.version ?? 0,
    program: ad.program,
    collection: ad.collection,
    state: row.control.state,
    message: row.control.message,
    ...row.settings,
    waves,
    createdAt: row.createdAt,
    updatedAt: row.updatedAt,
  };
}

export async function rolloutEntry(ctx: SiteContext, id: string): Promise<RolloutEntry> {
  return entryOf(ctx, await rowOf(ctx, id), await adBody(ctx, id));
}

export async function rolloutEntries(ctx: SiteContext): Promise<RolloutEntry[]> {
  const out: RolloutEntry[] = [];
  for (const row of await listRollouts(ctx.store)) {
    const ad = (await snapshot(ctx)).advertisements.get(row.id);
    if (ad) out.push(await entryOf(ctx, row, ad.body));
  }
  return out;
}

/** The rollout and where it stands on every member, with each member's wave. */
export async function rolloutStatus(ctx: SiteContext, id: string): Promise<RolloutStatus> {
  const rollout = await rolloutEntry(ctx, id);
  const ad = await adBody(ctx, id);
  const { waveOfClient } = await countWaves(ctx, ad);
  const st = await advertisementStatus(ctx, id);
  return { rollout, advertisement: st.advertisement, clients: st.clients.map((c) => ({ ...c, wave: waveOfClient.get(c.client) ?? -1 })) };
}

const ALLOWED: Record<RolloutAction, string[]> = {
  pause: ['running', 'awaiting-approval'],
  resume: ['paused', 'halted'],
  approve: ['awaiting-approval'],
  cancel: ['running', 'awaiting-approval', 'paused', 'halted'],
};

export async function actOnRollout(ctx: SiteContext, id: string, action: RolloutAction): Promise<RolloutEntry> {
  const row = await rowOf(ctx, id);
  const ad = await adBody(ctx, id);
  const r = ad.rollout as NonNullable<AdvertisementBody['rollout']>;
  const c = row.control;
  if (!ALLOWED[action].includes(c.state))
    throw fail('conflict', `rollout ${id} is ${c.state}; "${action}" applies to a rollout that is ${ALLOWED[action].join(' or ')}`);
  const next: RolloutControl = { ...c };
  if (action === 'pause') {
    await setAdRollout(ctx, id, { paused: true });
    next.state = 'paused';
    next.message = `paused by an administrator in wave ${r.released} of ${r.waves.length}: no client starts it until "cascade rollout resume"`;
  } else if (action === 'resume') {
    if (c.state === 'halted') {
      // The failures that halted it are accepted: only new ones count against the threshold.
      const { counts } = await countWaves(ctx, ad);
      next.failedBaseline = counts.slice(0, r.released).reduce((n, w) => n + w.failed, 0);
    }
    await setAdRollout(ctx, id, { paused: false });
    next.state = 'running';
    next.reachedAt = null;
    next.message = `resumed in wave ${r.released} of ${r.waves.length}`;
  } else if (action === 'approve') {
    await setAdRollout(ctx, id, { released: r.released + 1 });
    next.state = 'running';
    next.reachedAt = null;
    next.releasedAt = [...c.releasedAt, ctx.clock().toISOString()];
    next.message = `approved: released wave ${r.released + 1} of ${r.waves.length} (${waveText(r.waves[r.released] as Wave)})`;
  } else {
    await setAdRollout(ctx, id, { paused: true }, false);
    next.state = 'cancelled';
    next.message = `cancelled in wave ${r.released} of ${r.waves.length}: the advertisement is disabled`;
  }
  await setRolloutControl(ctx.store, id, next);
  await emit(ctx, {
    component: 'rollout',
    severity: 'info',
    code: `rollout_${action}`,
    text: `rollout ${id}: ${next.message}`,
    packageId: ad.packageId,
  });
  return rolloutEntry(ctx, id);
}

/** One pass over the running rollouts this site made: advance, halt or complete each as its counts say. */
export async function tickRollouts(ctx: SiteContext): Promise<void> {
  for (const row of await listRollouts(ctx.store)) {
    if (row.control.state !== 'running') continue;
    const ad = (await snapshot(ctx)).advertisements.get(row.id)?.body;
    if (!ad?.rollout) continue;
    const { counts } = await countWaves(ctx, ad);
    const now = ctx.clock().getTime();
    const { step, reachedAt } = nextStep({
      waves: ad.rollout.waves,
      released: ad.rollout.released,
      counts,
      ...row.settings,
      reachedAt: row.control.reachedAt ? Date.parse(row.control.reachedAt) : null,
      failedBaseline: row.control.failedBaseline,
      now,
    });
    const c: RolloutControl = {
      ...row.control,
      reachedAt: reachedAt === null ? null : new Date(reachedAt).toISOString(),
      message: step.text,
    };
    if (step.kind === 'halt') {
      await setAdRollout(ctx, row.id, { paused: true });
      c.state = 'halted';
    } else if (step.kind === 'release') {
      await setAdRollout(ctx, row.id, { released: ad.rollout.released + 1 });
      c.releasedAt = [...c.releasedAt, new Date(now).toISOString()];
    } else if (step.kind === 'await-approval') c.state = 'awaiting-approval';
    else if (step.kind === 'complete') c.state = 'completed';
    if (JSON.stringify(c) === JSON.stringify(row.control)) continue;
    await setRolloutControl(ctx.store, row.id, c);
    if (step.kind !== 'none')
      await emit(ctx, {
        component: 'rollout',
        severity: step.kind === 'halt' ? 'error' : 'info',
        code: `rollout_${step.kind.replace('-', '_')}`,
        text: `rollout ${row.id}: ${step.text}`,
        packageId: ad.packageId,
      });
  }
}
