import { type ChildProcess, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';

/** A temporary file name in `tmpDir`, unique per process and call. */
export const tempName = (tmpDir: string): string => path.join(tmpDir, `${process.pid}-${crypto.randomBytes(8).toString('hex')}.tmp`);

async function syncPath(p: string, data: boolean): Promise<void> {
  const fh = await fs.open(p, 'r');
  try {
    await (data ? fh.datasync() : fh.sync());
  } finally {
    await fh.close();
  }
}

/**
 * Flushes a whole file system with one syncfs(2) (`sync -f`), shared by every caller that
 * arrives while one is pending: a group commit. One flush per batch of chunks costs a few
 * milliseconds, where an fsync per 64 KiB chunk file costs the disk a journal commit each.
 * The flushes run in one small long-lived shell, so the server (a large process, slow to
 * fork) never forks on the hot path. Where `sync -f` is missing, callers fall back to fsync.
 */
class GroupSync {
  private running: Promise<boolean> | null = null;
  private next: Promise<boolean> | null = null;
  private shell: ChildProcess | null = null;
  private broken = process.platform !== 'linux';
  private readonly waiting: ((ok: boolean) => void)[] = [];

  /** Resolves true once everything written before the call is on disk; false when unsupported. */
  sync(dir: string): Promise<boolean> {
    if (this.broken) return Promise.resolve(false);
    if (!this.running) {
      this.running = this.run(dir).finally(() => {
        this.running = null;
      });
      return this.running;
    }
    // A flush is under way but may have started before our writes: join the next one.
    this.next ??= this.running.then(() => {
      this.next = null;
      return this.sync(dir);
    });
    return this.next;
  }

  /** Starts a flush without waiting for it, unless one is running already. */
  kick(dir: string): void {
    if (!this.broken && !this.running) void this.sync(dir);
  }

  private run(dir: string): Promise<boolean> {
    const sh = this.ensureShell();
    if (!sh?.stdin) return Promise.resolve(false);
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      // Keep the process alive while a flush is pending (and only then).
      refStream(sh.stdout, true);
      sh.stdin?.write(`${dir.replace(/\n/g, '')}\n`);
    });
  }

  private ensureShell(): ChildProcess | null {
    if (this.shell || this.broken) return this.shell;
    const sh = spawn('sh', ['-c', 'while IFS= read -r d; do if sync -f "$d" 2>/dev/null; then echo ok; else echo no; fi; done'], {
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    let buf = '';
    sh.stdout?.setEncoding('utf8');
    sh.stdout?.on('data', (d: string) => {
      buf += d;
      let i = buf.indexOf('\n');
      while (i >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        const ok = line === 'ok';
        if (!ok) this.broken = true;
        this.waiting.shift()?.(ok);
        if (this.waiting.length === 0) refStream(sh.stdout, false);
        i = buf.indexOf('\n');
      }
    });
    const die = () => {
      this.broken = true;
      this.shell = null;
      for (const w of this.waiting.splice(0)) w(false);
    };
    sh.on('error', die);
    sh.on('exit', die);
    sh.stdin?.on('error', die);
    // Never keep the process alive for the flusher's sake.
    sh.unref();
    refStream(sh.stdin, false);
    refStream(sh.stdout, false);
    this.shell = sh;
    return sh;
  }
}

/** Pipes to a child are sockets underneath: (un)ref them so they hold the loop only when needed. */
function refStream(s: unknown, on: boolean): void {
  const h = (s as { _handle?: { ref?: () => void; unref?: () => void } } | null)?._handle;
  if (on) h?.ref?.();
  else h?.unref?.();
}

const groupSync = new GroupSync();

/**
 * Flushes everything written so far on the file system holding `dir` (group commit).
 * Resolves false where that is not possible: then flush each file instead.
 */
export const flushFileSystem = (dir: string): Promise<boolean> => groupSync.sync(dir);

/**
 * Starts writing the file system's dirty data to disk in the background (a flush nobody waits
 * for; none when one runs already). Linux starts writing back on its own only once a tenth of
 * memory is dirty, so without this a large commit's flush writes everything at the end.
 */
export const startWriteback = (dir: string): void => groupSync.kick(dir);

export interface Staged {
  tmpDir: string;
  files: { tmp: string; path: string }[];
}

/** A file's content: one buffer, or several written back to back (no copy to join them). */
export type FileData = Uint8Array | readonly Uint8Array[];

/** Phase one of an atomic write: the data goes to temporary files, not yet flushed or named. */
export async function stageFiles(tmpDir: string, files: readonly { path: string; data: FileData; mode?: number }[]): Promise<Staged> {
  const staged = await Promise.all(
    files.map(async (f) => {
      const tmp = tempName(tmpDir);
      const fh = await fs.open(tmp, 'w', f.mode ?? 0o644);
      try {
        const parts = f.data instanceof Uint8Array ? [f.data] : f.data;
        let want = 0;
        for (const p of parts) want += p.length;
        const { bytesWritten } = await fh.writev(parts as Uint8Array[]);
        if (bytesWritten !== want) await fh.write(Buffer.concat(parts as Uint8Array[]).subarray(bytesWritten));
      } finally {
        await fh.close();
      }
      return { tmp, path: f.path };
    }),
  );
  return { tmpDir, files: staged };
}

/**
 * Phase two: flush the data, rename every file into place, flush the renames. A crash at any
 * moment leaves either no file or the whole file under its name, never part of one.
 */
export async function commitStaged(s: Staged): Promise<void> {
  if (s.files.length === 0) return;
  const grouped = await groupSync.sync(s.tmpDir);
  if (!grouped) await Promise.all(s.files.map((f) => syncPath(f.tmp, true)));
  const dirs = new Set<string>();
  for (const f of s.files) {
    try {
      await fs.rename(f.tmp, f.path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      await fs.mkdir(path.dirname(f.path), { recursive: true });
      await fs.rename(f.tmp, f.path);
      dirs.add(path.dirname(path.dirname(f.path)));
    }
    dirs.add(path.dirname(f.path));
  }
  if (!(await groupSync.sync(s.tmpDir))) await Promise.all([...dirs].map((d) => syncPath(d, false)));
}

export async function writeFilesAtomic(tmpDir: string, files: readonly { path: string; data: FileData; mode?: number }[]): Promise<void> {
  await commitStaged(await stageFiles(tmpDir, files));
}

export const writeFileAtomic = (tmpDir: string, file: string, data: Uint8Array, mode?: number): Promise<void> =>
  writeFilesAtomic(tmpDir, [mode === undefined ? { path: file, data } : { path: file, data, mode }]);
