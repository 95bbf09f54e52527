import { OpenAPIHono } from '@hono/zod-openapi';
import { PATHS } from '../api/paths.js';
import { CascadeError, ERROR_CODES, fail, fromSystemError } from '../core/errors.js';
import { VERSION } from '../lib/version.js';
import { clientOf } from './clients.js';
import { registerChunkHandlers } from './handlers/chunks.js';
import { registerClientHandlers } from './handlers/clients.js';
import { registerCourierHandlers, registerDpCourierHandlers } from './handlers/courier.js';
import { registerDistributionHandlers } from './handlers/distributions.js';
import { registerDpHandlers } from './handlers/dps.js';
import { registerPackageHandlers } from './handlers/packages.js';
import { registerQueueHandlers } from './handlers/queue.js';
import { registerRolloutHandlers } from './handlers/rollouts.js';
import { registerRouteHandlers } from './handlers/routes.js';
import { registerSiteHandlers } from './handlers/site.js';
import { registerSitesHandlers } from './handlers/sites.js';
import { registerTokenHandlers } from './handlers/tokens.js';
import { registerTransferHandlers } from './handlers/transfers.js';
import { type App, type AppEnv, type AppParts, BODY_LIMITS, limitBody } from './http.js';
import { emit } from './messages.js';

// A transfer offer carries a whole signed manifest (base64), like a version commit; a preview
// carries the version's chunk list.
const VERSION_POSTS = /^\/api\/v1\/(?:packages(?:\/[^/]+\/versions)?|transfers\/(?:offer|preview))$/;

/** Paths anyone may read without a token. */
const PUBLIC = new Set<string>(['/healthz', '/metrics', PATHS.openapi, PATHS.site, PATHS.siteJoin, PATHS.dpJoin, PATHS.agentEnrol]);

/** Calls anyone may make with a join token in the body: small bodies, and failed attempts counted per address. */
const JOINS = new Set<string>([PATHS.siteJoin, PATHS.dpJoin, PATHS.agentEnrol]);
/** How long an unauthenticated join or enrolment may take to arrive and be answered (default 30 s). */
const joinDeadlineMs = () => (Number(process.env.CASCADE_JOIN_DEADLINE_SECONDS) || 30) * 1000;

/** An agent's check-in carries its client credential, which the route itself checks. */
const CLIENT_AUTH = new Set<string>([PATHS.agentCheckin, PATHS.agentSlot]);

/**
 * At a DP, a parcel import (and its question of which chunks the DP lacks) carries no token of
 * this store: its bearer is an import ticket signed by the DP's site, which the route checks
 * before it reads the body.
 */
const DP_TICKETED = new Set<string>([PATHS.courierImport, PATHS.courierMissing]);

const FAILED_MAX = 20;
const FAILED_WINDOW_MS = 60_000;

/**
 * The site server's HTTP API. Takes its parts as arguments (store, library, clock, log) so
 * tests can build one in-process and call it with `app.request()`.
 */
