import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  addMessages,
  addTarget,
  listMessages,
  listTargets,
  pruneMessages,
  queueTransfer,
  updateTarget,
  updateTransfer,
} from './distribution.js';
import { Store } from './store.js';

describe('distribution repository', () => {
  let store: Store;
  let now = new Date('2026-01-01T00:00:00Z');
  beforeAll(async () => {
    store = await Store.open({ url: ':memory:', dataDir: fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-dist-')), clock: () => now });
  });
  afterAll(async () => {
    await store.close();
  });

  it('carries a version once per route, widening targets, and reopens only when asked or for new targets', async () => {
    const a = await queueTransfer(store, {
      packageId: 'CEN00001',
      version: 1,
      child: 'EUR',
      priority: 'low',
      targets: ['EUR'],
      bytesTotal: 10,
    });
    const b = await queueTransfer(store, {
      packageId: 'CEN00001',
      version: 1,
      child: 'EUR',
      priority: 'low',
      targets: ['BER'],
      bytesTotal: 10,
    });
    expect(b.id).toBe(a.id);
    expect(b.targets).toEqual(['BER', 'EUR']);
    await updateTransfer(store, a.id, { state: 'done' });
    const same = await queueTransfer(store, {
      packageId: 'CEN00001',
      version: 1,
      child: 'EUR',
      priority: 'low',
      targets: ['EUR'],
      bytesTotal: 10,
    });
    expect(same.state).toBe('done');
    const again = await queueTransfer(store, {
      packageId: 'CEN00001',
      version: 1,
      child: 'EUR',
      priority: 'low',
      targets: ['EUR'],
      bytesTotal: 10,
      reopen: true,
    });
    expect(again.state).toBe('queued');
  });

  it('sets a failed target pending again when it is distributed again, and leaves others alone', async () => {
    await addTarget(store, { packageId: 'CEN00002', version: 1, site: 'EUR', via: 'EUR', bytesTotal: 5 });
    await addTarget(store, { packageId: 'CEN00002', version: 1, site: 'BER', via: 'EUR', bytesTotal: 5 });
    await updateTarget(store, 'CEN00002', 1, 'EUR', { state: 'failed', lastError: 'bad_signature', retries: 3 });
    await updateTarget(store, 'CEN00002', 1, 'BER', { state: 'installed' });
    expect(await addTarget(store, { packageId: 'CEN00002', version: 1, site: 'EUR', via: 'EUR', bytesTotal: 5 })).toBe(false);
    await addTarget(store, { packageId: 'CEN00002', version: 1, site: 'BER', via: 'EUR', bytesTotal: 5 });
    const t = await listTargets(store, { packageId: 'CEN00002' });
    expect(t.map((x) => [x.site, x.state, x.retries, x.lastError])).toEqual([
      ['BER', 'installed', 0, null],
      ['EUR', 'pending', 0, null],
    ]);
  });

  it('prunes old messages: below the central site only those already forwarded', async () => {
    const m = (id: string, time: string) => ({
      id,
      time,
      site: 'EUR',
      component: 'x',
      severity: 'info' as const,
      code: 'c',
      text: 't',
      packageId: null,
    });
    await addMessages(store, [m('old-sent', '2025-01-01T00:00:00Z')], true);
    await addMessages(store, [m('old-kept', '2025-01-02T00:00:00Z'), m('new', '2026-01-01T00:00:00Z')]);
    expect(await pruneMessages(store, '2025-12-01T00:00:00Z', false)).toBe(1);
    expect((await listMessages(store)).map((x) => x.id).sort()).toEqual(['new', 'old-kept']);
    expect(await pruneMessages(store, '2025-12-01T00:00:00Z', true)).toBe(1);
    expect((await listMessages(store)).map((x) => x.id)).toEqual(['new']);
    now = new Date();
  });
});
