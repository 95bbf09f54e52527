import fs from 'node:fs';
import type { ChunkSignatures } from '../api/chunks.js';
import type { ApiClient } from '../api/client.js';
import { PATHS } from '../api/paths.js';
import { encodeRecordHeader, RECORD_DELTA, RECORD_WHOLE } from '../content/batch.js';
import { MAX_BASES, makeDelta, type SubchunkSig } from '../content/delta.js';
import { type ChunkIndex, chunkIndex, type Entry, type Manifest } from '../content/manifest.js';
import { runChunkFiles } from '../content/pool.js';
import type { SourceEntry } from '../content/source.js';
import type { ChunkFilesResult } from '../content/worker.js';
import { fail } from '../core/errors.js';

export interface UploadStats {
  files: number;
  bytes: number;
  chunks: number;
  uploadedChunks: number;
  /** Bytes sent in chunk records (whole chunks and delta payloads). */
  sentBytes: number;
  deltaChunks: number;
}

interface Located {
  digest: string;
  size: number;
  path: string;
  abs: string;
  offset: number;
}

/** Chunks are queried and uploaded in groups of about this many bytes. */
const GROUP_BYTES = 16 << 20;
/** Files are chunked in tasks of about this many bytes (small files travel together). */
const TASK_BYTES = 8 << 20;
const TASK_FILES = 256;
const CHUNKING_IN_FLIGHT = 3;
const UPLOADS_IN_FLIGHT = 2;

type SourceFile = Extract<SourceEntry, { type: 'file' }>;

/**
 * Chunks every file of the source in the worker pool, asks the site which chunks it lacks,
 * and uploads only those, as deltas of the previous version's chunks where that is smaller.
 * Chunking, asking and uploading overlap: while one group of chunks is on its way, the next
 * files are being chunked. Returns the manifest entries for the commit.
 */
export async function uploadSource(
  client: ApiClient,
  source: SourceEntry[],
  opts: { previous?: Manifest | undefined; onProgress?: (done: number, total: number, note: string) => void } = {},
): Promise<{ files: Entry[]; stats: UploadStats }> {
  const files = source.filter((e): e is SourceFile => e.type === 'file');
  const total = files.reduce((s, f) => s + f.size, 0);
  const stats: UploadStats = { files: files.length, bytes: total, chunks: 0, uploadedChunks: 0, sentBytes: 0, deltaChunks: 0 };
  const chunked = new Map<string, [string, number][]>();
  const handled = new Set<string>();
  const prevIndex = chunkIndex(opts.previous);
  const sigCache = new Map<string, SubchunkSig[]>();
  let done = 0;

  // Upload jobs: ask which chunks of a group are missing, send those. Awaited in order; one
  // failing while another is awaited must not go unhandled.
  const jobs: Promise<void>[] = [];
  const startJob = (group: Located[]) => {
    const p = sendGroup(group);
    p.catch(() => {});
    jobs.push(p);
  };
  const sendGroup = async (group: Located[]) => {
    const { missing } = await client.json<{ missing: string[] }>('POST', PATHS.chunksMissing, {
      json: { digests: group.map((c) => c.digest) },
    });
    if (missing.length === 0) return;
    const need = new Set(missing);
    const batch = group.filter((c) => need.has(c.digest));
    const bases = opts.previous ? await signaturesFor(client, batch, prevIndex, sigCache) : undefined;
    const parts = encodeBatch(batch, bases, stats);
    await client.upload(PATHS.chunks, parts);
    stats.uploadedChunks += batch.length;
    stats.sentBytes += parts.reduce((n, p) => n + p.length, 0);
  };

  let group: Located[] = [];
  let groupBytes = 0;
  const take = async (file: SourceFile, r: { chunks: [string, number][]; size: number } | { error: string }) => {
    if ('error' in r) throw fail('invalid_source', `${file.abs} cannot be read (${r.error})`);
    if (r.size !== file.size) throw fail('invalid_source', `${file.abs} changed size while it was being packaged; try again`);
    chunked.set(file.path, r.chunks);
    let offset = 0;
    for (const [digest, size] of r.chunks) {
      stats.chunks++;
      if (!handled.has(digest)) {
        handled.add(digest);
        group.push({ digest, size, path: file.path, abs: file.abs, offset });
        groupBytes += size;
        if (groupBytes >= GROUP_BYTES) {
          startJob(group);
          group = [];
          groupBytes = 0;
          while (jobs.length >= UPLOADS_IN_FLIGHT) await jobs.shift();
        }
      }
      offset += size;
    }
    done += file.size;
    opts.onProgress?.(done, total, '');
  };

  // Chunking tasks, in order, a few in flight.
  const tasks: { files: SourceFile[]; result: Promise<ChunkFilesResult> }[] = [];
  const settle = async () => {
    const t = tasks.shift();
    if (!t) return;
    const r = await t.result;
    for (let i = 0; i < t.files.length; i++) await take(t.files[i] as SourceFile, r.files[i] as ChunkFilesResult['files'][number]);
  };
  let pendingFiles: SourceFile[] = [];
  let pendingBytes = 0;
  const launch = async () => {
    if (pendingFiles.length === 0) return;
    const result = runChunkFiles({ kind: 'chunkFiles', paths: pendingFiles.map((f) => f.abs) });
    result.catch(() => {});
    tasks.push({ files: pendingFiles, result });
    pendingFiles = [];
    pendingBytes = 0;
    if (tasks.length >= CHUNKING_IN_FLIGHT) await settle();
  };
  for (const f of files) {
    pendingFiles.push(f);
    pendingBytes += f.size;
    if (pendingBytes >= TASK_BYTES || pendingFiles.length >= TASK_FILES) await launch();
  }
  await launch();
  while (tasks.length > 0) await settle();
  if (group.length > 0) startJob(group);
  while (jobs.length > 0) await jobs.shift();

  const entries: Entry[] = source.map((e) => {
    if (e.type === 'file') return { type: 'file', path: e.path, mode: e.mode, size: e.size, chunks: chunked.get(e.path) ?? [] };
    if (e.type === 'dir') return { type: 'dir', path: e.path, mode: e.mode };
    return { type: 'link', path: e.path, target: e.target };
  });
  return { files: entries, stats };
}

