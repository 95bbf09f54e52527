import { createRoute, z } from '@hono/zod-openapi';
import { ChildParam, RouteView } from '../../api/routes.js';
import { fail } from '../../core/errors.js';
import { formatRate } from '../../core/rate.js';
import { checkTimeZone, formatSchedule, parseSchedule, type Schedule, scheduleToGrid } from '../../core/schedule.js';
import type { RouteRow } from '../../store/store.js';
import { type App, type AppParts, errorResponses, need } from '../http.js';
import { DEFAULT_ROUTE_CONCURRENCY, DEFAULT_SITE_CONCURRENCY, routeSchedule } from '../routes.js';

function view(child: string, r: RouteRow | undefined) {
  const schedule = routeSchedule(r);
  return {
    child,
    rate: r?.rate ?? null,
    rateText: formatRate(r?.rate ?? null),
    concurrency: r?.concurrency ?? DEFAULT_ROUTE_CONCURRENCY,
    schedule: { ...scheduleToGrid(schedule), spec: formatSchedule(schedule) },
    updatedAt: r?.updatedAt ?? null,
  };
}

export function registerRouteHandlers(app: App, parts: AppParts): void {
  const childOf = async (code: string) => {
    const s = (await parts.store.getSite(code)) ?? (await parts.store.getSite(code.toUpperCase()));
    if (!s || (s.relation !== 'child' && s.relation !== 'dp'))
      throw fail(
        'not_found',
        `${code} is not a child site or DP of ${parts.code}; routes lead from a site to its children and its DPs (see "cascade site list", "cascade dp list")`,
      );
    return s.code;
  };

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/routes',
      summary: "This site's routes to its child sites and its DPs",
      responses: {
        200: { description: 'Routes', content: { 'application/json': { schema: z.object({ routes: z.array(RouteView) }) } } },
        ...errorResponses,
      },
    }),
    async (c) => {
      need(c, 'read');
      const rows = new Map((await parts.store.listRoutes()).map((r) => [r.child, r]));
      const children = [...(await parts.store.listSites()), ...(await parts.store.listDps())].filter(
        (s) => s.relation === 'child' || s.relation === 'dp',
      );
      return c.json({ routes: children.map((s) => view(s.code, rows.get(s.code))) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/routes/{child}',
      summary: 'The route to one child site',
      request: { params: ChildParam },
      responses: { 200: { description: 'The route', content: { 'application/json': { schema: RouteView } } }, ...errorResponses },
    }),
    async (c) => {
      need(c, 'read');
      const child = await childOf(c.req.valid('param').child);
      return c.json(view(child, await parts.store.getRoute(child)), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'put',
      path: '/api/v1/routes/{child}',
      summary: 'Set the rate, concurrency or schedule of the route to a child site (fields left out keep their value)',
      request: {
        params: ChildParam,
        body: {
          content: {
            'application/json': {
              schema: z.strictObject({
                rate: z.number().int().min(1).nullable().optional().describe('bytes per second; null: unlimited'),
                concurrency: z.number().int().min(1).max(64).optional(),
                schedule: z.string().min(1).max(4096).optional().describe('SPEC, see docs/schedules.md'),
                timeZone: z.string().min(1).max(64).optional().describe('IANA zone the schedule is read in (default: as before, else UTC)'),
              }),
            },
          },
          required: true,
        },
      },
      responses: {
        200: { description: 'The route as it is now', content: { 'application/json': { schema: RouteView } } },
        ...errorResponses,
      },
    }),
    async (c) => {
      need(c, 'operate');
      const child = await childOf(c.req.valid('param').child);
      const body = c.req.valid('json');
      const before = await parts.store.getRoute(child);
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
      await parts.store.putRoute(row);
      parts.log.info({ child, rate: row.rate, concurrency: row.concurrency, schedule: formatSchedule(schedule) }, 'route set');
      return c.json(view(child, await parts.store.getRoute(child)), 200);
    },
  );

  const Sender = z.object({ concurrency: z.number().describe('packages in flight from this site, all routes together') }).openapi('Sender');
  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/sender',
      summary: "This site's sender: packages in flight across all routes",
      responses: { 200: { description: 'Sender settings', content: { 'application/json': { schema: Sender } } }, ...errorResponses },
    }),
    async (c) => {
      need(c, 'read');
      return c.json({ concurrency: Number((await parts.store.getMeta('sender.concurrency')) ?? DEFAULT_SITE_CONCURRENCY) }, 200);
    },
  );
  app.openapi(
    createRoute({
      method: 'put',
      path: '/api/v1/sender',
      summary: "Set this site's sender: packages in flight across all routes",
      request: {
        body: {
          content: { 'application/json': { schema: z.strictObject({ concurrency: z.number().int().min(1).max(256) }) } },
          required: true,
        },
      },
      responses: { 200: { description: 'Sender settings', content: { 'application/json': { schema: Sender } } }, ...errorResponses },
    }),
    async (c) => {
      need(c, 'operate');
      const { concurrency } = c.req.valid('json');
      await parts.store.setMeta('sender.concurrency', String(concurrency));
      parts.kick?.();
      return c.json({ concurrency }, 200);
    },
  );
}
