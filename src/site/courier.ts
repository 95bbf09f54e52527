import crypto from 'node:crypto';
import { courierCalls, type DpTicket, type ExportRequest } from '../api/courier.js';
import { verifyCertificate } from '../content/certificate.js';
import type { ContentLibrary } from '../content/library.js';
import { type Manifest, manifestChunks, verifyManifest } from '../content/manifest.js';
import {
  type ImportReport,
  type ParcelHeader,
  type ParcelPackage,
  type ParcelPlan,
  ParcelReader,
  parcelHeader,
  writeParcel,
} from '../content/parcel.js';
import type { OmitRange } from '../content/parcel-toc.js';
import type { TrustedKey } from '../content/signing.js';
import { issueTicket, type TicketBody, verifyTicket } from '../content/ticket.js';
import { CascadeError, fail } from '../core/errors.js';
import { writeFileAtomic } from '../lib/fsutil.js';
import {
  clearCourierRoute,
  getCourierRoute,
  listCourierRoutes,
  listParcels,
  recordCheck,
  recordExportOn,
  recordParcel,
  setCourierRoute,
} from '../store/courier.js';
import { listTargets, listTransfers, type TransferRow, updateTarget, updateTransfer } from '../store/distribution.js';
import type { SiteRow } from '../store/store.js';
import { lackedChunks } from './content.js';
import type { SiteContext } from './context.js';
import { commitOffer } from './distribution.js';
import { resolveTargets } from './dps.js';
import { centralTrust, nextHop, originCertificate, parentOf, trustOrigin } from './hierarchy.js';
import { emit } from './messages.js';
import { peerClient } from './peers.js';
import { deletedAtOrigin } from './policy.js';

/**
 * The courier (docs/courier.md): package versions carried to a site on physical media.
 *
 * Sending side: `distribute --via courier` marks the version's route to the next hop as
 * courier; the sender still offers the manifest (control traffic) and learns what the child
 * lacks, but sends no chunk: it records the missing list, marks the targets "waiting for a
 * courier parcel", and checks again later. `courier export` writes a parcel of what the
 * destination lacks, as far as this site knows.
 *
 * Receiving side: `importParcel` reads a parcel as it streams in, verifies the manifests with
 * the receiver's trust before it reads any chunk, verifies and stores every chunk durably as
 * it comes, and makes a version visible only once the trailing checksum matched and all its
 * chunks are held. It works on any ParcelSink (a site here; a DP can bring its own).
 */

const MiB = 1 << 20;

/** Longest wait between two checks of what a courier child still lacks (seconds). */
function checkSeconds(): number {
  const v = Number(process.env.CASCADE_COURIER_CHECK_SECONDS);
  return Number.isFinite(v) && v > 0 ? v : 300;
}

const fmt = (n: number) =>
  n >= 1 << 30
    ? `${(n / (1 << 30)).toFixed(1)} GiB`
    : n >= MiB
      ? `${(n / MiB).toFixed(1)} MiB`
      : n >= 1024
        ? `${(n / 1024).toFixed(1)} KiB`
        : `${n} B`;
const missingText = (n: number) => `${n} bytes (${fmt(n)})`;

// --- distribute --via courier ----------------------------------------------------------------

/**
 * Before a distribution is queued: each route it takes from here carries this version by
 * courier (`courier` true) or over the network again (false). Done first, so the sender never
 * sees the transfer without its mode.
 */
export async function setCourier(
  ctx: SiteContext,
  packageId: string,
  versionWanted: number | undefined,
  to: readonly string[],
  courier: boolean,
): Promise<void> {
  const pkg = await ctx.store.getPackage(packageId);
  if (!pkg) return; // distribute() says what is wrong
  const version = versionWanted ?? pkg.latestVersion;
  const hops = new Set<string>();
  let dps: string[];
  try {
    dps = await resolveTargets(ctx, to);
  } catch {
    return; // distribute() says what is wrong
  }
  for (const dp of dps) {
    const hop = await nextHop(ctx, dp).catch(() => null);
    if (hop === null) {
      if (courier && dp === ctx.code) throw fail('bad_request', `${dp} is this site: nothing to carry (the version is here already)`);
      continue;
    }
    // A parcel goes to the next hop: a child site, or a DP of this site (cascade courier import
    // --dp carries it straight onto the DP). A DP further down is fed by its own site.
    const row = await ctx.store.getSite(hop);
    if (row?.relation === 'child' || row?.relation === 'dp') hops.add(hop);
  }
  for (const child of hops) {
    if (courier) await setCourierRoute(ctx.store, packageId, version, child);
    else if (await clearCourierRoute(ctx.store, packageId, version, child)) {
      // Waiting for a parcel until now: the next attempt goes over the network at once.
      const open = (await listTransfers(ctx.store, { child })).find(
        (x) => x.packageId === packageId && x.version === version && x.state !== 'done' && x.state !== 'failed',
      );
      if (open) await updateTransfer(ctx.store, open.id, { nextAttemptAt: null });
    }
  }
}

