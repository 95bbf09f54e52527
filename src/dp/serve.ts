import { type ChildProcess, fork } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type net from 'node:net';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { CHUNK_SIZES } from '../core/chunk.js';
import { PACKAGE_ID } from '../core/package.js';
import { closeServer } from '../lib/close-server.js';
import { workerScript } from '../lib/worker-script.js';

/**
 * Serving a content library to clients: the hot path of every distribution point (a site's
 * own library is its local DP). A plain `node:http` handler, not a Hono route, because every
 * client download goes through it.
 *
 *   GET|HEAD /content/manifests/<ID>/<N>.json    signed manifest (ROOT/manifests/<ID>/<N>.json)
 *   GET|HEAD /content/chunks/<ab>/<digest>       stored chunk    (ROOT/chunks/<ab>/<digest>)
 *   GET|HEAD /content/certificates/<CODE>.json   a site's certificate, signed by the central key
 *
 * Only these exact shapes reach the disk; anything else under /content/ is a 404 decided from
 * the URL alone, so `.tmp-*` files (chunks being written), `tmp/`, `incoming/`, folders and
 * anything with `..` or `%` in it are never read. Single byte ranges (206, 416, If-Range),
 * strong ETags (a chunk's is its digest: content-addressed, immutable), If-None-Match and
 * If-Modified-Since (304).
 *
 * Speed: whole files up to `maxCachedFile` (every chunk: at most 256 KiB + the tag byte) are
 * kept in a bounded in-memory LRU cache and answered with one `res.end(buffer)`. Once the cache
 * is full, a file enters it only in place of entries nobody asked for in the last `coldMs`:
 * clients reading a package larger than the cache, one after another, keep hitting its first
 * part instead of each pushing out what the one before needs next (a cyclic read defeats plain
 * LRU: every request misses). A file that does not enter is read into one of a few reused
 * buffers, not a new one (every new buffer is memory the garbage collector must track: a
 * 512 MiB package read through a full cache cost ~30 full collections). An entry is
 * re-checked against the file (`stat`: inode, size, mtime) when it is older than
 * `revalidateMs`, so a deleted or rewritten file stops being served within that time. A miss
 * reads the file with asynchronous calls (a cold disk does not stall the other downloads);
 * larger files (big manifests) stream from their descriptor. See docs/dp.md#serving-content.
 */

const CHUNK_URL = /^\/content\/chunks\/([0-9a-f]{2})\/([0-9a-f]{64})$/;
const CERTIFICATE_URL = /^\/content\/certificates\/([A-Z0-9]{3})\.json$/;
const MANIFEST_URL = new RegExp(`^/content/manifests/(${PACKAGE_ID.source.slice(1, -1)})/([1-9]\\d{0,9})\\.json$`);

/** Chunks are content-addressed: the bytes behind a URL never change. */
export const CHUNK_CACHE_CONTROL = 'public, max-age=31536000, immutable';
/** A manifest never changes either, but a version can be deleted: caches keep it and revalidate (304). */
export const MANIFEST_CACHE_CONTROL = 'public, no-cache';

export interface ContentHandlerOptions {
  /** The content library root (ROOT/chunks, ROOT/manifests). */
  root: string;
  /** Bytes of whole files kept in memory (default 256 MiB; 0: none). */
  cacheBytes?: number;
  /** Files up to this size are read whole (and cached when at most a quarter of the cache); larger ones stream (default 1 MiB). */
  maxCachedFile?: number;
  /** A cached entry older than this is checked against the file again (default 1000 ms). */
  revalidateMs?: number;
  /** A full cache makes room only from entries not asked for in this long (default 30 s). */
  coldMs?: number;
}

export type ContentHandler = ((req: http.IncomingMessage, res: http.ServerResponse) => boolean) & {
  /** Cache figures, for /metrics and tests. */
  readonly stats: { hits: number; misses: number; cachedBytes: number; cachedFiles: number };
};

interface Entry {
  file: string;
  ino: number;
  size: number;
  mtimeMs: number;
  etag: string;
  lastModified: string;
  cacheControl: string;
  contentType: string;
  /** The whole file, when cached. */
  buf: Buffer | null;
  /** When the entry was last checked against the file (ms since the epoch). */
  checked: number;
  /** When it was last asked for. */
  used: number;
}

interface ByteRange {
  start: number;
  end: number;
}

/**
 * The single range a `Range` header asks for: a range, `'unsatisfiable'` (416), or null when
 * the header is to be ignored (absent, malformed, several ranges, not bytes) and the whole
 * file is sent, as RFC 9110 allows.
 */
