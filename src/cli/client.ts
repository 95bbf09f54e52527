import http from 'node:http';
import https from 'node:https';
import { type CascadeError, errorFromBody, fail } from '../core/errors.js';

const agents = { http: new http.Agent({ keepAlive: true }), https: new https.Agent({ keepAlive: true }) };

/**
 * The admin API client the CLI uses: one place that adds the token, turns API errors into
 * CascadeErrors, and says clearly when the site cannot be reached.
 */
export class SiteClient {
  readonly base: string;

  constructor(
    siteUrl: string,
    private readonly token: string | undefined,
    /** Who answers, in messages: the site, or a DP the CLI talks to directly (courier import --dp). */
    private readonly who = 'the site',
  ) {
    let u: URL;
    try {
      u = new URL(siteUrl);
    } catch {
      throw fail('usage', `--site "${siteUrl}" is not a URL (e.g. http://127.0.0.1:8100)`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw fail('usage', `--site "${siteUrl}" must be an http:// or https:// URL`);
    this.base = u.toString().replace(/\/+$/, '');
  }

  async request(
    method: string,
    path: string,
    opts: { json?: unknown; body?: Uint8Array; query?: Record<string, string | number | undefined> } = {},
  ): Promise<Response> {
    const url = new URL(this.base + path);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const headers: Record<string, string> = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    let body: string | Uint8Array | undefined;
    if (opts.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(opts.json);
    } else if (opts.body) {
      headers['content-type'] = 'application/octet-stream';
      body = opts.body;
    }
    let res: Response;
    try {
      res = await fetch(url, { method, headers, body: body ?? null });
    } catch (e) {
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      throw fail('unavailable', `cannot reach ${this.who} at ${this.base}: ${cause?.code ?? cause?.message ?? (e as Error).message}`);
    }
    if (!res.ok) throw await toError(res);
    return res;
  }

  async json<T>(method: string, path: string, opts: Parameters<SiteClient['request']>[2] = {}): Promise<T> {
    const res = await this.request(method, path, opts);
    return (await res.json()) as T;
  }

  /**
   * A POST over node:http(s) with this client's agent and token; a connection that fails
   * rejects with one line. The caller writes the body and ends the request.
   */
  private post(
    path: string,
    headers: Record<string, string>,
    onResponse: (res: http.IncomingMessage) => void,
    reject: (e: unknown) => void,
  ): http.ClientRequest {
    const url = new URL(this.base + path);
    const mod = url.protocol === 'https:' ? https : http;
    const req = mod.request(
      url,
      {
        method: 'POST',
        agent: url.protocol === 'https:' ? agents.https : agents.http,
        headers: { ...headers, ...(this.token ? { authorization: `Bearer ${this.token}` } : {}) },
      },
      onResponse,
    );
    req.on('error', (e: NodeJS.ErrnoException) =>
      reject(fail('unavailable', `cannot reach ${this.who} at ${this.base}: ${e.code ?? e.message}`)),
    );
    return req;
  }

  /**
   * POSTs a binary body given as parts, written straight to the socket: no joined copy of a
   * 16 MiB batch, which `fetch` would make (twice). Returns the parsed JSON answer.
   */
  upload<T>(path: string, parts: readonly Uint8Array[]): Promise<T> {
    const length = parts.reduce((n, p) => n + p.length, 0);
    return new Promise<T>((resolve, reject) => {
      const req = this.post(path, binary(length), jsonAnswer(path, resolve, reject), reject);
      // Corked: the many small record headers and payloads leave in large writev calls.
      req.cork();
      for (const p of parts) req.write(p);
      req.uncork();
      req.end();
    });
  }

  /**
   * POSTs a JSON body and answers with the response as a Node stream, for large binary answers
   * (a courier parcel): node:http reads them with half the CPU time of fetch (measured).
   */
  download(path: string, json: unknown): Promise<http.IncomingMessage> {
    return new Promise((resolve, reject) => {
      const req = this.post(
        path,
        { 'content-type': 'application/json' },
        (res) => {
          if ((res.statusCode ?? 500) < 400) return resolve(res);
          const body: Buffer[] = [];
          res.on('data', (d: Buffer) => body.push(d));
          res.on('error', reject);
          res.on('end', () => reject(errorFrom(res.statusCode ?? 500, Buffer.concat(body).toString('utf8'))));
        },
        reject,
      );
      req.end(JSON.stringify(json));
    });
  }

  /**
   * POSTs a body of known length from a stream (a courier parcel), with backpressure; returns
   * the parsed JSON answer. `onBytes` counts what has been written to the socket. Each piece
   * is handed back through `release` once the socket is done with it, so the source can reuse
   * its buffer (a fresh 1 MiB buffer per piece cost the CLI a quarter second of garbage
   * collection per 500 MiB).
   */
  uploadStream<T>(
    path: string,
    source: AsyncIterable<Uint8Array>,
    length: number,
    onBytes?: (n: number) => void,
    release?: (piece: Uint8Array) => void,
    headers: Record<string, string> = {},
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const req = this.post(path, { ...binary(length), ...headers }, jsonAnswer(path, resolve, reject), reject);
      (async () => {
        for await (const piece of source) {
          const ok = req.write(piece, () => release?.(piece));
          if (!ok) await new Promise<void>((r) => req.once('drain', () => r()));
          onBytes?.(piece.length);
        }
        req.end();
      })().catch((e) => {
        req.destroy(e as Error);
        reject(e);
      });
    });
  }

  async bytes(path: string): Promise<Buffer> {
    const res = await this.request('GET', path);
    return Buffer.from(await res.arrayBuffer());
  }
}

/** Headers of a binary body of known length. */
const binary = (length: number): Record<string, string> => ({
  'content-type': 'application/octet-stream',
  'content-length': String(length),
});

/** Reads a node:http answer: its JSON body, or the error it carries. */
function jsonAnswer<T>(path: string, resolve: (v: T) => void, reject: (e: unknown) => void): (res: http.IncomingMessage) => void {
  return (res) => {
    const body: Buffer[] = [];
    res.on('data', (d: Buffer) => body.push(d));
    res.on('error', reject);
    res.on('end', () => {
      const text = Buffer.concat(body).toString('utf8');
      if ((res.statusCode ?? 500) >= 400) return reject(errorFrom(res.statusCode ?? 500, text));
      try {
        resolve(JSON.parse(text) as T);
      } catch {
        reject(fail('unavailable', `site answered ${path} with something that is not JSON`));
      }
    });
  };
}

async function toError(res: Response): Promise<CascadeError> {
  return errorFrom(res.status, await res.text().catch(() => ''), res.statusText);
}

function errorFrom(status: number, text: string, statusText = ''): CascadeError {
  return (
    errorFromBody(text) ??
    fail(status >= 500 ? 'unavailable' : 'bad_request', `site answered HTTP ${status}: ${text.slice(0, 200) || statusText}`)
  );
}
