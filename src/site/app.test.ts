import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeRecordHeader, RECORD_WHOLE } from '../content/batch.js';
import { ContentLibrary } from '../content/library.js';
import { verifyManifest } from '../content/manifest.js';
import { closePool } from '../content/pool.js';
import { generateSiteKey, publicKeyPem } from '../content/signing.js';
import { silentLogger } from '../lib/log.js';
import { Metrics } from '../lib/metrics.js';
import { Store } from '../store/store.js';
import { type App, createApp } from './app.js';
import type { SiteContext } from './content.js';

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
      trusted: [{ keyId: key.keyId, publicKeyPem: publicKeyPem(key.publicKey) }],
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
