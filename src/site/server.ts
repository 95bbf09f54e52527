import crypto from 'node:crypto';
import fs from 'node:fs';
import { createServer as createHttpServer, type RequestListener, type ServerOptions } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { getRequestListener, serve } from '@hono/node-server';
import { ApiClient } from '../api/client.js';
import type { DpJoinRequest } from '../api/dps.js';
import { type JoinAnswer, type JoinRequest, siteCalls } from '../api/sites.js';
import { verifyCertificate } from '../content/certificate.js';
import { ContentLibrary } from '../content/library.js';
import { closePool, startPool } from '../content/pool.js';
import {
  generateSiteKey,
  keyIdFor,
  loadSiteKey,
  publicKeyPem,
  SITE_KEY_FILE,
  type SiteKey,
  saveSiteKey,
  sealingKey,
} from '../content/signing.js';
import { CascadeError, fail } from '../core/errors.js';
import { PEER_ROLE } from '../core/roles.js';
import { createContentHandler, startContentServer } from '../dp/serve.js';
import { closeServer as closeHttpServer } from '../lib/close-server.js';
import { writeFileDurableSync } from '../lib/durable.js';
import { type FolderLock, type LockHolder, lockFolder, processTag } from '../lib/instance.js';
import { createLogger, type Logger } from '../lib/log.js';
import { Metrics } from '../lib/metrics.js';
import { checkSourceRoots, configPath, parseListen, readSiteConfig, type SiteConfig, writeSiteConfig } from '../lib/site-config.js';
import { installTls, isLoopback, pinForJoin, readTls, type TlsFiles } from '../lib/tls.js';
import { VERSION } from '../lib/version.js';
import { isPostgresUrl, sqlitePath } from '../store/db.js';
import { pruneMessages } from '../store/distribution.js';
import { Store } from '../store/store.js';
import { noteRelease, publishReleaseAgent } from './agent-release.js';
import { createApp } from './app.js';
import { flushSeen } from './clients.js';
import { collectGarbage } from './content.js';
import type { SiteContext } from './context.js';
import { loadTrust, reportUp } from './distribution.js';
import { noteStaleness } from './freshness.js';
import { parentOf, pingPeers } from './hierarchy.js';
import { PEER_TIMEOUT_MS } from './peers.js';
import { joinProcesses, Leases, processView, runningProcesses } from './processes.js';
import { tickRollouts } from './rollouts.js';
import { Sender } from './sender.js';
import { resumeIngests, stopIngests, tickRefreshes } from './sources.js';
import { publishRelease, tickUpgrades } from './upgrades.js';
import { scheduledValidation } from './validation.js';

export const DEFAULT_LISTEN = '127.0.0.1:8100';
export const DEFAULT_DP_LISTEN = '127.0.0.1:8200';
export const ADMIN_TOKEN_FILE = 'admin-token';

export const libraryRoot = (dataDir: string): string => path.join(dataDir, 'content');

export interface InitResult {
  code: string;
  name: string;
  dataDir: string;
  keyId: string;
  /** Sites only: a DP has no admin API. */
  adminTokenFile?: string;
  /** Where the store is: `sqlite` (a file) or `postgres`. */
  db: 'sqlite' | 'postgres';
  /** The address `site start` serves on when given no --listen (absent: the default). */
  listen?: string;
  /** Where other sites reach this one. */
  url?: string;
  /** It serves HTTPS with the certificate of this SHA-256 (what callers pin). */
  tlsPin?: string;
  /** The parent this site joined, and the central site whose key it pinned. */
  parent?: string;
  central?: string;
}

/**
 * The child's half of joining: hand the parent a credential for calling us, get one for
 * calling it, pin the central site's key, keep the certificate the central site signed.
 */
