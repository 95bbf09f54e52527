import { describe, expect, it } from 'vitest';
import { parseCidr } from '../core/cidr.js';
import { parseRule } from '../core/rule.js';
import { allowedDps, memberships, offeredVersion } from './clients.js';
import type { DpView, Snapshot } from './policy.js';

const dp = (name: string, site: string, held: number[] = [], above = false): DpView => ({
  name,
  site,
  url: `http://${name}`,
  held: held.map((version) => ({ packageId: 'CEN00001', version })),
  state: 'online',
  above,
});

const snap = (o: Partial<Snapshot>): Snapshot => ({
  at: 0,
  collections: new Map(),
  advertisements: new Map(),
  adsByCollection: new Map(),
  boundaries: [],
  deletions: new Map(),
  dps: new Map(),
  central: 'CEN',
  cycleSeconds: 3600,
  settings: {
    clientCycleSeconds: 3600,
    downloadSlots: null,
    dpDownloadSlots: null,
    clientRate: null,
    slotTimeoutSeconds: 120,
    staleAfterSeconds: 3600,
  },
  certificates: new Map(),
  ...o,
});

const boundary = (site: string, cidr: string, dps: string[] = []) => ({ body: { site, cidr, dps }, origin: 'CEN', cidr: parseCidr(cidr) });

describe('the DPs a client may use', () => {
  const dps = new Map(
    [dp('BER', 'BER', [1]), dp('ber-dp1', 'BER', [1, 2]), dp('ber-dp2', 'BER'), dp('CEN', 'CEN', [2], true)].map((d) => [d.name, d]),
  );

  it('without boundaries: every DP of its site', () => {
    expect(allowedDps(snap({ dps }), 'BER', ['10.1.2.3'], false).dps.map((d) => d.name)).toEqual(['BER', 'ber-dp1', 'ber-dp2']);
  });

  it('most specific boundary first, then the others holding an address; outside: none, unless fallback', () => {
    const s = snap({
      dps,
      boundaries: [boundary('BER', '10.0.0.0/8', ['ber-dp2']), boundary('BER', '10.1.0.0/16', ['ber-dp1']), boundary('LON', '10.1.0.0/16')],
    });
    const a = allowedDps(s, 'BER', ['10.1.2.3'], false);
    expect(a.boundary).toBe('10.1.0.0/16');
    expect(a.dps.map((d) => [d.name, d.rank])).toEqual([
      ['ber-dp1', 0],
      ['ber-dp2', 1],
    ]);
    const outside = allowedDps(s, 'BER', ['192.168.1.1'], false);
    expect(outside).toEqual({ boundary: null, dps: [] });
    expect(allowedDps(s, 'BER', ['192.168.1.1'], true).dps.map((d) => [d.name, d.rank])).toEqual([
      ['BER', 100],
      ['ber-dp1', 100],
      ['ber-dp2', 100],
      ['CEN', 200],
    ]);
  });

  it('offers the newest version a usable DP holds, or the pinned one', () => {
    const list = [...dps.values()];
    expect(offeredVersion({ packageId: 'CEN00001', version: null }, list.slice(0, 1))).toBe(1);
    expect(offeredVersion({ packageId: 'CEN00001', version: null }, list)).toBe(2);
    expect(offeredVersion({ packageId: 'CEN00001', version: 1 }, list)).toBe(1);
    expect(offeredVersion({ packageId: 'CEN00001', version: 3 }, list)).toBeNull();
    expect(offeredVersion({ packageId: 'CEN00002', version: null }, list)).toBeNull();
  });
});

describe('collection membership', () => {
  const col = (name: string, o: { clients?: string[]; rule?: string; include?: string[]; exclude?: string[] }) =>
    [
      name.toLowerCase(),
      {
        body: { name, clients: o.clients ?? [], rule: o.rule ?? null, include: o.include ?? [], exclude: o.exclude ?? [] },
        origin: 'CEN',
        rule: o.rule ? parseRule(o.rule) : null,
        window: null,
        updatedAt: '',
      },
    ] as const;
  const inv = (id: string, hostname: string) => ({
    id,
    site: 'BER',
    hostname,
    os: 'linux',
    arch: 'x64',
    version: '1',
    addresses: [],
    freeDisk: null,
    linkSpeed: null,
  });
  const s = snap({
    collections: new Map([
      col('Servers', { rule: 'hostname like "srv-%"' }),
      col('Pilot', { clients: ['BER-000009'] }),
      col('Linux', { rule: 'os = "linux"', exclude: ['Servers'] }),
      col('Wave', { include: ['Pilot', 'Linux'], exclude: ['Servers'] }),
      col('LoopA', { include: ['LoopB'] }),
      col('LoopB', { include: ['LoopA'] }),
    ]),
  });

  it('adds IDs, rules and includes, and takes out exclusions', () => {
    expect(memberships(s, inv('BER-000001', 'ws-1')).sort()).toEqual(['linux', 'wave']);
    expect(memberships(s, inv('BER-000002', 'srv-1')).sort()).toEqual(['servers']);
    expect(memberships(s, inv('BER-000009', 'srv-9')).sort()).toEqual(['pilot', 'servers']);
  });
});

describe('client states going up in bounded reports', () => {
  it('sends every change once, oldest first, about `limit` at a time, never passing over one', async () => {
    const { Store } = await import('../store/store.js');
    const { insertClient, putClientStates } = await import('../store/clients.js');
    const { clientSyncSince } = await import('./clients.js');
    const fs = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-sync-'));
    // A clock that repeats each instant ten times: changes share their time stamps.
    let tick = 0;
    const clock = () => new Date(Date.UTC(2026, 0, 1) + Math.floor(tick++ / 10));
    const store = await Store.open({ dataDir: dir, clock });
    try {
      const inv = { hostname: 'h', os: 'linux', arch: 'x64', version: '0.1.0', addresses: [], freeDisk: null, linkSpeed: null };
      await store.transaction(async (tx) => {
        for (let i = 0; i < 250; i++) {
          const id = `BER-${String(i).padStart(6, '0')}`;
          await insertClient(tx, { id, site: 'BER', credential: null, inventory: inv, boundary: null, dps: [] });
          await putClientStates(tx, [
            {
              client: id,
              advertisement: 'CEN-A00001',
              packageId: 'CEN00001',
              version: 1,
              state: 'succeeded',
              bytesDone: 1,
              bytesTotal: 1,
              exitCode: 0,
              output: null,
              detail: null,
              at: '2026-01-01T00:00:00.000Z',
            },
          ]);
        }
      });
      const ctx = { store } as unknown as Parameters<typeof clientSyncSince>[0];
      let mark = '';
      const clients: string[] = [];
      const states: string[] = [];
      let rounds = 0;
      for (;;) {
        const r = await clientSyncSince(ctx, mark, 64);
        if (r.clients.length === 0 && r.states.length === 0) break;
        expect(r.clients.length).toBeLessThanOrEqual(64);
        expect(r.newest > mark).toBe(true);
        clients.push(...r.clients.map((c) => c.id));
        states.push(...r.states.map((s) => s.client));
        mark = r.newest;
        rounds++;
      }
      expect(new Set(clients).size).toBe(250);
      expect(clients).toHaveLength(250);
      expect(states).toHaveLength(250);
      expect(rounds).toBeGreaterThanOrEqual(4);
      // More changes at one instant than the limit: that instant goes whole.
      // (Each instant holds five clients and their five states.)
      const many = await clientSyncSince(ctx, '', 3);
      expect([many.clients.length, many.states.length]).toEqual([5, 5]);
    } finally {
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