/** Whether the sender carries this transfer by courier (no chunk crosses the route). */
export async function isCourier(ctx: SiteContext, t: TransferRow): Promise<boolean> {
  return Boolean(await getCourierRoute(ctx.store, t.packageId, t.version, t.child));
}

/**
 * The sender's hook after the offer of a courier transfer: when the child still lacks chunks,
 * records which, marks the targets waiting for a parcel, and queues the next check (sooner
 * while things change, up to CASCADE_COURIER_CHECK_SECONDS). Returns false when the child
 * holds everything: the sender commits as usual.
 */
export async function courierHold(
  ctx: SiteContext,
  t: TransferRow,
  offer: { missing: string[]; versions: number[] },
  missingBytes: number,
  bytesTotal: number,
): Promise<boolean> {
  const r = await getCourierRoute(ctx.store, t.packageId, t.version, t.child);
  if (!r || offer.missing.length === 0) return false;
  const quiet = r.missingBytes === missingBytes ? r.quietChecks + 1 : 0;
  await recordCheck(ctx.store, {
    packageId: t.packageId,
    version: t.version,
    child: t.child,
    missing: offer.missing,
    missingBytes,
    childVersions: offer.versions,
    quietChecks: quiet,
  });
  const wait = Math.min(checkSeconds(), 5 * 2 ** Math.min(quiet, 10));
  const next = new Date(ctx.clock().getTime() + wait * 1000).toISOString();
  await updateTransfer(ctx.store, t.id, {
    state: 'queued',
    nextAttemptAt: next,
    bytesTotal,
    bytesDone: bytesTotal - missingBytes,
    lastError: null,
  });
  await markWaiting(ctx, t, { parcel: r.parcel, exportedAt: r.exportedAt, missingBytes, bytesTotal });
  // The child's own status says so too (its offer alone reads "receiving from ...").
  const child = await ctx.store.getSite(t.child);
  if (child)
    await Promise.resolve()
      .then(() =>
        peerClient(child).call(courierCalls.waiting, { packageId: t.packageId, version: t.version, missingBytes, parcel: r.parcel }),
      )
      .catch((err) => ctx.log.debug({ err: (err as Error).message }, 'could not tell the child it waits for a courier parcel'));
  if (r.checkedAt === null) {
    await emit(ctx, {
      component: 'sender',
      severity: 'info',
      code: 'courier_waiting',
      text: `${t.packageId} version ${t.version} to ${t.child} waits for a courier parcel: ${missingText(missingBytes)} missing there`,
      packageId: t.packageId,
    });
  }
  return true;
}

async function markWaiting(
  ctx: SiteContext,
  t: { packageId: string; version: number; child: string; targets: string[] },
  w: { parcel: string | null; exportedAt: string | null; missingBytes: number; bytesTotal: number },
): Promise<void> {
  const to = (await ctx.store.getSite(t.child))?.relation === 'dp' ? '--to-dp' : '--to-site';
  const detail = w.parcel
    ? `waiting for courier parcel ${w.parcel} (exported ${w.exportedAt}); ${missingText(w.missingBytes)} still missing at ${t.child}`
    : `waiting for a courier parcel: ${missingText(w.missingBytes)} missing at ${t.child} (cascade courier export ${t.packageId} ${to} ${t.child})`;
  for (const x of await listTargets(ctx.store, { packageId: t.packageId, version: t.version, sites: t.targets })) {
    if (x.state === 'installed') continue;
    await updateTarget(ctx.store, t.packageId, t.version, x.site, {
      state: 'pending',
      awaiting: 'courier',
      detail,
      bytesDone: w.bytesTotal - w.missingBytes,
      rate: 0,
      lastError: null,
      nextRetryAt: null,
    });
  }
}

/** The parent waits for a parcel for this version: this site's own target says so. */
export async function courierWaiting(
  ctx: SiteContext,
  from: string,
  w: { packageId: string; version: number; missingBytes: number; parcel: string | null },
): Promise<boolean> {
  const [own] = await listTargets(ctx.store, { packageId: w.packageId, version: w.version, site: ctx.code });
  if (!own || own.state === 'installed') return false;
  await updateTarget(ctx.store, w.packageId, w.version, ctx.code, {
    state: 'pending',
    awaiting: 'courier',
    bytesDone: Math.max(0, own.bytesTotal - w.missingBytes),
    rate: 0,
    detail: `waiting for a courier parcel from ${from}${w.parcel ? ` (parcel ${w.parcel} exported)` : ''}: ${missingText(w.missingBytes)} missing here`,
  });
  return true;
}

