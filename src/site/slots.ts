import type { AgentReport, SlotAnswer, SlotRequest } from '../api/clients.js';
import { expireSlots, freeSlot, listSlots, putSlot, renewSlot, type SlotRow, withSlots } from '../store/processes.js';
import { type SiteContext, sharedByProcesses } from './context.js';
import { snapshot } from './policy.js';

/**
 * Download slots (docs/rollouts.md, "Download caps"): when a site caps how many of its clients
 * download at once (in all, and per DP), an agent asks for a slot before it downloads. The
 * site grants one, naming the DP to use and the rate to keep, or tells it when to ask again
 * (with jitter, so refused agents do not come back together). The agent's progress reports
 * keep the slot; its final report frees it; silence for the slot timeout loses it. Slots are
 * kept in memory: after a restart, an agent's next `downloading` report takes its slot back
 * (counted against the site's cap; the DP is not known then, so not against a DP's).
 *
 * Several processes of one site (PostgreSQL; docs/operations.md#several-processes) share their
 * slots through the database instead, one grant at a time under an advisory lock: the caps hold
 * for the site whichever process an agent reaches. Each process keeps a copy of the table, read
 * again at every grant and every 2 s, for its gauges and the DPs' upgrade.
 */

interface Slot {
  client: string;
  advertisement: string;
  dp: string;
  since: number;
  renewed: number;
}

export interface SlotTable {
  slots: Map<string, Slot>;
  /** How long a slot is held, smoothed (s): refused agents come back after about that long. */
  heldSeconds: number;
  peak: number;
  granted: number;
  refused: number;
  lapsed: number;
  /** The slot timeout last read from the settings (s). */
  timeoutSeconds: number;
  /** The turn given to the last refused asker (ms): refused askers are told to return one after another. */
  turnAt: number;
}

/** Per site: keyed by its store, which the API's and the timers' contexts share. */
const tables = new WeakMap<object, SlotTable>();

export function slotTable(ctx: SiteContext): SlotTable {
  let t = tables.get(ctx.store);
  if (!t) {
    const table: SlotTable = {
      slots: new Map(),
      // Unknown at first: assume short. Too short costs a few extra refusals; too long, idle slots.
      heldSeconds: 1,
      peak: 0,
      granted: 0,
      refused: 0,
      lapsed: 0,
      timeoutSeconds: 120,
      turnAt: 0,
    };
    // Silent holders lose their slots even when nobody asks for one.
    setInterval(() => {
      if (!sharedByProcesses(ctx)) return expire(table, Date.now(), table.timeoutSeconds);
      void withSlots(ctx.store, async (tx) => {
        table.lapsed += await expireSlots(tx, Date.now() - table.timeoutSeconds * 1000);
        mirror(table, await listSlots(tx));
      }).catch((err) => ctx.log.warn({ err: (err as Error).message }, 'reading the download slots failed'));
    }, 2000).unref();
    t = table;
    tables.set(ctx.store, t);
  }
  return t;
}

const keyOf = (client: string, ad: string) => `${client} ${ad}`;

/** The process's copy of the shared slots. */
function mirror(t: SlotTable, rows: readonly SlotRow[]): void {
  t.slots = new Map(
    rows.map((r) => [r.slot, { client: r.client, advertisement: r.advertisement, dp: r.dp, since: r.since, renewed: r.renewed }]),
  );
  t.peak = Math.max(t.peak, t.slots.size);
}

/** Frees a slot held since `since` (by default, as this process's table has it). */
function free(t: SlotTable, key: string, now: number, since = t.slots.get(key)?.since): void {
  if (since === undefined) return;
  t.slots.delete(key);
  t.heldSeconds = t.heldSeconds * 0.8 + ((now - since) / 1000) * 0.2;
}

function expire(t: SlotTable, now: number, timeoutSeconds: number): void {
  for (const [k, s] of t.slots)
    if (now - s.renewed > timeoutSeconds * 1000) {
      t.slots.delete(k);
      t.lapsed++;
    }
}

/**
 * When to ask again: a turn. Slots free up at about `slots` per the time a slot is held, so
 * refused askers are given turns spaced at that rate (a little closer, so that no slot waits
 * idle for a late one), each after the last turn given; ±20 % at random; between 2 s and
 * 10 min. A crowd of refused agents returns spread over the time the slots need to serve it,
 * not every few seconds and not all at once.
 */
function retryAfter(t: SlotTable, slots: number, now: number): number {
  const spacing = (Math.max(0.5, t.heldSeconds) * 1000 * 0.8) / Math.max(1, slots);
  t.turnAt = Math.max(t.turnAt, now) + spacing;
  const wait = ((t.turnAt - now) / 1000) * (0.8 + Math.random() * 0.4);
  return Math.round(Math.min(600, Math.max(2, wait)));
}

