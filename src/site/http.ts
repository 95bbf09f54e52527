import type { IncomingMessage } from 'node:http';
import { createRoute, type OpenAPIHono } from '@hono/zod-openapi';
import type { Context, MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { z } from 'zod';
import type { Endpoint } from '../api/client.js';
import { ErrorSchema } from '../api/errors.js';
import { fail } from '../core/errors.js';
import { allows, type Permission } from '../core/roles.js';
import type { Metrics } from '../lib/metrics.js';
import type { ClientRow } from '../store/clients.js';
import type { TokenInfo } from '../store/store.js';
import type { SiteContext } from './context.js';

/**
 * What the HTTP handlers share: the app's types, permission checks, the request body as a
 * stream, body limits, and the documented error responses. Handlers import this, never app.ts.
 */

export type AppEnv = {
  Bindings: { incoming?: IncomingMessage };
  /** `client`: set for an agent's call, once its client credential is checked. */
  Variables: { token: TokenInfo; client: ClientRow };
};

export type App = OpenAPIHono<AppEnv>;

export interface AppParts extends SiteContext {
  metrics: Metrics;
  /** Wakes the sender now (a distribution or an arrival changed its queues). */
  kick?: () => void;
  /** Stops a transfer the sender is running now (it was cancelled). */
  stopTransfer?: (id: string) => void;
}

const MiB = 1 << 20;

/**
 * Largest request bodies, by call: a new package or version carries its whole file list (up to
 * LIMITS.entries entries); every other JSON body is small. POST /api/v1/chunks has no limit
 * here: it streams, record by record, and never holds the whole body.
 */
export const BODY_LIMITS = { versions: 256 * MiB, json: 16 * MiB, unauthenticated: 64 * 1024 } as const;

export function limitBody(maxSize: number): MiddlewareHandler<AppEnv> {
  return bodyLimit({
    maxSize,
    onError: (c) =>
      c.json(
        fail(
          'too_large',
          `request body is over the limit of ${maxSize >= MiB ? `${maxSize / MiB} MiB` : `${maxSize / 1024} KiB`} for this call`,
        ).toJSON(),
        413,
      ),
  });
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

/** A JSON request body of this schema, required. */
export const jsonBody = <S>(schema: S) => ({ content: { 'application/json': { schema } }, required: true as const });

/** The documented answers of a route: 200 with this JSON schema, and the standard errors. */
export const answer = <S>(description: string, schema: S) => ({
  ...errorResponses,
  200: { description, content: { 'application/json': { schema } } },
});

/** The same for a route that creates something: 201. */
export const created = <S>(description: string, schema: S) => ({
  ...errorResponses,
  201: { description, content: { 'application/json': { schema } } },
});

/**
 * A GET route without parameters that answers one JSON document (most listings), from its
 * endpoint in src/api: `read` runs once the caller's token is checked for `permission`.
 */
export function getJson<E extends Endpoint>(
  app: App,
  endpoint: E,
  permission: Permission,
  read: () => Promise<z.input<E['response']>>,
): void {
  app.openapi(
    createRoute({
      method: 'get',
      path: endpoint.path,
      summary: endpoint.summary ?? endpoint.path,
      responses: answer(endpoint.answer ?? 'OK', endpoint.response),
    }),
    async (c) => {
      need(c, permission);
      // The schema's type is generic here; each caller's `read` is checked against it.
      return c.json((await read()) as never, 200);
    },
  );
}