async function joinParent(
  tx: Store,
  o: {
    role: 'site' | 'dp';
    code: string;
    name: string;
    key: SiteKey;
    url: string | undefined;
    parentUrl: string;
    token: string;
    /** This joiner's own pin, when it will serve HTTPS. */
    tlsPin: string | null;
  },
): Promise<{ parent: string; central: string }> {
  const credential = `cas_peer_${crypto.randomBytes(24).toString('base64url')}`;
  // The token names the parent's certificate: nothing, the token least of all, goes to another.
  const parentPin = pinForJoin(o.parentUrl, o.token, o.role === 'dp' ? '--site' : '--parent');
  const common = { token: o.token, keyId: o.key.keyId, publicKey: publicKeyPem(o.key.publicKey), credential, tlsPin: o.tlsPin };
  const req: JoinRequest | DpJoinRequest =
    o.role === 'dp' ? { ...common, name: o.code, url: o.url ?? null } : { ...common, code: o.code, name: o.name, url: o.url as string };
  let answer: JoinAnswer;
  try {
    const parent = new ApiClient(o.parentUrl, { who: 'the parent', timeoutMs: PEER_TIMEOUT_MS, pin: parentPin });
    answer =
      o.role === 'dp' ? await parent.call(siteCalls.joinDp, req as DpJoinRequest) : await parent.call(siteCalls.join, req as JoinRequest);
  } catch (e) {
    if (e instanceof CascadeError) throw new CascadeError(e.code, `cannot join ${o.parentUrl}: ${e.message}`);
    throw e;
  }
  const central = { keyId: answer.central.keyId, publicKeyPem: answer.central.publicKey, site: answer.central.code };
  const mine = verifyCertificate(answer.certificate, central);
  if (mine.code !== o.code || mine.keyId !== o.key.keyId)
    throw fail('bad_signature', `the parent returned a certificate for ${mine.code}, not for this ${o.role === 'dp' ? 'DP' : 'site'}`);
  await tx.setMeta('central.code', answer.central.code);
  await tx.setMeta('central.keyId', answer.central.keyId);
  await tx.setMeta('central.publicKey', answer.central.publicKey);
  await tx.setMeta('site.certificate', JSON.stringify(answer.certificate));
  await tx.insertSite({
    code: answer.parent.code,
    name: answer.parent.name,
    parent: null,
    relation: 'parent',
    url: o.parentUrl,
    keyId: answer.parent.keyId,
    publicKey: answer.parent.publicKey,
    certificate: null,
    outboundToken: answer.credential,
    tlsPin: parentPin,
  });
  await tx.insertTokenSecret(PEER_ROLE, answer.parent.code, credential);
  return { parent: answer.parent.code, central: answer.central.code };
}

/**
 * `cascade site init`: store, key pair, admin token (DIR/admin-token, mode 600), config.
 * All or nothing: the store's rows commit only after every file is durably written, and when
 * anything fails, what init created is removed again (the folder itself if it was new, else
 * only the entries that were not there before).
 */