/** Per site (its store: the API's and the sender's contexts are different objects). */
const arrivals = new WeakMap<object, Map<string, number>>();

/** When a parcel holding that version last arrived at `child` (ms), as it told this site; 0: not since start. */
export const parcelArrivedAt = (ctx: SiteContext, child: string, packageId: string, version: number): number =>
  arrivals.get(ctx.store)?.get(`${child} ${packageId} ${version}`) ?? 0;

/**
 * A child (or a DP of this site) says a parcel arrived there: check its courier transfers again
 * now, and any transfer queued for a version the parcel held (its next offer finds out what is
 * still missing, so nothing the parcel brought is sent again).
 */
export async function courierArrived(
  ctx: SiteContext,
  child: string,
  packages: readonly { id: string; version: number }[] = [],
): Promise<number> {
  // A network transfer of one of those versions running now asks again at once what is missing.
  const marks = arrivals.get(ctx.store) ?? new Map<string, number>();
  arrivals.set(ctx.store, marks);
  for (const p of packages) marks.set(`${child} ${p.id} ${p.version}`, Date.now());
  const routes = await listCourierRoutes(ctx.store, { child });
  const open = (await listTransfers(ctx.store, { child, states: ['queued', 'retrying'] })).filter(
    (t) =>
      routes.some((r) => r.packageId === t.packageId && r.version === t.version) ||
      packages.some((p) => p.id === t.packageId && p.version === t.version),
  );
  for (const t of open) await updateTransfer(ctx.store, t.id, { nextAttemptAt: null });
  return open.length;
}

// --- export ----------------------------------------------------------------------------------

/** Courier parcels exported and imported here, newest first. */
export const parcels = (ctx: SiteContext) => listParcels(ctx.store);

/**
 * What a parcel for `toSite` holds: the signed manifests, and the chunks the destination lacks
 * as far as this site knows (the child's answer to the last courier offer; else every chunk
 * not in a version known to be installed there), or every chunk with `full`.
 */
export async function planExport(ctx: SiteContext, req: ExportRequest): Promise<{ plan: ParcelPlan; header: ParcelHeader }> {
  if ((req.toSite === undefined) === (req.toDp === undefined))
    throw fail('bad_request', 'a parcel goes to one site (toSite) or to one DP of this site (toDp): give exactly one');
  let dest: string;
  if (req.toDp !== undefined) {
    dest = (await ownDp(ctx, req.toDp, 'it holds what this site holds: no parcel goes there')).code;
  } else {
    dest = (req.toSite as string).toUpperCase();
    if (dest === ctx.code) throw fail('bad_request', `site ${dest} is this site: a parcel goes to another site`);
    const site = await ctx.store.getSite(dest);
    if (!site) throw fail('not_found', `site ${dest} is not known at ${ctx.code} (see "cascade site list")`);
    if (site.relation === 'self') throw fail('bad_request', `site ${dest} is this site: a parcel goes to another site`);
  }
  const ids = [...new Set(req.packages.map((p) => p.toUpperCase()))];
  const packages: ParcelPlan['packages'] = [];
  const order: string[] = [];
  const sizes = new Map<string, number>();
  const needed = new Set<string>();
  for (const id of ids) {
    const pkg = await ctx.store.getPackage(id);
    if (!pkg) throw fail('not_found', `package ${id} is not on site ${ctx.code}`);
    const version = req.version ?? pkg.latestVersion;
    if (!(await ctx.store.getVersion(id, version))) throw fail('not_found', `package ${id} has no version ${version} on site ${ctx.code}`);
    const bytes = await ctx.library.readManifest(id, version);
    const { manifest, signature } = verifyManifest(bytes, ctx.trusted);
    const cert = await originCertificate(ctx, manifest.origin, signature.keyId);
    packages.push({ id, version, bytes: manifest.bytes, manifest: bytes, certificate: cert ? Buffer.from(JSON.stringify(cert)) : null });
    const chunks = manifestChunks(manifest);
    let want: Iterable<string> = chunks.keys();
    if (!req.full) {
      const route = await getCourierRoute(ctx.store, id, version, dest);
      // Versions known to be there (installed targets, or what the child said it holds).
      const held = await chunksKnownAt(ctx, id, dest, route?.childVersions ?? []);
      want = (route?.missing ?? [...chunks.keys()]).filter((d) => chunks.has(d) && !held.has(d));
    }
    for (const d of want) {
      if (!needed.has(d)) order.push(d);
      needed.add(d);
      sizes.set(d, chunks.get(d) as number);
    }
  }
  const rows = await ctx.store.getChunks(order);
  const entries = order.map((d) => {
    const row = rows.get(d);
    if (!row) throw fail('damaged', `chunk ${d} is missing from the library; run "cascade package verify"`);
    return { digest: d, stored: row.storedSize, size: sizes.get(d) as number };
  });
  const plan: ParcelPlan = {
    parcel: crypto.randomUUID(),
    created: ctx.clock().toISOString(),
    source: ctx.code,
    destination: dest,
    full: req.full === true,
    packages,
    chunks: entries,
    signer: { keyId: ctx.key.keyId, certificate: await originCertificate(ctx, ctx.code, ctx.key.keyId) },
  };
  return { plan, header: parcelHeader(plan) };
}

