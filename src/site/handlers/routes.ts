import { createRoute, z } from '@hono/zod-openapi';
import { PATHS } from '../../api/paths.js';
import { ChildParam, RouteSet, RouteView, routeCalls, Sender } from '../../api/routes.js';
import { type App, type AppParts, answer, getJson, jsonBody, need } from '../http.js';
import { listRoutes, senderConcurrency, setRoute, setSenderConcurrency, showRoute } from '../routes.js';

export function registerRouteHandlers(app: App, parts: AppParts): void {
  getJson(app, routeCalls.list, 'read', async () => ({ routes: await listRoutes(parts) }));

  app.openapi(
    createRoute({
      method: 'get',
      path: PATHS.route,
      summary: 'The route to one child site',
      request: { params: ChildParam },
      responses: answer('The route', RouteView),
    }),
    async (c) => {
      need(c, 'read');
      return c.json(await showRoute(parts, c.req.valid('param').child), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'put',
      path: PATHS.route,
      summary: 'Set the rate, concurrency or schedule of the route to a child site (fields left out keep their value)',
      request: { params: ChildParam, body: jsonBody(RouteSet) },
      responses: answer('The route as it is now', RouteView),
    }),
    async (c) => {
      need(c, 'operate');
      return c.json(await setRoute(parts, c.req.valid('param').child, c.req.valid('json')), 200);
    },
  );

  getJson(app, routeCalls.sender, 'read', async () => ({ concurrency: await senderConcurrency(parts) }));
  app.openapi(
    createRoute({
      method: 'put',
      path: PATHS.sender,
      summary: "Set this site's sender: packages in flight across all routes",
      request: {
        body: jsonBody(z.strictObject({ concurrency: z.number().int().min(1).max(256) })),
      },
      responses: answer('Sender settings', Sender),
    }),
    async (c) => {
      need(c, 'operate');
      const { concurrency } = c.req.valid('json');
      await setSenderConcurrency(parts, concurrency);
      parts.kick?.();
      return c.json({ concurrency }, 200);
    },
  );
}
