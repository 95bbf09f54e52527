import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ContentLibrary } from '../../src/content/library.js';
import { closePool } from '../../src/content/pool.js';
import { generateSiteKey, publicKeyPem } from '../../src/content/signing.js';
import { ERROR_CODES } from '../../src/core/errors.js';
import { silentLogger } from '../../src/lib/log.js';
import { Metrics } from '../../src/lib/metrics.js';
import { createApp } from '../../src/site/app.js';
import type { SiteContext } from '../../src/site/context.js';
import type { App } from '../../src/site/http.js';
import { Store } from '../../src/store/store.js';
import { anyJson, RUNS, SEED } from './fuzz.js';

/**
 * Every API body a caller can send, fuzzed: for each route of the site's OpenAPI document that
 * takes a body, random JSON (and bodies that are not JSON) with an admin token, in-process. The
 * answer is a 2xx or a 4xx with `{error: {code, message}}` of a catalogued code: never a 500.
 */
describe(`fuzzed API bodies (${RUNS} per route, seed ${SEED})`, () => {
  let app: App;
  let ctx: SiteContext;
  let admin: string;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-fuzz-api-'));

  beforeAll(async () => {
    const store = await Store.open({ url: ':memory:', dataDir: dir, clock: () => new Date() });
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
      clock: () => new Date(),
      log: silentLogger(),
    };
    await store.setMeta('site.code', 'CEN');
    app = createApp({ ...ctx, metrics: new Metrics() });
    admin = (await store.createToken('admin', 'fuzz')).secret;
  });
  afterAll(async () => {
    await ctx.store.close();
    await closePool();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('answers every body with a value or a catalogued error, never a 500', async () => {
    type Schema = { $ref?: string; properties?: Record<string, Schema>; type?: string | string[]; enum?: unknown[] };
    const doc = (await (await app.request('/api/v1/openapi.json')).json()) as {
      paths: Record<string, Record<string, { requestBody?: { content?: Record<string, { schema?: Schema }> } }>>;
      components?: { schemas?: Record<string, Schema> };
    };
    const resolve = (x: Schema | undefined): Schema | undefined =>
      x?.$ref ? doc.components?.schemas?.[x.$ref.replace('#/components/schemas/', '')] : x;
    const routes: { method: string; path: string; fields: [string, Schema][] }[] = [];
    for (const [p, ops] of Object.entries(doc.paths))
      for (const [method, op] of Object.entries(ops)) {
        const json = op.requestBody?.content?.['application/json'];
        if (!json) continue;
        const fields = Object.entries(resolve(json.schema)?.properties ?? {}).map(([k, v]) => [k, resolve(v) ?? {}] as [string, Schema]);
        routes.push({ method: method.toUpperCase(), path: p, fields });
      }
    expect(routes.length).toBeGreaterThan(20);
    const segment = fc.oneof(fc.constantFrom('CEN00001', 'CEN-A00001', 'CEN-000001', 'EUR', 'berlin', '1'), fc.string({ maxLength: 12 }));
    // Values that get past a field's first checks more often than random JSON does.
    const plausible = fc.oneof(
      fc.constantFrom(
        'CEN00001',
        'CEN',
        'EUR',
        'dp:cen-dp1',
        'site:CEN',
        'Everyone',
        'os != ""',
        '10.0.0.0/8',
        'now',
        '1h',
        'mon-fri 08-18',
        'admin',
        'dp',
        'Install',
      ),
      fc.integer({ min: -5, max: 100_000 }),
      fc.boolean(),
      fc.constant(null),
      fc.array(fc.constantFrom('dp:cen-dp1', 'CEN00001', 'Everyone', 'BER-000001'), { maxLength: 3 }),
    );
    const fieldValue = (f: Schema) =>
      f.enum ? fc.oneof(fc.constantFrom(...f.enum), plausible, anyJson()) : fc.oneof(plausible, anyJson());
    const bodyFor = (fields: [string, Schema][]) =>
      fc.oneof(
        anyJson().map((v) => JSON.stringify(v)),
        fc.string({ maxLength: 300 }),
        fc.dictionary(fc.string({ maxLength: 12 }), anyJson(), { maxKeys: 6 }).map((v) => JSON.stringify(v)),
        ...(fields.length > 0
          ? [fc.record(Object.fromEntries(fields.map(([k, f]) => [k, fieldValue(f)])), { requiredKeys: [] }).map((v) => JSON.stringify(v))]
          : []),
      );
    const codes = new Set(Object.keys(ERROR_CODES));
    let calls = 0;
    const statuses = new Map<number, number>();
    for (const r of routes) {
      await fc.assert(
        fc.asyncProperty(bodyFor(r.fields), segment, async (text, seg) => {
          const url = r.path.replace(/\{[^}]+\}/g, () => encodeURIComponent(seg) || 'x');
          const res = await app.request(url, {
            method: r.method,
            headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
            body: text,
          });
          calls++;
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
          const answer = await res.text();
          expect(res.status, `${r.method} ${url} ${text.slice(0, 200)} -> ${answer.slice(0, 300)}`).toBeLessThan(500);
          if (res.status >= 400) {
            const e = JSON.parse(answer) as { error: { code: string; message: string } };
            expect(codes.has(e.error.code), answer).toBe(true);
            expect(e.error.message).not.toContain('\n');
          }
        }),
        { numRuns: Math.max(10, Math.round(RUNS / 5)), seed: SEED },
      );
    }
    if (process.env.FUZZ_RUNS)
      process.stdout.write(
        `fuzz: API bodies: ${routes.length} routes, ${calls} calls, 0 answers of 500 (statuses: ${[...statuses]
          .sort()
          .map(([k, n]) => `${k} ${n}`)
          .join(', ')})\n`,
      );
  }, 600_000);
});
