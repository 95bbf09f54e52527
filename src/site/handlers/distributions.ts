import { createRoute, z } from '@hono/zod-openapi';
import { Message, Plan, Specs, Summary, Target, Transfer, Validation } from '../../api/distributions.js';
import { SEVERITIES } from '../../core/distribution.js';
import { normaliseTarget, TARGET_NAME } from '../../core/dp.js';
import { fail } from '../../core/errors.js';
import { PACKAGE_ID } from '../../core/package.js';
import { listMessages, listTargets, listTransfers } from '../../store/distribution.js';
import { listGroups } from '../../store/dps.js';
import { setCourier } from '../courier.js';
import { distribute, summarise, undistribute } from '../distribution.js';
import { siteOfDp } from '../dps.js';
import { type App, type AppParts, errorResponses, need } from '../http.js';
import { validateDistribution } from '../validation.js';

export function registerDistributionHandlers(app: App, parts: AppParts): void {
  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/distributions',
      summary: 'Distribute a package version to DPs at or below this site, or preview it with dryRun (operate)',
      request: {
        body: {
          content: {
            'application/json': {
              schema: z.strictObject({
                packageId: z.string().regex(PACKAGE_ID),
                version: z.number().int().min(1).optional(),
                to: Specs,
                dryRun: z.boolean().optional(),
                via: z
                  .enum(['network', 'courier'])
                  .optional()
                  .describe(
                    "courier: no chunk crosses the routes to child sites or to this site's DPs; the sender waits for a courier parcel (docs/courier.md)",
                  ),
              }),
            },
          },
          required: true,
        },
      },
      responses: {
        200: { description: 'The plan (dry run: nothing changed)', content: { 'application/json': { schema: Plan } } },
        201: { description: 'The plan, started', content: { 'application/json': { schema: Plan } } },
        ...errorResponses,
      },
    }),
    async (c) => {
      const b = c.req.valid('json');
      need(c, b.dryRun ? 'read' : 'operate');
      // The mode goes in first, so the sender never sees the transfer without it.
      if (!b.dryRun) await setCourier(parts, b.packageId, b.version, b.to, b.via === 'courier');
      const r = await distribute(parts, b.packageId, b.version, b.to, { dryRun: b.dryRun === true });
      if (b.dryRun) return c.json(r, 200);
      parts.kick?.();
      return c.json(r, 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/undistributions',
      summary: 'Remove a package version from DPs at or below this site (operate)',
      request: {
        body: {
          content: {
            'application/json': {
              schema: z.strictObject({
                packageId: z.string().regex(PACKAGE_ID),
                version: z.number().int().min(1).optional(),
                from: Specs,
              }),
            },
          },
          required: true,
        },
      },
      responses: {
        200: {
          description: 'The removal states',
          content: {
            'application/json': {
              schema: z.object({
                packageId: z.string(),
                version: z.number(),
                targets: z.array(z.object({ dp: z.string(), site: z.string(), state: z.string() })),
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
      const r = await undistribute(parts, b.packageId, b.version, b.from);
      parts.kick?.();
      return c.json(r, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/validations',
      summary:
        'Validate a version on the DPs at or below this site (re-hash every chunk, check every file); repair re-sends only damaged chunks (operate)',
      request: {
        body: {
          content: {
            'application/json': {
              schema: z.strictObject({
                packageId: z.string().regex(PACKAGE_ID),
                version: z.number().int().min(1).optional(),
                dp: z.string().regex(TARGET_NAME).optional().describe('one DP (default: every DP holding the version)'),
                repair: z.boolean().optional(),
              }),
            },
          },
          required: true,
        },
      },
      responses: { 200: { description: 'Per DP', content: { 'application/json': { schema: Validation } } }, ...errorResponses },
    }),
    async (c) => {
      need(c, 'operate');
      const b = c.req.valid('json');
      const dp = b.dp && normaliseTarget(b.dp);
      return c.json(await validateDistribution(parts, b.packageId, b.version, dp, { repair: b.repair === true }), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/distributions/{id}',
      summary: 'Where a package is: every target DP at or below this site, with roll-ups per site and per DP group',
      request: { params: z.object({ id: z.string().regex(PACKAGE_ID) }) },
      responses: {
        200: {
          description: 'Targets and their states',
          content: {
            'application/json': {
              schema: z.object({
                packageId: z.string(),
                summary: Summary,
                sites: z.array(z.object({ site: z.string(), summary: Summary })),
                groups: z.array(z.object({ group: z.string(), summary: Summary })),
                targets: z.array(Target),
              }),
            },
          },
        },
        ...errorResponses,
      },
    }),
    async (c) => {
      need(c, 'read');
      const { id } = c.req.valid('param');
      const rows = await listTargets(parts.store, { packageId: id });
      if (rows.length === 0 && !(await parts.store.getPackage(id)))
        throw fail('not_found', `package ${id} is not known at site ${parts.code}`);
      const targets: z.infer<typeof Target>[] = [];
      for (const t of rows) {
        targets.push({
          dp: t.site,
          site: await siteOfDp(parts, t.site),
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
        });
      }
      const sites = [...new Set(targets.map((t) => t.site))].sort();
      const groups = (await listGroups(parts.store)).filter((g) => rows.some((t) => g.members.includes(t.site)));
      return c.json(
        {
          packageId: id,
          summary: summarise(rows),
          sites: sites.map((site) => ({ site, summary: summarise(rows.filter((_, i) => targets[i]?.site === site)) })),
          groups: groups.map((g) => ({ group: g.name, summary: summarise(rows.filter((t) => g.members.includes(t.site))) })),
          targets,
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
      method: 'get',
      path: '/api/v1/messages',
      summary: 'Status messages of this site and the sites below it, newest first',
      request: {
        query: z.object({
          site: z.string().max(64).optional().describe('a site code or DP name'),
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
        ...(q.site ? { site: normaliseTarget(q.site) } : {}),
        ...(q.package ? { packageId: q.package.toUpperCase() } : {}),
        ...(q.severity ? { severity: q.severity } : {}),
        ...(q.limit ? { limit: q.limit } : {}),
      });
      return c.json({ messages }, 200);
    },
  );
}
