import fs from 'node:fs/promises';
import path from 'node:path';
import { DIGEST } from '../core/chunk.js';
import { fail } from '../core/errors.js';
import { type FileData, flushFileSystem, startWriteback, writeFileAtomic, writeFilesAtomic } from '../lib/fsutil.js';
import { processTag } from '../lib/instance.js';
import { runIngest, runIngestFiles, runRead, runRename, runStore } from './pool.js';
import type { IngestFilesResult } from './worker.js';

/**
 * The content library on disk: plain static files a web server could serve as they are.
 *
 *   ROOT/chunks/ab/<sha256>          one stored chunk (codec tag byte + payload)
 *   ROOT/chunks/ab/.tmp-<TAG>-*      a chunk being written by process TAG; removed at start-up
 *   ROOT/manifests/<ID>/<N>.json     signed manifest of version N of package ID
 *   ROOT/tmp/<TAG>/                  temporary files of process TAG, removed at start-up
 *
 * Several processes of one site may share the folder (PostgreSQL): each writes its temporary
 * files under its own tag, and start-up removes only those of processes no longer running.
 */
export class ContentLibrary {
  readonly tmpDir: string;
  /** Whether one flush of the file system serves many files (probed by init). */
  private grouped = false;

  constructor(readonly root: string) {
    this.tmpDir = path.join(root, 'tmp', processTag());
  }

  /**
   * Creates the folders and removes temporary files left by a crash: every process's, or, when
   * others share the folder, all but those of the processes in `running`.
   */
  async init(running: ReadonlySet<string> = new Set()): Promise<void> {
    const stale = (tag: string | undefined) => !tag || !running.has(tag);
    // All 256 chunk folders up front; each may hold `.tmp-*` files a crash left behind.
    await Promise.all(
      Array.from({ length: 256 }, async (_, i) => {
        const dir = path.join(this.root, 'chunks', i.toString(16).padStart(2, '0'));
        await fs.mkdir(dir, { recursive: true });
        for (const f of await fs.readdir(dir))
          if (f.startsWith('.tmp-') && stale(f.split('-')[1])) await fs.rm(path.join(dir, f), { force: true });
      }),
    );
    await fs.mkdir(path.join(this.root, 'manifests'), { recursive: true });
    const tmp = path.dirname(this.tmpDir);
    await fs.mkdir(tmp, { recursive: true });
    for (const f of await fs.readdir(tmp)) if (stale(f)) await fs.rm(path.join(tmp, f), { recursive: true, force: true });
    await fs.mkdir(this.tmpDir, { recursive: true });
    this.grouped = await flushFileSystem(this.tmpDir);
  }

  chunkPath(digest: string): string {
    if (!DIGEST.test(digest)) throw fail('bad_request', `"${digest.slice(0, 80)}" is not a chunk digest`);
    return path.join(this.root, 'chunks', digest.slice(0, 2), digest);
  }

  manifestPath(id: string, version: number): string {
    return path.join(this.root, 'manifests', id, `${version}.json`);
  }

  /** Stores encoded chunks atomically and durably; resolves once all are on disk. */
  async writeChunks(items: readonly { digest: string; stored: FileData }[]): Promise<void> {
    await writeFilesAtomic(
      this.tmpDir,
      items.map((i) => ({ path: this.chunkPath(i.digest), data: i.stored })),
    );
  }

  /**
   * The ingest hot path: in a worker thread, checks each chunk of `buf` against its digest,
   * encodes it and writes it to a temporary file. `buf` is moved to the worker. Per item:
   * the staged file, or null when its data does not match its digest.
   */
  async ingest(
    buf: Uint8Array,
    items: { digest: string; offset: number; length: number }[],
  ): Promise<({ tmp: string; path: string; storedSize: number } | null)[]> {
    const paths = items.map((i) => this.chunkPath(i.digest));
    const r = await runIngest({ kind: 'ingest', buf, items, paths, fsyncEach: !this.grouped });
    return r.stored.map((s, i) => s && { tmp: s.tmp, path: paths[i] as string, storedSize: s.storedSize });
  }

  /**
   * Files the site reads itself (a package source): in a worker thread, each is cut, hashed,
   * compressed where that helps, and its chunks not in `known` written to temporary files.
   * The caller commits the ones the library lacks and discards the rest.
   */
  async ingestFiles(
    paths: string[],
    known: string[],
    lowPriority: boolean,
  ): Promise<{ files: IngestFilesResult['files']; staged: (IngestFilesResult['staged'][number] & { path: string })[] }> {
    const r = await runIngestFiles(
      { kind: 'ingestFiles', paths, chunksDir: path.join(this.root, 'chunks'), known, fsyncEach: !this.grouped },
      lowPriority,
    );
    return { files: r.files, staged: r.staged.map((s) => ({ ...s, path: this.chunkPath(s.digest) })) };
  }

