import { createRoute, z } from '@hono/zod-openapi';
import { publicKeyPem } from '../../content/signing.js';
import { VERSION } from '../../lib/version.js';
import { centralTrust } from '../hierarchy.js';
import { type App, type AppParts, errorResponses } from '../http.js';

export const SiteInfo = z
  .object({
    code: z.string(),
    name: z.string(),
    keyId: z.string(),
    publicKey: z.string().describe('Ed25519 public key, SPKI PEM'),
    version: z.string(),
    central: z.object({ code: z.string(), keyId: z.string(), publicKey: z.string() }).describe('the central site this site pinned'),
    trusted: z
      .array(z.object({ keyId: z.string(), publicKey: z.string(), site: z.string().describe('the site whose packages this key signs') }))
      .describe("every key this site accepts manifests from: its own, the central site's, and keys vouched for by the central site"),
  })
  .openapi('SiteInfo');

export function registerSiteHandlers(app: App, parts: AppParts): void {
  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/site',
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
