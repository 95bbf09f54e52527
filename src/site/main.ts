import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { serve } from '@hono/node-server';
import { ContentLibrary } from '../content/library.js';
import { closePool } from '../content/pool.js';
import { generateSiteKey, loadSiteKey, publicKeyPem, saveSiteKey } from '../content/signing.js';
import { fail } from '../core/errors.js';
import { createLogger, type Logger } from '../lib/log.js';
import { Metrics } from '../lib/metrics.js';
import { Store } from '../store/store.js';
import { createApp } from './app.js';
import { parseListen, readSiteConfig, type SiteConfig, writeSiteConfig } from './config.js';
import { collectGarbage, type SiteContext } from './content.js';

export const DEFAULT_LISTEN = '127.0.0.1:8100';
export const ADMIN_TOKEN_FILE = 'admin-token';

export const libraryRoot = (dataDir: string): string => path.join(dataDir, 'content');

export interface InitResult {
  code: string;
  name: string;
  dataDir: string;
  keyId: string;
  adminTokenFile: string;
  db: string;
}

/** `cascade site init`: store, key pair, admin token (DIR/admin-token, mode 600), config. */
export async function initSite(opts: {
  dataDir: string;
  code: string;
  name?: string | undefined;
  db?: string | undefined;
}): Promise<InitResult> {
  const dataDir = path.resolve(opts.dataDir);
  if (fs.existsSync(path.join(dataDir, 'config.json'))) {
    throw fail('conflict', `${dataDir} already holds a site; use another --data folder or remove it first`);
  }
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const name = opts.name ?? opts.code;
  const store = await Store.open({ url: opts.db, dataDir });
  try {
    const existing = await store.getMeta('site.code');
    if (existing) throw fail('conflict', `the database already belongs to site ${existing}`);
    const key = generateSiteKey(opts.code);
    saveSiteKey(dataDir, key);
    await store.setMeta('site.code', opts.code);
    await store.setMeta('site.name', name);
    await store.setMeta('site.publicKey', publicKeyPem(key.publicKey));
    const token = await store.createToken('admin', 'initial admin');
    const tokenFile = path.join(dataDir, ADMIN_TOKEN_FILE);
    fs.writeFileSync(tokenFile, `${token.secret}\n`, { mode: 0o600 });
    await new ContentLibrary(libraryRoot(dataDir)).init();
    const cfg: SiteConfig = { code: opts.code, name, ...(opts.db ? { db: opts.db } : {}) };
    writeSiteConfig(dataDir, cfg);
    return { code: opts.code, name, dataDir, keyId: key.keyId, adminTokenFile: tokenFile, db: opts.db ? 'postgres' : 'sqlite' };
  } finally {
    await store.close();
  }
}

export interface RunningSite {
  url: string;
  ctx: SiteContext;
  close(): Promise<void>;
}

/** `cascade site start`: serves until `close()` (or SIGTERM in the CLI). */
export async function startSite(opts: {
  dataDir: string;
  listen?: string | undefined;
  db?: string | undefined;
  log?: Logger;
  gcIntervalMs?: number;
  clock?: () => Date;
}): Promise<RunningSite> {
  const dataDir = path.resolve(opts.dataDir);
  const cfg = readSiteConfig(dataDir);
  const log = opts.log ?? createLogger({ name: `site-${cfg.code}` });
  const { host, port } = parseListen(opts.listen ?? cfg.listen ?? DEFAULT_LISTEN);
  const clock = opts.clock ?? (() => new Date());
  const store = await Store.open({ url: opts.db ?? cfg.db, dataDir, clock });
  const code = await store.getMeta('site.code');
  if (code !== cfg.code) {
    await store.close();
    throw fail('invalid_config', `the database belongs to site ${code ?? '(none)'}, but ${dataDir} is site ${cfg.code}`);
  }
  const library = new ContentLibrary(libraryRoot(dataDir));
  await library.init();
  const key = loadSiteKey(dataDir, cfg.code);
  const metrics = new Metrics();
  const ctx: SiteContext = {
    store,
    library,
    key,
    trusted: [{ keyId: key.keyId, publicKeyPem: publicKeyPem(key.publicKey) }],
    code: cfg.code,
    name: cfg.name,
    clock,
    log,
  };
  metrics.gauge('cascade_process_resident_bytes', 'Resident set size of the site server.', () => process.memoryUsage().rss);
  const app = createApp({ ...ctx, metrics });

  const server = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: host, port }, () => resolve(s));
    s.once('error', (e: NodeJS.ErrnoException) =>
      reject(e.code === 'EADDRINUSE' ? fail('unavailable', `cannot listen on ${host}:${port}: the address is in use`) : e),
    );
  });
  // Slow links: a large upload may take long; only idle connections are cut.
  const http = server as unknown as import('node:http').Server;
  http.requestTimeout = 0;
  http.keepAliveTimeout = 65_000;
  const addr = server.address() as AddressInfo;
  const url = `http://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`;
  log.info({ url, site: cfg.code, db: store.dialect }, 'site listening');

  const gcTimer = setInterval(() => {
    collectGarbage(ctx, 3600).catch((err) => log.error({ err }, 'garbage collection failed'));
  }, opts.gcIntervalMs ?? 3_600_000);
  gcTimer.unref();

  let closing: Promise<void> | undefined;
  return {
    url,
    ctx,
    close() {
      closing ??= (async () => {
        clearInterval(gcTimer);
        await new Promise<void>((r) => server.close(() => r()));
        await closePool();
        await store.close();
        log.info({ site: cfg.code }, 'site stopped');
      })();
      return closing;
    },
  };
}
