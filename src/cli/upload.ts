import fs from 'node:fs/promises';
import { fail } from '../core/errors.js';
import { RECORD_DELTA, RECORD_WHOLE, encodeRecordHeader } from '../content/batch.js';
import { MAX_BASES, type SubchunkSig, makeDelta } from '../content/delta.js';
import type { Entry, Manifest } from '../content/manifest.js';
import { runChunkFile } from '../content/pool.js';
import type { SiteClient } from './client.js';
import type { SourceEntry } from './source.js';

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

const QUERY_BATCH = 4096;
const UPLOAD_BYTES = 16 << 20;
const CHUNKING_IN_FLIGHT = 4;
const UPLOADS_IN_FLIGHT = 2;

/**
 * Chunks every file of the source in the worker pool, asks the site which chunks it lacks,
 * and uploads only those, as deltas of the previous version's chunks where that is smaller.
 * Returns the manifest entries for the commit.
 */
export async function uploadSource(
  client: SiteClient,
  source: SourceEntry[],
  opts: { previous?: Manifest | undefined; onProgress?: (done: number, total: number, note: string) => void } = {},
): Promise<{ files: Entry[]; stats: UploadStats }> {
  const files = source.filter((e): e is Extract<SourceEntry, { type: 'file' }> => e.type === 'file');
  const total = files.reduce((s, f) => s + f.size, 0);
  const stats: UploadStats = { files: files.length, bytes: total, chunks: 0, uploadedChunks: 0, sentBytes: 0, deltaChunks: 0 };
  const chunked = new Map<string, [string, number][]>();
  const handled = new Set<string>();
  const prevIndex = indexPrevious(opts.previous);
  const sigCache = new Map<string, SubchunkSig[]>();
  let pending: Located[] = [];
  let done = 0;
  const report = (note: string) => opts.onProgress?.(done, total, note);

  const uploads: Promise<void>[] = [];
  // Awaited in order below; one failing while another is awaited must not go unhandled.
  const startUpload = (batch: Located[]) => {
    const p = upload(batch);
    p.catch(() => {});
    uploads.push(p);
  };
  const upload = async (batch: Located[]) => {
    const bases = opts.previous ? await signaturesFor(client, batch, prevIndex, sigCache) : undefined;
    const parts: Uint8Array[] = [];
    let size = 0;
    const handles = new Map<string, fs.FileHandle>();
    try {
      for (const c of batch) {
        let fh = handles.get(c.abs);
        if (!fh) {
          fh = await fs.open(c.abs, 'r');
          handles.set(c.abs, fh);
        }
        const raw = Buffer.allocUnsafe(c.size);
        const { bytesRead } = await fh.read(raw, 0, c.size, c.offset);
        if (bytesRead !== c.size) throw fail('invalid_source', `${c.abs} changed while it was being packaged; try again`);
        const candidates = bases?.get(c) ?? [];
        const delta = candidates.length > 0 ? makeDelta(raw, candidates) : null;
        if (delta) {
          parts.push(encodeRecordHeader(RECORD_DELTA, c.digest, delta.length), delta);
          size += 37 + delta.length;
          stats.deltaChunks++;
        } else {
          parts.push(encodeRecordHeader(RECORD_WHOLE, c.digest, raw.length), raw);
          size += 37 + raw.length;
        }
      }
    } finally {
      for (const fh of handles.values()) await fh.close();
    }
    await client.request('POST', '/api/v1/chunks', { body: Buffer.concat(parts, size) });
    stats.uploadedChunks += batch.length;
    stats.sentBytes += size;
  };

  const flush = async (final: boolean) => {
    while (pending.length >= QUERY_BATCH || (final && pending.length > 0)) {
      const take = pending.splice(0, QUERY_BATCH);
      const { missing } = await client.json<{ missing: string[] }>('POST', '/api/v1/chunks/missing', {
        json: { digests: take.map((c) => c.digest) },
      });
      const need = new Set(missing);
      let batch: Located[] = [];
      let bytes = 0;
      for (const c of take) {
        if (!need.has(c.digest)) continue;
        need.delete(c.digest);
        batch.push(c);
        bytes += c.size;
        if (bytes >= UPLOAD_BYTES) {
          startUpload(batch);
          batch = [];
          bytes = 0;
          while (uploads.length >= UPLOADS_IN_FLIGHT) await uploads.shift();
        }
      }
      if (batch.length > 0) startUpload(batch);
      while (uploads.length >= UPLOADS_IN_FLIGHT) await uploads.shift();
    }
  };

  const inFlight: { file: (typeof files)[number]; result: ReturnType<typeof runChunkFile> }[] = [];
  const settle = async () => {
    const next = inFlight.shift();
    if (!next) return;
    const r = await next.result.catch((e: NodeJS.ErrnoException) => {
      throw fail('invalid_source', `${next.file.abs} cannot be read (${e.code ?? e.message})`);
    });
    if (r.size !== next.file.size) throw fail('invalid_source', `${next.file.abs} changed size while it was being packaged; try again`);
    chunked.set(next.file.path, r.chunks);
    let offset = 0;
    for (const [digest, size] of r.chunks) {
      stats.chunks++;
      if (!handled.has(digest)) {
        handled.add(digest);
        pending.push({ digest, size, path: next.file.path, abs: next.file.abs, offset });
      }
      offset += size;
    }
    done += next.file.size;
    report('');
    await flush(false);
  };

  for (const f of files) {
    inFlight.push({ file: f, result: runChunkFile({ kind: 'chunkFile', path: f.abs, size: f.size }) });
    // Keep the promise from being reported unhandled while it waits its turn.
    inFlight[inFlight.length - 1]?.result.catch(() => {});
    if (inFlight.length >= CHUNKING_IN_FLIGHT) await settle();
  }
  while (inFlight.length > 0) await settle();
  await flush(true);
  await Promise.all(uploads);

  const entries: Entry[] = source.map((e) => {
    if (e.type === 'file') return { type: 'file', path: e.path, mode: e.mode, size: e.size, chunks: chunked.get(e.path) ?? [] };
    if (e.type === 'dir') return { type: 'dir', path: e.path, mode: e.mode };
    return { type: 'link', path: e.path, target: e.target };
  });
  pending = [];
  return { files: entries, stats };
}

type PrevIndex = Map<string, { digest: string; offset: number; size: number }[]>;

function indexPrevious(m: Manifest | undefined): PrevIndex {
  const idx: PrevIndex = new Map();
  if (!m) return idx;
  for (const e of m.files) {
    if (e.type !== 'file') continue;
    let offset = 0;
    idx.set(
      e.path,
      e.chunks.map(([digest, size]) => {
        const r = { digest, offset, size };
        offset += size;
        return r;
      }),
    );
  }
  return idx;
}

/**
 * For each new chunk, the previous version's chunks of the same file around the same place:
 * the likeliest to share most of its bytes (an edit in place, an insertion).
 */
async function signaturesFor(
  client: SiteClient,
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
    const r = await client.json<{ signatures: { digest: string; subs: SubchunkSig[] }[] }>('POST', '/api/v1/chunks/signatures', {
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
