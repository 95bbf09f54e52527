import { createRoute, z } from '@hono/zod-openapi';
import { PATHS } from '../../api/paths.js';
import {
  JoinAnswer,
  JoinRequest,
  JoinTokenAnswer,
  JoinTokenRequest,
  RegisterAnswer,
  RegisterRequest,
  RemoveNeighbourAnswer,
  siteCalls,
} from '../../api/sites.js';
import { removeNeighbour } from '../decommission.js';
import { freshnessView } from '../freshness.js';
import { acceptJoin, acceptRegister, issueJoinToken, neighbour, ownUrl, siteTree } from '../hierarchy.js';
import { type App, type AppParts, answer, created, getJson, jsonBody, need } from '../http.js';
import { processView } from '../processes.js';

export function registerSitesHandlers(app: App, parts: AppParts): void {
  app.openapi(
    createRoute({
      method: 'delete',
      path: PATHS.site1,
      summary: 'Take a child site, and every site and DP below it, out of the hierarchy (admin)',
      request: { params: z.object({ code: z.string().min(1).max(64) }) },
      responses: answer('Removed', RemoveNeighbourAnswer),
    }),
    async (c) => {
      need(c, 'admin');
      return c.json(await removeNeighbour(parts, 'site', c.req.valid('param').code.toUpperCase()), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.joinTokens,
      summary: 'Issue a one-time, expiring join token for a child site or a DP (admin)',
      request: {
        body: {
          content: {
            'application/json': {
              schema: JoinTokenRequest,
            },
          },
          required: false,
        },
      },
      responses: created('The token (shown once)', JoinTokenAnswer),
    }),
    async (c) => {
      need(c, 'admin');
      const body = c.req.valid('json') ?? { kind: 'site' as const, ttlSeconds: 3600 };
      return c.json(await issueJoinToken(parts, body.kind ?? 'site', body.ttlSeconds ?? 3600), 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.siteJoin,
      summary: 'A child site joins with a join token (no bearer token: the join token authenticates)',
      security: [],
      request: { body: jsonBody(JoinRequest) },
      responses: answer('Joined', JoinAnswer),
    }),
    async (c) => {
      return c.json(await acceptJoin(parts, c.req.valid('json'), await ownUrl(parts)), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.siteRegister,
      summary: 'A child registers a site that joined below it (site credential)',
      request: { body: jsonBody(RegisterRequest) },
      responses: answer('Registered; the central site vouches for its key', RegisterAnswer),
    }),
    async (c) => {
      const t = need(c, 'peer');
      const child = await neighbour(parts, t.name, ['child'], `credential of ${t.name} is not a child site's`);
      return c.json(await acceptRegister(parts, child.code, c.req.valid('json')), 200);
    },
  );

  getJson(app, siteCalls.list, 'read', async () => ({
    ...(await siteTree(parts)),
    freshness: await freshnessView(parts),
    ...(parts.leases ? { processes: await processView(parts) } : {}),
  }));
}
