import crypto from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
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
      end(pinMismatch(socket, this.pin));
    });
    return undefined;
  }
}

/** Null when the handshake showed the pinned certificate; else the error that says what it showed. */
function pinMismatch(socket: tls.TLSSocket, pin: string): Error | null {
  const raw = socket.getPeerCertificate().raw;
  const got = raw ? crypto.createHash('sha256').update(raw).digest('hex') : '(none)';
  return got === pin
    ? null
    : new Error(`its TLS certificate is ${got.slice(0, 16)}…, not the pinned ${pin.slice(0, 16)}…; nothing was sent`);
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

  /**
   * A connection of its own for GETs of static content (chunk files), each answer read into a
   * buffer the caller reuses (ContentConnection). Close it when done.
   */
  connection(): ContentConnection {
    return new ContentConnection(this.base, this.who, this.timeoutMs, this.pin, (status, text) => this.errorFrom(status, text));
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

/** One GET on a ContentConnection, until its answer is whole. */
interface Job {
  path: string;
  into: Buffer;
  resolve: (body: Buffer) => void;
  reject: (e: unknown) => void;
  /** Header bytes gathered so far. */
  headBytes: number;
  /** The body's length once the header is read; -1 before. */
  length: number;
  got: number;
  status: number;
  /** The server closes the connection after this answer. */
  closes: boolean;
  /** Sent again once already, on a new connection. */
  retried: boolean;
  /** When the last byte arrived (performance.now()). */
  progress: number;
  timer: NodeJS.Timeout | null;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | null;
}

const HEAD_MAX = 8 << 10;
/**
 * What every plain-http ContentConnection's socket reads into: each read is copied out by the
 * callback before it returns, so one buffer serves them all.
 */
let readBuffer: Buffer | null = null;

/**
 * One keep-alive HTTP/1.1 connection for GETs of static content (chunk files from a DP or
 * nginx), each answer read straight into a buffer the caller owns and reuses. Over http the
 * socket reads into one buffer shared by all (`onread`); over https TLS hands over what it
 * decrypted. So a download allocates nothing per socket read nor per answer. Through node:http
 * every socket read is a new buffer and the answer is joined into another: fetching the 512 MiB
 * corpus that way cost 3 CPU-s and ~60 full garbage collections, this way 0.6 CPU-s and none
 * (docs/performance.md#clients).
 *
 * An answer must carry Content-Length (static files do); one that does not (a proxy streaming
 * it in pieces) is refused with `bad_answer`, and the caller uses `ApiClient.bytes` for that
 * server instead. A request that fails before any byte of its answer on a connection that had
 * already carried one (the server closed it while idle) is sent once more on a new connection:
 * a GET of static content may be repeated.
 */
export class ContentConnection {
  private sock: net.Socket | null = null;
  private ready = false;
  /** The request to send once the TLS handshake is done. */
  private waiting: string | null = null;
  /** The connection has carried an answer. */
  private reused = false;
  private job: Job | null = null;
  private readonly head = Buffer.allocUnsafeSlow(HEAD_MAX);
  private readonly url: URL;
  private readonly prefix: string;
  /** An answer came without Content-Length: fetch from this server through `ApiClient.bytes`. */
  lengthless = false;

  constructor(
    readonly base: string,
    private readonly who: string,
    private readonly timeoutMs: number | undefined,
    private readonly pin: string | null,
    private readonly errorFrom: (status: number, text: string) => CascadeError,
  ) {
    this.url = new URL(base);
    this.prefix = this.url.pathname.replace(/\/+$/, '');
  }

  /**
   * GETs `path`; resolves with the body of a 200 answer as a view of `into` (valid until `into`
   * is used again), rejects with the error a 4xx/5xx answer carries, `too_large` when the body
   * does not fit in `into`.
   */
  get(path: string, into: Buffer, signal?: AbortSignal): Promise<Buffer> {
    if (this.job) return Promise.reject(fail('internal', 'a content connection carries one request at a time'));
    if (signal?.aborted) return Promise.reject(this.cutShort(path, signal));
    return new Promise<Buffer>((resolve, reject) => {
      const job: Job = {
        path,
        into,
        resolve,
        reject,
        headBytes: 0,
        length: -1,
        got: 0,
        status: 0,
        closes: false,
        retried: false,
        progress: performance.now(),
        timer: null,
        signal,
        onAbort: null,
      };
      this.job = job;
      if (signal) {
        job.onAbort = () => this.finish(this.cutShort(path, signal), true);
        signal.addEventListener('abort', job.onAbort, { once: true });
      }
      if (this.timeoutMs) this.arm(job, this.timeoutMs);
      this.send(job);
    });
  }

  /** Lets go of the connection. */
  close(): void {
    this.drop();
  }

  private cutShort(path: string, signal: AbortSignal): CascadeError {
    return fail('unavailable', `${this.who} at ${this.base}: ${path} was cut short (${describe(signal.reason)})`);
  }

  /** Gives up on a request with no byte for `timeoutMs`. */
  private arm(job: Job, ms: number): void {
    job.timer = setTimeout(() => {
      if (this.job !== job) return;
      const idle = performance.now() - job.progress;
      const limit = this.timeoutMs as number;
      if (idle < limit) return this.arm(job, limit - idle);
      this.finish(fail('unavailable', `cannot reach ${this.who} at ${this.base}: no answer within ${limit / 1000} s`), true);
    }, ms);
  }

  private send(job: Job): void {
    const sock = this.sock ?? this.connect();
    sock.ref();
    const request = `GET ${this.prefix}${job.path} HTTP/1.1\r\nHost: ${this.url.host}\r\n\r\n`;
    // Over https nothing goes out before the handshake showed the right certificate.
    if (this.ready) sock.write(request);
    else this.waiting = request;
  }

  private connect(): net.Socket {
    const secure = this.url.protocol === 'https:';
    const host = this.url.hostname.replace(/^\[|\]$/g, '');
    const port = Number(this.url.port) || (secure ? 443 : 80);
    let sock: net.Socket;
    if (secure) {
      const t = tls.connect({
        host,
        port,
        ...(net.isIP(host) ? {} : { servername: host }),
        rejectUnauthorized: !this.pin,
        ALPNProtocols: ['http/1.1'],
      });
      t.on('data', (d: Buffer) => this.onBytes(t, d, d.length));
      t.once('secureConnect', () => {
        const wrong = this.pin ? pinMismatch(t, this.pin) : null;
        if (wrong) return t.destroy(wrong);
        if (this.sock !== t) return;
        this.ready = true;
        if (this.waiting) t.write(this.waiting);
        this.waiting = null;
      });
      sock = t;
    } else {
      readBuffer ??= Buffer.allocUnsafeSlow(64 << 10);
      sock = net.connect({
        host,
        port,
        onread: {
          buffer: readBuffer,
          callback: (n: number, buf: Uint8Array) => {
            this.onBytes(sock, buf as Buffer, n);
            return true;
          },
        },
      });
      sock.setNoDelay(true);
      // Writes before the connection is up are queued by the socket itself.
      this.ready = true;
    }
    this.sock = sock;
    this.reused = false;
    sock.on('error', (e: NodeJS.ErrnoException) => this.lost(sock, e));
    sock.on('close', () => this.lost(sock, null));
    return sock;
  }

  /** The connection failed or closed: the request in flight fails, or goes again once on a new one. */
  private lost(sock: net.Socket, e: NodeJS.ErrnoException | null): void {
    if (this.sock !== sock) return;
    const reused = this.reused;
    this.sock = null;
    this.ready = false;
    this.waiting = null;
    sock.destroy();
    const job = this.job;
    if (!job) return;
    if (reused && !job.retried && job.headBytes === 0) {
      job.retried = true;
      this.send(job);
      return;
    }
    const secure = this.url.protocol === 'https:';
    const why = e ? `${e.code ?? e.message}${tlsHint(secure, e.code)}` : 'the connection closed before the whole answer';
    this.finish(fail('unavailable', `cannot reach ${this.who} at ${this.base}: ${why}`), false);
  }

  private drop(): void {
    const s = this.sock;
    this.sock = null;
    this.ready = false;
    this.waiting = null;
    s?.destroy();
  }

  /** Settles the request in flight; `broken`: the connection cannot carry another. */
  private finish(result: Buffer | Error, broken: boolean): void {
    const job = this.job;
    if (!job) return;
    this.job = null;
    if (job.timer) clearTimeout(job.timer);
    if (job.onAbort) job.signal?.removeEventListener('abort', job.onAbort);
    if (broken) this.drop();
    else this.sock?.unref();
    if (result instanceof Error) job.reject(result);
    else job.resolve(result);
  }

  private onBytes(sock: net.Socket, buf: Buffer, end: number): void {
    if (this.sock !== sock) return;
    const job = this.job;
    if (!job) {
      // Bytes nobody asked for: this connection is not to be trusted with another request.
      this.drop();
      return;
    }
    job.progress = performance.now();
    let at = 0;
    if (job.length < 0) {
      const n = Math.min(end, HEAD_MAX - job.headBytes);
      buf.copy(this.head, job.headBytes, 0, n);
      const from = Math.max(0, job.headBytes - 3);
      job.headBytes += n;
      const i = this.head.subarray(0, job.headBytes).indexOf('\r\n\r\n', from);
      if (i < 0) {
        if (job.headBytes === HEAD_MAX)
          this.finish(fail('bad_answer', `${this.who} answered ${job.path} with a header over ${HEAD_MAX} bytes`), true);
        return;
      }
      if (!this.header(job, this.head.toString('latin1', 0, i))) return;
      // Body bytes that came with the header.
      const start = i + 4;
      const extra = job.headBytes - start;
      if (extra > job.length) {
        this.outOfStep(job);
        return;
      }
      this.head.copy(job.into, 0, start, start + extra);
      job.got = extra;
      at = n;
    }
    const n = end - at;
    // More than the answer: the connection is out of step.
    if (job.got + n > job.length) {
      this.outOfStep(job);
      return;
    }
    if (n > 0) buf.copy(job.into, job.got, at, end);
    job.got += n;
    if (job.got === job.length) this.complete(job);
  }

  /** Reads the status line and headers; false when the request was settled by them. */
  private header(job: Job, text: string): boolean {
    const status = /^HTTP\/1\.[01] (\d{3})/.exec(text);
    if (!status) {
      this.finish(fail('bad_answer', `${this.who} answered ${job.path} with something that is not HTTP/1.1`), true);
      return false;
    }
    job.status = Number(status[1]);
    const length = /\r\ncontent-length:[ \t]*(\d+)[ \t]*(?=\r\n|$)/i.exec(text);
    if (!length || /\r\ntransfer-encoding:/i.test(text)) {
      this.lengthless = true;
      this.finish(fail('bad_answer', `${this.who} answered ${job.path} without a Content-Length`), true);
      return false;
    }
    job.length = Number(length[1]);
    job.closes = /\r\nconnection:[ \t]*close/i.test(text) || text.startsWith('HTTP/1.0');
    if (job.length > job.into.length) {
      // An error answer too long to keep is reported by its status alone.
      if (job.status === 200) this.tooLarge(job);
      else this.finish(this.errorFrom(job.status, ''), true);
      return false;
    }
    if (job.length === 0) {
      this.complete(job);
      return false;
    }
    return true;
  }

  private outOfStep(job: Job): void {
    this.finish(fail('bad_answer', `${this.who} answered ${job.path} with more bytes than its Content-Length`), true);
  }

  private tooLarge(job: Job): void {
    this.finish(fail('too_large', `${this.who} answered ${job.path} with ${job.length} bytes, more than ${job.into.length}`), true);
  }

  private complete(job: Job): void {
    this.reused = true;
    const body = job.into.subarray(0, job.length);
    if (job.status === 200) this.finish(body, job.closes);
    else this.finish(this.errorFrom(job.status, body.toString('utf8')), job.closes);
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