/** Chunks of the versions of a package that `site` is known to hold (and this site holds too). */
async function chunksKnownAt(ctx: SiteContext, id: string, site: string, more: number[]): Promise<Set<string>> {
  const versions = new Set(more);
  for (const t of await listTargets(ctx.store, { packageId: id, site, states: ['installed'] })) versions.add(t.version);
  const held = new Set<string>();
  for (const v of versions) {
    if (!(await ctx.store.getVersion(id, v))) continue;
    const m = verifyManifest(await ctx.library.readManifest(id, v), ctx.trusted).manifest;
    for (const d of manifestChunks(m).keys()) held.add(d);
  }
  return held;
}

/** The parcel's bytes; once the last is out, the export is recorded (status shows its id). */
export async function* exportParcel(ctx: SiteContext, plan: ParcelPlan): AsyncGenerator<Uint8Array> {
  const header = parcelHeader(plan);
  yield* writeParcel(
    plan,
    (entries) => ctx.library.readStoredMany(entries),
    (bytes) => crypto.sign(null, bytes, ctx.key.privateKey),
  );
  await recordParcel(ctx.store, {
    id: plan.parcel,
    direction: 'export',
    site: plan.destination ?? '',
    packages: plan.packages.map((p) => ({ id: p.id, version: p.version })),
    chunks: plan.chunks.length,
    bytes: header.totalBytes,
    result: null,
  });
  for (const p of plan.packages) {
    const r = plan.destination ? await getCourierRoute(ctx.store, p.id, p.version, plan.destination) : undefined;
    if (!r) continue;
    await recordExportOn(ctx.store, p.id, p.version, r.child, plan.parcel);
    const t = (await listTransfers(ctx.store, { child: r.child })).find(
      (x) => x.packageId === p.id && x.version === p.version && x.state !== 'done' && x.state !== 'failed',
    );
    if (t && r.missingBytes !== null)
      await markWaiting(ctx, t, {
        parcel: plan.parcel,
        exportedAt: ctx.clock().toISOString(),
        missingBytes: r.missingBytes,
        bytesTotal: p.bytes,
      });
  }
  await emit(ctx, {
    component: 'courier',
    severity: 'info',
    code: 'courier_exported',
    text: `parcel ${plan.parcel} for ${plan.destination}: ${plan.packages.map((p) => `${p.id} version ${p.version}`).join(', ')}; ${plan.chunks.length} chunks, ${header.totalBytes} bytes`,
    packageId: plan.packages[0]?.id ?? null,
  });
}

// --- import ----------------------------------------------------------------------------------

/** Where a parcel is imported: a site's library and store (or, later, a DP's). */
export interface ParcelSink {
  library: ContentLibrary;
  haveChunks(digests: readonly string[]): Promise<Set<string>>;
  /** Records chunks whose files are durable. */
  recordChunks(rows: { digest: string; size: number; storedSize: number; literalBytes: number }[]): Promise<void>;
  /** Checks that the header is signed by the site it names as its source, with the receiver's trust. */
  verifySource(header: ParcelHeader, signed: { bytes: Buffer; signature: Buffer }): Promise<void>;
  /** Checks a package's signed manifest (and its origin's certificate) with the receiver's trust. */
  verify(p: ParcelPackage): Promise<Manifest>;
  /** Keeps a verified manifest while its chunks arrive (so they are not collected). */
  hold(p: ParcelPackage, m: Manifest): Promise<void>;
  /** Makes the version visible when every chunk is held; else says how much is missing. */
  install(
    p: ParcelPackage,
    m: Manifest,
    parcel: ParcelHeader,
  ): Promise<{ installed: boolean; missingChunks: number; missingBytes: number }>;
}

export type { ImportReport };

