import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { cascade, makeSource, startSite, tmpDir } from './helpers.js';

const admin = process.env.CASCADE_TEST_PG;
if (!admin) console.warn('PostgreSQL e2e skipped: set CASCADE_TEST_PG (see .ci/postgres.sh)');

/** A site server whose store is PostgreSQL: the same commands, the same answers. */
describe.skipIf(!admin)('site on PostgreSQL', () => {
  const db = `cascade_e2e_${process.pid}_${crypto.randomBytes(3).toString('hex')}`;
  const url = (admin ?? '').replace(/\/[^/]*$/, `/${db}`);
  const sql = async (q: string) => {
    const c = new pg.Client({ connectionString: admin });
    await c.connect();
    try {
      await c.query(q);
    } finally {
      await c.end();
    }
  };
  afterAll(async () => {
    await sql(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  });

  it('inits, serves, survives a restart, and keeps the data in the database', async () => {
    await sql(`CREATE DATABASE ${db}`);
    const dir = path.join(tmpDir(), 'pgsite');
    const init = await cascade(['site', 'init', '--data', dir, '--code', 'PGS', '--db', url, '--json']);
    expect(init.stderr).toBe('');
    expect(JSON.parse(init.stdout)).toMatchObject({ code: 'PGS', db: 'postgres' });
    expect(fs.existsSync(path.join(dir, 'cascade.db'))).toBe(false);

    let site = await startSite(dir);
    expect(site.logs()).toContain('"db":"postgres"');
    const src = path.join(tmpDir(), 'src');
    makeSource(src, 11, 1 << 20);
    const created = JSON.parse((await cascade(['package', 'create', src, '--name', 'On PG', '--json'], { env: site.env })).stdout);
    expect(created).toMatchObject({ id: 'PGS00001', version: 1 });
    expect(await site.stop()).toBe(0);

    site = await startSite(dir);
    const show = JSON.parse((await cascade(['package', 'show', 'PGS00001', '--json'], { env: site.env })).stdout);
    expect(show).toMatchObject({ id: 'PGS00001', name: 'On PG', bytes: created.bytes });
    const v = JSON.parse((await cascade(['package', 'verify', 'PGS00001', '--json'], { env: site.env })).stdout);
    expect(v.ok).toBe(true);
    const out = path.join(tmpDir(), 'out');
    expect((await cascade(['package', 'fetch', 'PGS00001', out], { env: site.env })).code).toBe(0);
    expect(fs.readFileSync(path.join(out, 'sub/data.bin'))).toEqual(fs.readFileSync(path.join(src, 'sub/data.bin')));
    expect(await site.stop()).toBe(0);
  });
});