export async function initSite(opts: {
  /** A site server (default) or a distribution point, which must join a site. */
  role?: 'site' | 'dp';
  dataDir: string;
  code: string;
  name?: string | undefined;
  db?: string | undefined;
  listen?: string | undefined;
  /** Join this parent site (its URL) with a join token it issued. */
  parent?: string | undefined;
  joinToken?: string | undefined;
  /** Where other sites reach this one (default: http://LISTEN). */
  url?: string | undefined;
  /** A DP: where clients fetch its content, when not `url` (nginx or a CDN in front of it). */
  contentUrl?: string | undefined;
  /** Folders the site may read package sources from. */
  sourceRoots?: string[] | undefined;
  /** Serve HTTPS (default: unless it listens on loopback only). */
  tls?: boolean | undefined;
  /** The certificate and key to serve with (default: a self-signed one made here). */
  tlsCert?: string | undefined;
  tlsKey?: string | undefined;
}): Promise<InitResult> {
  const dataDir = path.resolve(opts.dataDir);
  const sourceRoots = opts.sourceRoots?.length ? checkSourceRoots(opts.sourceRoots) : undefined;
  if ((opts.parent === undefined) !== (opts.joinToken === undefined)) {
    throw fail('usage', 'joining a parent needs both --parent URL and --join-token TOKEN');
  }
  const role = opts.role ?? 'site';
  if (role === 'dp' && !opts.parent) throw fail('usage', 'a DP joins a site: give --site URL and --join-token TOKEN');
  const listenHost = parseListen(opts.listen ?? (role === 'dp' ? DEFAULT_DP_LISTEN : DEFAULT_LISTEN)).host;
  if (opts.tls === false && (opts.tlsCert || opts.tlsKey)) throw fail('usage', '--no-tls and --tls-cert/--tls-key contradict each other');
  const tls = opts.tls ?? (opts.tlsCert !== undefined || !isLoopback(listenHost));
  const url = opts.url ?? (opts.listen ? `${tls ? 'https' : 'http'}://${opts.listen}` : undefined);
  if (role === 'site' && opts.parent && !url)
    throw fail('usage', 'a child site needs --listen HOST:PORT (or --url URL) so its parent can reach it');
  if (url !== undefined && !URL.canParse(url)) throw fail('usage', `--url "${url}" is not a URL (e.g. http://10.0.0.5:8100)`);
  if (tls && url?.startsWith('http://'))
    throw fail(
      'usage',
      `--url "${url}" is plain HTTP, but this ${role === 'dp' ? 'DP' : 'site'} will serve HTTPS: give https://, or --no-tls`,
    );
  if (opts.contentUrl !== undefined && !/^https?:\/\//.test(opts.contentUrl))
    throw fail('usage', `--content-url "${opts.contentUrl}" is not an http:// or https:// URL`);
  if (opts.listen !== undefined && parseListen(opts.listen).port === 0) {
    throw fail('usage', `--listen "${opts.listen}": port 0 would change on every start; give a fixed port, e.g. 127.0.0.1:8100`);
  }
  if (fs.existsSync(configPath(dataDir))) {
    throw fail('conflict', `${dataDir} already holds a site or DP; use another --data folder or remove it first`);
  }
  // Any --db that is not a postgres:// URL is a SQLite file: keep it absolute, so "site start"
  // opens the same file from any working directory.
  const sqliteFile = opts.db && !isPostgresUrl(opts.db) ? path.resolve(opts.db) : undefined;
  const db = sqliteFile ?? opts.db;

  const before = fs.existsSync(dataDir) ? new Set(fs.readdirSync(dataDir)) : undefined;
  const madeDir = fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const sqliteExisted = sqliteFile ? fs.existsSync(sqliteFile) : true;
  const madeDbDir = sqliteFile ? fs.mkdirSync(path.dirname(sqliteFile), { recursive: true }) : undefined;
  try {
    const join = opts.parent && opts.joinToken ? { parentUrl: opts.parent, token: opts.joinToken } : undefined;
    return await createSite(dataDir, {
      role,
      code: opts.code,
      name: opts.name ?? opts.code,
      db,
      listen: opts.listen,
      url,
      urlFixed: opts.url !== undefined,
      contentUrl: opts.contentUrl,
      sourceRoots,
      join,
      tls: tls
        ? {
            certFile: opts.tlsCert,
            keyFile: opts.tlsKey,
            names: [listenHost, ...(url ? [new URL(url).hostname.replace(/^\[|\]$/g, '')] : [])],
          }
        : undefined,
    });
  } catch (e) {
    if (madeDir) fs.rmSync(madeDir, { recursive: true, force: true });
    else if (before) {
      for (const f of fs.readdirSync(dataDir)) if (!before.has(f)) fs.rmSync(path.join(dataDir, f), { recursive: true, force: true });
    }
    if (sqliteFile && !sqliteExisted) {
      for (const suffix of ['', '-wal', '-shm', '-journal']) fs.rmSync(`${sqliteFile}${suffix}`, { force: true });
    }
    if (madeDbDir) fs.rmSync(madeDbDir, { recursive: true, force: true });
    throw e;
  }
}

async function createSite(
  dataDir: string,
  o: {
    role: 'site' | 'dp';
    code: string;
    name: string;
    db: string | undefined;
    listen: string | undefined;
    url: string | undefined;
    /** `--url` was given: a DP keeps telling it, wherever it listens. */
    urlFixed?: boolean;
    contentUrl?: string | undefined;
    sourceRoots?: string[] | undefined;
    join: { parentUrl: string; token: string } | undefined;
    tls: { certFile: string | undefined; keyFile: string | undefined; names: string[] } | undefined;
  },
): Promise<InitResult> {
  // The certificate first: a joiner tells its parent which one it serves with.
  let tls: TlsFiles | undefined;
  if (o.tls) {
    const names = ['localhost', '127.0.0.1', '::1', os.hostname(), ...o.tls.names].filter((n) => n && n !== '0.0.0.0' && n !== '::');
    tls = installTls(dataDir, { certFile: o.tls.certFile, keyFile: o.tls.keyFile, names, commonName: `Cascade ${o.role} ${o.code}` });
  }
  const store = await Store.open({ url: o.db, dataDir });
  try {
    const key = generateSiteKey(o.code);
    store.useSealingKey(sealingKey(key));
    const tokenFile = path.join(dataDir, ADMIN_TOKEN_FILE);
    let joined: { parent: string; central: string } | undefined;
    await store.transaction(async (tx) => {
      const existing = await tx.getMeta('site.code');
      if (existing) throw fail('conflict', `the database already belongs to site ${existing}`);
      await tx.setMeta('site.code', o.code);
      await tx.setMeta('site.name', o.name);
      await tx.setMeta('site.publicKey', publicKeyPem(key.publicKey));
      await tx.setMeta('site.role', o.role);
      if (o.url) await tx.setMeta('site.url', o.url);
      if (o.urlFixed) await tx.setMeta('site.urlFixed', '1');
      if (o.contentUrl) await tx.setMeta('site.contentUrl', o.contentUrl.replace(/\/+$/, ''));
      if (o.join)
        joined = await joinParent(tx, { role: o.role, code: o.code, name: o.name, key, url: o.url, tlsPin: tls?.pin ?? null, ...o.join });
      // A DP has no admin API: it answers only its site.
      if (o.role === 'site') {
        const token = await tx.createToken('admin', 'initial admin');
        writeFileDurableSync(tokenFile, `${token.secret}\n`, 0o600);
      }
      saveSiteKey(dataDir, key);
      await new ContentLibrary(libraryRoot(dataDir)).init();
      // Last: config.json is what marks the folder as a site or a DP.
      const cfg: SiteConfig = {
        ...(o.role === 'dp' ? { role: 'dp' as const } : {}),
        code: o.code,
        name: o.name,
        ...(o.db ? { db: o.db } : {}),
        ...(o.listen ? { listen: o.listen } : {}),
        ...(tls ? { tls: true } : {}),
        ...(o.sourceRoots ? { sourceRoots: o.sourceRoots } : {}),
      };
      writeSiteConfig(dataDir, cfg);
    });
    return {
      code: o.code,
      name: o.name,
      dataDir,
      keyId: key.keyId,
      ...(o.role === 'site' ? { adminTokenFile: tokenFile } : {}),
      db: store.dialect,
      ...(o.listen ? { listen: o.listen } : {}),
      ...(o.url ? { url: o.url } : {}),
      ...(tls ? { tlsPin: tls.pin } : {}),
      ...(joined ? { parent: joined.parent, central: joined.central } : {}),
    };
  } finally {
    await store.close();
  }
}

/**
 * A site on SQLite, and a DP, run one process per data folder (and per SQLite file): a second
 * is refused, naming the first. A site on PostgreSQL shares its folder with other processes of
 * the same site, but not with a process that does not share it.
 */
async function lockData(
  role: 'site' | 'dp',
  code: string,
  dataDir: string,
  sqliteFile: string | null,
  me: LockHolder,
): Promise<FolderLock[]> {
  const what = role === 'dp' ? `DP ${code}` : `site ${code}`;
  const refuse = (h: LockHolder | null, where: string) =>
    fail(
      'conflict',
      `${what} already runs on ${where}${h ? ` (process ${h.pid}, ${h.url})` : ''}: stop it first` +
        (role === 'site' ? '; several processes of one site need a PostgreSQL store (docs/operations.md#several-processes)' : ''),
    );
  if (!sqliteFile) {
    // Shared: only a process that does not share (a SQLite store) keeps others out.
    const probe = await lockFolder(dataDir, me);
    if ('release' in probe) await probe.release();
    else if (probe.heldBy && !probe.heldBy.shared) throw refuse(probe.heldBy, `this data folder`);
    return [];
  }
  const locks: FolderLock[] = [];
  for (const [key, where] of [
    [dataDir, 'this data folder'],
    [sqliteFile, `the SQLite store ${sqliteFile}`],
  ] as const) {
    const l = await lockFolder(key, me);
    if ('release' in l) locks.push(l);
    else {
      for (const held of locks) await held.release();
      throw refuse(l.heldBy, where);
    }
  }
  return locks;
}

export interface RunningSite {
  url: string;
  ctx: SiteContext;
  close(): Promise<void>;
}

/**
 * In the foreground (`site start`): serves until SIGTERM or SIGINT, then closes cleanly. The
 * handlers are in place before the start does anything: a signal during start-up waits for
 * the start to finish, then closes.
 */
export function serveUntilStopped(start: () => Promise<RunningSite>, log: Logger): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let signalled: string | null = null;
    let running: RunningSite | null = null;
    const stop = (signal: string) => {
      if (signalled) {
        // A second signal: stop at once (a killed site restarts without losing what it acknowledged).
        log.warn({ signal }, 'stopping at once');
        process.exit(1);
      }
      signalled = signal;
      log.info({ signal }, 'stopping');
      if (!running) return; // still starting: closed once started
      running.close().then(resolve, (err) => {
        log.error({ err }, 'stop failed');
        resolve();
      });
    };
    const onTerm = () => stop('SIGTERM');
    const onInt = () => stop('SIGINT');
    process.on('SIGTERM', onTerm);
    process.on('SIGINT', onInt);
    start().then(
      (r) => {
        running = r;
        if (signalled) {
          const s = signalled;
          signalled = null;
          stop(s);
        }
      },
      (err) => {
        process.off('SIGTERM', onTerm);
        process.off('SIGINT', onInt);
        reject(err);
      },
    );
  });
}