export function parseRange(header: string | undefined, size: number): ByteRange | 'unsatisfiable' | null {
  if (header === undefined) return null;
  const m = /^bytes=[ \t]*(\d*)-(\d*)[ \t]*$/.exec(header);
  if (!m) return null;
  const [, a, b] = m as unknown as [string, string, string];
  if (a === '' && b === '') return null;
  if (a === '') {
    const n = Number(b);
    if (n === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(a);
  const end = b === '' ? size - 1 : Number(b);
  if (b !== '' && end < start) return null;
  if (start >= size) return 'unsatisfiable';
  return { start, end: Math.min(end, size - 1) };
}

/** Whether an If-None-Match list holds the ETag (weak comparison, as RFC 9110 says). */
function noneMatch(header: string, etag: string): boolean {
  if (header.trim() === '*') return true;
  for (const t of header.split(',')) {
    const v = t.trim();
    if (v === etag || (v.startsWith('W/') && v.slice(2) === etag)) return true;
  }
  return false;
}

const NOT_FOUND = Buffer.from('{"error":{"code":"not_found","message":"no such content"}}\n');

function sendError(req: http.IncomingMessage, res: http.ServerResponse, status: number, code: string, message: string, extra?: string[]) {
  const body = status === 404 && code === 'not_found' ? NOT_FOUND : Buffer.from(`${JSON.stringify({ error: { code, message } })}\n`);
  res.writeHead(status, [
    'Content-Type',
    'application/json',
    'Content-Length',
    String(body.length),
    'Cache-Control',
    'no-store',
    ...(extra ?? []),
  ]);
  res.end(req.method === 'HEAD' ? undefined : body);
}

/** Files up to this size are read into reused buffers when they do not enter the cache. */
const POOLED_FILE = CHUNK_SIZES.max + 1;
const SPARE_BUFFERS = 32;

/** Makes the content handler for a library root. */
export function createContentHandler(opts: ContentHandlerOptions): ContentHandler {
  const root = path.resolve(opts.root);
  const chunksDir = path.join(root, 'chunks');
  const manifestsDir = path.join(root, 'manifests');
  const cacheBytes = opts.cacheBytes ?? 256 << 20;
  const maxCachedFile = opts.maxCachedFile ?? 1 << 20;
  const revalidateMs = opts.revalidateMs ?? 1000;
  /** Path → cached file, least recently used first. */
  const cache = new Map<string, Entry>();
  const stats = { hits: 0, misses: 0, cachedBytes: 0, cachedFiles: 0 };
  const coldMs = opts.coldMs ?? 30_000;
  /** Buffers of POOLED_FILE bytes, free to read a file into. */
  const spare: Buffer[] = [];
  /** Whether a file just read enters the cache: while there is room, or in place of entries gone cold. */
  const admit = (size: number): boolean => {
    // A file larger than a quarter of the cache would push out too much.
    if (size > cacheBytes >> 2) return false;
    let room = cacheBytes - stats.cachedBytes;
    if (room >= size) return true;
    const now = Date.now();
    for (const e of cache.values()) {
      if (now - e.used < coldMs) return false;
      room += (e.buf as Buffer).length;
      if (room >= size) return true;
    }
    return false;
  };

  const drop = (file: string) => {
    const e = cache.get(file);
    if (!e) return;
    cache.delete(file);
    if (e.buf) {
      stats.cachedBytes -= e.buf.length;
      stats.cachedFiles--;
    }
  };
  const remember = (e: Entry) => {
    drop(e.file);
    if (!e.buf) return;
    stats.cachedBytes += e.buf.length;
    stats.cachedFiles++;
    cache.set(e.file, e);
    // Evict the least recently used until the bytes fit.
    for (const k of cache.keys()) {
      if (stats.cachedBytes <= cacheBytes) break;
      drop(k);
    }
  };

  const entryFor = (file: string, st: fs.Stats, digest: string | null, now: number): Entry => ({
    file,
    ino: st.ino,
    size: st.size,
    mtimeMs: st.mtimeMs,
    // A chunk's bytes are named by its digest; a manifest's by its size and write time.
    etag: digest ? `"${digest}"` : `"${Math.trunc(st.mtimeMs).toString(16)}-${st.size.toString(16)}"`,
    lastModified: st.mtime.toUTCString(),
    cacheControl: digest ? CHUNK_CACHE_CONTROL : MANIFEST_CACHE_CONTROL,
    contentType: digest ? 'application/octet-stream' : 'application/json',
    buf: null,
    checked: now,
    used: now,
  });

  /** Answers from what is known of the file; `body` sends the chosen bytes (or the headers alone for HEAD). */
  const respond = (req: http.IncomingMessage, res: http.ServerResponse, e: Entry, body: (start: number, end: number) => void): void => {
    const h = req.headers;
    const inm = h['if-none-match'];
    const ims = h['if-modified-since'];
    if (inm !== undefined ? noneMatch(inm, e.etag) : ims !== undefined && Math.trunc(e.mtimeMs / 1000) * 1000 <= Date.parse(ims)) {
      res.writeHead(304, ['ETag', e.etag, 'Last-Modified', e.lastModified, 'Cache-Control', e.cacheControl]);
      res.end();
      return;
    }
    let range = h.range === undefined ? null : parseRange(h.range, e.size);
    const ifRange = h['if-range'];
    if (range !== null && ifRange !== undefined && ifRange !== e.etag && ifRange !== e.lastModified) range = null;
    if (range === 'unsatisfiable') {
      sendError(req, res, 416, 'bad_request', `the range is outside the ${e.size} bytes of the file`, [
        'Content-Range',
        `bytes */${e.size}`,
        'Accept-Ranges',
        'bytes',
      ]);
      return;
    }
    const start = range ? range.start : 0;
    const end = range ? range.end : e.size - 1;
    const headers = [
      'Content-Type',
      e.contentType,
      'Content-Length',
      String(end - start + 1),
      'ETag',
      e.etag,
      'Last-Modified',
      e.lastModified,
      'Cache-Control',
      e.cacheControl,
      'Accept-Ranges',
      'bytes',
      'X-Content-Type-Options',
      'nosniff',
    ];
    if (range) headers.push('Content-Range', `bytes ${start}-${end}/${e.size}`);
    res.writeHead(range ? 206 : 200, headers);
    if (req.method === 'HEAD' || e.size === 0) res.end();
    else body(start, end);
  };

  const fromBuffer = (res: http.ServerResponse, buf: Buffer) => (start: number, end: number) => {
    res.end(start === 0 && end === buf.length - 1 ? buf : buf.subarray(start, end + 1));
  };

  /** A miss: open, fstat, then read whole (and cache) or stream from the descriptor. */
  const load = (req: http.IncomingMessage, res: http.ServerResponse, file: string, digest: string | null) => {
    stats.misses++;
    fs.open(file, 'r', (err, fd) => {
      if (err) {
        drop(file);
        if (err.code === 'ENOENT' || err.code === 'ENOTDIR' || err.code === 'EISDIR') sendError(req, res, 404, 'not_found', '');
        else sendError(req, res, 500, 'internal', 'the file cannot be read');
        return;
      }
      const fail = (status: number) => {
        fs.close(fd, () => {});
        if (status === 404) sendError(req, res, 404, 'not_found', '');
        else if (!res.headersSent) sendError(req, res, 500, 'internal', 'the file cannot be read');
        else res.destroy();
      };
      fs.fstat(fd, (err2, st) => {
        if (err2) return fail(500);
        if (!st.isFile()) return fail(404);
        const e = entryFor(file, st, digest, Date.now());
        if (st.size <= maxCachedFile) {
          const keep = admit(st.size);
          let buf: Buffer;
          if (keep || st.size > POOLED_FILE) buf = Buffer.allocUnsafe(st.size);
          else {
            const pooled = spare.pop() ?? Buffer.allocUnsafeSlow(POOLED_FILE);
            buf = pooled.subarray(0, st.size);
            // Back to the pool once the socket has taken every byte (not when cut off: a write may still hold it).
            res.once('finish', () => {
              if (spare.length < SPARE_BUFFERS) spare.push(pooled);
            });
          }
          const readAll = (off: number) => {
            if (off === st.size) {
              fs.close(fd, () => {});
              // Asked again: other files may have taken the room meanwhile.
              if (keep && admit(st.size)) {
                e.buf = buf;
                remember(e);
              }
              respond(req, res, e, fromBuffer(res, buf));
              return;
            }
            fs.read(fd, buf, off, st.size - off, off, (err3, n) => {
              if (err3) return fail(500);
              if (n === 0) {
                // Shorter than fstat said: it changed under us; do not cache what we have.
                fs.close(fd, () => {});
                sendError(req, res, 503, 'unavailable', 'the file changed while it was read; try again');
                return;
              }
              readAll(off + n);
            });
          };
          readAll(0);
          return;
        }
        let streamed = false;
        respond(req, res, e, (start, end) => {
          streamed = true;
          const s = fs.createReadStream('', { fd, start, end, highWaterMark: 1 << 20, autoClose: true });
          s.on('error', () => res.destroy());
          res.on('close', () => s.destroy());
          s.pipe(res);
        });
        if (!streamed) fs.close(fd, () => {});
      });
    });
  };

  const handler = ((req: http.IncomingMessage, res: http.ServerResponse): boolean => {
    let url = req.url ?? '/';
    if (!url.startsWith('/content/') && url !== '/content') return false;
    const q = url.indexOf('?');
    if (q >= 0) url = url.slice(0, q);
    let file: string;
    let digest: string | null = null;
    const c = CHUNK_URL.exec(url);
    const mf = c ? null : MANIFEST_URL.exec(url);
    const cert = c || mf ? null : CERTIFICATE_URL.exec(url);
    if (c && (c[2] as string).startsWith(c[1] as string)) {
      digest = c[2] as string;
      file = `${chunksDir}/${c[1]}/${digest}`;
    } else if (mf) {
      file = `${manifestsDir}/${mf[1]}/${mf[2]}.json`;
    } else if (cert) {
      file = `${root}/certificates/${cert[1]}.json`;
    } else {
      sendError(req, res, 404, 'not_found', '');
      return true;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      sendError(req, res, 405, 'bad_request', 'content is read-only: use GET or HEAD', ['Allow', 'GET, HEAD']);
      return true;
    }
    const e = cache.get(file);
    if (e) {
      const now = Date.now();
      if (now - e.checked > revalidateMs) {
        const st = fs.statSync(file, { throwIfNoEntry: false });
        if (!st || st.ino !== e.ino || st.size !== e.size || st.mtimeMs !== e.mtimeMs) {
          drop(file);
          load(req, res, file, digest);
          return true;
        }
        e.checked = now;
      }
      e.used = now;
      stats.hits++;
      // Most recently used goes last.
      cache.delete(file);
      cache.set(file, e);
      respond(req, res, e, fromBuffer(res, e.buf as Buffer));
      return true;
    }
    load(req, res, file, digest);
    return true;
  }) as ContentHandler;
  Object.defineProperty(handler, 'stats', { get: () => ({ ...stats }) });
  return handler;
}

export interface ContentServer {
  url: string;
  server: http.Server;
  handler: ContentHandler;
  /** Process ids of the extra worker processes (empty with `workers: 1`). */
  workerPids: number[];
  close(): Promise<void>;
}

/** What the primary sends each worker process, with the listening socket. */
export interface WorkerConfig {
  kind: 'cascade-content-worker';
  handler: ContentHandlerOptions;
  /** Unix socket of the primary's fallback server, or null: 404 outside /content/. */
  fallbackSocket: string | null;
  /** Serve HTTPS with this certificate and key (PEM). */
  tls?: { cert: string; key: string } | undefined;
}

/** An HTTP or, given a certificate, an HTTPS server for one listener (the primary's or a worker's). */
function createServer(tls: WorkerConfig['tls'], listener: http.RequestListener): http.Server {
  const o = { keepAlive: true, noDelay: true };
  return tls ? https.createServer({ ...o, cert: tls.cert, key: tls.key }, listener) : http.createServer(o, listener);
}

/** The parent's Node flags without the code it was given to run (`-e CODE`, `-p CODE`). */
function nodeFlags(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '-e' || a === '--eval' || a === '-p' || a === '--print') i++;
    else if (!/^--(eval|print|input-type)=/.test(a)) out.push(a);
  }
  return out;
}

