import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeRecordHeader, RECORD_WHOLE, storedRecordParts } from '../content/batch.js';
import { issueCertificate } from '../content/certificate.js';
import { encodeChunk } from '../content/codec.js';
import { ContentLibrary } from '../content/library.js';
import { type Manifest, manifestDigest, signManifest, verifyManifest } from '../content/manifest.js';
import { type ParcelPlan, writeParcel } from '../content/parcel.js';
import { closePool } from '../content/pool.js';
import { generateSiteKey, publicKeyPem } from '../content/signing.js';
import { verifyTicket } from '../content/ticket.js';
import { ERROR_CODES } from '../core/errors.js';
import { silentLogger } from '../lib/log.js';
import { Metrics } from '../lib/metrics.js';
import { listMessages } from '../store/distribution.js';
import { Store } from '../store/store.js';
import { createApp } from './app.js';
import type { SiteContext } from './context.js';
import { type App, BODY_LIMITS } from './http.js';

/** In-process: in-memory SQLite, a temporary library, a clock the test moves. */
describe('site app (in-process)', () => {
  let app: App;
  let ctx: SiteContext;
  let admin: string;
  let reader: string;
  let now = new Date('2026-01-01T00:00:00Z');

  beforeAll(async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-app-'));
    const store = await Store.open({ url: ':memory:', dataDir: dir, clock: () => now });
    const library = new ContentLibrary(path.join(dir, 'content'));
    await library.init();
    const key = generateSiteKey('CEN');
    ctx = {
      store,
      library,
      key,
      trusted: [{ keyId: key.keyId, publicKeyPem: publicKeyPem(key.publicKey), site: 'CEN' }],
      code: 'CEN',
      name: 'Central',
      clock: () => now,
      log: silentLogger(),
    };
    app = createApp({ ...ctx, metrics: new Metrics() });
    admin = (await store.createToken('admin', 'test')).secret;
    reader = (await store.createToken('read-only', 'reader')).secret;
  });
  afterAll(async () => {
    await ctx.store.close();
    await closePool();
  });

  const call = (method: string, p: string, token: string | null, body?: unknown) =>
    app.request(p, {
      method,
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(body !== undefined && !(body instanceof Uint8Array) ? { 'content-type': 'application/json' } : {}),
      },
      ...(body === undefined ? {} : { body: body instanceof Uint8Array ? body : JSON.stringify(body) }),
    });

  const upload = async (chunks: Buffer[]) => {
    const parts: Buffer[] = [];
    for (const c of chunks) parts.push(encodeRecordHeader(RECORD_WHOLE, sha(c), c.length), c);
    return call('POST', '/api/v1/chunks', admin, new Uint8Array(Buffer.concat(parts)));
  };
  // biome-ignore lint/suspicious/noExplicitAny: response bodies are checked by the assertions
  const json = (r: Response): Promise<any> => r.json();
  const sha = (b: Uint8Array) => crypto.createHash('sha256').update(b).digest('hex');

  it('answers errors in one envelope with the right status', async () => {
    let r = await call('GET', '/api/v1/packages', null);
    expect(r.status).toBe(401);
    expect(await json(r)).toEqual({
      error: { code: 'unauthorized', message: 'this call needs a bearer token (--token or CASCADE_TOKEN)' },
    });
    r = await call('GET', '/api/v1/packages', 'cas_nope');
    expect(r.status).toBe(401);
    r = await call('GET', '/api/v1/nothing-here', admin);
    expect(r.status).toBe(404);
    expect((await json(r)).error.code).toBe('not_found');
    r = await call('POST', '/api/v1/chunks/missing', admin, { digests: ['xyz'] });
    expect(r.status).toBe(400);
    expect((await json(r)).error.message).toMatch(/^invalid request: digests\.0: /);
    r = await call('POST', '/api/v1/tokens', reader, { role: 'admin', name: 'escalate' });
    expect(r.status).toBe(403);
    expect((await json(r)).error.code).toBe('forbidden');
  });

  it('stores chunks once, commits a signed version, counts only new bytes', async () => {
    const a = crypto.randomBytes(70_000);
    const b = Buffer.from('text '.repeat(20_000));
    let r = await call('POST', '/api/v1/chunks/missing', admin, { digests: [sha(a), sha(b)] });
    expect((await json(r)).missing).toEqual([sha(a), sha(b)]);
    r = await upload([a, b]);
    expect(r.status).toBe(200);
    expect(await json(r)).toMatchObject({ received: 2, stored: 2, bytes: a.length + b.length });
    r = await call('POST', '/api/v1/chunks/missing', admin, { digests: [sha(a), sha(b)] });
    expect((await json(r)).missing).toEqual([]);
    // The text chunk is stored compressed, the random one raw.
    const stored = fs.readFileSync(ctx.library.chunkPath(sha(b)));
    expect(stored[0]).toBe(1);
    expect(stored.length).toBeLessThan(b.length / 10);
    expect(fs.readFileSync(ctx.library.chunkPath(sha(a)))[0]).toBe(0);

    const files = [
      { type: 'file', path: 'a.bin', mode: 0o644, size: a.length, chunks: [[sha(a), a.length]] },
      { type: 'file', path: 'docs/b.txt', mode: 0o644, size: b.length, chunks: [[sha(b), b.length]] },
      { type: 'dir', path: 'docs', mode: 0o755 },
    ];
    r = await call('POST', '/api/v1/packages', admin, { name: 'P', files });
    expect(r.status).toBe(201);
    expect(await json(r)).toEqual({
      id: 'CEN00001',
      version: 1,
      files: 2,
      bytes: a.length + b.length,
      newBytes: a.length + b.length,
      newChunks: 2,
      newChunkBytes: a.length + b.length,
    });
    // Same content again as version 2: nothing new.
    r = await call('POST', '/api/v1/packages/CEN00001/versions', admin, { files });
    expect(await json(r)).toMatchObject({ version: 2, newBytes: 0, newChunks: 0 });

    r = await call('GET', '/api/v1/packages/CEN00001/versions/1/manifest', reader);
    const signed = verifyManifest(new Uint8Array(await r.arrayBuffer()), ctx.trusted);
    expect(signed.manifest.files.map((f) => f.path)).toEqual(['a.bin', 'docs', 'docs/b.txt']);
    expect(signed.manifest.created).toBe(now.toISOString());
  });

  it('frees unreferenced chunks only after the grace period', async () => {
    const orphan = crypto.randomBytes(20_000);
    await upload([orphan]);
    let r = await call('POST', '/api/v1/gc', admin, { graceSeconds: 3600 });
    expect(await json(r)).toEqual({ chunks: 0, bytes: 0 });
    now = new Date(now.getTime() + 2 * 3600_000);
    r = await call('POST', '/api/v1/gc', admin, { graceSeconds: 3600 });
    const freed = await json(r);
    expect(freed.chunks).toBe(1);
    expect(fs.existsSync(ctx.library.chunkPath(sha(orphan)))).toBe(false);

    // Deleting both versions leaves their chunks unreferenced; GC then frees them.
    r = await call('DELETE', '/api/v1/packages/CEN00001', admin);
    expect(await json(r)).toEqual({ id: 'CEN00001', deleted: [1, 2] });
    now = new Date(now.getTime() + 2 * 3600_000);
    r = await call('POST', '/api/v1/gc', admin, { graceSeconds: 3600 });
    expect((await json(r)).chunks).toBe(2);
    expect((await ctx.store.chunkTotals()).chunks).toBe(0);
  });

  it('a damaged manifest file on disk is 500 damaged, naming the package and version', async () => {
    const data = crypto.randomBytes(3_000);
    expect((await upload([data])).status).toBe(200);
    const files = [{ type: 'file', path: 'x.bin', mode: 0o644, size: data.length, chunks: [[sha(data), data.length]] }];
    let r = await call('POST', '/api/v1/packages', admin, { name: 'Damaged', files });
    expect(r.status).toBe(201);
    const { id } = await json(r);
    // One altered byte of a stored signed manifest: the signature no longer matches.
    const file = ctx.library.manifestPath(id, 1);
    const bytes = fs.readFileSync(file);
    const at = bytes.indexOf('"Damaged"') + 1;
    bytes[at] = 'd'.charCodeAt(0);
    fs.writeFileSync(file, bytes);

    for (const [method, p] of [
      ['GET', `/api/v1/packages/${id}`],
      ['GET', `/api/v1/packages/${id}/versions/1/manifest`],
      ['POST', `/api/v1/packages/${id}/versions`],
    ] as const) {
      r = await call(method, p, admin, method === 'POST' ? { files } : undefined);
      expect(r.status, `${method} ${p}`).toBe(500);
      const e = (await json(r)).error;
      expect(e.code).toBe('damaged');
      expect(e.message).toMatch(new RegExp(`manifest of ${id} version 1 .*damaged`));
    }
    r = await call('POST', `/api/v1/packages/${id}/verify`, reader);
    expect(r.status).toBe(200);
    const report = await json(r);
    expect(report.ok).toBe(false);
    expect(report.versions[0].problems).toEqual([
      { path: null, chunk: null, kind: 'manifest', detail: expect.stringMatching(new RegExp(`manifest of ${id} version 1 .*damaged`)) },
    ]);
    // Not JSON at all is damage too.
    fs.writeFileSync(file, '{"half');
    r = await call('GET', `/api/v1/packages/${id}`, admin);
    expect(r.status).toBe(500);
    expect((await json(r)).error.code).toBe('damaged');
    await call('DELETE', `/api/v1/packages/${id}`, admin);
  });

  it('keeps a chunk that arrives stored as it came, and refuses one that does not decode to its digest', async () => {
    const raw = Buffer.from(`${crypto.randomBytes(8).toString('hex')} `.repeat(4000));
    const stored = encodeChunk(raw);
    expect(stored[0]).toBe(1); // Brotli
    let r = await call('POST', '/api/v1/chunks', admin, new Uint8Array(Buffer.concat(storedRecordParts(sha(raw), raw.length, stored))));
    expect(r.status).toBe(200);
    expect(await json(r)).toMatchObject({ received: 1, stored: 1, bytes: raw.length });
    // The very bytes sent, not compressed again here.
    expect((await ctx.library.readStored(sha(raw))).equals(stored)).toBe(true);
    expect((await ctx.store.getChunks([sha(raw)])).get(sha(raw))).toMatchObject({ size: raw.length, storedSize: stored.length });

    // Bytes that decode to other content, or a size that is not the chunk's: refused, nothing stored.
    const other = Buffer.from('something else entirely '.repeat(100));
    for (const parts of [
      storedRecordParts(sha(other), other.length, encodeChunk(Buffer.from('not that '.repeat(300)))),
      storedRecordParts(sha(other), other.length + 1, encodeChunk(other)),
    ]) {
      r = await call('POST', '/api/v1/chunks', admin, new Uint8Array(Buffer.concat(parts)));
      expect(r.status).toBe(422);
      expect((await json(r)).error.code).toBe('chunk_mismatch');
    }
    expect((await ctx.store.getChunks([sha(other)])).size).toBe(0);
  });

  it('keeps unauthenticated joins small, and refuses an address after 20 failed ones in a minute', async () => {
    // A second app: its failure counts start at zero.
    const fresh = createApp({ ...ctx, metrics: new Metrics() });
    const join = (body: string) =>
      fresh.request('/api/v1/sites/join', { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    const big = await join(`{"token":"${'x'.repeat(100_000)}"}`);
    expect(big.status).toBe(413);
    expect(await json(big)).toEqual({ error: { code: 'too_large', message: 'request body is over the limit of 64 KiB for this call' } });
    const bad = JSON.stringify({
      token: 'casj_site_nope_nope',
      code: 'ZZZ',
      name: 'Z',
      url: null,
      keyId: 'ZZZ:00',
      publicKey: 'x',
      credential: 'c'.repeat(32),
    });
    const statuses: number[] = [];
    for (let i = 0; i < 21; i++) statuses.push((await join(bad)).status);
    expect(statuses.slice(0, 19).every((x) => x === 400 || x === 401)).toBe(true);
    const last = await join(bad);
    expect(last.status).toBe(429);
    expect(((await json(last)) as { error: { code: string; message: string } }).error).toMatchObject({
      code: 'rate_limited',
      message: expect.stringMatching(/^too many failed join attempts from unknown; try again in \d+ s$/),
    });
    const msgs = await listMessages(ctx.store, {});
    expect(msgs.some((m) => m.code === 'join_attempts_refused' && m.severity === 'warning')).toBe(true);
  });

  it('answers 413 too_large for a JSON body over its limit, and never limits a chunk batch', async () => {
    const big = `{"digests":["${'a'.repeat(BODY_LIMITS.json)}"]}`;
    // Streamed (no Content-Length) and declared (Content-Length) bodies alike.
    for (const headers of [{}, { 'content-length': String(Buffer.byteLength(big)) }] as Record<string, string>[]) {
      const r = await app.request('/api/v1/chunks/missing', {
        method: 'POST',
        headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json', ...headers },
        body: big,
      });
      expect(r.status).toBe(413);
      expect(await json(r)).toEqual({ error: { code: 'too_large', message: 'request body is over the limit of 16 MiB for this call' } });
    }
    // A batch of chunks bigger than the JSON limit streams through.
    const chunks = Array.from({ length: 70 }, () => crypto.randomBytes(256 << 10));
    const r = await upload(chunks);
    expect(r.status).toBe(200);
    expect((await json(r)).stored).toBe(70);
  });

  it('issues courier import tickets only for its own DPs, signed with its key (courier import --dp)', async () => {
    const other = generateSiteKey('x');
    const row = (code: string, relation: 'dp' | 'dp-below' | 'child' | 'descendant', parent: string, url: string | null) => ({
      code,
      name: code,
      parent,
      relation,
      url,
      keyId: `${code}:0`,
      publicKey: publicKeyPem(other.publicKey),
      certificate: null,
      outboundToken: null,
    });
    await ctx.store.insertSite(row('tk-dp1', 'dp', 'CEN', 'http://10.0.0.9:8200'));
    await ctx.store.insertSite(row('tk-dp2', 'dp', 'CEN', null));
    await ctx.store.insertSite(row('TKB', 'child', 'CEN', 'http://10.0.0.10:8100'));
    await ctx.store.insertSite(row('tkb-dp1', 'dp-below', 'TKB', null));
    const ask = (dp: string, token = admin) => call('POST', '/api/v1/courier/dp-tickets', token, { dp });
    const r = await ask('tk-dp1');
    expect(r.status).toBe(200);
    const t = await json(r);
    expect(t).toMatchObject({ dp: 'tk-dp1', site: 'CEN', url: 'http://10.0.0.9:8200' });
    expect(Date.parse(t.expiresAt) - now.getTime()).toBe(600_000);
    const central = { keyId: ctx.key.keyId, publicKeyPem: publicKeyPem(ctx.key.publicKey), site: 'CEN' };
    expect(verifyTicket(t.ticket, { dp: 'tk-dp1', site: 'CEN', key: central, now }).dp).toBe('tk-dp1');
    const refused = async (dp: string, status: number, code: string, message: RegExp, token = admin) => {
      const x = await ask(dp, token);
      expect(x.status).toBe(status);
      expect(await json(x)).toEqual({ error: { code, message: expect.stringMatching(message) } });
    };
    await refused('nope-dp', 404, 'not_found', /^DP nope-dp is not a DP of site CEN/);
    await refused('tkb-dp1', 400, 'bad_request', /^DP tkb-dp1 belongs to site TKB, not to CEN: ask TKB/);
    await refused('TKB', 400, 'bad_request', /^TKB is a site, not a DP of CEN$/);
    await refused('CEN', 400, 'bad_request', /^CEN is this site's local DP/);
    await refused('tk-dp2', 503, 'unavailable', /^DP tk-dp2 has not told site CEN its address yet/);
    await refused('tk-dp1', 403, 'forbidden', /needs operate/, reader);
  });

  it("refuses a parcel carrying its package signed by a child site's vouched key, and stores nothing", async () => {
    // EUR is a real site of the hierarchy: its certificate from CEN is valid, its key trusted.
    const eur = generateSiteKey('EUR');
    const certificate = issueCertificate(ctx.key, {
      code: 'EUR',
      name: 'Europe',
      parent: 'CEN',
      keyId: eur.keyId,
      publicKey: publicKeyPem(eur.publicKey),
      issuedAt: now.toISOString(),
    });
    const raw = crypto.randomBytes(5000);
    const stored = encodeChunk(raw);
    const parcelOf = (id: string, origin: string) => {
      const manifest: Manifest = {
        format: 1,
        id,
        version: 3,
        name: 'forged',
        priority: 'medium',
        origin,
        created: now.toISOString(),
        programs: [{ name: 'Install', command: 'setup.sh' }],
        files: [{ type: 'file', path: 'setup.sh', mode: 0o755, size: raw.length, chunks: [[sha(raw), raw.length]] }],
        bytes: raw.length,
      };
      const plan: ParcelPlan = {
        parcel: crypto.randomUUID(),
        created: now.toISOString(),
        source: 'EUR',
        destination: 'CEN',
        full: true,
        packages: [
          {
            id,
            version: 3,
            bytes: raw.length,
            manifest: signManifest(manifest, eur),
            certificate: Buffer.from(JSON.stringify(certificate)),
          },
        ],
        chunks: [{ digest: sha(raw), stored: stored.length, size: raw.length }],
        signer: { keyId: eur.keyId, certificate },
      };
      return plan;
    };
    const bytesOf = async (plan: ParcelPlan) => {
      const parts: Uint8Array[] = [];
      for await (const b of writeParcel(
        plan,
        async () => stored,
        (bytes) => crypto.sign(null, bytes, eur.privateKey),
      ))
        parts.push(b);
      return new Uint8Array(Buffer.concat(parts));
    };
    for (const [id, origin] of [
      ['CEN00001', 'EUR'],
      ['CEN00001', 'CEN'],
    ] as const) {
      const r = await call('POST', '/api/v1/courier/import', admin, await bytesOf(parcelOf(id, origin)));
      expect(r.status).toBe(422);
      expect(await json(r)).toEqual({
        error: { code: 'bad_signature', message: expect.stringMatching(/CEN00001 belongs to site CEN, .*signed by site EUR's key/) },
      });
      expect(await ctx.store.getVersion('CEN00001', 3)).toBeUndefined();
    }
    // The same key and certificate carry EUR's own package: the refusal is the binding, not the key.
    const own = await call('POST', '/api/v1/courier/import', admin, await bytesOf(parcelOf('EUR00001', 'EUR')));
    expect(own.status).toBe(200);
    expect(await ctx.store.getVersion('EUR00001', 3)).toBeDefined();
  });

  it('a DP documents its courier import with the ticket as security, and asks for one before reading the body', async () => {
    const dp = createApp({ ...ctx, metrics: new Metrics() }, 'dp');
    const doc = await json(await dp.request('/api/v1/openapi.json'));
    expect(doc.info.title).toBe('Cascade distribution point API');
    expect(doc.paths['/api/v1/courier/import'].post.security).toEqual([{ ticket: [] }]);
    expect(doc.components.securitySchemes.ticket).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(doc.paths['/api/v1/courier/waiting']).toBeDefined();
    expect(doc.paths['/api/v1/courier/export']).toBeUndefined();
    expect(doc.paths['/api/v1/courier/dp-tickets']).toBeUndefined();
    const r = await dp.request('/api/v1/courier/import', { method: 'POST', body: new Uint8Array(64) });
    expect(r.status).toBe(401);
    expect((await json(r)).error.message).toMatch(/needs an import ticket from the DP's site/);
    // Only the import is ticketed: the DP's other calls still need its site's credential.
    const w = await dp.request('/api/v1/courier/waiting', { method: 'POST', body: '{}' });
    expect(w.status).toBe(401);
    expect((await json(w)).error.message).toMatch(/needs a bearer token/);
  });

  it('documents the error envelope as the Error component, on every error response of every route', async () => {
    const doc = await json(await call('GET', '/api/v1/openapi.json', null));
    expect(doc.components.schemas.Error).toMatchObject({
      type: 'object',
      required: ['error'],
      properties: {
        error: {
          type: 'object',
          required: ['code', 'message'],
          properties: { code: { type: 'string', enum: Object.keys(ERROR_CODES) }, message: { type: 'string' } },
        },
      },
    });
    let operations = 0;
    type Res = { description: string; content?: Record<string, { schema: unknown }> };
    for (const [p, ops] of Object.entries(doc.paths as Record<string, Record<string, { responses: Record<string, Res> }>>)) {
      for (const [method, op] of Object.entries(ops)) {
        operations++;
        const errors = Object.entries(op.responses).filter(([status]) => Number(status) >= 400);
        expect(errors.length, `${method} ${p} documents its errors`).toBeGreaterThan(0);
        expect(Object.keys(op.responses), `${method} ${p}`).toContain('500');
        for (const [status, res] of errors) {
          expect(res.content?.['application/json']?.schema, `${method} ${p} ${status}`).toEqual({ $ref: '#/components/schemas/Error' });
        }
      }
    }
    expect(operations).toBeGreaterThan(10);
    // The shared statuses, and a route's own description of one where it has more to say.
    const create = doc.paths['/api/v1/packages'].post.responses;
    for (const status of ['400', '401', '403', '404', '409', '413', '422', '500', '503']) expect(create).toHaveProperty(status);
    expect(create['409'].description).toMatch(/missing_chunks/);
    expect(doc.paths['/api/v1/chunks'].post.responses['422'].description).toMatch(/chunk_mismatch/);
  });

  it('documents every route it serves in the OpenAPI document', async () => {
    const doc = await json(await call('GET', '/api/v1/openapi.json', null));
    const documented = new Set<string>();
    for (const [p, ops] of Object.entries(doc.paths as Record<string, Record<string, unknown>>)) {
      for (const m of Object.keys(ops)) documented.add(`${m.toUpperCase()} ${p}`);
    }
    const served = app.routes
      .filter((r) => r.path.startsWith('/api/v1/') && r.method !== 'ALL' && r.path !== '/api/v1/openapi.json')
      .map((r) => `${r.method} ${r.path.replace(/:(\w+)/g, '{$1}')}`);
    expect(served.length).toBeGreaterThan(10);
    for (const s of served) expect(documented).toContain(s);
  });
});

/**
 * Two site servers sharing one database file and one content library, as several site-server
 * processes share one store when scaled out: each has its own connection, so their
 * transactions really overlap (one Store's transactions never do: it has one connection).
 */
describe('two site servers sharing one store (in-process)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-app2-'));
  const key = generateSiteKey('CEN');
  const stores: Store[] = [];
  const apps: App[] = [];
  let library: ContentLibrary;
  let ctx: SiteContext;
  let token: string;
  /** The next writeManifest call waits on this (when set) before it writes. */
  let gate: Promise<unknown> | undefined;

  beforeAll(async () => {
    library = new ContentLibrary(path.join(dir, 'content'));
    await library.init();
    const write = library.writeManifest.bind(library);
    library.writeManifest = async (id, version, bytes) => {
      const g = gate;
      gate = undefined;
      if (g) await g;
      return write(id, version, bytes);
    };
    for (let i = 0; i < 2; i++) {
      const store = await Store.open({ url: path.join(dir, 'cascade.db'), dataDir: dir });
      stores.push(store);
      ctx = {
        store,
        library,
        key,
        trusted: [{ keyId: key.keyId, publicKeyPem: publicKeyPem(key.publicKey), site: 'CEN' }],
        code: 'CEN',
        name: 'Central',
        clock: () => new Date(),
        log: silentLogger(),
      };
      apps.push(createApp({ ...ctx, metrics: new Metrics() }));
    }
    token = (await (stores[0] as Store).createToken('admin', 'test')).secret;
  });
  afterAll(async () => {
    for (const s of stores) await s.close();
    await closePool();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const call = (app: App, method: string, p: string, body?: unknown) =>
    app.request(p, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body !== undefined && !(body instanceof Uint8Array) ? { 'content-type': 'application/json' } : {}),
      },
      ...(body === undefined ? {} : { body: body instanceof Uint8Array ? body : JSON.stringify(body) }),
    });
  const sha = (b: Uint8Array) => crypto.createHash('sha256').update(b).digest('hex');
  const fileOf = (name: string, data: Buffer) => ({
    type: 'file',
    path: name,
    mode: 0o644,
    size: data.length,
    chunks: [[sha(data), data.length]],
  });

  it('of two racing commits of the next version, only the winner writes the manifest file', async () => {
    const app0 = apps[0] as App;
    const app1 = apps[1] as App;
    const data = crypto.randomBytes(10_000);
    const rec = Buffer.concat([encodeRecordHeader(RECORD_WHOLE, sha(data), data.length), data]);
    expect((await call(app0, 'POST', '/api/v1/chunks', new Uint8Array(rec))).status).toBe(200);
    let r = await call(app0, 'POST', '/api/v1/packages', { name: 'Race', files: [fileOf('v1.bin', data)] });
    expect(r.status).toBe(201);
    const { id } = (await r.json()) as { id: string };

    // Both read version 1 as the latest and make version 2. The first to reach its manifest
    // write waits until the other commit has settled, so a loser that wrote its manifest before
    // its insert failed would overwrite the winner's file.
    let settleOther: (v?: unknown) => void = () => {};
    gate = Promise.race([new Promise((resolve) => (settleOther = resolve)), new Promise((resolve) => setTimeout(resolve, 2000))]);
    const commits = [
      call(app0, 'POST', `/api/v1/packages/${id}/versions`, { name: 'Race A', files: [fileOf('a.bin', data)] }),
      call(app1, 'POST', `/api/v1/packages/${id}/versions`, { name: 'Race B', files: [fileOf('b.bin', data)] }),
    ];
    for (const c of commits) Promise.resolve(c).finally(() => settleOther());
    const results = await Promise.all(commits);
    const statuses = results.map((x) => x.status).sort();
    // The loser gets an error (conflict, or the database's busy error on SQLite), never a version.
    expect(statuses[0]).toBe(201);
    expect(statuses[1]).toBeGreaterThanOrEqual(400);

    r = await call(app0, 'GET', `/api/v1/packages/${id}`);
    const shown = (await r.json()) as { version: number; name: string; manifestDigest: string };
    expect(shown.version).toBe(2);
    const row = await (stores[0] as Store).getVersion(id, 2);
    const stored = verifyManifest(await library.readManifest(id, 2), ctx.trusted);
    expect(manifestDigest(stored.manifest)).toBe(row?.manifestDigest);
    expect(stored.manifest.name).toBe(shown.name);
  });

  it('after deleting the latest version, the next update gets a new number', async () => {
    const app0 = apps[0] as App;
    const data = crypto.randomBytes(5_000);
    const rec = Buffer.concat([encodeRecordHeader(RECORD_WHOLE, sha(data), data.length), data]);
    expect((await call(app0, 'POST', '/api/v1/chunks', new Uint8Array(rec))).status).toBe(200);
    const files = [fileOf('x.bin', data)];
    let r = await call(app0, 'POST', '/api/v1/packages', { name: 'Forward', files });
    const { id } = (await r.json()) as { id: string };
    r = await call(app0, 'POST', `/api/v1/packages/${id}/versions`, { files });
    expect(((await r.json()) as { version: number }).version).toBe(2);
    r = await call(app0, 'DELETE', `/api/v1/packages/${id}?version=2`);
    expect(r.status).toBe(200);
    // Latest is the highest version left.
    r = await call(app0, 'GET', `/api/v1/packages/${id}`);
    expect(await r.json()).toMatchObject({ version: 1, versions: [1] });
    r = await call(app0, 'POST', `/api/v1/packages/${id}/versions`, { files });
    expect(r.status).toBe(201);
    expect(((await r.json()) as { version: number }).version).toBe(3);
    r = await call(app0, 'GET', `/api/v1/packages/${id}`);
    expect(await r.json()).toMatchObject({ version: 3, versions: [1, 3] });
    r = await call(app0, 'GET', '/api/v1/packages');
    const listed = ((await r.json()) as { packages: { id: string; version: number }[] }).packages.find((p) => p.id === id);
    expect(listed?.version).toBe(3);
  });
});
