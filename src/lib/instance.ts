import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

/**
 * This process among the processes sharing a data folder: a tag that names its temporary
 * files (so no process removes another's) and its row among a site's processes. Kept in the
 * environment, so the worker threads started after it use the same tag.
 */
export function processTag(): string {
  process.env.CASCADE_INSTANCE ??= `p${crypto.randomBytes(5).toString('hex')}`;
  return process.env.CASCADE_INSTANCE;
}

/** A well-formed tag (what temporary names may be matched against). */
export const PROCESS_TAG = /^p[0-9a-f]{10}$/;

export interface FolderLock {
  release(): Promise<void>;
}

/** What the holder of a lock tells whoever finds it held. */
export interface LockHolder {
  pid: number;
  url: string;
  /** It runs a site on PostgreSQL, which other processes may share. */
  shared: boolean;
}

/**
 * Exclusive use of a folder or file (`key`, resolved) by one process on this machine: a Unix
 * socket in Linux's abstract namespace (elsewhere, a socket file beside it) that the kernel
 * frees the moment the process ends, however it ends — no stale lock file after a SIGKILL.
 * Answers the lock, or who holds it.
 */
export async function lockFolder(key: string, me: LockHolder): Promise<FolderLock | { heldBy: LockHolder | null }> {
  const real = fs.existsSync(key) ? fs.realpathSync(key) : path.resolve(key);
  const name = `cascade-${crypto.createHash('sha256').update(real).digest('hex').slice(0, 40)}`;
  const address = process.platform === 'linux' ? `\0${name}` : path.join(path.dirname(real), `.${path.basename(real)}.lock`);
  const server = net.createServer((socket) => socket.end(`${JSON.stringify(me)}\n`));
  const listen = () =>
    new Promise<boolean>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) => (e.code === 'EADDRINUSE' ? resolve(false) : reject(e)));
      server.listen(address, () => resolve(true));
    });
  if (await listen()) {
    server.unref();
    return { release: () => new Promise<void>((resolve) => server.close(() => resolve())) };
  }
  const heldBy = await askHolder(address);
  // A socket file left by a process that died (not Linux): nobody answers; take it over.
  if (!heldBy && process.platform !== 'linux') {
    fs.rmSync(address, { force: true });
    if (await listen()) {
      server.unref();
      return { release: () => new Promise<void>((resolve) => server.close(() => resolve())) };
    }
  }
  return { heldBy };
}

function askHolder(address: string): Promise<LockHolder | null> {
  return new Promise((resolve) => {
    let text = '';
    const s = net.connect(address);
    const done = (v: LockHolder | null) => {
      s.destroy();
      clearTimeout(timer);
      resolve(v);
    };
    const timer = setTimeout(() => done(null), 2000);
    s.on('data', (d) => {
      text += d;
    });
    s.on('end', () => {
      try {
        done(JSON.parse(text) as LockHolder);
      } catch {
        done(null);
      }
    });
    s.on('error', () => done(null));
  });
}