const notFound = (req: http.IncomingMessage, res: http.ServerResponse) =>
  sendError(req, res, 404, 'not_found', `nothing at ${req.url ?? '/'}`);

/**
 * Starts an HTTP server for a library root: content under /content/, every other request to
 * `fallback` (a DP's own API), or 404. `listen` is HOST:PORT (port 0: any free port).
 *
 * `workers` > 1 forks that many less one extra processes (./serve-worker.js) that accept
 * connections on the same listening socket (handed over by IPC, as node:cluster does; Node 20
 * has no SO_REUSEPORT). Each has its own cache. A request outside /content/ that reaches a
 * worker is relayed to `fallback` in this process over a private Unix socket, with
 * X-Forwarded-For. The workers exit with this process.
 */
export async function startContentServer(
  opts: ContentHandlerOptions & {
    listen: string;
    fallback?: (req: http.IncomingMessage, res: http.ServerResponse) => void;
    workers?: number;
    tls?: WorkerConfig['tls'];
  },
): Promise<ContentServer> {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(opts.listen);
  if (!m || Number(m[3]) > 65535) throw new Error(`listen address "${opts.listen}" is not HOST:PORT`);
  const host = (m[1] ?? m[2]) as string;
  const { listen: _l, fallback: _f, workers: _w, tls: _t, ...handlerOpts } = opts;
  const handler = createContentHandler(handlerOpts);
  const fallback = opts.fallback ?? notFound;
  const server = createServer(opts.tls, (req, res) => {
    if (!handler(req, res)) fallback(req, res);
  });
  server.keepAliveTimeout = 65_000;
  server.requestTimeout = 0;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number(m[3]), host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const url = `${opts.tls ? 'https' : 'http'}://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`;

  const children: ChildProcess[] = [];
  let fallbackServer: http.Server | null = null;
  let fallbackSocket: string | null = null;
  const stopWorkers = async () => {
    await Promise.all(
      children.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) return resolve();
            c.once('exit', () => resolve());
            c.kill('SIGTERM');
          }),
      ),
    );
    if (fallbackServer) await closeServer(fallbackServer);
    if (fallbackSocket) fs.rmSync(path.dirname(fallbackSocket), { recursive: true, force: true });
  };
  const extra = Math.max(0, Math.floor(opts.workers ?? 1) - 1);
  if (extra > 0) {
    try {
      if (opts.fallback) {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-dp-'));
        fallbackSocket = path.join(dir, 'fallback.sock');
        const fb = http.createServer({ keepAlive: true }, fallback);
        fallbackServer = fb;
        await new Promise<void>((resolve, reject) => {
          fb.once('error', reject);
          fb.listen(fallbackSocket, () => resolve());
        });
      }
      const script = workerScript(import.meta.url, 'serve-worker');
      const config: WorkerConfig = { kind: 'cascade-content-worker', handler: handlerOpts, fallbackSocket, tls: opts.tls };
      for (let i = 0; i < extra; i++) {
        const child = fork(script, [], {
          stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
          execArgv: nodeFlags(process.execArgv),
        });
        children.push(child);
        await new Promise<void>((resolve, reject) => {
          child.once('error', reject);
          child.once('exit', (code) => reject(new Error(`content worker exited with ${code} before it served`)));
          child.once('message', (msg) => (msg === 'ready' ? resolve() : reject(new Error(`content worker: ${String(msg)}`))));
          child.send(config, server);
        });
        child.removeAllListeners('exit');
        child.removeAllListeners('error');
        child.on('error', () => {});
      }
    } catch (e) {
      await stopWorkers();
      await closeServer(server);
      throw e;
    }
  }
  return {
    url,
    server,
    handler,
    workerPids: children.map((c) => c.pid as number),
    close: async () => {
      await stopWorkers();
      await closeServer(server);
    },
  };
}

