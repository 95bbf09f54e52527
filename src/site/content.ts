import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { IngestReport } from '../api/chunks.js';
import type { PackageShow, PackageSummary, VerifyReport, VersionReport } from '../api/packages.js';
import { RECORD_STORED, RECORD_WHOLE, readBatchTasks } from '../content/batch.js';
import { chunkLengths } from '../content/chunker.js';
import { decodeChunk } from '../content/codec.js';
import { applyDelta, parseDelta, type SubchunkSig, signature } from '../content/delta.js';
import {
  type Entry,
  type Manifest,
  manifestChunks,
  type Program,
  parseManifest,
  signManifestWithDigest,
  verifyManifest,
} from '../content/manifest.js';
import { type ValidateOptions, type ValidationReport, validateVersion } from '../content/validate.js';
import { CHUNK_SIZES } from '../core/chunk.js';
import { fail } from '../core/errors.js';
import { formatPackageId, type Priority } from '../core/package.js';
import { listTargets } from '../store/distribution.js';
import { deleteSource } from '../store/sources.js';
import type { SiteContext } from './context.js';
import { recordDeletion } from './policy.js';

export interface Problem {
  path: string | null;
  chunk: string | null;
  kind: 'missing' | 'damaged' | 'size' | 'manifest';
  detail: string;
}

const TASK_BYTES = 4 << 20;
const IN_FLIGHT = 3;

/** The digests (each once) that the library lacks: what a `missing` call answers. */
export async function lackedChunks(ctx: Pick<SiteContext, 'store'>, digests: readonly string[]): Promise<string[]> {
  const have = await ctx.store.haveChunks([...digests]);
  return [...new Set(digests)].filter((d) => !have.has(d));
}

/**
 * Receives a chunk batch: each payload is copied once, from the network into a shared task
 * buffer; the worker pool checks every chunk against its digest and compresses what helps
 * (a chunk that arrives stored, compressed by the site that ingested it, is decoded to check
 * it and kept as it came);
 * the chunks are written to temporary files as each task returns, then made durable with one
 * flush for the whole batch, then recorded. Resolves only when all of it is on disk.
 */
