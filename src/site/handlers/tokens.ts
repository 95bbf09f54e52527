import { createRoute, z } from '@hono/zod-openapi';
import { Token } from '../../api/tokens.js';
import { fail } from '../../core/errors.js';
import { ROLES } from '../../core/roles.js';
import { type App, type AppParts, errorResponses, need } from '../http.js';

export function registerTokenHandlers(app: App, parts: AppParts): void {
  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/tokens',
      summary: 'Create an API token (admin); the secret is shown once',
      request: {
        body: {
          content: {
            'application/json': { schema: z.strictObject({ role: z.enum(ROLES), name: z.string().min(1).max(128) }) },
          },
          required: true,
        },
      },
      responses: {
        201: {
          description: 'Created',
          content: {
            'application/json': { schema: z.object({ id: z.string(), role: z.enum(ROLES), name: z.string(), token: z.string() }) },
          },
        },
        ...errorResponses,
      },
    }),
    async (c) => {
      need(c, 'admin');
      const { role, name } = c.req.valid('json');
      const t = await parts.store.createToken(role, name);
      return c.json({ id: t.id, role, name, token: t.secret }, 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/tokens',
      summary: 'List API tokens (admin); secrets are never shown',
      responses: {
        200: { description: 'Tokens', content: { 'application/json': { schema: z.object({ tokens: z.array(Token) }) } } },
        ...errorResponses,
      },
    }),
    async (c) => {
      need(c, 'admin');
      return c.json({ tokens: await parts.store.listTokens() }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/api/v1/tokens/{id}',
      summary: 'Revoke an API token (admin)',
      request: { params: z.object({ id: z.string().min(1).max(64) }) },
      responses: {
        200: { description: 'Revoked', content: { 'application/json': { schema: z.object({ revoked: z.string() }) } } },
        ...errorResponses,
      },
    }),
    async (c) => {
      const me = need(c, 'admin');
      const { id } = c.req.valid('param');
      if (id === me.id) throw fail('conflict', 'a token cannot revoke itself; use another admin token');
      if (!(await parts.store.revokeToken(id))) throw fail('not_found', `no token ${id}`);
      return c.json({ revoked: id }, 200);
    },
  );
}
