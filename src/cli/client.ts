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

  /**
   * One request over node:http(s); resolves with the body of a 2xx answer, rejects with the
   * error a 4xx/5xx answer carries. node:http rather than fetch: fetch loads undici on first use,
   * ~40 ms of a short command's start (measured), and reads answers with more CPU.
   */
  send(
    method: string,
    path: string,
    opts: { json?: unknown; body?: Uint8Array; query?: Record<string, string | number | undefined> } = {},
  ): Promise<Buffer> {
    let query = '';
    for (const [k, v] of Object.entries(opts.query ?? {}))
      if (v !== undefined) query += `${query ? '&' : '?'}${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`;
    let body: string | Uint8Array | undefined;
    const headers: Record<string, string> = {};
    if (opts.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(opts.json);
    } else if (opts.body) {
      headers['content-type'] = 'application/octet-stream';
      body = opts.body;
    }
    return new Promise<Buffer>((resolve, reject) => {
      const req = this.call(
        method,
        path + query,
        headers,
        (res) => {
          const parts: Buffer[] = [];
          res.on('data', (d: Buffer) => parts.push(d));
          res.on('error', reject);
          res.on('end', () => {
            const all = Buffer.concat(parts);
            if ((res.statusCode ?? 500) >= 400) reject(errorFrom(res.statusCode ?? 500, all.toString('utf8'), res.statusMessage));
            else resolve(all);
          });
        },
        reject,
      );
      req.end(body);
    });
  }

  async json<T>(method: string, path: string, opts: Parameters<SiteClient['send']>[2] = {}): Promise<T> {
    const text = (await this.send(method, path, opts)).toString('utf8');
    try {
      return JSON.parse(text) as T;
    } catch {
      throw fail('unavailable', `${this.who} answered ${path} with something that is not JSON`);
    }
  }

  /**
   * A request over node:http(s) with this client's agent and token; a connection that fails
   * rejects with one line. The caller writes the body and ends the request.
   */
  private call(
    method: string,
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
        method,
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
      const req = this.call('POST', path, binary(length), jsonAnswer(path, resolve, reject), reject);
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
      const req = this.call(
        'POST',
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
      const req = this.call('POST', path, { ...binary(length), ...headers }, jsonAnswer(path, resolve, reject), reject);
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

  bytes(path: string): Promise<Buffer> {
    return this.send('GET', path);
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

function errorFrom(status: number, text: string, statusText = ''): CascadeError {
  return (
    errorFromBody(text) ??
    fail(status >= 500 ? 'unavailable' : 'bad_request', `site answered HTTP ${status}: ${text.slice(0, 200) || statusText}`)
  );
}