/**
 * Reads the chunks from their files and encodes them as batch records (whole or delta). Runs
 * of chunks that lie end to end in one file (most of a group) are read with one call into
 * one buffer for the whole group: a read and an allocation per chunk cost the CLI's main
 * thread more than the copy itself. The reads are synchronous: the files were just read by
 * the chunking workers and sit in the page cache, and a 16 MiB copy blocks for a few
 * milliseconds, less than the hand-offs to and from libuv's thread pool cost here (thread
 * wake-ups are dear on a virtual machine: measured, 0.3-0.5 CPU-s per 512 MiB).
 */
function encodeBatch(
  batch: Located[],
  bases: Map<Located, { digest: string; sig: SubchunkSig[] }[]> | undefined,
  stats: UploadStats,
): Uint8Array[] {
  const parts: Uint8Array[] = [];
  const buf = Buffer.allocUnsafe(batch.reduce((n, c) => n + c.size, 0));
  const fds = new Map<string, number>();
  try {
    let at = 0;
    for (let i = 0; i < batch.length; ) {
      const first = batch[i] as Located;
      let j = i + 1;
      let length = first.size;
      for (; j < batch.length; j++) {
        const c = batch[j] as Located;
        const prev = batch[j - 1] as Located;
        if (c.abs !== first.abs || c.offset !== prev.offset + prev.size) break;
        length += c.size;
      }
      let fd = fds.get(first.abs);
      if (fd === undefined) {
        fd = fs.openSync(first.abs, 'r');
        fds.set(first.abs, fd);
      }
      let got = 0;
      for (let n = -1; got < length && n !== 0; got += n) n = fs.readSync(fd, buf, at + got, length - got, first.offset + got);
      if (got !== length) throw fail('invalid_source', `${first.abs} changed while it was being packaged; try again`);
      for (; i < j; i++) {
        const c = batch[i] as Located;
        const raw = buf.subarray(at, at + c.size);
        at += c.size;
        const candidates = bases?.get(c) ?? [];
        const delta = candidates.length > 0 ? makeDelta(raw, candidates) : null;
        if (delta) {
          parts.push(encodeRecordHeader(RECORD_DELTA, c.digest, delta.length), delta);
          stats.deltaChunks++;
        } else {
          parts.push(encodeRecordHeader(RECORD_WHOLE, c.digest, raw.length), raw);
        }
      }
    }
  } finally {
    for (const fd of fds.values()) fs.closeSync(fd);
  }
  return parts;
}

type PrevIndex = ChunkIndex;

/**
 * For each new chunk, the previous version's chunks of the same file around the same place:
 * the likeliest to share most of its bytes (an edit in place, an insertion).
 */
async function signaturesFor(
  client: ApiClient,
  batch: Located[],
  prev: PrevIndex,
  cache: Map<string, SubchunkSig[]>,
): Promise<Map<Located, { digest: string; sig: SubchunkSig[] }[]>> {
  const want = new Map<Located, string[]>();
  const ask = new Set<string>();
  for (const c of batch) {
    const old = prev.get(c.path);
    if (!old) continue;
    const near = old.filter((o) => o.offset < c.offset + c.size && o.offset + o.size > c.offset).slice(0, MAX_BASES);
    if (near.length === 0 && old.length > 0) {
      // The file shrank or grew: compare with the chunk that now sits nearest.
      const last = old[old.length - 1] as (typeof old)[number];
      near.push(last);
    }
    want.set(
      c,
      near.map((o) => o.digest),
    );
    for (const o of near) if (!cache.has(o.digest)) ask.add(o.digest);
  }
  const list = [...ask];
  for (let i = 0; i < list.length; i += 1024) {
    const r = await client.json<ChunkSignatures>('POST', PATHS.chunkSignatures, {
      json: { digests: list.slice(i, i + 1024) },
    });
    for (const s of r.signatures) cache.set(s.digest, s.subs);
  }
  const out = new Map<Located, { digest: string; sig: SubchunkSig[] }[]>();
  for (const [c, digests] of want) {
    out.set(
      c,
      digests.filter((d) => cache.has(d)).map((d) => ({ digest: d, sig: cache.get(d) as SubchunkSig[] })),
    );
  }
  return out;
}
