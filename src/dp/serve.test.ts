import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHUNK_CACHE_CONTROL, type ContentServer, parseRange, startContentServer } from './serve.js';

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** A raw request: the path goes out exactly as given (fetch would normalise `..`). */
function get(base: string, p: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Answer> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, path: p, method, headers }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** A GET's body through a keep-alive agent (many at once share its connections). */
function body(base: string, p: string, agent: http.Agent): Promise<Buffer> {
  const u = new URL(base);
  return new Promise<Buffer>((resolve, reject) => {
    http
      .get({ host: u.hostname, port: u.port, path: p, agent }, (res) => {
        const parts: Buffer[] = [];
        res.on('data', (x: Buffer) => parts.push(x));
        res.on('end', () => resolve(Buffer.concat(parts)));
      })
      .on('error', reject);
  });
}

const sha = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');

describe('content server', () => {
  let root: string;
  let srv: ContentServer;
  let data: Buffer;
  let digest: string;
  let chunkUrl: string;
  let manifest: Buffer;
  let big: Buffer;
  let bigDigest: string;

  beforeAll(async () => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-serve-'));
    data = Buffer.concat([Buffer.from([0]), crypto.randomBytes(70_000)]);
    digest = sha(data.subarray(1));
    fs.mkdirSync(path.join(root, 'chunks', digest.slice(0, 2)), { recursive: true });
    fs.writeFileSync(path.join(root, 'chunks', digest.slice(0, 2), digest), data);
    chunkUrl = `/content/chunks/${digest.slice(0, 2)}/${digest}`;
    // A chunk being written: beside its final name, never served.
    fs.writeFileSync(path.join(root, 'chunks', digest.slice(0, 2), `.tmp-${digest}`), data);
    // Larger than maxCachedFile below: streamed from its descriptor.
    big = crypto.randomBytes(300_000);
    bigDigest = sha(big);
    fs.mkdirSync(path.join(root, 'chunks', bigDigest.slice(0, 2)), { recursive: true });
    fs.writeFileSync(path.join(root, 'chunks', bigDigest.slice(0, 2), bigDigest), big);
    manifest = Buffer.from('{"manifest":{"id":"CEN00001"},"signature":{}}');
    fs.mkdirSync(path.join(root, 'manifests', 'CEN00001'), { recursive: true });
    fs.writeFileSync(path.join(root, 'manifests', 'CEN00001', '1.json'), manifest);
    for (const d of ['tmp', 'incoming']) {
      fs.mkdirSync(path.join(root, d), { recursive: true });
      fs.writeFileSync(path.join(root, d, digest), data);
    }
    fs.writeFileSync(path.join(os.tmpdir(), 'cascade-serve-secret'), 'secret');
    srv = await startContentServer({
      root,
      listen: '127.0.0.1:0',
      maxCachedFile: 128 * 1024,
      revalidateMs: 0,
      fallback: (_req, res) => {
        res.writeHead(299, { 'content-type': 'text/plain' });
        res.end('fallback');
      },
    });
  });
  afterAll(async () => {
    await srv.close();
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('serves a chunk with its digest as a strong ETag, immutable caching, length and type', async () => {
    for (let i = 0; i < 2; i++) {
      const r = await get(srv.url, chunkUrl);
      expect(r.status).toBe(200);
      expect(r.body.equals(data)).toBe(true);
      expect(r.headers.etag).toBe(`"${digest}"`);
      expect(r.headers['cache-control']).toBe(CHUNK_CACHE_CONTROL);
      expect(r.headers['content-length']).toBe(String(data.length));
      expect(r.headers['content-type']).toBe('application/octet-stream');
      expect(r.headers['accept-ranges']).toBe('bytes');
    }
    expect(srv.handler.stats.hits).toBeGreaterThanOrEqual(1);
    // A query string is ignored, as by static servers.
    expect((await get(srv.url, `${chunkUrl}?x=1`)).status).toBe(200);
  });

  it('serves a manifest as JSON with a validator and revalidated caching', async () => {
    const r = await get(srv.url, '/content/manifests/CEN00001/1.json');
    expect(r.status).toBe(200);
    expect(r.body.equals(manifest)).toBe(true);
    expect(r.headers['content-type']).toBe('application/json');
    expect(r.headers.etag).toMatch(/^"[0-9a-f]+-[0-9a-f]+"$/);
    expect(r.headers['cache-control']).toBe('public, no-cache');
    expect(r.headers['last-modified']).toBeTruthy();
    const again = await get(srv.url, '/content/manifests/CEN00001/1.json', { 'if-none-match': r.headers.etag as string });
    expect(again.status).toBe(304);
    expect(again.body.length).toBe(0);
    const since = await get(srv.url, '/content/manifests/CEN00001/1.json', { 'if-modified-since': r.headers['last-modified'] as string });
    expect(since.status).toBe(304);
  });

  it('answers HEAD with the headers of GET and no body', async () => {
    const r = await get(srv.url, chunkUrl, {}, 'HEAD');
    expect(r.status).toBe(200);
    expect(r.headers['content-length']).toBe(String(data.length));
    expect(r.headers.etag).toBe(`"${digest}"`);
    expect(r.body.length).toBe(0);
    const big206 = await get(srv.url, `/content/chunks/${bigDigest.slice(0, 2)}/${bigDigest}`, { range: 'bytes=10-19' }, 'HEAD');
    expect(big206.status).toBe(206);
    expect(big206.headers['content-length']).toBe('10');
    expect(big206.body.length).toBe(0);
  });

  it('answers If-None-Match with 304 (lists, weak tags, *) and ignores other tags', async () => {
    for (const inm of [`"${digest}"`, `"x", W/"${digest}"`, '*']) {
      const r = await get(srv.url, chunkUrl, { 'if-none-match': inm });
      expect(r.status).toBe(304);
      expect(r.headers.etag).toBe(`"${digest}"`);
      expect(r.headers['cache-control']).toBe(CHUNK_CACHE_CONTROL);
      expect(r.body.length).toBe(0);
    }
    expect((await get(srv.url, chunkUrl, { 'if-none-match': '"other"' })).status).toBe(200);
  });

  it('serves single byte ranges: 206 with Content-Range, suffix and open ranges, clamped ends', async () => {
    const size = data.length;
    const cases: [string, number, number][] = [
      ['bytes=0-0', 0, 0],
      ['bytes=100-199', 100, 199],
      [`bytes=${size - 1}-`, size - 1, size - 1],
      ['bytes=1000-', 1000, size - 1],
      ['bytes=-500', size - 500, size - 1],
      [`bytes=-${size + 10}`, 0, size - 1],
      [`bytes=5-${size + 1000}`, 5, size - 1],
    ];
    for (const [range, start, end] of cases) {
      const r = await get(srv.url, chunkUrl, { range });
      expect(r.status, range).toBe(206);
      expect(r.headers['content-range'], range).toBe(`bytes ${start}-${end}/${size}`);
      expect(r.headers['content-length'], range).toBe(String(end - start + 1));
      expect(r.body.equals(data.subarray(start, end + 1)), range).toBe(true);
    }
    // The streamed path (a file larger than the cache takes) ranges the same way.
    const r = await get(srv.url, `/content/chunks/${bigDigest.slice(0, 2)}/${bigDigest}`, { range: 'bytes=250000-' });
    expect(r.status).toBe(206);
    expect(r.body.equals(big.subarray(250_000))).toBe(true);
    const whole = await get(srv.url, `/content/chunks/${bigDigest.slice(0, 2)}/${bigDigest}`);
    expect(whole.body.equals(big)).toBe(true);
  });

  it('answers 416 with bytes */size for a range past the end, and ignores ranges it does not take', async () => {
    const size = data.length;
    for (const range of [`bytes=${size}-`, `bytes=${size + 5}-${size + 10}`, 'bytes=-0']) {
      const r = await get(srv.url, chunkUrl, { range });
      expect(r.status, range).toBe(416);
      expect(r.headers['content-range'], range).toBe(`bytes */${size}`);
    }
    // Malformed, several ranges, other units, reversed: the whole file (RFC 9110 allows ignoring).
    for (const range of ['bytes=5-1', 'bytes=0-1,5-6', 'items=0-1', 'bytes=x-y', 'bytes=-']) {
      const r = await get(srv.url, chunkUrl, { range });
      expect(r.status, range).toBe(200);
      expect(r.body.equals(data), range).toBe(true);
    }
  });

  it('honours If-Range: the range when the validator matches, the whole file when not', async () => {
    const ok = await get(srv.url, chunkUrl, { range: 'bytes=0-9', 'if-range': `"${digest}"` });
    expect(ok.status).toBe(206);
    expect(ok.body.length).toBe(10);
    const stale = await get(srv.url, chunkUrl, { range: 'bytes=0-9', 'if-range': '"something-else"' });
    expect(stale.status).toBe(200);
    expect(stale.body.equals(data)).toBe(true);
    const m = await get(srv.url, '/content/manifests/CEN00001/1.json');
    const byDate = await get(srv.url, '/content/manifests/CEN00001/1.json', {
      range: 'bytes=0-0',
      'if-range': m.headers['last-modified'] as string,
    });
    expect(byDate.status).toBe(206);
  });

  it('is 404 for .tmp-* files, tmp/, incoming/, folders, traversal and malformed names', async () => {
    const ab = digest.slice(0, 2);
    const paths = [
      `/content/chunks/${ab}/.tmp-${digest}`,
      `/content/chunks/${ab}/`,
      `/content/chunks/${ab}`,
      '/content/chunks/',
      '/content/',
      '/content',
      '/content/manifests/',
      '/content/manifests/CEN00001/',
      `/content/tmp/${digest}`,
      `/content/incoming/${digest}`,
      `/content/chunks/${ab}/../../tmp/${digest}`,
      `/content/chunks/${ab}/%2e%2e%2f${digest}`,
      '/content/chunks/../../../cascade-serve-secret',
      '/content/manifests/CEN00001/../../../../cascade-serve-secret',
      `/content/chunks/${ab === '00' ? '01' : '00'}/${digest}`, // prefix does not match
      `/content/chunks/${ab}/${digest.toUpperCase()}`,
      `/content/chunks/${ab}/${digest}0`,
      `/content/chunks/${ab}/${digest.slice(1)}`,
      '/content/manifests/CEN00001/0.json',
      '/content/manifests/CEN00001/01.json',
      '/content/manifests/CEN00001/1.json.tmp',
      '/content/manifests/cen00001/1.json',
      '/content/manifests/CEN0001/1.json',
      '/content/manifests/CEN00001/2.json', // well-formed, absent
      `/content/chunks/00/${'0'.repeat(64)}`, // well-formed, absent
    ];
    for (const p of paths) {
      const r = await get(srv.url, p);
      expect(r.status, p).toBe(404);
      expect(r.body.toString(), p).not.toContain('secret');
      expect(JSON.parse(r.body.toString()).error.code, p).toBe('not_found');
    }
  });

  it('refuses other methods and hands everything outside /content/ to the fallback', async () => {
    const r = await get(srv.url, chunkUrl, {}, 'DELETE');
    expect(r.status).toBe(405);
    expect(r.headers.allow).toBe('GET, HEAD');
    expect(fs.existsSync(path.join(root, 'chunks', digest.slice(0, 2), digest))).toBe(true);
    for (const p of ['/', '/api/v1/site', '/contents/chunks', '/healthz']) {
      const f = await get(srv.url, p);
      expect(f.status, p).toBe(299);
      expect(f.body.toString()).toBe('fallback');
    }
  });

  it('stops serving a deleted file and serves a rewritten one (revalidation)', async () => {
    const b = crypto.randomBytes(1000);
    const d = sha(b);
    const file = path.join(root, 'chunks', d.slice(0, 2), d);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, b);
    const url = `/content/chunks/${d.slice(0, 2)}/${d}`;
    expect((await get(srv.url, url)).body.equals(b)).toBe(true);
    // Rewritten under the same name (a damaged copy, say): a new inode is noticed.
    const other = crypto.randomBytes(999);
    fs.writeFileSync(`${file}.new`, other);
    fs.renameSync(`${file}.new`, file);
    expect((await get(srv.url, url)).body.equals(other)).toBe(true);
    fs.rmSync(file);
    expect((await get(srv.url, url)).status).toBe(404);
  });

  it('keeps many concurrent keep-alive downloads correct', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 50 });
    const one = (p: string) => body(srv.url, p, agent);
    const bigUrl = `/content/chunks/${bigDigest.slice(0, 2)}/${bigDigest}`;
    const got = await Promise.all(Array.from({ length: 200 }, (_, i) => one(i % 3 === 0 ? bigUrl : chunkUrl)));
    got.forEach((b, i) => {
      expect(b.equals(i % 3 === 0 ? big : data)).toBe(true);
    });
    agent.destroy();
  });
});

