import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { GroupCommit } from './group-commit.js';
import { Store } from './store.js';

describe('group commit', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-group-'));
  let store: Store;
  afterAll(async () => {
    await store?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('commits writes that arrive together in few transactions, each committed when its promise settles', async () => {
    store = await Store.open({ dataDir: dir });
    const g = new GroupCommit(store);
    let transactions = 0;
    const real = store.relaxedTransaction.bind(store);
    store.relaxedTransaction = ((fn) => {
      transactions++;
      return real(fn);
    }) as Store['relaxedTransaction'];
    await Promise.all(Array.from({ length: 50 }, (_, i) => g.run((tx) => tx.setMeta(`k${i}`, String(i)))));
    // The first write goes alone; the other 49 arrived meanwhile and go in one more.
    expect(transactions).toBe(2);
    for (let i = 0; i < 50; i++) expect(await store.getMeta(`k${i}`)).toBe(String(i));
  });

  it('fails only the bad write of a group', async () => {
    const g = new GroupCommit(store);
    const results = await Promise.allSettled([
      g.run((tx) => tx.setMeta('a', '1')),
      g.run((tx) => tx.setMeta('b', '2')),
      g.run(async () => {
        throw new Error('bad write');
      }),
      g.run((tx) => tx.setMeta('c', '3')),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
    expect([await store.getMeta('a'), await store.getMeta('b'), await store.getMeta('c')]).toEqual(['1', '2', '3']);
  });
});