export async function ingestBatch(
  ctx: SiteContext,
  body: AsyncIterable<Uint8Array>,
  opts: { repair?: boolean } = {},
): Promise<IngestReport> {
  const report: IngestReport = { received: 0, stored: 0, bytes: 0, literalBytes: 0 };
  const inFlight: Promise<void>[] = [];
  const staged: { tmp: string; path: string }[] = [];
  const rows: { digest: string; size: number; storedSize: number; literalBytes: number }[] = [];
  /** `size`: the chunk's raw bytes; `length`: its bytes in the task buffer (stored bytes, for a stored chunk). */
  type Item = { digest: string; offset: number; length: number; size: number; literal: number };

  // Moves `buf` to a worker: nothing may read it here afterwards.
  const start = (buf: Uint8Array, items: Item[], asStored = false) => {
    const p = (async () => {
      const res = asStored
        ? (await ctx.library.ingestStored(buf, items)).staged.map((s, i) => s && { ...s, storedSize: (items[i] as Item).length })
        : await ctx.library.ingest(buf, items);
      let bad: string | undefined;
      res.forEach((s, i) => {
        const item = items[i] as Item;
        if (!s) {
          bad ??= item.digest;
          return;
        }
        staged.push(s);
        rows.push({ digest: item.digest, size: item.size, storedSize: s.storedSize, literalBytes: item.literal });
      });
      if (bad) throw fail('chunk_mismatch', `chunk ${bad} does not match its data; nothing of the batch was stored`);
    })();
    p.catch(() => {});
    inFlight.push(p);
  };
  /** Chunks that are not in place in a task buffer (rebuilt, or after a stored size) get a buffer of their own. */
  type Loose = { digest: string; data: Uint8Array; size: number; literal: number };
  const startCopied = (chunks: Loose[], asStored: boolean) => {
    if (chunks.length === 0) return;
    const buf = new Uint8Array(chunks.reduce((n, c) => n + c.data.length, 0));
    let at = 0;
    const items = chunks.map((c) => {
      buf.set(c.data, at);
      at += c.data.length;
      return { digest: c.digest, offset: at - c.data.length, length: c.data.length, size: c.size, literal: c.literal };
    });
    start(buf, items, asStored);
  };

  try {
    for await (const task of readBatchTasks(body, TASK_BYTES)) {
      const items: Item[] = [];
      const rebuilt: Loose[] = [];
      const stored: Loose[] = [];
      for (const r of task.records) {
        report.received++;
        if (r.kind === RECORD_WHOLE) {
          items.push({ digest: r.digest, offset: r.offset, length: r.length, size: r.length, literal: r.length });
          report.bytes += r.length;
          report.literalBytes += r.length;
        } else if (r.kind === RECORD_STORED) {
          const size = Buffer.from(task.buf.buffer, task.buf.byteOffset + r.offset, 4).readUInt32BE(0);
          if (size === 0 || size > CHUNK_SIZES.max)
            throw fail('bad_request', `stored chunk ${r.digest} in the batch gives a size of ${size} bytes (1..${CHUNK_SIZES.max})`);
          stored.push({ digest: r.digest, data: task.buf.subarray(r.offset + 4, r.offset + r.length), size, literal: size });
          report.bytes += size;
          report.literalBytes += size;
        } else {
          const chunk = await rebuild(ctx, r.digest, task.buf.subarray(r.offset, r.offset + r.length));
          rebuilt.push({ digest: r.digest, data: chunk.raw, size: chunk.raw.length, literal: chunk.literal });
          report.bytes += chunk.raw.length;
          report.literalBytes += chunk.literal;
        }
      }
      startCopied(rebuilt, false);
      // The worker keeps stored chunks' bytes as they came.
      startCopied(stored, true);
      // Moves task.buf to a worker: nothing may read it here afterwards.
      if (items.length > 0) start(task.buf, items);
      while (inFlight.length >= IN_FLIGHT) await inFlight.shift();
    }
    await Promise.all(inFlight);
  } catch (e) {
    // Let the tasks already started settle, then drop what they staged: nothing becomes visible.
    await Promise.allSettled(inFlight);
    await ctx.library.discard(staged);
    throw e;
  }
  // Flush, rename, flush for the whole batch, then the rows: a row always has its whole file.
  await ctx.library.commit(staged);
  const added = await ctx.store.insertChunks(rows);
  // Chunks this site held already came over the wire for nothing: senders ask first, so this
  // counts a defect (the fault suite reads it from the log; docs/development.md#the-fault-suite).
  // A repair sends them on purpose: they replace copies found damaged here.
  if (added < rows.length && opts.repair) ctx.log.info({ replaced: rows.length - added }, 'damaged chunks replaced by a repair');
  else if (added < rows.length) ctx.log.warn({ again: rows.length - added }, 'chunks received that this site already held');
  report.stored = rows.length;
  return report;
}

/** Rebuilds a chunk sent as a delta of chunks the library holds. */
async function rebuild(ctx: SiteContext, digest: string, payload: Uint8Array): Promise<{ raw: Uint8Array; literal: number }> {
  const delta = parseDelta(payload);
  const bases = new Map<string, Uint8Array>();
  const rows = await ctx.store.getChunks(delta.bases);
  for (const d of delta.bases) {
    const row = rows.get(d);
    if (!row) throw fail('missing_chunks', `delta for chunk ${digest} refers to chunk ${d}, which the library does not hold`);
    bases.set(d, decodeChunk(await ctx.library.readStored(d), row.size));
  }
  const raw = applyDelta(delta, bases);
  return { raw, literal: delta.literalBytes };
}