describe('content server without a cache', () => {
  it('reads the file on every request', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-serve-nc-'));
    const data = crypto.randomBytes(3000);
    const d = sha(data);
    fs.mkdirSync(path.join(root, 'chunks', d.slice(0, 2)), { recursive: true });
    fs.writeFileSync(path.join(root, 'chunks', d.slice(0, 2), d), data);
    const srv = await startContentServer({ root, listen: '127.0.0.1:0', cacheBytes: 0 });
    try {
      for (let i = 0; i < 3; i++) {
        const r = await get(srv.url, `/content/chunks/${d.slice(0, 2)}/${d}`, { range: 'bytes=1-2' });
        expect(r.status).toBe(206);
        expect(r.body.equals(data.subarray(1, 3))).toBe(true);
      }
      expect(srv.handler.stats).toMatchObject({ hits: 0, misses: 3, cachedFiles: 0, cachedBytes: 0 });
    } finally {
      await srv.close();
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('content server with a full cache', () => {
  it('takes a file in only in place of entries gone cold, and answers the others through reused buffers', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-serve-full-'));
    const files = Array.from({ length: 12 }, (_, i) => crypto.randomBytes(20_000 + i));
    const urls = files.map((f) => {
      const d = sha(f);
      fs.mkdirSync(path.join(root, 'chunks', d.slice(0, 2)), { recursive: true });
      fs.writeFileSync(path.join(root, 'chunks', d.slice(0, 2), d), f);
      return `/content/chunks/${d.slice(0, 2)}/${d}`;
    });
    // Room for four files.
    const srv = await startContentServer({ root, listen: '127.0.0.1:0', cacheBytes: 81_000, revalidateMs: 60_000, coldMs: 1000 });
    try {
      for (const i of [0, 1, 2, 3]) expect((await get(srv.url, urls[i] as string)).body.equals(files[i] as Buffer)).toBe(true);
      expect(srv.handler.stats).toMatchObject({ misses: 4, cachedFiles: 4 });
      // Full of entries used moments ago: file 4 is served, not kept, however often it is asked for.
      for (let k = 0; k < 3; k++) expect((await get(srv.url, urls[4] as string)).body.equals(files[4] as Buffer)).toBe(true);
      expect(srv.handler.stats).toMatchObject({ hits: 0, misses: 7, cachedFiles: 4 });
      for (const i of [0, 1, 2, 3]) await get(srv.url, urls[i] as string);
      expect(srv.handler.stats).toMatchObject({ hits: 4, misses: 7 });
      // Files 1-3 stay in use; file 0 goes cold and file 4 takes its place.
      for (let k = 0; k < 4; k++) {
        await new Promise((r) => setTimeout(r, 300));
        for (const i of [1, 2, 3]) await get(srv.url, urls[i] as string);
      }
      await get(srv.url, urls[4] as string);
      await get(srv.url, urls[4] as string);
      expect(srv.handler.stats).toMatchObject({ hits: 17, misses: 8, cachedFiles: 4 });
      await get(srv.url, urls[0] as string);
      expect(srv.handler.stats).toMatchObject({ hits: 17, misses: 9 });
      // Many at once through the reused buffers: every answer is its own file's bytes.
      const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
      const one = (p: string) => body(srv.url, p, agent);
      const order = Array.from({ length: 300 }, (_, i) => 5 + ((i * 3) % 7));
      const got = await Promise.all(order.map((i) => one(urls[i] as string)));
      got.forEach((b, k) => {
        expect(b.equals(files[order[k] as number] as Buffer)).toBe(true);
      });
      agent.destroy();
    } finally {
      await srv.close();
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('content server with worker processes', () => {
  it('serves content from every process on one port and relays the rest to the fallback', async () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-serve-w-'));
    const data = crypto.randomBytes(5000);
    const d = sha(data);
    fs.mkdirSync(path.join(root, 'chunks', d.slice(0, 2)), { recursive: true });
    fs.writeFileSync(path.join(root, 'chunks', d.slice(0, 2), d), data);
    const seen: string[] = [];
    const srv = await startContentServer({
      root,
      listen: '127.0.0.1:0',
      workers: 2,
      fallback: (req, res) => {
        seen.push(String(req.headers['x-forwarded-for'] ?? 'direct'));
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(`api ${req.method} ${req.url}`);
      },
    });
    try {
      expect(srv.workerPids).toHaveLength(1);
      // Fresh connections, so both processes get some.
      const answers = await Promise.all(
        Array.from({ length: 40 }, (_, i) =>
          get(srv.url, i % 2 ? `/content/chunks/${d.slice(0, 2)}/${d}` : `/api/v1/x?i=${i}`, { connection: 'close' }),
        ),
      );
      answers.forEach((r, i) => {
        expect(r.status).toBe(200);
        if (i % 2) expect(r.body.equals(data)).toBe(true);
        else expect(r.body.toString()).toBe(`api GET /api/v1/x?i=${i}`);
      });
      expect(seen).toHaveLength(20);
    } finally {
      await srv.close();
      fs.rmSync(root, { recursive: true, force: true });
    }
    for (const pid of srv.workerPids) expect(() => process.kill(pid, 0)).toThrow();
  });
});

describe('parseRange', () => {
  it('reads the forms of a single byte range', () => {
    expect(parseRange('bytes=0-9', 100)).toEqual({ start: 0, end: 9 });
    expect(parseRange('bytes=90-', 100)).toEqual({ start: 90, end: 99 });
    expect(parseRange('bytes=-10', 100)).toEqual({ start: 90, end: 99 });
    expect(parseRange('bytes=100-', 100)).toBe('unsatisfiable');
    expect(parseRange('bytes=-0', 100)).toBe('unsatisfiable');
    expect(parseRange('bytes=0-0,2-3', 100)).toBeNull();
    expect(parseRange(undefined, 100)).toBeNull();
  });
});
