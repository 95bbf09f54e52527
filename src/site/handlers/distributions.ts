import { createRoute, z } from '@hono/zod-openapi';
import {
  DistributeRequest,
  DistributionStatus,
  distributionCalls,
  Message,
  Plan,
  Transfer,
  TransferParam,
  UndistributeAnswer,
  UndistributeRequest,
  Validation,
  ValidationRequest,
} from '../../api/distributions.js';
import { PATHS } from '../../api/paths.js';
import { SEVERITIES } from '../../core/distribution.js';
import { normaliseTarget } from '../../core/dp.js';
import { PACKAGE_ID } from '../../core/package.js';
import { setCourier } from '../courier.js';
import { distribute, distributionStatus, distributionSummaries, transfers, undistribute } from '../distribution.js';
import { type App, type AppParts, answer, getJson, jsonBody, need } from '../http.js';
import { messagesOf } from '../messages.js';
import { cancelTransfer, retryNow } from '../transfers.js';
import { validateDistribution } from '../validation.js';

export function registerDistributionHandlers(app: App, parts: AppParts): void {
  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.distributions,
      summary: 'Distribute a package version to DPs at or below this site, or preview it with dryRun (operate)',
      request: { body: jsonBody(DistributeRequest) },
      responses: {
        ...answer('The plan (dry run: nothing changed)', Plan),
        201: { description: 'The plan, started', content: { 'application/json': { schema: Plan } } },
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
      path: PATHS.undistributions,
      summary: 'Remove a package version from DPs at or below this site (operate)',
      request: { body: jsonBody(UndistributeRequest) },
      responses: answer('The removal states', UndistributeAnswer),
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
      path: PATHS.validations,
      summary:
        'Validate a version on the DPs at or below this site (re-hash every chunk, check every file); repair re-sends only damaged chunks (operate)',
      request: { body: jsonBody(ValidationRequest) },
      responses: answer('Per DP', Validation),
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
      path: PATHS.distribution,
      summary: 'Where a package is: every target DP at or below this site, with roll-ups per site and per DP group',
      request: { params: z.object({ id: z.string().regex(PACKAGE_ID) }) },
      responses: answer('Targets and their states', DistributionStatus),
    }),
    async (c) => {
      need(c, 'read');
      const { id } = c.req.valid('param');
      return c.json(await distributionStatus(parts, id), 200);
    },
  );

  getJson(app, distributionCalls.list, 'read', async () => ({ packages: await distributionSummaries(parts) }));

  getJson(app, distributionCalls.transfers, 'read', async () => ({ transfers: await transfers(parts) }));

  app.openapi(
    createRoute({
      method: 'get',
      path: PATHS.messages,
      summary: 'Status messages of this site and the sites below it, newest first',
      request: {
        query: z.object({
          site: z.string().max(64).optional().describe('a site code or DP name'),
          package: z.string().max(16).optional(),
          severity: z.enum(SEVERITIES).optional(),
          limit: z.coerce.number().int().min(1).max(10_000).optional(),
        }),
      },
      responses: answer('Messages', z.object({ messages: z.array(Message) })),
    }),
    async (c) => {
      need(c, 'read');
      const q = c.req.valid('query');
      const messages = await messagesOf(parts, {
        ...(q.site ? { site: normaliseTarget(q.site) } : {}),
        ...(q.package ? { packageId: q.package.toUpperCase() } : {}),
        ...(q.severity ? { severity: q.severity } : {}),
        ...(q.limit ? { limit: q.limit } : {}),
      });
      return c.json({ messages }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.transferRetryNow,
      summary: 'Send a transfer waiting for its next attempt now, not after its backoff (operate)',
      request: { params: TransferParam },
      responses: answer('The transfer, queued', Transfer),
    }),
    async (c) => {
      need(c, 'operate');
      const t = await retryNow(parts, c.req.valid('param').id);
      parts.kick?.();
      return c.json(t, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.transferCancel,
      summary: 'Stop a transfer that has not finished; it and its targets not yet installed become failed (operate)',
      request: { params: TransferParam },
      responses: answer('The transfer, failed', Transfer),
    }),
    async (c) => {
      const me = need(c, 'operate');
      return c.json(await cancelTransfer(parts, c.req.valid('param').id, me.name, parts.stopTransfer), 200);
    },
  );
}
