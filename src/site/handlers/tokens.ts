import { createRoute, z } from '@hono/zod-openapi';
import { PATHS } from '../../api/paths.js';
import { TokenCreated, TokenRequest, tokenCalls } from '../../api/tokens.js';
import { type App, type AppParts, answer, created, getJson, jsonBody, need } from '../http.js';
import { createToken, listTokens, revokeToken } from '../tokens.js';

export function registerTokenHandlers(app: App, parts: AppParts): void {
  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.tokens,
      summary: 'Create an API token (admin); the secret is shown once',
      request: { body: jsonBody(TokenRequest) },
      responses: created('Created', TokenCreated),
    }),
    async (c) => {
      need(c, 'admin');
      const { role, name } = c.req.valid('json');
      return c.json(await createToken(parts, role, name), 201);
    },
  );

  getJson(app, tokenCalls.list, 'admin', async () => ({ tokens: await listTokens(parts) }));

  app.openapi(
    createRoute({
      method: 'delete',
      path: PATHS.token,
      summary: 'Revoke an API token (admin)',
      request: { params: z.object({ id: z.string().min(1).max(64) }) },
      responses: answer('Revoked', z.object({ revoked: z.string() })),
    }),
    async (c) => {
      const me = need(c, 'admin');
      const { id } = c.req.valid('param');
      await revokeToken(parts, me.id, id);
      return c.json({ revoked: id }, 200);
    },
  );
}
