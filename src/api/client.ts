import crypto from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import type { z } from 'zod';
import { type CascadeError, errorFromBody, fail } from '../core/errors.js';
import { fillPath } from './paths.js';

/**
 * The one HTTP client every party uses to call another: the CLI its site, a site its parent,
 * children and DPs, the agent its site and DPs. Over node:http(s), not fetch: fetch loads undici
 * on first use (~40 ms of a short command's start, measured) and reads answers with more CPU.
 *
 * `call(endpoint, body)` sends a documented request of src/api and validates the answer against
 * the endpoint's response schema: a peer that answers another shape gets one clear error naming
 * the peer and the call (`bad_answer`), never a cast. The client itself never loads zod (it
 * only calls the schema it is given), so a command that does not validate starts without it.
 */

/** A call of the API: method, path (with `{name}` parameters) and the schemas of both sides. */
export interface Endpoint<Req extends z.ZodType = z.ZodType, Res extends z.ZodType = z.ZodType> {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  path: string;
  request?: Req;
  response: Res;
  /** For the OpenAPI document: what the call does, and what its answer is. */
  summary?: string;
  answer?: string;
}

/** A GET endpoint: its path, its answer's schema, and what the OpenAPI document says of both. */
export const getCall = <R extends z.ZodType>(path: string, response: R, summary: string, answer: string) =>
  ({ method: 'GET', path, response, summary, answer }) as const;

export interface ClientOptions {
  /** Bearer token (an admin token, a peer credential, an agent's credential, an import ticket). */
  token?: string | undefined;
  /** Who answers, in messages: "the site", "site NYC", "DP nyc-dp1". */
  who?: string;
  /** Put `who` in front of an error the peer answered ("site NYC: ..."), as a relay does. */
  prefixErrors?: boolean;
  /** Gives up on a request with no progress for this long (default: never). */
  timeoutMs?: number;
  /**
   * SHA-256 of the server's TLS certificate (64 hex digits): over https, the client sends nothing
   * until the server showed exactly that certificate (a self-signed one is fine). Absent: the
   * usual CA check.
   */
  pin?: string | null | undefined;
}

/** A binary upload: its abort signal, and headers of its own. */
export type UploadOptions = Pick<RequestOptions, 'signal'> & { headers?: Record<string, string> };

export interface RequestOptions {
  json?: unknown;
  body?: Uint8Array;
  query?: Record<string, string | number | undefined>;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

export interface StreamOptions {
  /** Counts what has been written to the socket. */
  onBytes?: (n: number) => void;
  /** Hands each piece back once the socket is done with it. */
  release?: (piece: Uint8Array) => void;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

const agents = { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) };
/**
 * Binary bodies (chunk batches, parcels) travel on connections of their own. A connection that
 * has carried other calls has a grown send buffer, which takes a burst of a batch before the
 * link has carried it: the sender, which counts bytes as the socket takes them, then showed
 * 690 KB/s on a 500 KB/s link (test/e2e/slowlink.test.ts); on its own connections, 495 KB/s.
 */
const bulkAgents = { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) };

/**
 * An https agent that trusts one certificate, whoever signed it: the connection is handed to
 * the request only after the handshake showed that certificate, so no byte of the request (its
 * token least of all) reaches any other server.
 */
class PinnedAgent extends https.Agent {
  constructor(private readonly pin: string) {
    super({ keepAlive: true });
  }

  override createConnection(options: http.RequestOptions, done?: (err: Error | null, stream: Duplex) => void): undefined {
    const socket = tls.connect({ ...(options as tls.ConnectionOptions), rejectUnauthorized: false });
    let settled = false;
    const end = (err: Error | null) => {
      if (settled) return;
      settled = true;
      socket.off('error', end);
      if (err) socket.destroy();
      done?.(err, socket);
    };
    socket.once('error', end);
    socket.once('secureConnect', () => {
      const raw = socket.getPeerCertificate().raw;
      const got = raw ? crypto.createHash('sha256').update(raw).digest('hex') : '(none)';
      end(
        got === this.pin
          ? null
          : new Error(`its TLS certificate is ${got.slice(0, 16)}…, not the pinned ${this.pin.slice(0, 16)}…; nothing was sent`),
      );
    });
    return undefined;
  }
}

const pinned = new Map<string, { http: http.Agent; https: https.Agent }>();
function pinnedPool(pin: string, bulk: boolean): { http: http.Agent; https: https.Agent } {
  const k = `${pin}${bulk ? ':bulk' : ''}`;
  let p = pinned.get(k);
  if (!p) {
    p = { http: bulk ? bulkAgents.http : agents.http, https: new PinnedAgent(pin) };
    pinned.set(k, p);
  }
  return p;
}

const UNTRUSTED = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
]);

/** What a TLS failure most likely means, for the one-line error. */
function tlsHint(secure: boolean, code: string | undefined): string {
  if (secure && code && UNTRUSTED.has(code))
    return ' (a self-signed certificate: give its pin with --tls-pin, as "site init" printed it, or use a join token that carries it)';
  if (!secure && (code === 'ECONNRESET' || code === 'EPIPE')) return ' (if it serves HTTPS, use an https:// URL)';
  return '';
}

