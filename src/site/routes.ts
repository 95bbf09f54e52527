import type { RouteQueue, RouteView, ScheduleView } from '../api/routes.js';
import { fail } from '../core/errors.js';
import { PRIORITY_ORDER } from '../core/package.js';
import {
  ALWAYS_OPEN,
  checkTimeZone,
  etaSeconds,
  formatSchedule,
  parseSchedule,
  type Schedule,
  scheduleFromGrid,
  scheduleToGrid,
} from '../core/schedule.js';
import { listTransfers } from '../store/distribution.js';
import type { RouteRow, SiteRow } from '../store/store.js';
import type { SiteContext } from './context.js';

/**
 * Routes: the links from this site to its child sites and its DPs, as the sender, the
 * distribution plan, the queue and the route handlers read them.
 */

/** Packages in flight from one site across all its routes, unless set (`cascade sender set`). */
export const DEFAULT_SITE_CONCURRENCY = 4;

/** Defaults of a route nobody has set: unlimited, two packages in flight, always open. */
export const DEFAULT_ROUTE_CONCURRENCY = 2;

/** A schedule as answers show it: zone, cells and SPEC. */
const scheduleView = (s: Schedule): ScheduleView => ({ ...scheduleToGrid(s), spec: formatSchedule(s) });

/** A route's schedule as stored, or always open for a route nobody has set. */
export const routeSchedule = (r: RouteRow | undefined): Schedule =>
  r ? scheduleFromGrid(JSON.parse(r.schedule), 'internal') : ALWAYS_OPEN;

function view(child: string, r: RouteRow | undefined): RouteView {
  const schedule = routeSchedule(r);
  return {
    child,
    rate: r?.rate ?? null,
    concurrency: r?.concurrency ?? DEFAULT_ROUTE_CONCURRENCY,
    schedule: scheduleView(schedule),
    updatedAt: r?.updatedAt ?? null,
  };
}

/** This site's child sites and DPs: where its routes lead. */
async function routeEnds(ctx: SiteContext): Promise<SiteRow[]> {
  return [...(await ctx.store.listSites()), ...(await ctx.store.listDps())].filter((s) => s.relation === 'child' || s.relation === 'dp');
}

/** The code of a child site or DP of this site, as typed (any case); not_found otherwise. */
async function childOf(ctx: SiteContext, code: string): Promise<string> {
  const s = (await ctx.store.getSite(code)) ?? (await ctx.store.getSite(code.toUpperCase()));
  if (!s || (s.relation !== 'child' && s.relation !== 'dp'))
    throw fail(
      'not_found',
      `${code} is not a child site or DP of ${ctx.code}; routes lead from a site to its children and its DPs (see "cascade site list", "cascade dp list")`,
    );
  return s.code;
}

export async function listRoutes(ctx: SiteContext): Promise<RouteView[]> {
  const rows = new Map((await ctx.store.listRoutes()).map((r) => [r.child, r]));
  return (await routeEnds(ctx)).map((s) => view(s.code, rows.get(s.code)));
}

export async function showRoute(ctx: SiteContext, code: string): Promise<RouteView> {
  const child = await childOf(ctx, code);
  return view(child, await ctx.store.getRoute(child));
}

/** Sets a route's rate, concurrency or schedule; fields left out keep their value. */
export async function setRoute(
  ctx: SiteContext,
  code: string,
  body: {
    rate?: number | null | undefined;
    concurrency?: number | undefined;
    schedule?: string | undefined;
    timeZone?: string | undefined;
  },
): Promise<RouteView> {
  const child = await childOf(ctx, code);
  const before = await ctx.store.getRoute(child);
  const old = routeSchedule(before);
  const tz = body.timeZone ? checkTimeZone(body.timeZone, 'bad_request') : old.timeZone;
  let schedule: Schedule;
  try {
    schedule = body.schedule !== undefined ? parseSchedule(body.schedule, tz) : { ...old, timeZone: tz };
  } catch (e) {
    throw fail('bad_request', (e as Error).message);
  }
  const row = {
    child,
    rate: body.rate === undefined ? (before?.rate ?? null) : body.rate,
    concurrency: body.concurrency ?? before?.concurrency ?? DEFAULT_ROUTE_CONCURRENCY,
    schedule: JSON.stringify(scheduleToGrid(schedule)),
  };
  await ctx.store.putRoute(row);
  ctx.log.info({ child, rate: row.rate, concurrency: row.concurrency, schedule: formatSchedule(schedule) }, 'route set');
  return view(child, await ctx.store.getRoute(child));
}

/** Packages in flight from this site, all routes together. */
export async function senderConcurrency(ctx: SiteContext): Promise<number> {
  return Number((await ctx.store.getMeta('sender.concurrency')) ?? DEFAULT_SITE_CONCURRENCY);
}

export async function setSenderConcurrency(ctx: SiteContext, concurrency: number): Promise<void> {
  await ctx.store.setMeta('sender.concurrency', String(concurrency));
}

/** Each route's queue in the order the sender will take it: what is sending, what waits, bytes left, ETA. */
export async function routeQueues(ctx: SiteContext, only?: string): Promise<RouteQueue[]> {
  const children = (await routeEnds(ctx)).filter((s) => !only || s.code === only || s.code === only.toUpperCase());
  if (only && children.length === 0) throw fail('not_found', `${only} is not a child site or DP of ${ctx.code}`);
  const open = await listTransfers(ctx.store, { states: ['queued', 'sending', 'retrying'] });
  const now = ctx.clock();
  const routes = [];
  for (const child of children) {
    const r = await ctx.store.getRoute(child.code);
    const schedule = routeSchedule(r);
    const mine = open
      .filter((t) => t.child === child.code)
      .sort(
        (a, b) =>
          (a.state === 'sending' ? 0 : 1) - (b.state === 'sending' ? 0 : 1) ||
          PRIORITY_ORDER[a.priority] - PRIORITY_ORDER[b.priority] ||
          (a.createdAt < b.createdAt ? -1 : 1),
      );
    let ahead = 0;
    const transfers = mine.map((t, i) => {
      const left = Math.max(0, t.bytesTotal - t.bytesDone);
      ahead += left;
      return {
        position: i + 1,
        id: t.id,
        packageId: t.packageId,
        version: t.version,
        priority: t.priority,
        state: t.state as 'queued' | 'sending' | 'retrying',
        targets: t.targets,
        bytesLeft: left,
        etaSeconds: r?.rate ? etaSeconds(schedule, t.priority, now, ahead, r.rate) : null,
        nextAttemptAt: t.nextAttemptAt,
        lastError: t.lastError,
      };
    });
    routes.push({
      child: child.code,
      rate: r?.rate ?? null,
      concurrency: r?.concurrency ?? DEFAULT_ROUTE_CONCURRENCY,
      schedule: scheduleView(schedule),
      bytesLeft: ahead,
      transfers,
    });
  }
  return routes;
}