/**
 * Chunks made durable together. Each commit flushes the file system twice; fewer, larger
 * commits measured faster on this project's machines (import 152-193 MiB/s at 256 MiB against
 * 119-179 at 64 MiB, four interleaved pairs). A killed import keeps what it committed; a parcel
 * cut short or damaged keeps every chunk it verified.
 */
const SEGMENT = 256 << 20;
const IN_FLIGHT = 4;
/** Staged bytes between two background flushes (see ContentLibrary.startWriteback). */
const WRITEBACK = 32 << 20;

/**
 * Imports a parcel as it streams in: header and manifests first (every signature checked
 * before any chunk is read), then the index (each chunk named by a manifest, with its size),
 * then the chunks: each decoded and checked against its digest in the worker pool, written as
 * stored, and made durable and recorded every 256 MiB while the next ones are verified (an
 * import killed half way keeps those; one whose parcel is cut short or damaged keeps every
 * chunk it verified; the next import skips them). Versions become visible
 * only after the trailing checksum matched, and only those whose chunks are all held.
 */
export interface ImportOptions {
  onProgress?: ((bytes: number) => void) | undefined;
  /** Chunks the sender left out of the body (x-cascade-omit). */
  omit?: readonly OmitRange[] | undefined;
  /** The site or DP importing; a parcel made for another is refused unless `anyway`. */
  here?: string | undefined;
  anyway?: boolean | undefined;
  /** Wakes the sender once the import is done. */
  kick?: (() => void) | undefined;
}