  /**
   * Chunks that arrive encoded (a courier parcel): in a worker thread, each is decoded and
   * checked against its size and digest, then written as it is to a temporary file. `buf` is
   * moved to the worker and back. Per item: the staged file, or null when it does not match;
   * and the buffer, for the caller's next task.
   */
  async ingestStored(
    buf: Uint8Array,
    items: { digest: string; offset: number; length: number; size: number }[],
  ): Promise<{ staged: ({ tmp: string; path: string } | null)[]; buf: Uint8Array }> {
    const paths = items.map((i) => this.chunkPath(i.digest));
    const r = await runStore({ kind: 'store', buf, items, paths, fsyncEach: !this.grouped });
    return { staged: r.stored.map((s, i) => s && { tmp: s.tmp, path: paths[i] as string }), buf: r.buf };
  }

  /** Makes staged chunk files durable, then visible under their names, then the names durable. */
  async commit(files: readonly { tmp: string; path: string }[]): Promise<void> {
    if (files.length === 0) return;
    const moves = files.map((f): [string, string] => [f.tmp, f.path]);
    if (this.grouped && (await flushFileSystem(this.tmpDir))) {
      await runRename({ kind: 'rename', moves, fsyncDirs: false });
      if (await flushFileSystem(this.tmpDir)) return;
    }
    await runRename({ kind: 'rename', moves, fsyncDirs: true });
  }

  /** Staged chunks start on their way to disk now, so the commit's flush has less left to do. */
  startWriteback(): void {
    if (this.grouped) startWriteback(this.tmpDir);
  }

  async discard(files: readonly { tmp: string }[]): Promise<void> {
    await Promise.all(files.map((f) => fs.rm(f.tmp, { force: true })));
  }

  /**
   * Where a signed manifest waits while its version arrives (an offer, or a courier parcel cut
   * short): garbage collection spares the chunks it names.
   */
  incomingPath(id: string, version: number): string {
    return path.join(this.root, 'incoming', id, `${version}.json`);
  }

  /** Stored chunks of known lengths, end to end in one buffer, read in a worker thread. */
  async readStoredMany(items: readonly { digest: string; stored: number }[]): Promise<Uint8Array> {
    const r = await runRead({ kind: 'read', paths: items.map((i) => this.chunkPath(i.digest)), lengths: items.map((i) => i.stored) });
    if (!(r instanceof Uint8Array)) throw fail('damaged', `${r.error}; run "cascade package verify"`);
    return r;
  }

  async readStored(digest: string): Promise<Buffer> {
    try {
      return await fs.readFile(this.chunkPath(digest));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw fail('damaged', `chunk ${digest} is missing from the library`);
      throw e;
    }
  }

  async deleteChunk(digest: string): Promise<void> {
    await fs.rm(this.chunkPath(digest), { force: true });
  }

  async writeManifest(id: string, version: number, bytes: Uint8Array): Promise<void> {
    await writeFileAtomic(this.tmpDir, this.manifestPath(id, version), bytes);
  }

  async readManifest(id: string, version: number): Promise<Buffer> {
    try {
      return await fs.readFile(this.manifestPath(id, version));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT')
        throw fail('damaged', `manifest of ${id} version ${version} is missing from the library`);
      throw e;
    }
  }

  /**
   * A site's certificate (signed by the central key) beside the manifests it signed, at
   * `certificates/CODE.json`: whoever fetches the static layout with only the central key can
   * then trust that site's manifests.
   */
  async writeCertificate(code: string, certificate: unknown): Promise<void> {
    if (!/^[A-Z0-9]{3}$/.test(code)) return;
    const file = path.join(this.root, 'certificates', `${code}.json`);
    const bytes = Buffer.from(`${JSON.stringify(certificate)}\n`);
    try {
      if ((await fs.readFile(file)).equals(bytes)) return;
    } catch {}
    await fs.mkdir(path.dirname(file), { recursive: true });
    await writeFileAtomic(this.tmpDir, file, bytes);
  }

  async deleteManifest(id: string, version: number): Promise<void> {
    await fs.rm(this.manifestPath(id, version), { force: true });
  }
}