export class ApiClient {
  readonly base: string;
  readonly who: string;
  private readonly token: string | undefined;
  private readonly prefix: string;
  private readonly timeoutMs: number | undefined;
  private readonly pin: string | null;

  constructor(url: string, opts: ClientOptions = {}) {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw fail('usage', `"${url}" is not a URL (e.g. http://127.0.0.1:8100)`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw fail('usage', `"${url}" must be an http:// or https:// URL`);
    this.base = u.toString().replace(/\/+$/, '');
    this.token = opts.token;
    this.who = opts.who ?? 'the site';
    this.prefix = opts.prefixErrors ? `${this.who}: ` : '';
    this.timeoutMs = opts.timeoutMs;
    this.pin = opts.pin ?? null;
  }

  /**
   * A documented call: sends `body` (JSON), and resolves with the answer validated against
   * `endpoint.response`. `params` fill the path's `{name}` parts.
   */
  async call<E extends Endpoint>(
    endpoint: E,
    body?: E['request'] extends z.ZodType ? z.input<E['request']> : undefined,
    opts: Omit<RequestOptions, 'json' | 'body'> & { params?: Record<string, string | number> } = {},
  ): Promise<z.output<E['response']>> {
    const path = fillPath(endpoint.path, opts.params);
    const value = await this.json<unknown>(endpoint.method, path, { ...opts, ...(body === undefined ? {} : { json: body }) });
    return this.check(endpoint, path, value);
  }

  /** Validates an answer against the endpoint's response schema; one line naming the peer and call. */
  check<E extends Endpoint>(endpoint: E, path: string, value: unknown): z.output<E['response']> {
    const r = endpoint.response.safeParse(value);
    if (r.success) return r.data as z.output<E['response']>;
    const issue = r.error.issues[0];
    const where = issue?.path.length ? `${issue.path.join('.')}: ` : '';
    throw fail(
      'bad_answer',
      `${this.who} answered ${endpoint.method} ${path} with an unexpected shape (${where}${issue?.message ?? 'invalid'}); is it running the same Cascade release?`,
    );
  }

  /**
   * One request; resolves with the body of a 2xx answer, rejects with the error a 4xx/5xx
   * answer carries.
   */
  send(method: string, path: string, opts: RequestOptions = {}): Promise<Buffer> {
    let query = '';
    for (const [k, v] of Object.entries(opts.query ?? {}))
      if (v !== undefined) query += `${query ? '&' : '?'}${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`;
    let body: string | Uint8Array | undefined;
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(opts.json);
    } else if (opts.body) {
      headers['content-type'] = 'application/octet-stream';
      body = opts.body;
    }
    return new Promise<Buffer>((resolve, reject) => {
      const req = this.request(method, path + query, headers, opts.signal, reject, (res) =>
        readAll(res, reject, (all) => {
          if ((res.statusCode ?? 500) >= 400) reject(this.errorFrom(res.statusCode ?? 500, all.toString('utf8')));
          else resolve(all);
        }),
      );
      req.end(body);
    });
  }