export async function importParcel(sink: ParcelSink, body: AsyncIterable<Uint8Array>, opts: ImportOptions = {}): Promise<ImportReport> {
  const { onProgress, omit = [] } = opts;
  const reader = new ParcelReader(body);
  const header = await reader.header();
  // Nothing of the header is used before its signature by the source site is checked.
  await sink.verifySource(header, reader.headerSignature);
  const pkgs = await reader.packages();
  const manifests: Manifest[] = [];
  const sizes = new Map<string, number>();
  for (const p of pkgs) {
    let m: Manifest;
    try {
      m = await sink.verify(p);
    } catch (e) {
      if (e instanceof CascadeError) throw new CascadeError(e.code, `parcel ${header.parcel}: ${p.id} version ${p.version}: ${e.message}`);
      throw e;
    }
    if (m.id !== p.id || m.version !== p.version)
      throw fail(
        'bad_parcel',
        `parcel ${header.parcel} says it holds ${p.id} version ${p.version}, but that manifest is ${m.id} version ${m.version}`,
      );
    manifests.push(m);
    for (const [d, n] of manifestChunks(m)) sizes.set(d, n);
  }
  // Signatures first (a parcel nobody here trusts is refused as such), then where it was made for.
  if (opts.here !== undefined && !opts.anyway && header.destination !== null && header.destination !== opts.here)
    throw fail(
      'conflict',
      `parcel ${header.parcel} was made at ${header.source} for ${header.destination}, not for ${opts.here}: import it at ${header.destination}, or here all the same with --anyway`,
    );
  const index = await reader.index((d) => sizes.get(d));
  // Chunks the sender left out (it asked which this site holds): not read. Any of them not
  // held after all is simply missing, as from a partial parcel.
  reader.omitRanges(omit);
  // What is here already, asked once (a resumed or repeated import skips those chunks).
  const held = await sink.haveChunks(index.map((e) => e.digest));
  for (let i = 0; i < pkgs.length; i++) await sink.hold(pkgs[i] as ParcelPackage, manifests[i] as Manifest);

  const report: ImportReport = {
    parcel: header.parcel,
    source: header.source,
    destination: header.destination,
    created: header.created,
    packages: [],
    chunks: {
      inParcel: index.length,
      stored: 0,
      alreadyHeld: index.filter((e, i) => reader.isOmitted(i) && held.has(e.digest)).length,
    },
    bytes: { parcel: header.totalBytes, received: 0, stored: 0 },
  };
  type Item = { digest: string; offset: number; length: number; size: number };
  /** Chunks staged together and made durable together (about SEGMENT bytes). */
  type Segment = {
    staged: { tmp: string; path: string }[];
    rows: { digest: string; size: number; storedSize: number; literalBytes: number }[];
    tasks: Promise<void>[];
    bytes: number;
    committed: boolean;
  };
  const newSegment = (): Segment => ({ staged: [], rows: [], tasks: [], bytes: 0, committed: false });
  const segments: Segment[] = [];
  let segment = newSegment();
  segments.push(segment);
  const inFlight: Promise<void>[] = [];
  // Task buffers come back from the workers and are used again.
  const spare: Uint8Array[] = [];
  const alloc = (bytes: number) => {
    const b = spare.pop();
    return b && b.length >= bytes ? b : Buffer.allocUnsafeSlow(bytes);
  };
  const verifyAndStage = async (seg: Segment, buf: Uint8Array, items: Item[]) => {
    const { staged: res, buf: back } = await sink.library.ingestStored(buf, items);
    spare.push(back);
    let badDigest: string | undefined;
    res.forEach((s, i) => {
      const it = items[i] as Item;
      if (!s) {
        badDigest ??= it.digest;
        return;
      }
      seg.staged.push(s);
      seg.rows.push({ digest: it.digest, size: it.size, storedSize: it.length, literalBytes: it.size });
    });
    if (badDigest)
      throw fail(
        'bad_parcel',
        `parcel ${header.parcel} is damaged or altered: chunk ${badDigest} does not match its digest; nothing was installed`,
      );
  };
  // Each segment is committed (flush, rename, flush, record) once its tasks are done and the
  // segment before it is committed, while reading and verifying go on; at most two wait.
  const commits: Promise<void>[] = [];
  let committing: Promise<void> = Promise.resolve();
  const commit = async (seg: Segment) => {
    const prev = committing;
    committing = (async () => {
      await Promise.all(seg.tasks);
      await prev;
      await sink.library.commit(seg.staged);
      await sink.recordChunks(seg.rows);
      seg.committed = true;
      report.chunks.stored += seg.rows.length;
      report.bytes.stored += seg.rows.reduce((n, r) => n + r.size, 0);
    })();
    committing.catch(() => {});
    commits.push(committing);
    while (commits.length > 2) await commits.shift();
  };
  let seen = 0;
  let unflushed = 0;
  try {
    for await (const task of reader.chunks(8 << 20, alloc)) {
      const items = task.items.filter((i) => !held.has(i.digest));
      report.chunks.alreadyHeld += task.items.length - items.length;
      if (items.length > 0) {
        // Moves task.buf to a worker: nothing may read it here afterwards.
        const p = verifyAndStage(segment, task.buf, items);
        p.catch(() => {});
        inFlight.push(p);
        segment.tasks.push(p);
        const bytes = items.reduce((n, i) => n + i.length, 0);
        segment.bytes += bytes;
        unflushed += bytes;
        if (unflushed >= WRITEBACK) {
          unflushed = 0;
          sink.library.startWriteback();
        }
      } else spare.push(task.buf);
      while (inFlight.length >= IN_FLIGHT) await inFlight.shift();
      if (segment.bytes >= SEGMENT) {
        const full = segment;
        segment = newSegment();
        segments.push(segment);
        await commit(full);
      }
      onProgress?.(reader.bytesRead - seen);
      seen = reader.bytesRead;
    }
    await commit(segment);
    await Promise.all(commits);
  } catch (e) {
    await Promise.allSettled([...inFlight, ...segments.flatMap((s) => s.tasks), ...commits]);
    // Every staged chunk was verified: keep them, so a cut or damaged parcel still leaves what
    // it had right, and the next import resumes there. Nothing becomes visible.
    const rest = segments.filter((s) => !s.committed);
    try {
      await sink.library.commit(rest.flatMap((s) => s.staged));
      await sink.recordChunks(rest.flatMap((s) => s.rows));
    } catch {
      await sink.library.discard(rest.flatMap((s) => s.staged));
    }
    // The body is left to the server, which drains it: the client then reads the error.
    throw e;
  }
  await reader.finish();
  onProgress?.(reader.bytesRead - seen);
  report.bytes.received = reader.bytesRead;
  for (let i = 0; i < pkgs.length; i++) {
    const p = pkgs[i] as ParcelPackage;
    const m = manifests[i] as Manifest;
    const r = await sink.install(p, m, header);
    report.packages.push({
      id: p.id,
      version: p.version,
      bytes: m.bytes,
      state: r.installed ? 'installed' : 'incomplete',
      missingChunks: r.missingChunks,
      missingBytes: r.missingBytes,
    });
  }
  return report;
}

/**
 * A parcel's header is the word of the site it names as its source: signed with that site's
 * key, which the central key vouches for (the source's certificate comes in the header; the
 * central site needs none). A header rewritten on the way — another source or destination,
 * another parcel id — no longer verifies.
 */
