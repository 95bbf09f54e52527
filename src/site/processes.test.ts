import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { lockFolder } from '../lib/instance.js';
import { createLogger } from '../lib/log.js';
import { writeSiteConfig } from '../lib/site-config.js';
import { Store } from '../store/store.js';
import { clientAddress } from './clients.js';
import type { SiteContext } from './context.js';
import { joinProcesses, Leases, processView, runningProcesses } from './processes.js';

const log = createLogger({ name: 'test', level: 'silent' });

describe('leases among the processes of a site', () => {
  let dir: string;
  let store: Store;
  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-leases-'));
    store = await Store.open({ dataDir: dir });
    process.env.CASCADE_LEASE_SECONDS = '1';
  });
  afterEach(async () => {
    delete process.env.CASCADE_LEASE_SECONDS;
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('gives a lease to one process at a time; another takes it once the holder stops renewing', async () => {
    const a = new Leases(store, 'paaaaaaaaaa', log);
    const b = new Leases(store, 'pbbbbbbbbbb', log);
    expect(await a.claim('route:BER')).toBe(true);
    expect(await b.claim('route:BER')).toBe(false);
    // Renewed, a lease stays with its holder past its life.
    await new Promise((r) => setTimeout(r, 600));
    await a.renew();
    await new Promise((r) => setTimeout(r, 600));
    expect(await b.claim('route:BER')).toBe(false);
    // Not renewed (the holder died): it expires and the other takes it; the old holder learns it lost it.
    const lost: string[] = [];
    a.onLost((n) => lost.push(n));
    await new Promise((r) => setTimeout(r, 1100));
    expect(await b.claim('route:BER')).toBe(true);
    await a.renew();
    expect(lost).toEqual(['route:BER']);
    expect(a.holds('route:BER')).toBe(false);
  });

  it('hands the work over at once on a clean stop, and lists each process with what it holds', async () => {
    await joinProcesses(store, { id: 'paaaaaaaaaa', url: 'http://127.0.0.1:1', release: '0.1.0' });
    await joinProcesses(store, { id: 'pbbbbbbbbbb', url: 'http://127.0.0.1:2', release: '0.1.0' });
    const a = new Leases(store, 'paaaaaaaaaa', log);
    const b = new Leases(store, 'pbbbbbbbbbb', log);
    expect(await a.claim('report')).toBe(true);
    const view = await processView({ store });
    expect(view.map((p) => [p.id, p.state, p.holds])).toEqual([
      ['paaaaaaaaaa', 'running', ['report']],
      ['pbbbbbbbbbb', 'running', []],
    ]);
    expect(await runningProcesses(store, 'pbbbbbbbbbb')).toEqual(new Set(['paaaaaaaaaa']));
    await a.stop();
    expect(await b.claim('report')).toBe(true);
    expect((await processView({ store })).find((p) => p.id === 'paaaaaaaaaa')?.state).toBe('stopped');
    expect(await runningProcesses(store, 'pbbbbbbbbbb')).toEqual(new Set());
  });
});

describe('one process per data folder', () => {
  it('refuses a second holder, names the first, and frees the lock when released', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-lock-'));
    const first = await lockFolder(dir, { pid: 1234, url: 'http://127.0.0.1:8100', shared: false });
    expect('release' in first).toBe(true);
    const second = await lockFolder(dir, { pid: 5678, url: 'http://127.0.0.1:8101', shared: false });
    expect(second).toEqual({ heldBy: { pid: 1234, url: 'http://127.0.0.1:8100', shared: false } });
    if ('release' in first) await first.release();
    const third = await lockFolder(dir, { pid: 5678, url: 'http://127.0.0.1:8101', shared: false });
    expect('release' in third).toBe(true);
    if ('release' in third) await third.release();
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

describe('the address a client called from', () => {
  it('believes X-Forwarded-For only from a trusted proxy, and takes the last hop that is not one', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-proxy-'));
    writeSiteConfig(dir, { code: 'CEN', name: 'CEN', trustedProxies: ['10.0.0.0/24'] });
    const ctx = { process: { dataDir: dir, switchRelease: null } } as unknown as SiteContext;
    expect(clientAddress(ctx, '10.0.0.5', '192.168.7.20')).toBe('192.168.7.20');
    // A client that writes the header itself cannot pick its address: the proxy appends the real one.
    expect(clientAddress(ctx, '10.0.0.5', '1.2.3.4, 192.168.7.20')).toBe('192.168.7.20');
    expect(clientAddress(ctx, '10.0.0.5', '192.168.7.20, 10.0.0.9')).toBe('192.168.7.20');
    expect(clientAddress(ctx, '192.168.7.20', '1.2.3.4')).toBe('192.168.7.20');
    expect(clientAddress(ctx, '10.0.0.5', 'not-an-address')).toBe('10.0.0.5');
    expect(clientAddress(ctx, '10.0.0.5', undefined)).toBe('10.0.0.5');
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
