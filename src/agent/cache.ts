import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';

/**
 * The agent's chunk cache: verified raw chunks under `cache/ab/DIGEST`, bounded in bytes; when
 * over, the least recently used go first (a chunk's mtime is touched when it is used). A new
 * version of a package downloads only the chunks that changed; a restarted agent never fetches
 * a chunk it already verified.
 */
export class ChunkCache {
  constructor(
    readonly root: string,
    readonly maxBytes: number,
  ) {}

  private file(digest: string): string {
    return path.join(this.root, digest.slice(0, 2), digest);
  }

  /** The chunk if held and still whole (re-hashed: a damaged file is dropped). */
  async get(digest: string, size: number): Promise<Buffer | undefined> {
    let data: Buffer;
    try {
      data = await fs.readFile(this.file(digest));
    } catch {
      return undefined;
    }
    if (data.length !== size || crypto.createHash('sha256').update(data).digest('hex') !== digest) {
      await fs.rm(this.file(digest), { force: true });
      return undefined;
    }
    const now = new Date();
    await fs.utimes(this.file(digest), now, now).catch(() => {});
    return data;
  }

  /** Held whole, as far as its size tells (`get` re-hashes it before use). */
  async has(digest: string, size: number): Promise<boolean> {
    return fs
      .stat(this.file(digest))
      .then((st) => st.size === size)
      .catch(() => false);
  }

  /**
   * Stores a chunk the caller has verified, under its digest. A write cut short by a crash
   * leaves a file of the wrong size or content: `has` and `get` see through it, and the chunk
   * is fetched again.
   */
  async put(digest: string, data: Uint8Array): Promise<void> {
    const f = this.file(digest);
    try {
      await fs.writeFile(f, data);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      await fs.mkdir(path.dirname(f), { recursive: true });
      await fs.writeFile(f, data);
    }
  }

  /** Bytes held, and the chunks, oldest use first. */
  async usage(): Promise<{ bytes: number; chunks: number; files: { file: string; size: number; used: number }[] }> {
    const files: { file: string; size: number; used: number }[] = [];
    let dirs: string[] = [];
    try {
      dirs = await fs.readdir(this.root);
    } catch {
      return { bytes: 0, chunks: 0, files };
    }
    for (const d of dirs) {
      let names: string[] = [];
      try {
        names = await fs.readdir(path.join(this.root, d));
      } catch {
        continue;
      }
      for (const n of names) {
        const file = path.join(this.root, d, n);
        const st = await fs.stat(file).catch(() => undefined);
        if (!st) continue;
        files.push({ file, size: st.size, used: st.mtimeMs });
      }
    }
    files.sort((a, b) => a.used - b.used);
    return { bytes: files.reduce((n, f) => n + f.size, 0), chunks: files.length, files };
  }

  /** Frees the least recently used chunks until the cache is within its bound; `keep` are spared. */
  async trim(keep: ReadonlySet<string> = new Set()): Promise<number> {
    const u = await this.usage();
    let bytes = u.bytes;
    let freed = 0;
    for (const f of u.files) {
      if (bytes <= this.maxBytes) break;
      if (keep.has(path.basename(f.file))) continue;
      await fs.rm(f.file, { force: true });
      bytes -= f.size;
      freed += f.size;
    }
    return freed;
  }
}