export async function verifyParcelSource(
  ctx: SiteContext,
  header: ParcelHeader,
  signed: { bytes: Buffer; signature: Buffer },
): Promise<void> {
  const central = await centralTrust(ctx);
  let key: TrustedKey | undefined;
  const refuse = (why: string) =>
    fail(
      'bad_parcel',
      `parcel ${header.parcel} says it was made at ${header.source}, but ${why}: it was altered, or not made there; refused`,
    );
  if (header.signer.certificate !== null) {
    let c: ReturnType<typeof verifyCertificate>;
    try {
      c = verifyCertificate(header.signer.certificate, central.key);
    } catch (e) {
      throw refuse(`the certificate it carries does not verify (${(e as Error).message})`);
    }
    if (c.code !== header.source) throw refuse(`the certificate it carries is that of ${c.code}`);
    key = c.trusted;
  } else if (header.source === central.code) key = central.key;
  if (!key)
    throw refuse(`${header.source} is not this hierarchy's central site (${central.code}) and the parcel carries no certificate of it`);
  if (key.keyId !== header.signer.keyId)
    throw refuse(`its header names key ${header.signer.keyId}, not ${header.source}'s key ${key.keyId}`);
  let ok = false;
  try {
    ok = crypto.verify(null, signed.bytes, crypto.createPublicKey(key.publicKeyPem), signed.signature);
  } catch {
    ok = false;
  }
  if (!ok) throw refuse(`its header is not signed by ${header.source}'s key ${key.keyId}`);
}

/** A site as the place a parcel is imported: its trust, its library, its store, its targets. */
export function siteSink(ctx: SiteContext): ParcelSink {
  return {
    library: ctx.library,
    haveChunks: (d) => ctx.store.haveChunks(d),
    recordChunks: async (rows) => {
      await ctx.store.insertChunks(rows);
    },
    verifySource: (header, signed) => verifyParcelSource(ctx, header, signed),
    async verify(p) {
      await trustOrigin(ctx, p.certificate);
      const m = verifyManifest(p.manifest, ctx.trusted).manifest;
      const deleted = await deletedAtOrigin(ctx, m.id, m.version);
      if (deleted) throw fail('conflict', deleted);
      return m;
    },
    async hold(p) {
      if (await ctx.store.getVersion(p.id, p.version)) return;
      // As an offer does: the signed manifest waits in content/incoming/ until the version is
      // installed; garbage collection spares the chunks it names.
      await writeFileAtomic(ctx.library.tmpDir, ctx.library.incomingPath(p.id, p.version), p.manifest);
    },
    async install(p, m, parcel) {
      const chunks = manifestChunks(m);
      const missing = await lackedChunks(ctx, [...chunks.keys()]);
      if (missing.length === 0) {
        const r = await commitOffer(ctx, `courier parcel ${parcel.parcel}`, p.id, p.version);
        if (r.installed) return { installed: true, missingChunks: 0, missingBytes: 0 };
      }
      const missingBytes = missing.reduce((n, d) => n + (chunks.get(d) ?? 0), 0);
      const [own] = await listTargets(ctx.store, { packageId: p.id, version: p.version, site: ctx.code });
      if (own && own.state !== 'installed') {
        await updateTarget(ctx.store, p.id, p.version, ctx.code, {
          state: 'pending',
          bytesDone: m.bytes - missingBytes,
          detail: `${missingText(missingBytes)} still missing after courier parcel ${parcel.parcel}; the rest comes over the network or in another parcel`,
        });
      }
      return { installed: false, missingChunks: missing.length, missingBytes };
    },
  };
}

/**
 * `cascade courier import` at a site: imports the parcel, records it, tells the parent (so it
 * checks its courier transfers at once), and lets the content flow on below as usual.
 */
export async function importAtSite(ctx: SiteContext, body: AsyncIterable<Uint8Array>, opts: ImportOptions = {}): Promise<ImportReport> {
  const report = { ...(await importParcel(siteSink(ctx), body, { here: ctx.code, ...opts })), importedAt: ctx.code };
  await recordParcel(ctx.store, {
    id: report.parcel,
    direction: 'import',
    site: report.source,
    packages: report.packages.map((p) => ({ id: p.id, version: p.version })),
    chunks: report.chunks.inParcel,
    bytes: report.bytes.parcel,
    result: report,
  });
  const what = report.packages
    .map(
      (p) =>
        `${p.id} version ${p.version} ${p.state === 'installed' ? 'installed' : `incomplete (${missingText(p.missingBytes)} missing)`}`,
    )
    .join('; ');
  await emit(ctx, {
    component: 'courier',
    severity: report.packages.every((p) => p.state === 'installed') ? 'info' : 'warning',
    code: 'courier_imported',
    text: `parcel ${report.parcel} from ${report.source} imported at ${ctx.code}: ${what}; ${report.chunks.stored} chunks stored, ${report.chunks.alreadyHeld} already here`,
    packageId: report.packages[0]?.id ?? null,
  });
  opts.kick?.();
  const parent = await parentOf(ctx.store);
  if (parent) {
    await Promise.resolve()
      .then(() =>
        peerClient(parent).call(courierCalls.arrived, {
          parcel: report.parcel,
          packages: report.packages.map((p) => ({ id: p.id, version: p.version })),
        }),
      )
      .catch((err) =>
        ctx.log.warn({ err: (err as Error).message }, 'could not tell the parent a courier parcel arrived; it checks again later'),
      );
  }
  return report;
}

