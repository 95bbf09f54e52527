import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addTarget, dropTransferTargets, listTransfers, queueTransfer } from './distribution.js';
import { addMembers, createGroup, deleteGroup, getGroup, listGroups, removeMembers } from './dps.js';
import { Store } from './store.js';

/** On SQLite, and on PostgreSQL when CASCADE_TEST_PG names a database. */
const backends = [
  ['sqlite', undefined],
  ...(process.env.CASCADE_TEST_PG ? [['postgres', process.env.CASCADE_TEST_PG] as const] : []),
] as const;

describe.each(backends)('DPs and DP groups (%s)', (_name, url) => {
  let store: Store;
  beforeAll(async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-dps-'));
    store = await Store.open({ url: url ?? ':memory:', dataDir: dir });
    if (url) {
      for (const t of ['dp_group_members', 'dp_groups', 'transfers', 'targets']) await store.db.deleteFrom(t as 'dp_groups').execute();
      await store.db.deleteFrom('sites').where('code', 'in', ['EUR', 'eur-dp1', 'ber-dp1']).execute();
    }
    const site = { name: 'x', url: null, keyId: 'k', publicKey: 'p', certificate: null, outboundToken: null };
    await store.insertSite({ ...site, code: 'EUR', parent: null, relation: 'child' });
    await store.insertSite({ ...site, code: 'eur-dp1', parent: 'EUR', relation: 'dp-below' });
    await store.insertSite({ ...site, code: 'ber-dp1', parent: 'CEN', relation: 'dp' });
  });
  afterAll(async () => {
    await store.close();
  });

  it('keeps DPs apart from sites, with the state they report', async () => {
    expect((await store.listSites()).map((s) => s.code)).toContain('EUR');
    expect((await store.listSites()).map((s) => s.code)).not.toContain('eur-dp1');
    expect((await store.listDps()).map((s) => s.code).sort()).toEqual(['ber-dp1', 'eur-dp1']);
    await store.setDpState('eur-dp1', { freeBytes: 5e12, totalBytes: 8e12, held: [{ packageId: 'CEN00001', version: 2 }], at: 'now' });
    const d = await store.getSite('eur-dp1');
    expect(d).toMatchObject({ freeBytes: 5e12, totalBytes: 8e12, held: [{ packageId: 'CEN00001', version: 2 }], stateAt: 'now' });
    await expect(
      store.insertSite({
        code: 'eur-dp1',
        name: 'x',
        parent: 'CEN',
        relation: 'dp',
        url: null,
        keyId: 'k',
        publicKey: 'p',
        certificate: null,
        outboundToken: null,
      }),
    ).rejects.toThrow(/DP name eur-dp1 is already taken/);
  });

  it('creates, changes and deletes groups', async () => {
    await createGroup(store, 'pilot', ['eur-dp1', 'eur-dp1', 'ber-dp1']);
    await expect(createGroup(store, 'pilot', [])).rejects.toThrow(/already exists/);
    await addMembers(store, 'pilot', ['EUR']);
    await removeMembers(store, 'pilot', ['ber-dp1']);
    expect((await getGroup(store, 'pilot'))?.members).toEqual(['EUR', 'eur-dp1']);
    expect((await listGroups(store)).map((g) => g.name)).toEqual(['pilot']);
    expect(await deleteGroup(store, 'pilot')).toBe(true);
    expect(await getGroup(store, 'pilot')).toBeUndefined();
    expect(await deleteGroup(store, 'pilot')).toBe(false);
  });

  it('keeps group names unique regardless of case, finds them in any case, keeps the first spelling', async () => {
    await createGroup(store, 'Berlin', ['ber-dp1']);
    await expect(createGroup(store, 'berlin', [])).rejects.toThrow(
      'DP group Berlin already exists (names are unique regardless of case); add DPs to it with "cascade dp-group add Berlin"',
    );
    expect((await getGroup(store, 'BERLIN'))?.name).toBe('Berlin');
    expect((await getGroup(store, 'berlin'))?.members).toEqual(['ber-dp1']);
    expect((await listGroups(store)).map((g) => g.name)).toEqual(['Berlin']);
    expect(await deleteGroup(store, 'bErLiN')).toBe(true);
    expect(await getGroup(store, 'Berlin')).toBeUndefined();
  });

  it('takes undistributed targets out of open transfers; one left with none is done', async () => {
    await addTarget(store, { packageId: 'CEN00001', version: 1, site: 'eur-dp1', via: 'EUR', bytesTotal: 1 });
    await queueTransfer(store, {
      packageId: 'CEN00001',
      version: 1,
      child: 'EUR',
      priority: 'low',
      targets: ['EUR', 'eur-dp1'],
      bytesTotal: 1,
    });
    await dropTransferTargets(store, 'CEN00001', 1, ['eur-dp1']);
    expect((await listTransfers(store, { child: 'EUR' }))[0]).toMatchObject({ targets: ['EUR'], state: 'queued' });
    await dropTransferTargets(store, 'CEN00001', 1, ['EUR']);
    expect((await listTransfers(store, { child: 'EUR' }))[0]).toMatchObject({ targets: [], state: 'done' });
  });
});