/**
 * A worker process's side: serve content on the listening socket the primary handed over,
 * relay everything else to the primary's fallback. Called by serve-worker.ts.
 */
export function serveAsWorker(config: WorkerConfig, listening: net.Server): Promise<http.Server> {
  const handler = createContentHandler(config.handler);
  const socketPath = config.fallbackSocket;
  const agent = socketPath ? new http.Agent({ keepAlive: true }) : null;
  const relay = (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (!socketPath) return notFound(req, res);
    const headers = { ...req.headers };
    const from = req.socket.remoteAddress ?? '';
    headers['x-forwarded-for'] = headers['x-forwarded-for'] ? `${headers['x-forwarded-for']}, ${from}` : from;
    const up = http.request({ socketPath, agent: agent as http.Agent, method: req.method, path: req.url, headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.rawHeaders);
      r.pipe(res);
    });
    up.on('error', () => {
      if (!res.headersSent) sendError(req, res, 502, 'unavailable', 'the DP process did not answer');
      else res.destroy();
    });
    req.pipe(up);
  };
  const server = createServer(config.tls, (req, res) => {
    if (!handler(req, res)) relay(req, res);
  });
  server.keepAliveTimeout = 65_000;
  server.requestTimeout = 0;
  // The handle arrives as a listening net.Server: its connections go to the HTTP server.
  listening.on('connection', (socket: net.Socket) => server.emit('connection', socket));
  return Promise.resolve(server);
}