// --- import onto a DP (cascade courier import FILE --dp NAME) --------------------------------

/**
 * One of this site's own DPs (relation `dp`), by name; one clear line for anything else. `local`
 * says what to do when the name is this site's local DP (its own library).
 */
export async function ownDp(ctx: SiteContext, name: string, local: string): Promise<SiteRow> {
  if (name === ctx.code || (name.length === 3 && name.toUpperCase() === ctx.code))
    throw fail('bad_request', `${ctx.code} is this site's local DP (its own library): ${local}`);
  const row = await ctx.store.getSite(name.length === 3 ? name.toUpperCase() : name);
  if (row?.relation === 'dp') return row;
  if (row?.relation === 'dp-below')
    throw fail(
      'bad_request',
      `DP ${name} belongs to site ${row.parent}, not to ${ctx.code}: ask ${row.parent} (--site with its URL, and its admin token)`,
    );
  if (row && row.relation !== 'parent') throw fail('bad_request', `${row.code} is a site, not a DP of ${ctx.code}`);
  throw fail('not_found', `DP ${name} is not a DP of site ${ctx.code} (see "cascade dp list")`);
}

/**
 * At a site: a short-lived import ticket for one of its own DPs, signed with the site's key. The
 * parcel's bytes then go to the DP directly, never through this site: a DP is sent a parcel
 * because its link from here is slow. Whether the DP can be reached is for the caller to find out
 * (it may reach the DP where this site cannot).
 */
export async function issueDpTicket(ctx: SiteContext, name: string): Promise<DpTicket> {
  const dp = await ownDp(ctx, name, 'import the parcel at the site, without --dp');
  if (!dp.url)
    throw fail('unavailable', `DP ${dp.code} has not told site ${ctx.code} its address yet; start it ("cascade dp start") and try again`);
  const { ticket, body } = issueTicket(ctx.key, ctx.code, dp.code, ctx.clock());
  ctx.log.info({ dp: dp.code, expiresAt: body.expiresAt }, 'courier import ticket issued');
  return { dp: dp.code, site: ctx.code, url: dp.url, ticket, expiresAt: body.expiresAt, tlsPin: dp.tlsPin };
}

/**
 * At a DP: checks the import ticket (signed by its own site's key, for this DP, not expired)
 * before a byte of the parcel is read, then imports exactly as a site does: the DP's own trust,
 * library and store, every chunk verified and stored durably, a version visible only when
 * complete (through the same commit as when its site commits an offer), the parcel recorded,
 * and its site told, so that the site's sender offers again at once and finds nothing missing.
 */
export async function importAtDp(
  ctx: SiteContext,
  ticket: string,
  body: AsyncIterable<Uint8Array>,
  opts: ImportOptions = {},
): Promise<ImportReport & { dp: string }> {
  const t = await checkDpTicket(ctx, ticket);
  // A ticket carries one import: a copy of it (from a log, a proxy) is worth nothing afterwards.
  if (!(await ctx.store.claimOnce(`ticket.used.${t.nonce}`, ctx.clock().toISOString())))
    throw fail(
      'unauthorized',
      `this import ticket was used already; ask site ${t.site} for a new one (cascade courier import --dp ${ctx.code} does)`,
    );
  const report = await importAtSite(ctx, body, opts);
  return { ...report, dp: ctx.code };
}

/**
 * At a DP, for the holder of an import ticket: which of these chunks the DP lacks, so the CLI
 * sends only those of a parcel (a repeated or resumed import).
 */
export async function missingAtDp(ctx: SiteContext, ticket: string, digests: readonly string[]): Promise<string[]> {
  await checkDpTicket(ctx, ticket);
  return lackedChunks(ctx, digests);
}

/** An import ticket from this DP's own site, for this DP, not expired; else 401 or 403. */
export async function checkDpTicket(ctx: SiteContext, ticket: string): Promise<TicketBody> {
  const site = await parentOf(ctx.store);
  if (!site) throw fail('internal', `DP ${ctx.code} has no site recorded`);
  return verifyTicket(ticket, {
    dp: ctx.code,
    site: site.code,
    key: { keyId: site.keyId, publicKeyPem: site.publicKey, site: site.code },
    now: ctx.clock(),
  });
}
