import fs from 'node:fs/promises';
import path from 'node:path';
import crypto from 'node:crypto';

/** A temporary name beside `file`'s folder `tmpDir`, unique per process and call. */
export const tempName = (tmpDir: string): string =>
  path.join(tmpDir, `${process.pid}-${crypto.randomBytes(8).toString('hex')}.tmp`);

async function syncDir(dir: string): Promise<void> {
  const fh = await fs.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Writes files atomically and durably: each goes to a temporary file that is flushed to disk,
 * then renamed into place, then the folders that gained names are flushed. A crash at any
 * moment leaves either the old state or the whole new file, never part of one.
 */
export async function writeFilesAtomic(tmpDir: string, files: readonly { path: string; data: Uint8Array; mode?: number }[]): Promise<void> {
  const temps = await Promise.all(
    files.map(async (f) => {
      const tmp = tempName(tmpDir);
      const fh = await fs.open(tmp, 'w', f.mode ?? 0o644);
      try {
        await fh.writeFile(f.data);
        await fh.datasync();
      } finally {
        await fh.close();
      }
      return tmp;
    }),
  );
  const dirs = new Set<string>();
  for (let i = 0; i < files.length; i++) {
    const target = (files[i] as { path: string }).path;
    try {
      await fs.rename(temps[i] as string, target);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      await fs.mkdir(path.dirname(target), { recursive: true });
      await fs.rename(temps[i] as string, target);
      dirs.add(path.dirname(path.dirname(target)));
    }
    dirs.add(path.dirname(target));
  }
  await Promise.all([...dirs].map(syncDir));
}

export const writeFileAtomic = (tmpDir: string, file: string, data: Uint8Array, mode?: number): Promise<void> =>
  writeFilesAtomic(tmpDir, [mode === undefined ? { path: file, data } : { path: file, data, mode }]);

export async function exists(p: string): Promise<boolean> {
  try {
    await fs.access(p);
    return true;
  } catch {
    return false;
  }
}
