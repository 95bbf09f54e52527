import { createRoute, z } from '@hono/zod-openapi';
import { RouteQueue } from '../../api/routes.js';
import { fail } from '../../core/errors.js';
import { formatRate } from '../../core/rate.js';
import { etaSeconds, formatSchedule } from '../../core/schedule.js';
import { listTransfers } from '../../store/distribution.js';
import { type App, type AppParts, errorResponses, need } from '../http.js';
import { DEFAULT_ROUTE_CONCURRENCY, routeSchedule } from '../routes.js';

const PRIORITY_ORDER = { high: 0, medium: 1, low: 2 } as const;

/** `GET /api/v1/queue`: each route's queue in the order the sender will take it. */
export function registerQueueHandlers(app: App, parts: AppParts): void {
  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/queue',
      summary: "Each route's queue in order: what is sending now, what waits, bytes left, ETA",
      request: {
        query: z.object({
          route: z
            .string()
            .regex(/^[A-Za-z0-9]{3}$/)
            .optional(),
        }),
      },
      responses: {
        200: { description: 'Queues', content: { 'application/json': { schema: z.object({ routes: z.array(RouteQueue) }) } } },
        ...errorResponses,
      },
    }),
    async (c) => {
      need(c, 'read');
      const only = c.req.valid('query').route;
      const children = [...(await parts.store.listSites()), ...(await parts.store.listDps())].filter(
        (s) => (s.relation === 'child' || s.relation === 'dp') && (!only || s.code === only || s.code === only.toUpperCase()),
      );
      if (only && children.length === 0) throw fail('not_found', `${only} is not a child site or DP of ${parts.code}`);
      const open = await listTransfers(parts.store, { states: ['queued', 'sending', 'retrying'] });
      const now = parts.clock();
      const routes = [];
      for (const child of children) {
        const r = await parts.store.getRoute(child.code);
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
          rate: formatRate(r?.rate ?? null),
          concurrency: r?.concurrency ?? DEFAULT_ROUTE_CONCURRENCY,
          schedule: formatSchedule(schedule),
          bytesLeft: ahead,
          transfers,
        });
      }
      return c.json({ routes }, 200);
    },
  );
}
