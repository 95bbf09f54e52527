import { createRoute, z } from '@hono/zod-openapi';
import { PATHS } from '../../api/paths.js';
import { RouteQueue } from '../../api/routes.js';
import { type App, type AppParts, answer, need } from '../http.js';
import { routeQueues } from '../routes.js';

/** `GET /api/v1/queue`: each route's queue in the order the sender will take it. */
export function registerQueueHandlers(app: App, parts: AppParts): void {
  app.openapi(
    createRoute({
      method: 'get',
      path: PATHS.queue,
      summary: "Each route's queue in order: what is sending now, what waits, bytes left, ETA",
      request: {
        query: z.object({
          route: z
            .string()
            .regex(/^[A-Za-z0-9]{3}$/)
            .optional(),
        }),
      },
      responses: answer('Queues', z.object({ routes: z.array(RouteQueue) })),
    }),
    async (c) => {
      need(c, 'read');
      const only = c.req.valid('query').route;
      const routes = await routeQueues(parts, only);
      return c.json({ routes }, 200);
    },
  );
}
