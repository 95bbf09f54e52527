import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import { getClient, insertClient, noteClientsSeen } from './clients.js';
import { sqlitePath } from './db.js';
import { Store } from './store.js';

/** SQLite's two helpers of a server's store: the relaxed connection and the checkpoint thread. */
describe('SQLite store helpers', () => {
  const dirs: string[] = [];
  const stores: Store[] = [];
  const open = async (checkpointer: boolean) => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-db-'));
    dirs.push(dataDir);
    const store = await Store.open({ dataDir, checkpointer });
    stores.push(store);
    return { store, dataDir };
  };
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });

  it('last-seen times go through the relaxed connection, which answers "busy" instead of waiting for a transaction', async () => {
    const { store } = await open(false);
    const client = { site: 'CEN', credential: null, inventory: {}, boundary: null, dps: [] };
    await insertClient(store, { id: 'c1', ...client });
    await insertClient(store, { id: 'c2', ...client });
    expect(store.relaxed).toBeDefined();
    expect(await noteClientsSeen(store, ['c1', 'c2'], '2030-01-01T00:00:00.000Z')).toBe(true);
    expect((await getClient(store, 'c2'))?.lastSeen).toBe('2030-01-01T00:00:00.000Z');
    // The main connection holds the write lock across an await: the relaxed write gives up at once.
    let during: boolean | undefined;
    await store.transaction(async (tx) => {
      await tx.setMeta('k', 'v');
      during = await noteClientsSeen(store, ['c1'], '2031-01-01T00:00:00.000Z');
    });
    expect(during).toBe(false);
    expect((await getClient(store, 'c1'))?.lastSeen).toBe('2030-01-01T00:00:00.000Z');
  });

  it('the checkpoint thread copies the write-ahead log into the database file', async () => {
    const { store, dataDir } = await open(true);
    const file = sqlitePath(dataDir);
    const before = fs.statSync(file).size;
    // ~2 MiB of rows: under the main connection's own automatic checkpoint threshold (16 MiB).
    await store.transaction(async (tx) => {
      for (let i = 0; i < 200; i++) await tx.setMeta(`k${i}`, 'x'.repeat(10_000));
    });
    expect(fs.statSync(`${file}-wal`).size).toBeGreaterThan(2_000_000);
    const deadline = Date.now() + 5000;
    while (fs.statSync(file).size < before + 2_000_000 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(fs.statSync(file).size).toBeGreaterThan(before + 2_000_000);
  });

  it('without the thread the log stays in the WAL file until SQLite checkpoints by itself', async () => {
    const { store, dataDir } = await open(false);
    const file = sqlitePath(dataDir);
    const before = fs.statSync(file).size;
    await store.transaction(async (tx) => {
      for (let i = 0; i < 200; i++) await tx.setMeta(`k${i}`, 'x'.repeat(10_000));
    });
    await new Promise((r) => setTimeout(r, 600));
    expect(fs.statSync(file).size).toBeLessThan(before + 2_000_000);
  });
});

describe.skipIf(!process.env.CASCADE_TEST_PG)('PostgreSQL last-seen times', () => {
  it('are written in a transaction that does not wait for the log flush, and the setting stays in it', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-db-'));
    const store = await Store.open({ url: process.env.CASCADE_TEST_PG, dataDir });
    try {
      const ids = ['seen-pg-1', 'seen-pg-2'];
      await store.db.deleteFrom('clients').where('id', 'in', ids).execute();
      const client = { site: 'CEN', credential: null, inventory: {}, boundary: null, dps: [] };
      for (const id of ids) await insertClient(store, { id, ...client });
      expect(await noteClientsSeen(store, ids, '2030-01-01T00:00:00.000Z')).toBe(true);
      for (const id of ids) expect((await getClient(store, id))?.lastSeen).toBe('2030-01-01T00:00:00.000Z');
      // Every pooled connection still commits durably.
      const shown = await Promise.all(
        Array.from({ length: 10 }, () => sql<{ synchronous_commit: string }>`SHOW synchronous_commit`.execute(store.db)),
      );
      expect(new Set(shown.map((r) => r.rows[0]?.synchronous_commit))).toEqual(new Set(['on']));
      await store.db.deleteFrom('clients').where('id', 'in', ids).execute();
    } finally {
      await store.close();
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