export function createApp(parts: AppParts, role: 'site' | 'dp' = 'site'): App {
  const app = new OpenAPIHono<AppEnv>({
    defaultHook: (result) => {
      if (!result.success) {
        const issue = result.error.issues[0];
        const where = issue?.path.length ? `${issue.path.join('.')}: ` : '';
        throw fail('bad_request', `invalid request: ${where}${issue?.message ?? 'does not match the schema'}`);
      }
    },
  });
  const requests = parts.metrics.counter('cascade_http_requests_total', 'HTTP requests by method and status.');

  app.onError((err, c) => {
    if (err instanceof CascadeError) return c.json(err.toJSON(), err.status as 400);
    if (err instanceof SyntaxError) return c.json(fail('bad_request', `request body is not valid JSON: ${err.message}`).toJSON(), 400);
    const status = (err as { status?: number }).status;
    if (status === 413) return c.json(fail('too_large', 'request body is too large').toJSON(), 413);
    if (typeof status === 'number' && status >= 400 && status < 500) {
      // Hono's own request errors (e.g. malformed JSON) carry a status and a plain message.
      return c.json(fail('bad_request', `invalid request: ${err.message}`).toJSON(), 400);
    }
    parts.log.error({ err }, 'request failed');
    const named = fromSystemError(err, `${role === 'dp' ? 'DP' : 'site'} ${parts.code}`);
    if (named) return c.json(named.toJSON(), 507);
    return c.json(fail('internal', 'internal error; the site log has details').toJSON(), 500);
  });
  app.notFound((c) => c.json(fail('not_found', `no route ${c.req.method} ${c.req.path}`).toJSON(), 404));

  app.use('*', async (c, next) => {
    await next();
    requests(1, { method: c.req.method, status: String(c.res.status) });
  });

  app.use('/api/*', async (c, next) => {
    if (PUBLIC.has(c.req.path) || (role === 'dp' && DP_TICKETED.has(c.req.path))) return next();
    if (role === 'site' && CLIENT_AUTH.has(c.req.path)) {
      const m = /^Bearer\s+(\S+)$/i.exec(c.req.header('authorization') ?? '');
      if (!m) throw fail('unauthorized', 'the agent must send its client credential as a bearer token');
      c.set('client', await clientOf(parts, m[1] as string));
      return next();
    }
    const h = c.req.header('authorization') ?? '';
    const m = /^Bearer\s+(\S+)$/i.exec(h);
    if (!m) throw fail('unauthorized', 'this call needs a bearer token (--token or CASCADE_TOKEN)');
    const token = await parts.store.findToken(m[1] as string);
    if (!token) throw fail('unauthorized', 'the bearer token is not valid here');
    c.set('token', token);
    return next();
  });

  // Failed joins and enrolments (a refused token or a malformed body), per address: past
  // FAILED_MAX in a minute, refused for the rest
  // of the minute (429), and reported once as a warning status message.
  const failures = new Map<string, { count: number; since: number; reported: boolean }>();
  app.use('/api/*', async (c, next) => {
    if (c.req.method !== 'POST' || !JOINS.has(c.req.path)) return next();
    const who = c.env?.incoming?.socket?.remoteAddress ?? 'unknown';
    const now = Date.now();
    let f = failures.get(who);
    if (f && now - f.since > FAILED_WINDOW_MS) {
      failures.delete(who);
      f = undefined;
    }
    if (f && f.count >= FAILED_MAX)
      throw fail(
        'rate_limited',
        `too many failed join attempts from ${who}; try again in ${Math.ceil((f.since + FAILED_WINDOW_MS - now) / 1000)} s`,
      );
    await next();
    if (c.res.status !== 401 && c.res.status !== 400) return;
    if (failures.size > 10_000) failures.clear();
    const g = f ?? { count: 0, since: now, reported: false };
    g.count++;
    failures.set(who, g);
    if (g.count >= FAILED_MAX && !g.reported) {
      g.reported = true;
      await emit(parts, {
        component: 'api',
        severity: 'warning',
        code: 'join_attempts_refused',
        text: `${g.count} failed join attempts from ${who} within a minute (${c.req.path}); further ones are refused for the rest of the minute`,
      });
    }
  });

  // After authentication, so only a caller with a token can make the server read a body; a
  // join's body (no bearer token) is small.
  const versionBody = limitBody(BODY_LIMITS.versions);
  const jsonBody = limitBody(BODY_LIMITS.json);
  const joinBody = limitBody(BODY_LIMITS.unauthenticated);
  app.use('/api/*', async (c, next) => {
    if (c.req.method === 'GET' || c.req.method === 'HEAD') return next();
    if (c.req.method === 'POST' && JOINS.has(c.req.path)) {
      // Unauthenticated: the whole request must arrive within a deadline, or the connection is
      // cut (a client trickling a body byte by byte holds no connection for long).
      const socket = c.env?.incoming?.socket;
      const deadline = setTimeout(() => socket?.destroy(), joinDeadlineMs());
      try {
        return await joinBody(c, next);
      } finally {
        clearTimeout(deadline);
      }
    }
    if (c.req.method === 'POST' && c.req.path === PATHS.chunks) return next();
    // A courier parcel streams in, like a chunk batch: never held whole.
    if (c.req.method === 'POST' && c.req.path === PATHS.courierImport) return next();
    return (c.req.method === 'POST' && VERSION_POSTS.test(c.req.path) ? versionBody : jsonBody)(c, next);
  });

  app.get('/healthz', (c) => c.json({ ok: true, site: parts.code, version: VERSION }));
  app.get('/metrics', (c) => c.text(parts.metrics.render(), 200, { 'content-type': 'text/plain; version=0.0.4' }));

  registerSiteHandlers(app, parts);
  registerTransferHandlers(app, parts);
  // A DP answers only its site's calls (and serves content, outside this API).
  if (role === 'site') {
    registerSitesHandlers(app, parts);
    registerDpHandlers(app, parts);
    registerRouteHandlers(app, parts);
    registerDistributionHandlers(app, parts);
    registerQueueHandlers(app, parts);
    registerTokenHandlers(app, parts);
    registerChunkHandlers(app, parts);
    registerPackageHandlers(app, parts);
    registerCourierHandlers(app, parts);
    registerClientHandlers(app, parts);
    registerRolloutHandlers(app, parts);
  } else {
    registerDpCourierHandlers(app, parts);
  }

  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer' });
  if (role === 'dp')
    app.openAPIRegistry.registerComponent('securitySchemes', 'ticket', {
      type: 'http',
      scheme: 'bearer',
      description: "an import ticket from the DP's site (POST /api/v1/courier/dp-tickets there)",
    });
  app.doc31(PATHS.openapi, {
    openapi: '3.1.0',
    info: {
      title: role === 'dp' ? 'Cascade distribution point API' : 'Cascade site server API',
      version: VERSION,
      description: `Errors are {"error": {"code", "message"}}. Codes: ${Object.keys(ERROR_CODES).join(', ')}.`,
    },
    security: [{ bearer: [] }],
  });
  return app;
}
