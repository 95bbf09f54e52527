import { createRoute } from '@hono/zod-openapi';
import { PATHS } from '../../api/paths.js';
import { SiteInfo } from '../../api/site.js';
import { publicKeyPem } from '../../content/signing.js';
import { VERSION } from '../../lib/version.js';
import { centralTrust } from '../hierarchy.js';
import { type App, type AppParts, errorResponses } from '../http.js';

export function registerSiteHandlers(app: App, parts: AppParts): void {
  app.openapi(
    createRoute({
      method: 'get',
      path: PATHS.site,
      summary: "This site's code, name and public key (no token needed)",
      security: [],
      responses: {
        200: { description: 'Site identity', content: { 'application/json': { schema: SiteInfo } } },
        500: errorResponses[500],
      },
    }),
    async (c) => {
      const central = await centralTrust(parts);
      return c.json(
        {
          code: parts.code,
          name: parts.name,
          keyId: parts.key.keyId,
          publicKey: publicKeyPem(parts.key.publicKey),
          version: VERSION,
          central: { code: central.code, keyId: central.key.keyId, publicKey: central.key.publicKeyPem },
          trusted: parts.trusted.map((t) => ({ keyId: t.keyId, publicKey: t.publicKeyPem, site: t.site })),
        },
        200,
      );
    },
  );
}