/** `cascade site start`: serves until `close()` (or SIGTERM in the CLI). */
export async function startSite(opts: {
  /** What the caller expects to start; the data folder says what it holds. */
  role?: 'site' | 'dp';
  dataDir: string;
  listen?: string | undefined;
  db?: string | undefined;
  log?: Logger;
  gcIntervalMs?: number;
  pingIntervalMs?: number;
  clock?: () => Date;
  /** A DP run by its launcher: called when it prepared a newer release to restart on. */
  onRelease?: () => void;
}): Promise<RunningSite> {
  const dataDir = path.resolve(opts.dataDir);
  const cfg = readSiteConfig(dataDir);
  const role = cfg.role ?? 'site';
  if (opts.role && opts.role !== role)
    throw fail('invalid_config', `${dataDir} holds a ${role === 'dp' ? 'DP' : 'site'}: start it with "cascade ${role} start"`);
  const log = opts.log ?? createLogger({ name: `${role}-${cfg.code}` });
  const { host, port } = parseListen(opts.listen ?? cfg.listen ?? (role === 'dp' ? DEFAULT_DP_LISTEN : DEFAULT_LISTEN));
  const clock = opts.clock ?? (() => new Date());
  const dbUrl = opts.db ?? cfg.db;
  // One process per data folder, unless it is a site on PostgreSQL: those share (several-processes).
  const tag = processTag();
  const shared = role === 'site' && dbUrl !== undefined && isPostgresUrl(dbUrl);
  const holder: LockHolder = { pid: process.pid, url: '(starting)', shared };
  const locks = await lockData(role, cfg.code, dataDir, shared ? null : (dbUrl ?? sqlitePath(dataDir)), holder);
  let store: Store;
  try {
    store = await Store.open({ url: dbUrl, dataDir, clock, checkpointer: true });
  } catch (e) {
    for (const l of locks) await l.release();
    throw e;
  }
  let key: SiteKey;
  try {
    const code = await store.getMeta('site.code');
    if (code === undefined)
      throw fail(
        'damaged',
        `the database of ${dataDir} holds no site (it is empty: truncated, replaced or lost?), but the folder is site ${cfg.code}: restore the database from a backup (docs/operations.md)`,
      );
    if (code !== cfg.code) {
      throw fail('invalid_config', `the database belongs to site ${code}, but ${dataDir} is site ${cfg.code}`);
    }
    key = loadSiteKey(dataDir, cfg.code);
    store.useSealingKey(sealingKey(key));
    // The key signs every manifest: refuse one that is not the key this site was created with.
    const pinned = await store.getMeta('site.publicKey');
    if (pinned !== publicKeyPem(key.publicKey)) {
      const expected = pinned ? keyIdFor(cfg.code, crypto.createPublicKey(pinned)) : '(none recorded)';
      throw fail(
        'conflict',
        `${path.join(dataDir, SITE_KEY_FILE)} is not the key site ${cfg.code} was created with (it holds ${key.keyId}; ` +
          `the store expects ${expected}): put the site's own ${SITE_KEY_FILE} back`,
      );
    }
    // Credentials an earlier release kept in clear are sealed now.
    const sealed = await store.sealOutboundTokens();
    if (sealed > 0) log.info({ sealed }, 'credentials for calling neighbours sealed in the store');
    // Everything this site trusts hangs on the central key it pinned at join: its own
    // certificate must still verify against it, for its own code and key.
    const certificate = await store.getMeta('site.certificate');
    if (certificate) {
      const centralKeyId = (await store.getMeta('central.keyId')) ?? '(none)';
      const centralPem = (await store.getMeta('central.publicKey')) ?? '';
      const centralCode = (await store.getMeta('central.code')) ?? '(none)';
      let why: string | undefined;
      try {
        const c = verifyCertificate(JSON.parse(certificate), { keyId: centralKeyId, publicKeyPem: centralPem, site: centralCode });
        if (c.code !== cfg.code || c.keyId !== key.keyId) why = `it is the certificate of ${c.code} (${c.keyId})`;
      } catch (e) {
        why = (e as Error).message;
      }
      if (why)
        throw fail(
          'invalid_config',
          `the central key pinned in the store (${centralKeyId}) does not vouch for site ${cfg.code}: ${why}; the store was altered or belongs elsewhere, so the site does not start (restore the data folder from a backup)`,
        );
    }
  } catch (e) {
    await store.close();
    for (const l of locks) await l.release();
    throw e;
  }
  let tls: TlsFiles | undefined;
  let running: Set<string>;
  try {
    tls = cfg.tls ? readTls(dataDir) : undefined;
    // The temporary files of processes still serving this site stay; those of the dead go.
    running = shared ? await runningProcesses(store, tag) : new Set();
  } catch (e) {
    await store.close();
    for (const l of locks) await l.release();
    throw e;
  }
  if (!tls && !isLoopback(host))
    log.warn(
      { listen: host },
      'serving plain HTTP on an address other networks reach: tokens cross them in clear (docs/operations.md#tls)',
    );
  const library = new ContentLibrary(libraryRoot(dataDir));
  await library.init(running);
  startPool();
  const metrics = new Metrics();
  const leases = role === 'site' ? new Leases(store, tag, log) : undefined;
  const ctx: SiteContext = {
    store,
    library,
    key,
    trusted: [{ keyId: key.keyId, publicKeyPem: publicKeyPem(key.publicKey), site: cfg.code }],
    code: cfg.code,
    name: cfg.name,
    clock,
    log,
    process: { dataDir, switchRelease: opts.onRelease ?? null },
    ...(leases ? { leases } : {}),
    ...(tls ? { tlsPin: tls.pin } : {}),
  };
  metrics.gauge('cascade_process_resident_bytes', 'Resident set size of the site server.', () => process.memoryUsage().rss);
  // Stalls of the main thread (synchronous SQLite work, large reports, garbage collection): what
  // every request waiting behind them pays. Kept since start, so one scrape after a run reads it.
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  loopDelay.enable();
  metrics.gauge('cascade_event_loop_delay_p99_seconds', "The 99th percentile of the main thread's event-loop delay since start.", () =>
    Number((loopDelay.percentile(99) / 1e9).toFixed(4)),
  );
  metrics.gauge('cascade_event_loop_delay_max_seconds', "The longest stall of the main thread's event loop since start.", () =>
    Number((loopDelay.max / 1e9).toFixed(4)),
  );
  await loadTrust(ctx);
  // A site's own certificate is served beside the manifests it signs (a DP is no signer).
  const ownCertificate = await store.getMeta('site.certificate');
  if (ownCertificate && role === 'site') await library.writeCertificate(cfg.code, JSON.parse(ownCertificate));
  const sender = new Sender(ctx);
  const app = createApp({ ...ctx, metrics, kick: () => void sender.tick(), stopTransfer: (id) => sender.stop1(id) }, role);

  // Every process is a DP of its own library: /content/ is served before the API sees the
  // request. A DP serves with one process per core (each with its own cache); a site server,
  // which also ingests and relays, with itself alone and a smaller cache (RSS budget).
  let closeServer: () => Promise<void>;
  let server: import('node:http').Server;
  if (role === 'dp') {
    const workers = Math.max(1, Number(process.env.CASCADE_DP_WORKERS) || os.availableParallelism());
    const cs = await startContentServer({
      root: library.root,
      listen: `${host.includes(':') ? `[${host}]` : host}:${port}`,
      fallback: getRequestListener(app.fetch),
      workers,
      cacheBytes: 256 << 20,
      ...(tls ? { tls: { cert: tls.cert, key: tls.key } } : {}),
    }).catch((e: NodeJS.ErrnoException) => {
      throw e.code === 'EADDRINUSE' ? fail('unavailable', `cannot listen on ${host}:${port}: the address is in use`) : e;
    });
    server = cs.server;
    closeServer = () => cs.close();
  } else {
    const content = createContentHandler({ root: library.root, cacheBytes: 64 << 20 });
    const hs = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
      const createServer = ((o: ServerOptions, api: RequestListener) => {
        const both: RequestListener = (req, res) => {
          if (!content(req, res)) api(req, res);
        };
        return tls ? createHttpsServer({ ...o, cert: tls.cert, key: tls.key }, both) : createHttpServer(o, both);
      }) as typeof createHttpServer;
      const s = serve({ fetch: app.fetch, hostname: host, port, createServer }, () => resolve(s));
      s.once('error', (e: NodeJS.ErrnoException) =>
        reject(e.code === 'EADDRINUSE' ? fail('unavailable', `cannot listen on ${host}:${port}: the address is in use`) : e),
      );
    });
    server = hs as unknown as import('node:http').Server;
    closeServer = () => closeHttpServer(server);
  }
  // Slow links: a large upload may take long; only idle connections are cut.
  server.requestTimeout = 0;
  server.keepAliveTimeout = 65_000;
  const addr = server.address() as AddressInfo;
  const url = `${tls ? 'https' : 'http'}://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`;
  holder.url = url;
  log.info({ url, [role]: cfg.code, db: store.dialect, process: tag, ...(tls ? { tlsPin: tls.pin } : {}) }, `${role} listening`);
  // Among the processes of this site: registered, heartbeating, holding leases on once-only work.
  let processes: Awaited<ReturnType<typeof processView>> = [];
  let lookTimer: NodeJS.Timeout | undefined;
  if (leases) {
    await joinProcesses(store, { id: tag, url, release: VERSION });
    leases.start();
    const look = () =>
      processView({ store })
        .then((v) => {
          processes = v;
        })
        .catch(() => {});
    await look();
    lookTimer = setInterval(look, 10_000);
    lookTimer.unref();
    leases.onLost(() => void look());
    metrics.gauges(
      'cascade_site_process_up',
      'Each process of this site: 1 while it heartbeats (several share a site on PostgreSQL).',
      () => processes.map((p) => ({ labels: { process: p.id, host: p.host, url: p.url }, value: p.state === 'running' ? 1 : 0 })),
    );
    metrics.gauges('cascade_lease_held', 'Once-only work this process holds the lease on (route:CODE, report, rollouts, gc, ...).', () =>
      leases.names().map((lease) => ({ labels: { lease, process: tag }, value: 1 })),
    );
  }
  // A DP tells its site where it listens now (its status reports carry the address), unless it
  // was given --url at init: a proxy, a name or a load balancer in front of it stays its address.
  if (role === 'dp') {
    if (!(await store.getMeta('site.urlFixed'))) await store.setMeta('site.url', url);
  }
  // Where this process listens now: the local DP's address for clients when no --url was given.
  else await store.setMeta('site.listenUrl', url);

  // Once-only work (several processes may serve this site): done by the holder of its lease.
  const mine = async (lease: string): Promise<boolean> => !leases || (await leases.claim(lease));
  const gcTimer = setInterval(async () => {
    if (!(await mine('gc'))) return;
    collectGarbage(ctx, 3600).catch((err) => log.error({ err }, 'garbage collection failed'));
    // Status messages are kept 90 days (below the central site, only once they went up).
    const before = new Date(clock().getTime() - 90 * 86400_000).toISOString();
    parentOf(store)
      .then((parent) => pruneMessages(store, before, !parent))
      .catch((err) => log.error({ err }, 'pruning old status messages failed'));
  }, opts.gcIntervalMs ?? 3_600_000);
  gcTimer.unref();
  if (role === 'site') sender.start();
  // A site server of a newer release than the site last ran publishes the agent it carries,
  // and the release itself: its DPs follow one at a time, its child sites are offered it.
  const before = role === 'site' && (await mine('release')) ? await noteRelease(ctx) : null;
  if (before) {
    await publishReleaseAgent(ctx, before)
      .then((v) => v && void sender.tick())
      .catch((err) => log.error({ err }, 'publishing the agent of this release failed'));
    await publishRelease(ctx)
      .then((p) => p && void sender.tick())
      .catch((err) => log.error({ err }, 'publishing this release to the DPs and child sites failed'));
  }
  await leases?.release('release');
  // Package sources on the site: reads a stopped process left under way start again; scheduled
  // refreshes run at low priority when due.
  const sourcesCtx = { ...ctx, kick: () => void sender.tick() };
  let refreshing: Promise<void> | null = null;
  const refreshTimer =
    role === 'site'
      ? setInterval(
          () => {
            refreshing ??= mine('sources')
              .then(async (ours) => {
                if (!ours) return;
                // Reads another process left under way when it died are read again here.
                await resumeIngests(sourcesCtx);
                await tickRefreshes(sourcesCtx);
              })
              .catch((err) => log.error({ err }, 'scheduled refresh of package sources failed'))
              .finally(() => (refreshing = null));
          },
          Math.max(0.2, Number(process.env.CASCADE_SOURCE_CHECK_SECONDS) || 30) * 1000,
        )
      : undefined;
  refreshTimer?.unref();
  if (role === 'site')
    await resumeIngests(sourcesCtx).catch((err) => log.error({ err }, 'restarting the reading of package sources failed'));
  // Scheduled validation at low priority: this site's library and its own DPs; with
  // CASCADE_AUTO_REPAIR=1, damaged chunks on its DPs are re-sent at once.
  const validateHours = Number(process.env.CASCADE_VALIDATE_HOURS ?? 24);
  const validateTimer =
    role === 'site' && validateHours > 0
      ? setInterval(async () => {
          if (!(await mine('validation'))) return;
          scheduledValidation(ctx, process.env.CASCADE_AUTO_REPAIR === '1').catch((err) =>
            log.error({ err }, 'scheduled validation failed'),
          );
        }, validateHours * 3_600_000)
      : undefined;
  validateTimer?.unref();
  // Status goes up in batches; what cannot be sent now stays for the next round.
  const reporter = () =>
    flushSeen(ctx)
      .then(async () => (await mine('report')) && (await reportUp(ctx)))
      .catch((err) => log.warn({ err: (err as Error).message }, 'status report to the parent failed; kept for the next one'))
      // Whether or not the parent answered: the words of the sites above age here.
      .then(async () => (role === 'site' && (await mine('report')) ? noteStaleness(ctx) : undefined))
      .catch((err) => log.error({ err }, 'checking the freshness of the sites above failed'));
  const reportTimer = setInterval(reporter, Math.max(0.2, Number(process.env.CASCADE_REPORT_SECONDS) || 2) * 1000);
  reportTimer.unref();
  // Rollouts this site made advance, halt or complete on their own (docs/rollouts.md).
  let rolling: Promise<void> | null = null;
  const rolloutTimer = setInterval(
    () => {
      if (rolling || role !== 'site') return;
      rolling = mine('rollouts')
        .then((ours) => (ours ? tickRollouts(ctx) : undefined))
        .catch((err) => log.error({ err }, 'advancing rollouts failed'))
        .then(() => (leases?.holds('rollouts') !== false ? tickUpgrades(ctx) : undefined))
        .catch((err) => log.error({ err }, "advancing the DPs' upgrade failed"))
        .finally(() => (rolling = null));
    },
    Math.max(0.2, Number(process.env.CASCADE_ROLLOUT_SECONDS) || 5) * 1000,
  );
  rolloutTimer.unref();
  const pinger = () => pingPeers(ctx).catch((err) => log.warn({ err }, 'health check of peer sites failed'));
  const pingEvery = opts.pingIntervalMs ?? Math.max(1, Number(process.env.CASCADE_PING_SECONDS) || 30) * 1000;
  const pingTimer = setInterval(pinger, pingEvery);
  pingTimer.unref();
  void pinger();

  let closing: Promise<void> | undefined;
  return {
    url,
    ctx,
    close() {
      closing ??= (async () => {
        clearInterval(gcTimer);
        clearInterval(pingTimer);
        clearInterval(reportTimer);
        clearInterval(rolloutTimer);
        clearInterval(lookTimer);
        if (refreshTimer) clearInterval(refreshTimer);
        await rolling;
        await refreshing;
        if (validateTimer) clearInterval(validateTimer);
        await sender.stop();
        await closeServer();
        // The work it held goes to the other processes at once, not when its leases expire.
        await leases?.stop();
        // Reads of package sources under way stop with the pool; they start again at the next start.
        const ingests = stopIngests(sourcesCtx);
        await closePool();
        await ingests;
        await store.close();
        for (const l of locks) await l.release();
        log.info({ [role]: cfg.code }, `${role} stopped`);
      })();
      return closing;
    },
  };
}
