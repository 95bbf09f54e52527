import http from 'node:http';
import type { AddressInfo } from 'node:net';
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