export interface VersionInput {
  /** A new package's ID when it was reserved beforehand (a source read on the site). */
  id?: string | undefined;
  name?: string | undefined;
  priority?: Priority | undefined;
  programs?: Program[] | undefined;
  files: Entry[];
}

/**
 * Commits a package version: every chunk must be in the library; the manifest is signed, the
 * conditional version insert claims the number (a racing loser gets `conflict` here, before it
 * has written anything), then the manifest is written durably, still inside the transaction, so
 * a version row never commits without its file and a loser never overwrites a winner's file.
 */
export async function commitVersion(ctx: SiteContext, packageId: string | null, input: VersionInput): Promise<VersionReport> {
  return ctx.store.transaction(async (tx) => {
    let id: string;
    let version: number;
    let name: string;
    let priority: Priority;
    let programs: Program[];
    if (packageId === null) {
      if (!input.name) throw fail('bad_request', 'a new package needs a name');
      id = input.id ?? formatPackageId(ctx.code, await tx.nextCounter('package'));
      version = 1;
      name = input.name;
      priority = input.priority ?? 'medium';
      programs = input.programs ?? [];
    } else {
      const pkg = await tx.getPackage(packageId);
      if (!pkg) throw fail('not_found', `package ${packageId} does not exist`);
      // Programs carry over from the latest version that exists; the number is never reused.
      const prev = await readVersion(ctx, pkg.id, pkg.latestVersion);
      id = pkg.id;
      version = pkg.lastVersion + 1;
      name = input.name ?? pkg.name;
      priority = input.priority ?? pkg.priority;
      programs = input.programs ?? prev.programs;
    }
    const files = [...input.files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    const bytes = files.reduce((s, f) => s + (f.type === 'file' ? f.size : 0), 0);
    const manifest: Manifest = parseManifest({
      format: 1,
      id,
      version,
      name,
      priority,
      origin: ctx.code,
      created: ctx.clock().toISOString(),
      programs,
      files,
      bytes,
    });
    const chunks = manifestChunks(manifest);
    // Every chunk must have its row to take the reference: one collected since it was uploaded
    // would leave a hole (inside the transaction, so nothing half-done stays).
    const rows = await tx.takeRefs(chunks.keys());
    if (rows.size !== chunks.size) {
      const missing = [...chunks.keys()].filter((d) => !rows.has(d));
      throw fail(
        'missing_chunks',
        `${missing.length} chunk(s) are not in the library yet (first: ${missing[0]}); upload them, then commit again`,
      );
    }
    let newBytes = 0;
    let newChunks = 0;
    let newChunkBytes = 0;
    for (const r of rows.values()) {
      // Its first reference is this version's: the chunk is new to the site's packages.
      if (r.refs <= 1) {
        newChunks++;
        newChunkBytes += r.size;
        newBytes += r.literalBytes;
      }
    }
    const { signed, digest } = signManifestWithDigest(manifest, ctx.key);
    const fileCount = files.filter((f) => f.type === 'file').length;
    await tx.insertVersion({ id, name, priority }, { version, manifestDigest: digest, files: fileCount, bytes, newBytes });
    // Only the writer that claimed this version number gets here; the row commits after its file.
    await ctx.library.writeManifest(id, version, signed);
    return {
      id,
      version,
      files: fileCount,
      bytes,
      newBytes,
      newChunks,
      newChunkBytes,
    };
  });
}

/** Reads and verifies a stored manifest (the one verification function). */
export async function readVersion(ctx: SiteContext, id: string, version: number): Promise<Manifest> {
  return (await readStoredManifest(ctx, id, version)).manifest;
}

export async function readSignedManifest(ctx: SiteContext, id: string, version: number): Promise<Buffer> {
  if (!(await ctx.store.getVersion(id, version))) throw fail('not_found', `package ${id} has no version ${version}`);
  return (await readStoredManifest(ctx, id, version)).bytes;
}

/**
 * A manifest this site stored and signed was checked when it was written, so one that fails
 * verification now (altered bytes, bad signature, another version's file) is damage on this
 * site's disk, not a bad request: `damaged` (500), naming the package and version.
 */
async function readStoredManifest(ctx: SiteContext, id: string, version: number): Promise<{ manifest: Manifest; bytes: Buffer }> {
  const bytes = await ctx.library.readManifest(id, version);
  let manifest: Manifest;
  try {
    manifest = verifyManifest(bytes, ctx.trusted).manifest;
  } catch (e) {
    throw fail('damaged', `the stored manifest of ${id} version ${version} is damaged: ${(e as Error).message}`);
  }
  if (manifest.id !== id || manifest.version !== version) {
    throw fail(
      'damaged',
      `the stored manifest of ${id} version ${version} is damaged: it holds ${manifest.id} version ${manifest.version}`,
    );
  }
  return { manifest, bytes };
}

/**
 * Re-hashes every chunk of a manifest from the library in the worker pool and names each
 * damaged or missing chunk and the files that use it (`validateVersion`, content layer).
 */
export function verifyContent(
  ctx: SiteContext,
  manifest: Manifest,
  opts?: ValidateOptions,
): Promise<Omit<ValidationReport, 'problems'> & { problems: Problem[] }> {
  return validateVersion(ctx.library, manifest, opts);
}

/** Every chunk named by a manifest waiting in content/incoming/ (offered, not committed). */
async function incomingChunks(ctx: SiteContext): Promise<Set<string>> {
  const out = new Set<string>();
  const root = path.join(ctx.library.root, 'incoming');
  let ids: string[];
  try {
    ids = await fs.readdir(root);
  } catch {
    return out;
  }
  for (const id of ids) {
    for (const f of await fs.readdir(path.join(root, id)).catch(() => [] as string[])) {
      try {
        const m = verifyManifest(await fs.readFile(path.join(root, id, f)), ctx.trusted).manifest;
        for (const d of manifestChunks(m).keys()) out.add(d);
      } catch {}
    }
  }
  return out;
}

/** Deletes one version: its manifest, its row, and one reference from each of its chunks. */
export async function deleteVersion(ctx: SiteContext, id: string, version: number): Promise<void> {
  const manifest = await readVersion(ctx, id, version).catch(() => null);
  await ctx.store.transaction(async (tx) => {
    if (!(await tx.getVersion(id, version))) throw fail('not_found', `package ${id} has no version ${version}`);
    if (manifest) await tx.addRefs(manifestChunks(manifest).keys(), -1);
    await tx.deleteVersion(id, version);
  });
  await ctx.library.deleteManifest(id, version);
}

/** Frees chunks no version references, once they are older than the grace period. */
export async function collectGarbage(ctx: SiteContext, graceSeconds: number): Promise<{ chunks: number; bytes: number }> {
  const before = new Date(ctx.clock().getTime() - graceSeconds * 1000).toISOString();
  let chunks = 0;
  let bytes = 0;
  // Chunks of versions still arriving (offered, not yet committed) are spared, however long
  // a schedule keeps them waiting.
  const arriving = await incomingChunks(ctx);
  for (;;) {
    const rows = (await ctx.store.unreferencedChunks(before, 1000)).filter((r) => !arriving.has(r.digest));
    if (rows.length === 0) break;
    const deleted = new Set(await ctx.store.deleteUnreferenced(rows.map((r) => r.digest)));
    for (const r of rows) {
      if (!deleted.has(r.digest)) continue;
      await ctx.library.deleteChunk(r.digest);
      chunks++;
      bytes += r.storedSize;
    }
    if (deleted.size === 0) break;
  }
  if (chunks > 0) ctx.log.info({ chunks, bytes }, 'garbage collection freed chunks');
  return { chunks, bytes };
}

/** Per chunk held: [length, fingerprint] of each sub-chunk, the base a sender builds a delta on. */
export async function chunkSignatures(ctx: SiteContext, digests: readonly string[]): Promise<{ digest: string; subs: SubchunkSig[] }[]> {
  const out = [];
  for (const [digest, row] of await ctx.store.getChunks([...digests])) {
    const raw = decodeChunk(await ctx.library.readStored(digest), row.size);
    out.push({ digest, subs: signature(raw) });
  }
  return out;
}

/** A stored chunk as it is on disk (codec tag byte, then payload); not_found when not held. */
export async function readStoredChunk(ctx: SiteContext, digest: string): Promise<Buffer> {
  const have = await ctx.store.haveChunks([digest]);
  if (!have.has(digest)) throw fail('not_found', `chunk ${digest} is not in the library`);
  return ctx.library.readStored(digest);
}

// --- what the package handlers read ------------------------------------------------------------

/** Every package here, with its latest version's size. */
export async function listPackages(ctx: SiteContext): Promise<PackageSummary[]> {
  const out: PackageSummary[] = [];
  for (const p of await ctx.store.listPackages()) {
    const versions = await ctx.store.listVersions(p.id);
    const latest = versions.find((v) => v.version === p.latestVersion);
    out.push({
      id: p.id,
      name: p.name,
      priority: p.priority,
      version: p.latestVersion,
      versions: versions.map((v) => v.version),
      files: latest?.files ?? 0,
      bytes: latest?.bytes ?? 0,
      createdAt: p.createdAt,
      updatedAt: p.updatedAt,
    });
  }
  // Packages made at sites below, as each child reported them (not held here unless distributed here).
  for (const child of (await ctx.store.listSites()).filter((s) => s.relation === 'child')) {
    const below = await ctx.store.getMeta(`packagesBelow.${child.code}`);
    for (const p of below ? (JSON.parse(below) as PackageSummary[]) : [])
      if (!out.some((x) => x.id === p.id)) out.push({ ...p, held: false });
  }
  return out.sort((a, b) => a.id.localeCompare(b.id));
}

/** A package version (the latest unless `wanted`): its programs and files. */
export async function showPackage(ctx: SiteContext, id: string, wanted: number | undefined): Promise<PackageShow> {
  const pkg = await ctx.store.getPackage(id);
  if (!pkg) throw fail('not_found', `package ${id} does not exist`);
  const version = wanted ?? pkg.latestVersion;
  const row = await ctx.store.getVersion(id, version);
  if (!row) throw fail('not_found', `package ${id} has no version ${version}`);
  const m = await readVersion(ctx, id, version);
  const versions = (await ctx.store.listVersions(id)).map((v) => v.version);
  return {
    id,
    name: m.name,
    version,
    priority: m.priority,
    programs: m.programs,
    files: m.files.map((f) =>
      f.type === 'file'
        ? { path: f.path, type: f.type, size: f.size, mode: f.mode }
        : f.type === 'dir'
          ? { path: f.path, type: f.type, size: 0, mode: f.mode }
          : { path: f.path, type: f.type, size: 0, target: f.target },
    ),
    bytes: m.bytes,
    origin: m.origin,
    created: m.created,
    manifestDigest: row.manifestDigest,
    versions,
  };
}

/** Re-hashes the stored content of a package's versions (or of one); names every problem. */
export async function verifyPackage(ctx: SiteContext, id: string, only: number | undefined): Promise<VerifyReport> {
  const all = await ctx.store.listVersions(id);
  if (all.length === 0) throw fail('not_found', `package ${id} does not exist`);
  const pick = only ? all.filter((v) => v.version === only) : all;
  if (pick.length === 0) throw fail('not_found', `package ${id} has no version ${only}`);
  const versions = [];
  for (const v of pick) {
    try {
      const m = await readVersion(ctx, id, v.version);
      versions.push({ version: v.version, ...(await verifyContent(ctx, m)) });
    } catch (e) {
      versions.push({
        version: v.version,
        ok: false,
        checkedFiles: 0,
        checkedChunks: 0,
        checkedBytes: 0,
        problems: [{ path: null, chunk: null, kind: 'manifest' as const, detail: (e as Error).message }],
      });
    }
  }
  const ok = versions.every((v) => v.ok);
  if (!ok) ctx.log.warn({ package: id, problems: versions.flatMap((v) => v.problems).length }, 'package content is damaged');
  return { id, ok, versions };
}

/** Deletes one version of a package, or every version; answers the versions deleted. */
export async function deletePackage(ctx: SiteContext, id: string, only: number | undefined): Promise<number[]> {
  const all = (await ctx.store.listVersions(id)).map((v) => v.version);
  if (all.length === 0) throw fail('not_found', `package ${id} does not exist`);
  if (only && !all.includes(only)) throw fail('not_found', `package ${id} has no version ${only}`);
  const gone = only ? [only] : all;
  // A version still on DPs (other than this site's own) is taken off them first, explicitly.
  const on = (await listTargets(ctx.store, { packageId: id, states: ['installed', 'sending', 'pending', 'retrying', 'failed'] })).filter(
    (t) => gone.includes(t.version) && t.site !== ctx.code,
  );
  if (on.length > 0) {
    const versions = [...new Set(on.map((t) => t.version))].sort((a, b) => a - b);
    const how = versions
      .map(
        (v) =>
          `cascade undistribute ${id} --version ${v} ${on
            .filter((t) => t.version === v)
            .map((t) => `--from dp:${t.site}`)
            .join(' ')}`,
      )
      .join('; ');
    throw fail(
      'conflict',
      `${id} version ${versions.join(', ')} is still distributed to ${[...new Set(on.map((t) => t.site))].join(', ')}: remove it from them first (${how}), then delete`,
    );
  }
  for (const v of gone) await deleteVersion(ctx, id, v);
  // A package deleted whole forgets its source folder on the site (and its schedule).
  if (gone.length === all.length) await deleteSource(ctx.store, id);
  // At the package's own site the deletion is recorded, signed, and travels down the tree: no
  // site installs these versions again.
  if (id.slice(0, 3) === ctx.code) await recordDeletion(ctx, id, gone);
  return gone;
}

/** Stores one file's chunks in the library (those it lacks), durably; its manifest entry. */
export async function storeBuffer(ctx: SiteContext, data: Buffer, filePath: string, mode: number): Promise<Entry> {
  const chunks: [string, number][] = [];
  const items: { digest: string; offset: number; length: number }[] = [];
  let at = 0;
  for (const len of chunkLengths(data)) {
    const digest = crypto
      .createHash('sha256')
      .update(data.subarray(at, at + len))
      .digest('hex');
    chunks.push([digest, len]);
    items.push({ digest, offset: at, length: len });
    at += len;
  }
  const lacked = new Set(
    await lackedChunks(
      ctx,
      items.map((i) => i.digest),
    ),
  );
  const todo = items.filter((i, n) => lacked.has(i.digest) && items.findIndex((j) => j.digest === i.digest) === n);
  if (todo.length > 0) {
    // The buffer moves to a worker thread: give it a copy.
    const staged = await ctx.library.ingest(new Uint8Array(data), todo);
    const ok = staged.filter((s) => s !== null);
    if (ok.length !== todo.length) {
      await ctx.library.discard(ok);
      throw fail('internal', `storing ${filePath} failed: a chunk did not match its digest`);
    }
    await ctx.library.commit(ok);
    await ctx.store.insertChunks(
      todo.map((t, i) => ({
        digest: t.digest,
        size: t.length,
        storedSize: (ok[i] as { storedSize: number }).storedSize,
        literalBytes: t.length,
      })),
    );
  }
  return { type: 'file', path: filePath, mode, size: data.length, chunks };
}
