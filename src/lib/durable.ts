import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/**
 * Writes a small file so that it is whole and on disk before this returns: a temporary file
 * beside it, fsync, rename over the target, fsync the folder (so the rename itself survives a
 * crash). Readers see the old file or the new one, never half of one.
 */
export function writeFileDurableSync(file: string, data: string | Uint8Array, mode = 0o600): void {
  const tmp = `${file}.${process.pid}-${crypto.randomBytes(4).toString('hex')}.tmp`;
  try {
    const fd = fs.openSync(tmp, 'wx', mode);
    try {
      fs.writeFileSync(fd, data);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  syncDirSync(path.dirname(file));
}

/** Flushes a folder's entries (new names, renames) to disk; a no-op where folders cannot be opened. */
export function syncDirSync(dir: string): void {
  let fd: number;
  try {
    fd = fs.openSync(dir, 'r');
  } catch {
    return;
  }
  try {
    fs.fsyncSync(fd);
  } catch {
    // Some file systems refuse fsync on a folder; the file itself is already on disk.
  } finally {
    fs.closeSync(fd);
  }
}
