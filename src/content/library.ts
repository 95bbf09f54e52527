import fs from 'node:fs/promises';
import path from 'node:path';
import { fail } from '../core/errors.js';
import { commitStaged, discardStaged, type Staged, stageFiles, writeFileAtomic, writeFilesAtomic } from '../lib/fsutil.js';
import { DIGEST } from './manifest.js';

/**
 * The content library on disk: plain static files a web server could serve as they are.
 *
 *   ROOT/chunks/ab/<sha256>          one stored chunk (codec tag byte + payload)
 *   ROOT/manifests/<ID>/<N>.json     signed manifest of version N of package ID
 *   ROOT/tmp/                        temporary files, emptied at start-up
 */
export class ContentLibrary {
  readonly tmpDir: string;

  constructor(readonly root: string) {
    this.tmpDir = path.join(root, 'tmp');
  }

  /** Creates the folders and removes temporary files left by a crash. */
  async init(): Promise<void> {
    await fs.mkdir(path.join(this.root, 'chunks'), { recursive: true });
    await fs.mkdir(path.join(this.root, 'manifests'), { recursive: true });
    await fs.rm(this.tmpDir, { recursive: true, force: true });
    await fs.mkdir(this.tmpDir, { recursive: true });
  }

  chunkPath(digest: string): string {
    if (!DIGEST.test(digest)) throw fail('bad_request', `"${digest.slice(0, 80)}" is not a chunk digest`);
    return path.join(this.root, 'chunks', digest.slice(0, 2), digest);
  }

  manifestPath(id: string, version: number): string {
    return path.join(this.root, 'manifests', id, `${version}.json`);
  }

  /** Stores encoded chunks atomically and durably; resolves once all are on disk. */
  async writeChunks(items: readonly { digest: string; stored: Uint8Array }[]): Promise<void> {
    await writeFilesAtomic(
      this.tmpDir,
      items.map((i) => ({ path: this.chunkPath(i.digest), data: i.stored })),
    );
  }

  /** Writes chunks to temporary files; `commitChunks` makes them durable and visible. */
  stageChunks(items: readonly { digest: string; stored: Uint8Array }[]): Promise<Staged> {
    return stageFiles(
      this.tmpDir,
      items.map((i) => ({ path: this.chunkPath(i.digest), data: i.stored })),
    );
  }

  async commitChunks(staged: readonly Staged[]): Promise<void> {
    await commitStaged({ tmpDir: this.tmpDir, files: staged.flatMap((s) => s.files) });
  }

  async discardChunks(staged: readonly Staged[]): Promise<void> {
    await Promise.all(staged.map(discardStaged));
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

  async deleteManifest(id: string, version: number): Promise<void> {
    await fs.rm(this.manifestPath(id, version), { force: true });
  }
}
