import fs from 'node:fs';
import path from 'node:path';
import type { FromSourceBody, Ingest, PackageSource, RefreshBody, SourceSettingsBody, VersionReport } from '../api/packages.js';
import type { Entry, Manifest } from '../content/manifest.js';
import { walkSource } from '../content/pool.js';
import type { SourceEntry } from '../content/source.js';
import { fail } from '../core/errors.js';
import { formatPackageId, type Priority } from '../core/package.js';
import { readSiteConfig } from '../lib/site-config.js';
import { getSource, type IngestRecord, listSources, putSource, type SourceRow, type SourceSnapshot } from '../store/sources.js';
import type { Store } from '../store/store.js';
import { commitVersion, readVersion } from './content.js';
import type { SiteContext } from './context.js';
import { followNewVersion } from './distribution.js';

/**
 * Package sources on the site: folders the site server reads itself (docs/content.md#sources-on-the-site).
 * One pass over the bytes in the worker threads — cut, hash once, compress where it helps, write
 * — then the version is committed as an upload's would be. The package remembers its folder;
 * a refresh re-reads only files whose size or time changed, and makes no version when nothing did.
 */

type Ctx = SiteContext & { kick?: () => void };

/** Files are read in tasks of about this many bytes (small files travel together). */
const TASK_BYTES = 8 << 20;
const TASK_FILES = 256;
/** Tasks in flight: one per thread and one waiting, so no thread waits for the main thread. */
const IN_FLIGHT = 3;
/**
 * Staged chunks are made durable, visible and recorded in groups of about this many bytes,
 * while the workers read on: the flush after the last file then has one group left, not the
 * whole source (measured on tmpfs, 512 MiB: 0.06-0.13 s after reading, against 0.21-0.35 s
 * with a single group at the end).
 */
const COMMIT_BYTES = 64 << 20;

interface Running {
  files: number;
  bytes: number;
  doneFiles: number;
  doneBytes: number;
  started: number;
  done: Promise<void>;
}

/** Ingests under way, per store (the API's and the timers' contexts are different objects). */
const runningBy = new WeakMap<Store, Map<string, Running>>();
const runningOf = (ctx: Ctx): Map<string, Running> => {
  let m = runningBy.get(ctx.store);
  if (!m) {
    m = new Map();
    runningBy.set(ctx.store, m);
  }
  return m;
};

/** The folders this site may read sources from: config.json's `sourceRoots`, read on every call. */
export function sourceRoots(ctx: Ctx): string[] {
  if (!ctx.process) return [];
  return readSiteConfig(ctx.process.dataDir).sourceRoots ?? [];
}

/**
 * The real path of a folder the site may read: absolute, existing, and under one of its source
 * roots once links are resolved. Refusals name the roots.
 */