export async function requestSlot(ctx: SiteContext, client: string, req: SlotRequest): Promise<SlotAnswer> {
  if (!sharedByProcesses(ctx)) return decide(ctx, client, req, slotTable(ctx));
  // Shared: the table is read, decided on and written back with the site's slots to this process.
  return withSlots(ctx.store, async (tx) => {
    const t = slotTable(ctx);
    const { settings } = await snapshot(ctx);
    t.lapsed += await expireSlots(tx, Date.now() - settings.slotTimeoutSeconds * 1000);
    mirror(t, await listSlots(tx));
    const before = new Set(t.slots.keys());
    const answer = await decide(ctx, client, req, t);
    const key = keyOf(client, req.advertisement);
    const s = t.slots.get(key);
    if (answer.granted && s) {
      if (before.has(key)) await renewSlot(tx, key, s.renewed);
      else await putSlot(tx, { slot: key, ...s });
    }
    return answer;
  });
}

async function decide(ctx: SiteContext, client: string, req: SlotRequest, t: SlotTable): Promise<SlotAnswer> {
  const { settings, dps } = await snapshot(ctx);
  const now = Date.now();
  t.timeoutSeconds = settings.slotTimeoutSeconds;
  expire(t, now, settings.slotTimeoutSeconds);
  const lease = settings.slotTimeoutSeconds;
  const key = keyOf(client, req.advertisement);
  const rateOf = (n: number) =>
    settings.clientRate === null ? null : Math.floor(settings.clientRate / Math.max(1, settings.downloadSlots ?? n));
  const held = t.slots.get(key);
  if (held) {
    held.renewed = now;
    return { granted: true, dp: held.dp, rate: rateOf(t.slots.size), leaseSeconds: lease, retryAfterSeconds: null, reason: null };
  }
  const refuse = (reason: string, slots: number): SlotAnswer => {
    t.refused++;
    return { granted: false, dp: null, rate: null, leaseSeconds: 0, retryAfterSeconds: retryAfter(t, slots, now), reason };
  };
  if (settings.downloadSlots !== null && t.slots.size >= settings.downloadSlots)
    return refuse(`site ${ctx.code}: all ${settings.downloadSlots} download slots are in use`, settings.downloadSlots);
  // The first DP in the agent's order with room; DPs of other sites (fallback above) are not counted here.
  let dp = req.dps[0] as string;
  if (settings.dpDownloadSlots !== null) {
    const cap = settings.dpDownloadSlots;
    const use = new Map<string, number>();
    for (const s of t.slots.values()) use.set(s.dp, (use.get(s.dp) ?? 0) + 1);
    const room = req.dps.find((d) => dps.get(d)?.above || (use.get(d) ?? 0) < cap);
    if (!room)
      return refuse(
        `site ${ctx.code}: each DP this client may use (${req.dps.join(', ')}) has ${cap} downloads running`,
        cap * req.dps.length,
      );
    dp = room;
  }
  t.slots.set(key, { client, advertisement: req.advertisement, dp, since: now, renewed: now });
  t.granted++;
  t.peak = Math.max(t.peak, t.slots.size);
  return { granted: true, dp, rate: rateOf(t.slots.size), leaseSeconds: lease, retryAfterSeconds: null, reason: null };
}

/** A check-in's reports: `downloading` keeps the slot, any other state frees it. */
export function noteSlotReports(ctx: SiteContext, client: string, reports: readonly AgentReport[]): void {
  const t = tables.get(ctx.store) ?? (reports.some((r) => r.state === 'downloading') ? slotTable(ctx) : undefined);
  if (!t) return;
  const now = Date.now();
  if (sharedByProcesses(ctx)) {
    // Written through to the table the site's processes share; the copy here follows.
    void (async () => {
      for (const r of reports) {
        const key = keyOf(client, r.advertisement);
        if (r.state !== 'downloading') {
          const row = await freeSlot(ctx.store, key);
          if (row) free(t, key, now, row.since);
        } else await renewSlot(ctx.store, key, now);
        // (Not taken back when absent, unlike the table in memory: the shared table survives a
        // restart, and a renewal written late must not revive a slot its final report freed.)
      }
    })().catch((err) => ctx.log.warn({ err: (err as Error).message }, 'recording download slots failed'));
    return;
  }
  for (const r of reports) {
    const key = keyOf(client, r.advertisement);
    const s = t.slots.get(key);
    if (!s) {
      if (r.state === 'downloading') t.slots.set(key, { client, advertisement: r.advertisement, dp: '', since: now, renewed: now });
      continue;
    }
    if (r.state === 'downloading') s.renewed = now;
    else free(t, key, now);
  }
}