  /** A JSON answer, typed by the caller and not validated: for callers that trust the answerer (the admin CLI and its own site). */
  async json<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    return this.parse<T>(path, (await this.send(method, path, opts)).toString('utf8'));
  }

  bytes(path: string, opts: Pick<RequestOptions, 'signal' | 'headers'> = {}): Promise<Buffer> {
    return this.send('GET', path, opts);
  }

  /**
   * POSTs a binary body given as parts, written straight to the socket: no joined copy of a
   * 16 MiB batch. Returns the parsed JSON answer.
   */
  upload<E extends Endpoint>(to: E, parts: readonly Uint8Array[], opts?: UploadOptions): Promise<z.output<E['response']>>;
  upload<T>(to: string, parts: readonly Uint8Array[], opts?: UploadOptions): Promise<T>;
  upload(to: string | Endpoint, parts: readonly Uint8Array[], opts: UploadOptions = {}): Promise<unknown> {
    const length = parts.reduce((n, p) => n + p.length, 0);
    return new Promise((resolve, reject) => {
      const req = this.binaryPost(to, length, opts, resolve, reject);
      // Corked: the many small record headers and payloads leave in large writev calls.
      req.cork();
      for (const p of parts) req.write(p);
      req.uncork();
      req.end();
    });
  }

  /**
   * POSTs a body of known length from a stream (a courier parcel, or chunks through a route's
   * token bucket), with backpressure; returns the parsed JSON answer. `onBytes` counts what has
   * been written to the socket. Each piece is handed back through `release` once the socket is
   * done with it, so the source can reuse its buffer.
   */
  uploadStream<E extends Endpoint>(
    to: E,
    source: AsyncIterable<Uint8Array>,
    length: number,
    opts?: StreamOptions,
  ): Promise<z.output<E['response']>>;
  uploadStream<T>(to: string, source: AsyncIterable<Uint8Array>, length: number, opts?: StreamOptions): Promise<T>;
  uploadStream(to: string | Endpoint, source: AsyncIterable<Uint8Array>, length: number, opts: StreamOptions = {}): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const req = this.binaryPost(to, length, opts, resolve, reject);
      (async () => {
        for await (const piece of source) {
          const ok = req.write(piece, () => opts.release?.(piece));
          if (!ok) await new Promise<void>((r) => req.once('drain', () => r()));
          opts.onBytes?.(piece.length);
        }
        req.end();
      })().catch((e) => {
        req.destroy(e as Error);
        reject(e);
      });
    });
  }

  /** A binary POST of `length` bytes on the bulk pool, whose JSON answer settles the promise. */
  private binaryPost(
    to: string | Endpoint,
    length: number,
    opts: UploadOptions,
    resolve: (v: unknown) => void,
    reject: (e: unknown) => void,
  ): http.ClientRequest {
    const path = typeof to === 'string' ? to : to.path;
    return this.request(
      'POST',
      path,
      { ...binary(length), ...opts.headers },
      opts.signal,
      reject,
      this.jsonAnswer(to, resolve, reject),
      bulkAgents,
    );
  }

  /** POSTs a JSON body and answers with the response as a Node stream (a courier parcel). */
  download(path: string, json: unknown): Promise<http.IncomingMessage> {
    return new Promise((resolve, reject) => {
      const req = this.request('POST', path, { 'content-type': 'application/json' }, undefined, reject, (res) => {
        if ((res.statusCode ?? 500) < 400) return resolve(res);
        readAll(res, reject, (all) => reject(this.errorFrom(res.statusCode ?? 500, all.toString('utf8'))));
      });
      req.end(JSON.stringify(json));
    });
  }

  /** Whether `/healthz` answers 2xx within `ms`. */
  async healthy(ms = 5000): Promise<boolean> {
    try {
      await this.send('GET', '/healthz', { signal: AbortSignal.timeout(ms) });
      return true;
    } catch {
      return false;
    }
  }

  /** A request with this client's agent, token and time-out; a connection that fails rejects with one line. */
  private request(
    method: string,
    path: string,
    headers: Record<string, string>,
    signal: AbortSignal | undefined,
    reject: (e: unknown) => void,
    onResponse: (res: http.IncomingMessage) => void,
    pool = agents,
  ): http.ClientRequest {
    const url = new URL(this.base + path);
    const secure = url.protocol === 'https:';
    const req = (secure ? https : http).request(
      url,
      {
        method,
        agent: secure ? (this.pin ? pinnedPool(this.pin, pool === bulkAgents) : pool).https : pool.http,
        headers: { ...headers, ...(this.token ? { authorization: `Bearer ${this.token}` } : {}) },
        ...(signal ? { signal } : {}),
      },
      onResponse,
    );
    req.on('error', (e: NodeJS.ErrnoException) => {
      if (signal?.aborted) reject(fail('unavailable', `${this.who} at ${this.base}: ${path} was cut short (${describe(signal.reason)})`));
      else reject(fail('unavailable', `cannot reach ${this.who} at ${this.base}: ${e.code ?? e.message}${tlsHint(secure, e.code)}`));
    });
    const ms = this.timeoutMs;
    if (ms) req.setTimeout(ms, () => req.destroy(new Error(`no answer within ${ms / 1000} s`)));
    return req;
  }

  private parse<T>(path: string, text: string): T {
    try {
      return JSON.parse(text) as T;
    } catch {
      throw fail('bad_answer', `${this.who} answered ${path} with something that is not JSON`);
    }
  }

  /** Reads a node:http answer: its JSON body (validated when the call is an endpoint), or the error it carries. */
  private jsonAnswer(
    to: string | Endpoint,
    resolve: (v: never) => void,
    reject: (e: unknown) => void,
  ): (res: http.IncomingMessage) => void {
    const path = typeof to === 'string' ? to : to.path;
    return (res) =>
      readAll(res, reject, (all) => {
        const text = all.toString('utf8');
        if ((res.statusCode ?? 500) >= 400) return reject(this.errorFrom(res.statusCode ?? 500, text));
        try {
          const value = this.parse<unknown>(path, text);
          resolve((typeof to === 'string' ? value : this.check(to, path, value)) as never);
        } catch (e) {
          reject(e);
        }
      });
  }

  private errorFrom(status: number, text: string): CascadeError {
    return (
      errorFromBody(text, this.prefix) ??
      fail(
        status === 404 ? 'not_found' : status >= 500 ? 'unavailable' : 'bad_request',
        `${this.who} answered HTTP ${status}: ${text.slice(0, 200)}`,
      )
    );
  }
}

function readAll(res: http.IncomingMessage, reject: (e: unknown) => void, done: (all: Buffer) => void): void {
  const parts: Buffer[] = [];
  res.on('data', (d: Buffer) => parts.push(d));
  res.on('error', reject);
  res.on('end', () => done(Buffer.concat(parts)));
}

const describe = (reason: unknown): string => (reason instanceof Error ? reason.message : String(reason ?? 'aborted'));

/** Headers of a binary body of known length. */
const binary = (length: number): Record<string, string> => ({
  'content-type': 'application/octet-stream',
  'content-length': String(length),
});