export function allowedSource(roots: readonly string[], p: string): string {
  if (!path.isAbsolute(p)) throw fail('bad_request', `source ${p} is not an absolute path on the site server`);
  if (roots.length === 0)
    throw fail(
      'forbidden',
      'this site reads no source folders: none is configured ("cascade site set --data DIR --source-root DIR" on the site server)',
    );
  let real: string;
  try {
    real = fs.realpathSync(p);
  } catch (e) {
    throw fail(
      'invalid_source',
      `source ${p} cannot be read on the site server: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  for (const r of roots) {
    let root: string;
    try {
      root = fs.realpathSync(r);
    } catch {
      continue;
    }
    if (real === root || real.startsWith(root.endsWith('/') ? root : `${root}/`)) return real;
  }
  throw fail('forbidden', `source ${p} is not under a source root of this site (roots: ${roots.join(', ')})`);
}

function view(ctx: Ctx, row: SourceRow): PackageSource {
  const r = runningOf(ctx).get(row.packageId);
  const i = row.ingest;
  let ingest: Ingest | null = null;
  if (i) {
    const files = r ? r.files : i.files;
    const bytes = r ? r.bytes : i.bytes;
    const doneFiles = r ? r.doneFiles : i.state === 'ingesting' ? 0 : i.files;
    const doneBytes = r ? r.doneBytes : i.state === 'ingesting' ? 0 : i.bytes;
    const secs = r ? (Date.now() - r.started) / 1000 : 0;
    const rate = r && secs > 0 ? doneBytes / secs : 0;
    ingest = {
      state: i.state,
      trigger: i.trigger,
      startedAt: i.startedAt,
      finishedAt: i.finishedAt,
      error: i.error,
      files,
      bytes,
      doneFiles,
      doneBytes,
      percent: bytes > 0 ? Math.floor((doneBytes / bytes) * 100) : i.state === 'ingesting' ? 0 : 100,
      bytesPerSecond: Math.round(rate),
      etaSeconds: i.state === 'ingesting' && rate > 0 ? Math.ceil((bytes - doneBytes) / rate) : null,
      version: (i.result as Ingest['version']) ?? null,
    };
  }
  return {
    package: row.packageId,
    path: row.path,
    refreshEverySeconds: row.settings.refreshSeconds,
    distribute: row.settings.distribute,
    refreshedAt: row.refreshedAt,
    nextRefreshAt: nextRefresh(row)?.toISOString() ?? null,
    ingest,
  };
}

function nextRefresh(row: SourceRow): Date | null {
  const every = row.settings.refreshSeconds;
  if (!every) return null;
  const last = Math.max(Date.parse(row.refreshedAt ?? '') || 0, Date.parse(row.ingest?.startedAt ?? '') || 0);
  return new Date(last + every * 1000);
}

/**
 * A package's source and its ingest, or null when it has none. With `waitMs`, an ingest under
 * way is waited for that long at most first (a follower learns the end at once, without polling fast).
 */
export async function packageSource(ctx: Ctx, id: string, waitMs = 0): Promise<PackageSource | null> {
  const running = runningOf(ctx).get(id);
  if (running && waitMs > 0) {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([running.done, new Promise((r) => (timer = setTimeout(r, waitMs)))]);
    clearTimeout(timer);
  }
  const row = await getSource(ctx.store, id);
  return row ? view(ctx, row) : null;
}

/** `package create --source-on-site`: reserves the package ID and starts reading the folder. */
export async function createFromSource(ctx: Ctx, body: FromSourceBody): Promise<PackageSource> {
  const real = allowedSource(sourceRoots(ctx), body.source);
  // Walked before answering: a folder that cannot be packaged is refused now, not later.
  const entries = await walkSource(real);
  const id = formatPackageId(ctx.code, await ctx.store.nextCounter('package'));
  const record = newRecord(ctx, 'admin', {
    name: body.name,
    priority: body.priority ?? null,
    programs: body.programs ?? null,
    hold: false,
    verifyContent: false,
  });
  await putSource(ctx.store, id, { path: real, ingest: record });
  start(ctx, id, real, record, false, entries);
  return (await packageSource(ctx, id)) as PackageSource;
}

/** `package update ID [--source-on-site PATH]`: re-reads the package's folder (or a new one). */
export async function refreshFromSource(
  ctx: Ctx,
  id: string,
  body: RefreshBody,
  trigger: 'admin' | 'schedule' = 'admin',
): Promise<PackageSource> {
  const row = await getSource(ctx.store, id);
  const pkg = await ctx.store.getPackage(id);
  if (!pkg && !row) throw fail('not_found', `package ${id} does not exist`);
  if (!body.source && !row)
    throw fail(
      'bad_request',
      `package ${id} has no source on the site: give one (--source-on-site PATH), or update it from a folder of yours`,
    );
  if (pkg && id.slice(0, 3) !== ctx.code)
    throw fail(
      'conflict',
      `package ${id} was made at site ${id.slice(0, 3)}: update it there (versions are made where a package was created)`,
    );
  const running = runningOf(ctx).get(id);
  if (running || row?.ingest?.state === 'ingesting') {
    const pct = running && running.bytes > 0 ? ` (${Math.floor((running.doneBytes / running.bytes) * 100)} %)` : '';
    throw fail('conflict', `package ${id} is being read from its source already${pct}: "cascade package show ${id}" follows it`);
  }
  const real = allowedSource(sourceRoots(ctx), body.source ?? (row as SourceRow).path);
  const entries = await walkSource(real);
  const created = !pkg && row?.ingest ? row.ingest : null;
  const record = newRecord(ctx, trigger, {
    // A package whose first version never committed is created again with what it was asked for.
    name: body.name ?? created?.name ?? null,
    priority: body.priority ?? created?.priority ?? null,
    programs: body.programs ?? created?.programs ?? null,
    hold: body.hold ?? false,
    verifyContent: body.verifyContent ?? false,
  });
  await putSource(ctx.store, id, { path: real, ingest: record });
  start(ctx, id, real, record, trigger === 'schedule', entries);
  return (await packageSource(ctx, id)) as PackageSource;
}

/** `package set ID --refresh-every`: the schedule of a package read from a source on the site. */
export async function setSourceSettings(ctx: Ctx, id: string, body: SourceSettingsBody): Promise<PackageSource> {
  const row = await getSource(ctx.store, id);
  if (!row) {
    if (!(await ctx.store.getPackage(id))) throw fail('not_found', `package ${id} does not exist`);
    throw fail('conflict', `package ${id} has no source on the site to refresh: update it once with --source-on-site PATH first`);
  }
  const settings = {
    refreshSeconds: body.refreshEverySeconds === undefined ? row.settings.refreshSeconds : body.refreshEverySeconds,
    distribute: body.distribute ?? row.settings.distribute,
  };
  await putSource(ctx.store, id, { settings });
  return (await packageSource(ctx, id)) as PackageSource;
}

function newRecord(
  ctx: Ctx,
  trigger: IngestRecord['trigger'],
  o: Pick<IngestRecord, 'name' | 'priority' | 'programs' | 'hold' | 'verifyContent'>,
): IngestRecord {
  return {
    state: 'ingesting',
    trigger,
    startedAt: ctx.clock().toISOString(),
    finishedAt: null,
    error: null,
    files: 0,
    bytes: 0,
    result: null,
    ...o,
  };
}

function start(ctx: Ctx, id: string, real: string, record: IngestRecord, lowPriority: boolean, entries?: SourceEntry[]): void {
  const r: Running = { files: 0, bytes: 0, doneFiles: 0, doneBytes: 0, started: Date.now(), done: Promise.resolve() };
  runningOf(ctx).set(id, r);
  // Held while it runs: a process that finds it under way without a holder (the reader died) reads it again.
  const lease = ingestLease(id);
  r.done = (ctx.leases ? ctx.leases.claim(lease) : Promise.resolve(true))
    .then(() => runIngest(ctx, id, real, record, lowPriority, r, entries))
    .catch(async (e) => {
      if (stopping.has(ctx.store)) return;
      ctx.log.warn({ package: id, err: (e as Error).message }, 'reading the package source failed');
      const ended = { ...record, state: 'failed' as const, finishedAt: ctx.clock().toISOString(), error: (e as Error).message };
      await putSource(ctx.store, id, { ingest: ended }).catch(() => {});
    })
    .finally(async () => {
      if (runningOf(ctx).get(id) === r) runningOf(ctx).delete(id);
      if (!stopping.has(ctx.store)) await ctx.leases?.release(lease);
    });
}

const ingestLease = (id: string): string => `ingest:${id}`;

/** Stores whose server is stopping: an ingest cut short there stays `ingesting`, to be read again at start. */
const stopping = new WeakSet<Store>();

/** A stopping server: ingests under way end without being marked failed (`resumeIngests` restarts them). */
export async function stopIngests(ctx: Ctx): Promise<void> {
  stopping.add(ctx.store);
  await Promise.all([...runningOf(ctx).values()].map((r) => r.done));
}

async function runIngest(
  ctx: Ctx,
  id: string,
  real: string,
  record: IngestRecord,
  lowPriority: boolean,
  r: Running,
  walked?: SourceEntry[],
): Promise<void> {
  const t0 = performance.now();
  const entries = walked ?? (await walkSource(real));
  const files = entries.filter((e): e is Extract<SourceEntry, { type: 'file' }> => e.type === 'file');
  r.files = files.length;
  r.bytes = files.reduce((n, f) => n + f.size, 0);
  record.files = r.files;
  record.bytes = r.bytes;
  await putSource(ctx.store, id, { ingest: record });

  const pkg = await ctx.store.getPackage(id);
  const previous: Manifest | null = pkg ? await readVersion(ctx, id, pkg.latestVersion) : null;
  const row = await getSource(ctx.store, id);
  const snapshot = previous && row?.snapshot?.version === previous.version ? row.snapshot : null;
  const before = new Map<string, Extract<Entry, { type: 'file' }>>();
  for (const e of previous?.files ?? []) if (e.type === 'file') before.set(e.path, e);

  const chunksOf = new Map<string, [string, number][]>();
  const times: SourceSnapshot['files'] = {};
  const toRead: typeof files = [];
  for (const f of files) {
    const was = before.get(f.path);
    const seen = snapshot?.files[f.path];
    if (!record.verifyContent && was && seen && seen[0] === f.size && seen[1] === f.mtimeMs && was.size === f.size) {
      chunksOf.set(f.path, was.chunks);
      times[f.path] = [f.size, f.mtimeMs];
      r.doneFiles++;
      r.doneBytes += f.size;
    } else toRead.push(f);
  }

  let tRead = 0;
  // Chunks written by the workers, each digest once, until they are committed or discarded.
  let staged = new Map<string, { tmp: string; path: string; size: number; storedSize: number }>();
  let stagedBytes = 0;
  const extra: { tmp: string }[] = [];
  const sent = new Set<string>();
  // Batches are made durable, visible and recorded one after the other, while reading goes on.
  let committing: Promise<void> = Promise.resolve();
  const commitStaged = () => {
    const all = [...staged.entries()];
    staged = new Map();
    stagedBytes = 0;
    for (const [d] of all) sent.add(d);
    if (all.length === 0) return committing;
    committing = committing.then(async () => {
      const have = await ctx.store.haveChunks(all.map(([d]) => d));
      const keep = all.filter(([d]) => !have.has(d));
      await ctx.library.discard(all.filter(([d]) => have.has(d)).map(([, s]) => s));
      await ctx.library.commit(keep.map(([, s]) => s));
      await ctx.store.insertChunks(keep.map(([digest, s]) => ({ digest, size: s.size, storedSize: s.storedSize, literalBytes: s.size })));
    });
    committing.catch(() => {});
    return committing;
  };

  const tasks: { files: typeof files; result: ReturnType<SiteContext['library']['ingestFiles']> }[] = [];
  const settle = async () => {
    const t = tasks.shift();
    if (!t) return;
    const res = await t.result;
    for (const s of res.staged) {
      if (staged.has(s.digest) || sent.has(s.digest)) extra.push(s);
      else {
        staged.set(s.digest, s);
        stagedBytes += s.storedSize;
      }
    }
    if (extra.length > 0) await ctx.library.discard(extra.splice(0));
    t.files.forEach((f, i) => {
      const got = res.files[i] as (typeof res.files)[number];
      if ('error' in got) throw fail('invalid_source', `${f.abs} cannot be read (${got.error})`);
      if (got.size !== f.size || got.statSize !== f.size || got.mtimeMs !== f.mtimeMs)
        throw fail('invalid_source', `${f.abs} changed while it was being read; it is read again at the next refresh (or update again)`);
      chunksOf.set(f.path, got.chunks);
      times[f.path] = [f.size, f.mtimeMs];
      r.doneFiles++;
      r.doneBytes += f.size;
    });
    if (stagedBytes >= COMMIT_BYTES) void commitStaged();
    // Written chunks start on their way to disk now: the final flush then has little left to do.
    else ctx.library.startWriteback();
  };
  const launch = async (group: typeof files) => {
    if (stopping.has(ctx.store)) throw fail('unavailable', 'the site is stopping; the source is read again when it starts');
    const known = new Set<string>();
    for (const f of group) for (const [d] of before.get(f.path)?.chunks ?? []) known.add(d);
    const result = ctx.library.ingestFiles(
      group.map((f) => f.abs),
      [...known],
      lowPriority,
    );
    result.catch(() => {});
    tasks.push({ files: group, result });
    if (tasks.length >= IN_FLIGHT) await settle();
  };
  try {
    let group: typeof files = [];
    let groupBytes = 0;
    for (const f of toRead) {
      group.push(f);
      groupBytes += f.size;
      if (groupBytes >= TASK_BYTES || group.length >= TASK_FILES) {
        await launch(group);
        group = [];
        groupBytes = 0;
      }
    }
    if (group.length > 0) await launch(group);
    while (tasks.length > 0) await settle();
    tRead = performance.now();
    await commitStaged();
  } catch (e) {
    // Let the tasks already started end, then drop everything staged: nothing half-made stays
    // (batches already recorded are chunks like any other, freed by garbage collection if unused).
    await committing.catch(() => {});
    const ended = await Promise.allSettled(tasks.map((t) => t.result));
    for (const x of ended) if (x.status === 'fulfilled') extra.push(...x.value.staged);
    await ctx.library.discard([...extra, ...staged.values()]);
    throw e;
  }

  const newFiles: Entry[] = entries.map((e) => {
    if (e.type === 'file') return { type: 'file', path: e.path, mode: e.mode, size: e.size, chunks: chunksOf.get(e.path) ?? [] };
    if (e.type === 'dir') return { type: 'dir', path: e.path, mode: e.mode };
    return { type: 'link', path: e.path, target: e.target };
  });
  if (stopping.has(ctx.store)) throw fail('unavailable', 'the site is stopping; the source is read again when it starts');
  const tStored = performance.now();
  const now = ctx.clock().toISOString();
  let result: NonNullable<Ingest['version']>;
  if (previous && sameContent(previous, newFiles, record)) {
    result = {
      id,
      version: previous.version,
      files: files.length,
      bytes: previous.bytes,
      newBytes: 0,
      newChunks: 0,
      newChunkBytes: 0,
      unchanged: true,
    };
    ctx.log.info({ package: id, version: previous.version, source: real }, 'package source unchanged: no new version');
  } else {
    const report: VersionReport = await commitVersion(ctx, previous ? id : null, {
      id: previous ? undefined : id,
      name: record.name ?? undefined,
      priority: (record.priority as Priority | null) ?? undefined,
      programs: record.programs ?? undefined,
      files: newFiles,
    });
    const flowsTo = previous && !record.hold ? await followNewVersion(ctx, id, report.version) : [];
    if (flowsTo.length > 0) ctx.kick?.();
    result = { ...report, flowsTo, unchanged: false };
    const ms = (a: number, b: number) => Math.round(b - a);
    ctx.log.info(
      {
        package: id,
        version: report.version,
        bytes: report.bytes,
        newBytes: report.newBytes,
        source: real,
        // Where the time went: reading and storing, making it durable, committing the version.
        ms: { read: ms(t0, tRead), flush: ms(tRead, tStored), commit: ms(tStored, performance.now()) },
      },
      previous ? 'package updated from its source' : 'package created from its source',
    );
  }
  await putSource(ctx.store, id, {
    ingest: { ...record, state: result.unchanged ? 'unchanged' : 'done', finishedAt: now, result },
    snapshot: { version: result.version, files: times },
    refreshedAt: now,
  });
}

/** Whether a fresh read of the folder holds exactly what the version holds (and nothing else is asked to change). */
function sameContent(previous: Manifest, files: Entry[], record: IngestRecord): boolean {
  if (record.name !== null && record.name !== previous.name) return false;
  if (record.priority !== null && record.priority !== previous.priority) return false;
  if (record.programs !== null && JSON.stringify(record.programs) !== JSON.stringify(previous.programs)) return false;
  const sorted = [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  if (sorted.length !== previous.files.length) return false;
  return sorted.every((e, i) => JSON.stringify(canonicalEntry(e)) === JSON.stringify(canonicalEntry(previous.files[i] as Entry)));
}

function canonicalEntry(e: Entry): unknown[] {
  if (e.type === 'file') return ['file', e.path, e.mode, e.size, e.chunks];
  if (e.type === 'dir') return ['dir', e.path, e.mode];
  return ['link', e.path, e.target];
}

/**
 * At start: ingests a stopped or killed process left under way are read again from the start
 * (chunks it stored are not stored twice; no version was committed, so none is half-visible).
 */
export async function resumeIngests(ctx: Ctx): Promise<void> {
  for (const row of await listSources(ctx.store)) {
    const i = row.ingest;
    if (i?.state !== 'ingesting' || runningOf(ctx).has(row.packageId)) continue;
    // Another process of this site is reading it now.
    if (ctx.leases && !(await ctx.leases.claim(ingestLease(row.packageId)))) continue;
    ctx.log.info({ package: row.packageId, source: row.path }, 'reading the package source again: it was under way when the site stopped');
    let real: string;
    try {
      real = allowedSource(sourceRoots(ctx), row.path);
    } catch (e) {
      await putSource(ctx.store, row.packageId, {
        ingest: { ...i, state: 'failed', finishedAt: ctx.clock().toISOString(), error: (e as Error).message },
      });
      continue;
    }
    start(ctx, row.packageId, real, { ...i, files: 0, bytes: 0 }, i.trigger === 'schedule');
  }
}

/** Scheduled refreshes that are due, at low priority; with `distribute`, the new version flows. */
export async function tickRefreshes(ctx: Ctx): Promise<void> {
  const now = ctx.clock().getTime();
  for (const row of await listSources(ctx.store)) {
    const next = nextRefresh(row);
    if (!next || next.getTime() > now || row.ingest?.state === 'ingesting' || runningOf(ctx).has(row.packageId)) continue;
    if (!(await ctx.store.getPackage(row.packageId))) continue;
    await refreshFromSource(ctx, row.packageId, { hold: !row.settings.distribute }, 'schedule').catch(async (e) => {
      ctx.log.warn({ package: row.packageId, err: (e as Error).message }, 'scheduled refresh of the package source could not start');
      // Recorded as a failed run, so the next attempt waits for the next refresh time.
      const failed = newRecord(ctx, 'schedule', { name: null, priority: null, programs: null, hold: true, verifyContent: false });
      await putSource(ctx.store, row.packageId, {
        ingest: { ...failed, state: 'failed', finishedAt: failed.startedAt, error: (e as Error).message },
      });
    });
  }
}
