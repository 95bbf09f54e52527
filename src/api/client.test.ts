import crypto from 'node:crypto';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CascadeError } from '../core/errors.js';
import { ApiClient } from './client.js';
import { fillPath } from './paths.js';
import { transferCalls } from './transfers.js';

/** A peer on loopback that answers each path with what the test put there. */
let server: http.Server;
let url: string;
const answers = new Map<string, { status: number; body: string }>();
const seen: { method: string; path: string; auth: string | undefined; body: string }[] = [];

beforeAll(async () => {
  server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => {
      body += d.toString();
    });
    req.on('end', () => {
      seen.push({ method: req.method ?? '', path: req.url ?? '', auth: req.headers.authorization, body });
      const a = answers.get(req.url ?? '') ?? { status: 404, body: '<html>not here</html>' };
      res.writeHead(a.status, { 'content-type': 'application/json' });
      res.end(a.body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

const peer = () => new ApiClient(url, { token: 'cas_peer_x', who: 'site NYC', prefixErrors: true, timeoutMs: 5000 });
const offer = {
  packageId: 'CEN00001',
  version: 2,
  priority: 'high' as const,
  manifest: 'e30=',
  originCertificate: null,
  targets: ['NYC'],
};
const preview = { packageId: 'CEN00001', version: 2, priority: 'high' as const, chunks: [], targets: ['NYC'] };
const report = { targets: [], messages: [] };

async function refusal(p: Promise<unknown>): Promise<CascadeError> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(CascadeError);
  return e as CascadeError;
}

describe('ApiClient', () => {
  it('validates a peer answer against the call, and names the peer and the call when it does not match', async () => {
    answers.set('/api/v1/transfers/offer', {
      status: 200,
      body: JSON.stringify({ missing: [], versions: [1], installed: false, bytesTotal: 9 }),
    });
    expect(await peer().call(transferCalls.offer, offer)).toEqual({ missing: [], versions: [1], installed: false, bytesTotal: 9 });
    const sent = seen.at(-1);
    expect(sent).toMatchObject({ method: 'POST', path: '/api/v1/transfers/offer', auth: 'Bearer cas_peer_x' });
    expect(JSON.parse(sent?.body ?? '')).toEqual(offer);

    // The offer: a field missing.
    answers.set('/api/v1/transfers/offer', { status: 200, body: JSON.stringify({ versions: [1], installed: false, bytesTotal: 9 }) });
    let e = await refusal(peer().call(transferCalls.offer, offer));
    expect(e.code).toBe('bad_answer');
    expect(e.message).toMatch(/^site NYC answered POST \/api\/v1\/transfers\/offer with an unexpected shape \(missing: /);
    // A digest that is not one.
    answers.set('/api/v1/transfers/offer', {
      status: 200,
      body: JSON.stringify({ missing: ['x'], versions: [], installed: false, bytesTotal: 9 }),
    });
    e = await refusal(peer().call(transferCalls.offer, offer));
    expect(e.message).toMatch(/unexpected shape \(missing\.0: /);

    // The preview: routes of the wrong shape.
    answers.set('/api/v1/transfers/preview', {
      status: 200,
      body: JSON.stringify({ missingBytes: 5, routes: [{ from: 'NYC' }], targets: [] }),
    });
    e = await refusal(peer().call(transferCalls.preview, preview));
    expect(e.code).toBe('bad_answer');
    expect(e.message).toMatch(/^site NYC answered POST \/api\/v1\/transfers\/preview with an unexpected shape \(routes\.0\.to: /);

    // The status report: counts that are not numbers.
    answers.set('/api/v1/status', { status: 200, body: JSON.stringify({ targets: 'all', messages: 0 }) });
    e = await refusal(peer().call(transferCalls.status, report));
    expect(e.code).toBe('bad_answer');
    expect(e.message).toMatch(/^site NYC answered POST \/api\/v1\/status with an unexpected shape \(targets: /);
    answers.set('/api/v1/status', { status: 200, body: JSON.stringify({ targets: 0, messages: 0 }) });
    expect(await peer().call(transferCalls.status, report)).toEqual({ targets: 0, messages: 0 });
  });

  it('says so when an answer is not JSON, relays the error a peer answered, and names a peer it cannot reach', async () => {
    answers.set('/api/v1/status', { status: 200, body: '<html>proxy page</html>' });
    let e = await refusal(peer().call(transferCalls.status, report));
    expect(e.code).toBe('bad_answer');
    expect(e.message).toBe('site NYC answered /api/v1/status with something that is not JSON');

    answers.set('/api/v1/status', { status: 403, body: JSON.stringify({ error: { code: 'forbidden', message: 'not a child' } }) });
    e = await refusal(peer().call(transferCalls.status, report));
    expect(e.code).toBe('forbidden');
    expect(e.message).toBe('site NYC: not a child');

    answers.set('/api/v1/status', { status: 502, body: 'Bad Gateway' });
    e = await refusal(peer().call(transferCalls.status, report));
    expect(e.code).toBe('unavailable');
    expect(e.message).toBe('site NYC answered HTTP 502: Bad Gateway');

    const closed = await new Promise<number>((r) => {
      const s = http.createServer().listen(0, '127.0.0.1', () => {
        const port = (s.address() as AddressInfo).port;
        s.close(() => r(port));
      });
    });
    e = await refusal(new ApiClient(`http://127.0.0.1:${closed}`, { who: 'site NYC' }).call(transferCalls.status, report));
    expect(e.code).toBe('unavailable');
    expect(e.message).toBe(`cannot reach site NYC at http://127.0.0.1:${closed}: ECONNREFUSED`);
  });

  it('validates the answer to a binary upload made through an endpoint', async () => {
    answers.set('/api/v1/transfers/chunks', { status: 200, body: JSON.stringify({ received: 1, stored: 1, bytes: 3, literalBytes: 3 }) });
    expect(await peer().upload(transferCalls.chunks, [new Uint8Array([1, 2, 3])])).toEqual({
      received: 1,
      stored: 1,
      bytes: 3,
      literalBytes: 3,
    });
    answers.set('/api/v1/transfers/chunks', { status: 200, body: JSON.stringify({ received: 1 }) });
    const e = await refusal(peer().upload(transferCalls.chunks, [new Uint8Array([1, 2, 3])]));
    expect(e.message).toMatch(/^site NYC answered POST \/api\/v1\/transfers\/chunks with an unexpected shape \(stored: /);
  });

  it('fills path parameters, encoded, and refuses a URL that is not http(s)', () => {
    expect(fillPath('/api/v1/packages/{id}/versions/{version}', { id: 'CEN00001', version: 3 })).toBe(
      '/api/v1/packages/CEN00001/versions/3',
    );
    expect(fillPath('/x/{name}', { name: 'a b/c' })).toBe('/x/a%20b%2Fc');
    expect(() => new ApiClient('ftp://x')).toThrow(/must be an http:\/\/ or https:\/\/ URL/);
    expect(() => new ApiClient('nope')).toThrow(/is not a URL/);
  });
});

describe('ContentConnection', () => {
  /** A server whose answers the test writes by hand, counting connections. */
  async function rawServer(
    answer: (path: string, socket: net.Socket) => void,
  ): Promise<{ url: string; connections: () => number; close: () => Promise<void> }> {
    let n = 0;
    const sockets = new Set<net.Socket>();
    const srv = net.createServer((socket) => {
      n++;
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      let buf = '';
      socket.on('data', (d) => {
        buf += d.toString('latin1');
        for (let i = buf.indexOf('\r\n\r\n'); i >= 0; i = buf.indexOf('\r\n\r\n')) {
          const head = buf.slice(0, i);
          buf = buf.slice(i + 4);
          answer(head.split(' ')[1] ?? '', socket);
        }
      });
      socket.on('error', () => {});
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    return {
      url: `http://127.0.0.1:${(srv.address() as AddressInfo).port}/base`,
      connections: () => n,
      close: () =>
        new Promise<void>((r) => {
          for (const s of sockets) s.destroy();
          srv.close(() => r());
        }),
    };
  }
  const ok = (body: Buffer | string, extra = '') =>
    Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n`), Buffer.from(body)]);

  it('reads answers into the buffer it is given, over one kept-alive connection, whatever the pieces', async () => {
    const big = crypto.randomBytes(200_000);
    const s = await rawServer((p, socket) => {
      if (p === '/base/big') {
        // The header and the body in awkward pieces.
        const all = ok(big);
        socket.write(all.subarray(0, 10));
        setTimeout(() => socket.write(all.subarray(10, 70_001)), 5);
        setTimeout(() => socket.write(all.subarray(70_001)), 10);
      } else if (p === '/base/empty') socket.write(ok(''));
      else if (p === '/base/gone') {
        const body = JSON.stringify({ error: { code: 'not_found', message: 'no such chunk' } });
        socket.write(`HTTP/1.1 404 Not Found\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      } else socket.write(ok(`answer to ${p}`));
    });
    const c = new ApiClient(s.url, { who: 'DP dp1', timeoutMs: 5000 }).connection();
    const into = Buffer.alloc(256 * 1024);
    try {
      const got = await c.get('/big', into);
      expect(got.buffer).toBe(into.buffer);
      expect(got.equals(big)).toBe(true);
      expect((await c.get('/a', into)).toString()).toBe('answer to /base/a');
      expect((await c.get('/empty', into)).length).toBe(0);
      await expect(c.get('/gone', into)).rejects.toThrow(/no such chunk/);
      expect((await c.get('/b', into)).toString()).toBe('answer to /base/b');
      expect(s.connections()).toBe(1);
    } finally {
      c.close();
      await s.close();
    }
  });

  it('sends a request again on a new connection when the server closed the idle one', async () => {
    let answered = 0;
    const s = await rawServer((p, socket) => {
      answered++;
      // Every answer closes the connection without saying so, as an idle time-out does.
      socket.end(ok(p));
    });
    const c = new ApiClient(s.url, { timeoutMs: 5000 }).connection();
    const into = Buffer.alloc(1024);
    try {
      for (const p of ['/1', '/2', '/3']) {
        await new Promise((r) => setTimeout(r, 20));
        expect((await c.get(p, into)).toString()).toBe(`/base${p}`);
      }
      expect(answered).toBe(3);
      expect(s.connections()).toBe(3);
    } finally {
      c.close();
      await s.close();
    }
  });

  it('refuses an answer without Content-Length, one too large, one with extra bytes, and a server that goes quiet', async () => {
    const s = await rawServer((p, socket) => {
      if (p === '/base/chunked') socket.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n');
      else if (p === '/base/large') socket.write(ok(Buffer.alloc(2000)));
      else if (p === '/base/extra') socket.write(Buffer.concat([ok('abc'), Buffer.from('HTTP/1.1 200 OK\r\n')]));
      else if (p === '/base/quiet') socket.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc');
      else socket.write(ok('fine'));
    });
    const client = new ApiClient(s.url, { who: 'DP dp1', timeoutMs: 300 });
    const into = Buffer.alloc(1024);
    const c = client.connection();
    try {
      await expect(c.get('/chunked', into)).rejects.toThrow(/DP dp1 answered \/chunked without a Content-Length/);
      expect(c.lengthless).toBe(true);
      await expect(c.get('/large', into)).rejects.toMatchObject({ code: 'too_large' });
      // Extra bytes after an answer: the connection is not used again.
      expect((await c.get('/ok', into)).toString()).toBe('fine');
      const before = s.connections();
      await expect(c.get('/extra', into)).rejects.toThrow(/more bytes than its Content-Length/);
      expect((await c.get('/ok', into)).toString()).toBe('fine');
      expect(s.connections()).toBe(before + 1);
      await expect(c.get('/quiet', into)).rejects.toThrow(/cannot reach DP dp1 at .*: no answer within 0.3 s/);
      const ac = new AbortController();
      const asked = c.get('/quiet', into, ac.signal);
      setTimeout(() => ac.abort(new Error('stopped by the test')), 50);
      await expect(asked).rejects.toThrow(/cut short \(stopped by the test\)/);
      expect((await c.get('/ok', into)).toString()).toBe('fine');
    } finally {
      c.close();
      await s.close();
    }
    const gone = client.connection();
    await expect(gone.get('/x', into)).rejects.toThrow(/cannot reach DP dp1 at .*: ECONNREFUSED/);
  });
});
