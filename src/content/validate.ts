/**
 * Validation ("testing the distribution"): re-reads and re-hashes every stored chunk of one
 * package version and checks every file of its tree against the manifest. Pure content layer:
 * a library folder and a manifest in, a report out. See docs/content.md, "Validation".
 */
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import type { CheckChunksTask, ChunkProblemKind } from './check.js';
import type { ContentLibrary } from './library.js';
import type { Manifest } from './manifest.js';
import { poolThreads, runCheckChunks } from './pool.js';

export interface ValidationProblem {
  /** The file of the package tree that the problem damages. */
  path: string;
  /** The chunk at fault, or null for a problem of the file entry itself (sizes that disagree). */
  chunk: string | null;
  /** `missing`: no stored chunk file; `damaged`: undecodable or wrong digest; `size`: wrong length. */
  kind: ChunkProblemKind;
  detail: string;
}

export interface ValidationReport {
  ok: boolean;
  /** File entries of the tree checked (directories and links hold no content). */
  checkedFiles: number;
  /** Distinct chunks checked (a chunk used by several files, or twice in one, is read once). */
  checkedChunks: number;
  /** Raw bytes of those distinct chunks, as the manifest lists them. */
  checkedBytes: number;
  problems: ValidationProblem[];
}

export interface ValidateOptions {
  /** Stops between groups of chunks; the promise rejects with the signal's reason. */
  signal?: AbortSignal;
  /**
   * For scheduled validation: one task at a time, on a thread of its own at nice 19 (so at most
   * one core, and none that transfers or serving want), small groups, yielding between them.
   */
  lowPriority?: boolean;
  /** After each group: raw bytes checked so far, of `total`. */
  onProgress?: (bytes: number, total: number) => void;
}

/** Bytes per worker task: large enough to amortise a hand-off, small enough to share out. */
const GROUP_BYTES = 8 << 20;
/** Low priority holds its thread for ~5 ms per task, and checks the signal that often. */
const LOW_GROUP_BYTES = 2 << 20;
const GROUP_ITEMS = 1024;

type Item = CheckChunksTask['items'][number];

export async function validateVersion(library: ContentLibrary, manifest: Manifest, opts: ValidateOptions = {}): Promise<ValidationReport> {
  const { signal, lowPriority = false, onProgress } = opts;
  signal?.throwIfAborted();

  // Distinct chunks. One digest is one content, so it has one size; a manifest that lists a
  // digest with two sizes gets one item per size (at least one of them will fail: `size`).
  const items: Item[] = [];
  const index = new Map<string, number>();
  const keyOf = (digest: string, size: number): string => {
    const first = index.get(digest);
    return first === undefined || (items[first] as Item).size === size ? digest : `${digest}/${size}`;
  };
  let total = 0;
  for (const e of manifest.files) {
    if (e.type !== 'file') continue;
    for (const [digest, size] of e.chunks) {
      const key = keyOf(digest, size);
      if (index.has(key)) continue;
      index.set(key, items.length);
      items.push({ file: library.chunkPath(digest), digest, size });
      total += size;
    }
  }

  // Groups of whole chunks by bytes, handed to the worker threads; each reads its own files.
  const groupBytes = lowPriority ? LOW_GROUP_BYTES : GROUP_BYTES;
  const groups: { start: number; items: Item[] }[] = [];
  for (let i = 0; i < items.length; ) {
    const start = i;
    let bytes = 0;
    while (i < items.length && bytes < groupBytes && i - start < GROUP_ITEMS) bytes += (items[i++] as Item).size;
    groups.push({ start, items: items.slice(start, i) });
  }

  const bad = new Map<number, { kind: ChunkProblemKind; detail: string }>();
  let done = 0;
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < groups.length) {
      signal?.throwIfAborted();
      const g = groups[next++] as (typeof groups)[number];
      const r = await runCheckChunks({ kind: 'checkChunks', items: g.items }, lowPriority);
      for (const p of r.problems) bad.set(g.start + p.i, { kind: p.kind, detail: p.detail });
      done += r.bytes;
      onProgress?.(done, total);
      if (lowPriority) await yieldToLoop();
    }
  };
  // Two tasks per thread keep every thread busy while the main thread hands out the next.
  const lanes = lowPriority ? 1 : Math.min(groups.length, poolThreads() * 2);
  await Promise.all(Array.from({ length: lanes }, lane));
  signal?.throwIfAborted();

  // Every file of the tree: its chunks' sizes must add up to its size, and every chunk must be
  // fine. A bad chunk is named once per file that uses it (each of those files is damaged).
  const problems: ValidationProblem[] = [];
  let checkedFiles = 0;
  for (const e of manifest.files) {
    if (e.type !== 'file') continue;
    checkedFiles++;
    let sum = 0;
    let named: Set<string> | undefined;
    for (const [digest, size] of e.chunks) {
      const at = sum;
      sum += size;
      if (bad.size === 0) continue;
      const b = bad.get(index.get(keyOf(digest, size)) as number);
      if (!b || named?.has(digest)) continue;
      named ??= new Set();
      named.add(digest);
      problems.push({ path: e.path, chunk: digest, kind: b.kind, detail: `${b.detail} (at byte ${at} of the file)` });
    }
    if (sum !== e.size) {
      problems.push({ path: e.path, chunk: null, kind: 'size', detail: `its chunks add up to ${sum} bytes, not its size ${e.size}` });
    }
  }
  return { ok: problems.length === 0, checkedFiles, checkedChunks: items.length, checkedBytes: total, problems };
}
