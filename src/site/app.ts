import type { IncomingMessage } from 'node:http';
import { OpenAPIHono, z } from '@hono/zod-openapi';
import type { Context, MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { CascadeError, ERROR_CODES, type ErrorCode, fail } from '../core/errors.js';
import { allows, type Permission } from '../core/roles.js';
import type { Metrics } from '../lib/metrics.js';
import { VERSION } from '../lib/version.js';
import type { TokenInfo } from '../store/store.js';
import type { SiteContext } from './content.js';
import { registerChunkRoutes } from './routes/chunks.js';
import { registerCourierRoutes, registerDpCourierRoutes } from './routes/courier.js';
import { registerDistributionRoutes } from './routes/distributions.js';
import { registerDpRoutes } from './routes/dps.js';
import { registerPackageRoutes } from './routes/packages.js';
import { registerQueueRoutes } from './routes/queue.js';
import { registerRouteRoutes } from './routes/routes.js';
import { registerSiteRoutes } from './routes/site.js';
import { registerSitesRoutes } from './routes/sites.js';
import { registerTokenRoutes } from './routes/tokens.js';
import { registerTransferRoutes } from './routes/transfers.js';

export type AppEnv = {
  Bindings: { incoming?: IncomingMessage };
  Variables: { token: TokenInfo };
};

export type App = OpenAPIHono<AppEnv>;

export interface AppParts extends SiteContext {
  metrics: Metrics;
  /** Wakes the sender now (a distribution or an arrival changed its queues). */
  kick?: () => void;
}

const MiB = 1 << 20;

/**
 * Largest request bodies, by call: a new package or version carries its whole file list (up to
 * LIMITS.entries entries); every other JSON body is small. POST /api/v1/chunks has no limit
 * here: it streams, record by record, and never holds the whole body.
 */
export const BODY_LIMITS = { versions: 256 * MiB, json: 16 * MiB } as const;

// A transfer offer carries a whole signed manifest (base64), like a version commit; a preview
// carries the version's chunk list.
const VERSION_POSTS = /^\/api\/v1\/(?:packages(?:\/[^/]+\/versions)?|transfers\/(?:offer|preview))$/;

function limitBody(maxSize: number): MiddlewareHandler<AppEnv> {
  return bodyLimit({
    maxSize,
    onError: (c) => c.json(fail('too_large', `request body is over the limit of ${maxSize / MiB} MiB for this call`).toJSON(), 413),
  });
}

/** Paths anyone may read without a token. */
const PUBLIC = new Set(['/healthz', '/metrics', '/api/v1/openapi.json', '/api/v1/site', '/api/v1/sites/join', '/api/v1/dps/join']);

/**
 * At a DP, a parcel import (and its question of which chunks the DP lacks) carries no token of
 * this store: its bearer is an import ticket signed by the DP's site, which the route checks
 * before it reads the body.
 */
const DP_TICKETED = new Set(['/api/v1/courier/import', '/api/v1/courier/missing']);

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
    return c.json(fail('internal', 'internal error; the site log has details').toJSON(), 500);
  });
  app.notFound((c) => c.json(fail('not_found', `no route ${c.req.method} ${c.req.path}`).toJSON(), 404));

  app.use('*', async (c, next) => {
    await next();
    requests(1, { method: c.req.method, status: String(c.res.status) });
  });

  app.use('/api/*', async (c, next) => {
    if (PUBLIC.has(c.req.path) || (role === 'dp' && DP_TICKETED.has(c.req.path))) return next();
    const h = c.req.header('authorization') ?? '';
    const m = /^Bearer\s+(\S+)$/i.exec(h);
    if (!m) throw fail('unauthorized', 'this call needs a bearer token (--token or CASCADE_TOKEN)');
    const token = await parts.store.findToken(m[1] as string);
    if (!token) throw fail('unauthorized', 'the bearer token is not valid here');
    c.set('token', token);
    return next();
  });

  // After authentication, so only a caller with a token can make the server read a body.
  const versionBody = limitBody(BODY_LIMITS.versions);
  const jsonBody = limitBody(BODY_LIMITS.json);
  app.use('/api/*', async (c, next) => {
    if (c.req.method === 'GET' || c.req.method === 'HEAD') return next();
    if (c.req.method === 'POST' && c.req.path === '/api/v1/chunks') return next();
    // A courier parcel streams in, like a chunk batch: never held whole.
    if (c.req.method === 'POST' && c.req.path === '/api/v1/courier/import') return next();
    return (c.req.method === 'POST' && VERSION_POSTS.test(c.req.path) ? versionBody : jsonBody)(c, next);
  });

  app.get('/healthz', (c) => c.json({ ok: true, site: parts.code, version: VERSION }));
  app.get('/metrics', (c) => c.text(parts.metrics.render(), 200, { 'content-type': 'text/plain; version=0.0.4' }));

  registerSiteRoutes(app, parts);
  registerTransferRoutes(app, parts);
  // A DP answers only its site's calls (and serves content, outside this API).
  if (role === 'site') {
    registerSitesRoutes(app, parts);
    registerDpRoutes(app, parts);
    registerRouteRoutes(app, parts);
    registerDistributionRoutes(app, parts);
    registerQueueRoutes(app, parts);
    registerTokenRoutes(app, parts);
    registerChunkRoutes(app, parts);
    registerPackageRoutes(app, parts);
    registerCourierRoutes(app, parts);
  } else {
    registerDpCourierRoutes(app, parts);
  }

  app.openAPIRegistry.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer' });
  if (role === 'dp')
    app.openAPIRegistry.registerComponent('securitySchemes', 'ticket', {
      type: 'http',
      scheme: 'bearer',
      description: "an import ticket from the DP's site (POST /api/v1/courier/dp-tickets there)",
    });
  app.doc31('/api/v1/openapi.json', {
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

/** Throws `forbidden` unless the caller's token grants `p`. */
export function need(c: Context<AppEnv>, p: Permission): TokenInfo {
  const t = c.get('token');
  if (!allows(t.role, p)) throw fail('forbidden', `${/^[aeiou]/.test(t.role) ? 'an' : 'a'} ${t.role} token cannot do this (needs ${p})`);
  return t;
}

/** The request body as a Node stream when served by Node, or the Web stream in tests. */
export function bodyStream(c: Context<AppEnv>): AsyncIterable<Uint8Array> {
  const incoming = c.env?.incoming;
  if (incoming) return incoming;
  const body = c.req.raw.body;
  if (!body) return (async function* () {})();
  return body as unknown as AsyncIterable<Uint8Array>;
}

/** The error envelope every API error has: the OpenAPI component `Error`. */
export const ErrorSchema = z
  .object({
    error: z.object({
      code: z
        .enum(Object.keys(ERROR_CODES) as [ErrorCode, ...ErrorCode[]])
        .describe('One code of the catalogue (docs/errors.md); the HTTP status follows from it'),
      message: z.string().describe('One line for people: what is wrong and what to do'),
    }),
  })
  .openapi('Error');

/** One documented error response: the envelope, and what the status means for this route. */
export const errorResponse = (description: string) => ({ description, content: { 'application/json': { schema: ErrorSchema } } });

/** Standard error responses for the OpenAPI document; a route may override one after spreading these. */
export const errorResponses = {
  400: errorResponse('Bad request (bad_request, invalid_manifest, ...)'),
  401: errorResponse('No valid bearer token (unauthorized)'),
  403: errorResponse("The token's role does not allow this (forbidden)"),
  404: errorResponse('No such resource (not_found)'),
  409: errorResponse('The request conflicts with the current state (conflict, missing_chunks)'),
  413: errorResponse('The request body, a file or a count is over its limit (too_large)'),
  422: errorResponse('Data does not match its digest or signature (chunk_mismatch, bad_signature)'),
  500: errorResponse('Stored content is damaged (damaged), or an unexpected failure (internal)'),
  503: errorResponse('A server or dependency, such as the database, cannot be reached (unavailable)'),
} as const;
