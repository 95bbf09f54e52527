import { createRoute, z } from '@hono/zod-openapi';
import { fail } from '../../core/errors.js';
import { PACKAGE_ID } from '../../core/package.js';
import { listMessages, listTargets, listTransfers, SEVERITIES, TARGET_STATES, TRANSFER_STATES } from '../../store/distribution.js';
import { type App, type AppParts, bodyStream, errorResponses, need } from '../app.js';
import { ingestBatch } from '../content.js';
import { setCourier } from '../courier.js';
import { acceptOffer, acceptStatus, commitOffer, distribute, Offer, StatusReport, summarise } from '../distribution.js';
import { IngestReport } from './chunks.js';

const Target = z
  .object({
    site: z.string(),
    dp: z.string().describe("the site's local DP"),
    via: z.string().nullable(),
    version: z.number(),
    state: z.enum(TARGET_STATES),
    bytesDone: z.number(),
    bytesTotal: z.number(),
    rate: z.number().describe('bytes per second, last measured'),
    etaSeconds: z.number().nullable(),
    retries: z.number(),
    nextRetryAt: z.string().nullable(),
    lastError: z.string().nullable(),
    detail: z.string().nullable(),
    updatedAt: z.string(),
  })
  .openapi('Target');
const Transfer = z
  .object({
    id: z.string(),
    packageId: z.string(),
    version: z.number(),
    child: z.string(),
    priority: z.enum(['high', 'medium', 'low']),
    targets: z.array(z.string()),
    state: z.enum(TRANSFER_STATES),
    bytesTotal: z.number(),
    bytesDone: z.number(),
    wireBytes: z.number(),
    retries: z.number(),
    nextAttemptAt: z.string().nullable(),
    lastError: z.string().nullable(),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .openapi('Transfer');
const Message = z
  .object({
    id: z.string(),
    time: z.string(),
    site: z.string(),
    component: z.string(),
    severity: z.enum(SEVERITIES),
    code: z.string(),
    text: z.string(),
    packageId: z.string().nullable(),
  })
  .openapi('StatusMessage');
const Summary = z.object({
  targeted: z.number(),
  installed: z.number(),
  sending: z.number(),
  pending: z.number(),
  retrying: z.number(),
  failed: z.number(),
});

export function registerDistributionRoutes(app: App, parts: AppParts): void {
  const fromChildOrParent = async (name: string) => {
    const s = await parts.store.getSite(name);
    if (!s || (s.relation !== 'parent' && s.relation !== 'child'))
      throw fail('forbidden', `credential of ${name} is not a neighbouring site's`);
    return s;
  };

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/distributions',
      summary: 'Distribute a package version to sites at or below this one (operate)',
      request: {
        body: {
          content: {
            'application/json': {
              schema: z.strictObject({
                packageId: z.string().regex(PACKAGE_ID),
                version: z.number().int().min(1).optional(),
                to: z.array(z.string().min(1).max(64)).min(1).max(10_000).describe('site:CODE'),
                via: z
                  .enum(['network', 'courier'])
                  .optional()
                  .describe('courier: no chunk crosses the routes from here; the sender waits for a courier parcel (docs/courier.md)'),
              }),
            },
          },
          required: true,
        },
      },
      responses: {
        201: {
          description: 'The plan',
          content: {
            'application/json': {
              schema: z.object({
                packageId: z.string(),
                version: z.number(),
                targets: z.array(z.object({ site: z.string(), via: z.string().nullable(), state: z.string(), added: z.boolean() })),
              }),
            },
          },
        },
        ...errorResponses,
      },
    }),
    async (c) => {
      need(c, 'operate');
      const b = c.req.valid('json');
      await setCourier(parts, b.packageId, b.version, b.to, b.via === 'courier');
      const r = await distribute(parts, b.packageId, b.version, b.to);
      parts.kick?.();
      return c.json(r, 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/distributions/{id}',
      summary: 'Where a package is: every target at or below this site',
      request: { params: z.object({ id: z.string().regex(PACKAGE_ID) }) },
      responses: {
        200: {
          description: 'Targets and their states',
          content: { 'application/json': { schema: z.object({ packageId: z.string(), summary: Summary, targets: z.array(Target) }) } },
        },
        ...errorResponses,
      },
    }),
    async (c) => {
      need(c, 'read');
      const { id } = c.req.valid('param');
      const targets = await listTargets(parts.store, id);
      if (targets.length === 0 && !(await parts.store.getPackage(id)))
        throw fail('not_found', `package ${id} is not known at site ${parts.code}`);
      return c.json(
        {
          packageId: id,
          summary: summarise(targets),
          targets: targets.map((t) => ({
            site: t.site,
            dp: `${t.site}-local`,
            via: t.via,
            version: t.version,
            state: t.state,
            bytesDone: t.bytesDone,
            bytesTotal: t.bytesTotal,
            rate: t.rate,
            etaSeconds: t.state === 'sending' && t.rate > 0 ? Math.ceil((t.bytesTotal - t.bytesDone) / t.rate) : null,
            retries: t.retries,
            nextRetryAt: t.nextRetryAt,
            lastError: t.lastError,
            detail: t.detail,
            updatedAt: t.updatedAt,
          })),
        },
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/distributions',
      summary: 'Every package with targets at or below this site, summarised',
      responses: {
        200: {
          description: 'Per package',
          content: {
            'application/json': { schema: z.object({ packages: z.array(z.object({ packageId: z.string(), summary: Summary })) }) },
          },
        },
        ...errorResponses,
      },
    }),
    async (c) => {
      need(c, 'read');
      const all = await listTargets(parts.store);
      const ids = [...new Set(all.map((t) => t.packageId))];
      return c.json({ packages: ids.map((id) => ({ packageId: id, summary: summarise(all.filter((t) => t.packageId === id)) })) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/transfers',
      summary: "The sender's transfers on this site's routes",
      responses: {
        200: { description: 'Transfers', content: { 'application/json': { schema: z.object({ transfers: z.array(Transfer) }) } } },
        ...errorResponses,
      },
    }),
    async (c) => {
      need(c, 'read');
      return c.json({ transfers: await listTransfers(parts.store) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/transfers/offer',
      summary: 'A parent offers a package version (site credential); answers which chunks are missing',
      request: { body: { content: { 'application/json': { schema: Offer } }, required: true } },
      responses: {
        200: {
          description: 'What this site lacks',
          content: {
            'application/json': {
              schema: z.object({
                missing: z.array(z.string()),
                versions: z.array(z.number()),
                installed: z.boolean(),
                bytesTotal: z.number(),
              }),
            },
          },
        },
        ...errorResponses,
      },
    }),
    async (c) => {
      const t = need(c, 'peer');
      const from = await fromChildOrParent(t.name);
      if (from.relation !== 'parent') throw fail('forbidden', 'only the parent site offers packages');
      const r = await acceptOffer(parts, from.code, c.req.valid('json'));
      parts.kick?.();
      return c.json(r, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/transfers/chunks',
      summary: 'A parent sends chunks of an offered version (site credential; batch format as POST /api/v1/chunks)',
      request: { body: { content: { 'application/octet-stream': { schema: z.string().openapi({ format: 'binary' }) } }, required: true } },
      responses: {
        200: {
          description: 'Stored',
          content: {
            'application/json': {
              schema: IngestReport,
            },
          },
        },
        ...errorResponses,
      },
    }),
    async (c) => {
      const t = need(c, 'peer');
      const from = await fromChildOrParent(t.name);
      if (from.relation !== 'parent') throw fail('forbidden', 'only the parent site sends packages');
      return c.json(await ingestBatch(parts, bodyStream(c)), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/transfers/commit',
      summary: 'A parent says an offered version is complete (site credential)',
      request: {
        body: {
          content: {
            'application/json': { schema: z.strictObject({ packageId: z.string().regex(PACKAGE_ID), version: z.number().int().min(1) }) },
          },
          required: true,
        },
      },
      responses: {
        200: {
          description: 'Installed, or how many chunks are still missing',
          content: { 'application/json': { schema: z.object({ installed: z.boolean(), missing: z.number() }) } },
        },
        ...errorResponses,
      },
    }),
    async (c) => {
      const t = need(c, 'peer');
      const from = await fromChildOrParent(t.name);
      if (from.relation !== 'parent') throw fail('forbidden', 'only the parent site commits what it sent');
      const b = c.req.valid('json');
      const r = await commitOffer(parts, from.code, b.packageId, b.version);
      parts.kick?.();
      return c.json(r, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/status',
      summary: 'A child reports targets and status messages (site credential)',
      request: { body: { content: { 'application/json': { schema: StatusReport } }, required: true } },
      responses: {
        200: { description: 'Kept', content: { 'application/json': { schema: z.object({ targets: z.number(), messages: z.number() }) } } },
        ...errorResponses,
      },
    }),
    async (c) => {
      const t = need(c, 'peer');
      const from = await fromChildOrParent(t.name);
      if (from.relation !== 'child') throw fail('forbidden', 'only child sites report status');
      return c.json(await acceptStatus(parts, from.code, c.req.valid('json')), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/messages',
      summary: 'Status messages of this site and the sites below it, newest first',
      request: {
        query: z.object({
          site: z.string().max(8).optional(),
          package: z.string().max(16).optional(),
          severity: z.enum(SEVERITIES).optional(),
          limit: z.coerce.number().int().min(1).max(10_000).optional(),
        }),
      },
      responses: {
        200: { description: 'Messages', content: { 'application/json': { schema: z.object({ messages: z.array(Message) }) } } },
        ...errorResponses,
      },
    }),
    async (c) => {
      need(c, 'read');
      const q = c.req.valid('query');
      const messages = await listMessages(parts.store, {
        ...(q.site ? { site: q.site.toUpperCase() } : {}),
        ...(q.package ? { packageId: q.package.toUpperCase() } : {}),
        ...(q.severity ? { severity: q.severity } : {}),
        ...(q.limit ? { limit: q.limit } : {}),
      });
      return c.json({ messages }, 200);
    },
  );
}
