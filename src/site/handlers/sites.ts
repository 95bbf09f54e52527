import { createRoute, z } from '@hono/zod-openapi';
import { JoinAnswer, JoinRequest, RegisterAnswer, RegisterRequest, SiteEntry } from '../../api/sites.js';
import { fail } from '../../core/errors.js';
import { acceptJoin, acceptRegister, centralTrust, parentOf } from '../hierarchy.js';
import { type App, type AppParts, errorResponses, need } from '../http.js';

export function registerSitesHandlers(app: App, parts: AppParts): void {
  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/join-tokens',
      summary: 'Issue a one-time, expiring join token for a child site or a DP (admin)',
      request: {
        body: {
          content: {
            'application/json': {
              schema: z.strictObject({
                kind: z.enum(['site', 'dp']).default('site'),
                ttlSeconds: z
                  .number()
                  .int()
                  .min(60)
                  .max(30 * 86400)
                  .default(3600),
              }),
            },
          },
          required: false,
        },
      },
      responses: {
        201: {
          description: 'The token (shown once)',
          content: {
            'application/json': { schema: z.object({ token: z.string(), kind: z.string(), expiresAt: z.string(), site: z.string() }) },
          },
        },
        ...errorResponses,
      },
    }),
    async (c) => {
      need(c, 'admin');
      const body = c.req.valid('json') ?? { kind: 'site' as const, ttlSeconds: 3600 };
      const t = await parts.store.createJoinToken(body.kind ?? 'site', body.ttlSeconds ?? 3600);
      return c.json({ token: t.secret, kind: body.kind ?? 'site', expiresAt: t.expiresAt, site: parts.code }, 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/sites/join',
      summary: 'A child site joins with a join token (no bearer token: the join token authenticates)',
      security: [],
      request: { body: { content: { 'application/json': { schema: JoinRequest } }, required: true } },
      responses: { 200: { description: 'Joined', content: { 'application/json': { schema: JoinAnswer } } }, ...errorResponses },
    }),
    async (c) => {
      const url = (await parts.store.getMeta('site.url')) ?? null;
      return c.json(await acceptJoin(parts, c.req.valid('json'), url), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/sites/register',
      summary: 'A child registers a site that joined below it (site credential)',
      request: { body: { content: { 'application/json': { schema: RegisterRequest } }, required: true } },
      responses: {
        200: {
          description: 'Registered; the central site vouches for its key',
          content: { 'application/json': { schema: RegisterAnswer } },
        },
        ...errorResponses,
      },
    }),
    async (c) => {
      const t = need(c, 'peer');
      const child = await parts.store.getSite(t.name);
      if (!child || child.relation !== 'child') throw fail('forbidden', `credential of ${t.name} is not a child site's`);
      return c.json(await acceptRegister(parts, child.code, c.req.valid('json')), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/sites',
      summary: 'This site, its parent, and every site below it',
      responses: {
        200: {
          description: 'The tree as this site knows it',
          content: { 'application/json': { schema: z.object({ central: z.string(), sites: z.array(SiteEntry) }) } },
        },
        ...errorResponses,
      },
    }),
    async (c) => {
      need(c, 'read');
      const rows = await parts.store.listSites();
      const parent = await parentOf(parts.store);
      const self = {
        code: parts.code,
        name: parts.name,
        parent: parent?.code ?? null,
        relation: 'self' as const,
        url: (await parts.store.getMeta('site.url')) ?? null,
        reachable: true,
        lastContact: parts.clock().toISOString(),
      };
      const sites = rows.map((s) => ({
        code: s.code,
        name: s.name,
        parent: s.parent,
        relation: s.relation as 'parent' | 'child' | 'descendant',
        url: s.url,
        reachable: s.reachable,
        lastContact: s.lastContact,
      }));
      return c.json({ central: (await centralTrust(parts)).code, sites: [self, ...sites] }, 200);
    },
  );
}
