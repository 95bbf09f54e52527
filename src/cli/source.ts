import fs from 'node:fs/promises';
import path from 'node:path';
import { checkPath, LIMITS } from '../api/manifests.js';
import { fail } from '../core/errors.js';

export type SourceEntry =
  | { type: 'file'; path: string; abs: string; mode: number; size: number }
  | { type: 'dir'; path: string; mode: number }
  | { type: 'link'; path: string; target: string };

/**
 * Walks a source folder for packaging. Refuses, naming the file, anything that cannot be
 * packaged faithfully: links that leave the folder, devices, pipes, sockets, unreadable files.
 */
export async function walkSource(root: string): Promise<SourceEntry[]> {
  const abs = path.resolve(root);
  let st: import('node:fs').Stats;
  try {
    st = await fs.stat(abs);
  } catch (e) {
    throw fail('invalid_source', `source ${root} cannot be read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (!st.isDirectory()) throw fail('invalid_source', `source ${root} is not a folder`);
  const out: SourceEntry[] = [];
  await walk(abs, '', out);
  return out;
}

async function walk(root: string, rel: string, out: SourceEntry[]): Promise<void> {
  const dir = rel ? path.join(root, rel) : root;
  let names: import('node:fs').Dirent[];
  try {
    names = await fs.readdir(dir, { withFileTypes: true });
  } catch (e) {
    throw fail('invalid_source', `folder ${dir} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  names.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  // Look at a folder's entries concurrently (stat, and a test open of each file), in order.
  const looks = new Array<Promise<Look>>(names.length);
  let next = 0;
  let looked = 0;
  const ahead = () => {
    while (next < names.length && next < looked + 64) {
      const d = names[next] as import('node:fs').Dirent;
      const p = look(path.join(dir, d.name));
      p.catch(() => {});
      looks[next++] = p;
    }
  };
  for (const d of names) {
    ahead();
    const r = rel ? `${rel}/${d.name}` : d.name;
    const abs = path.join(root, r);
    const why = checkPath(r);
    if (why) throw fail('invalid_source', `${abs}: the name ${why}`);
    if (out.length >= LIMITS.entries) throw fail('too_large', `source holds more than ${LIMITS.entries} entries`);
    const { st, target, openError } = await (looks[looked] as Promise<Look>);
    looks[looked++] = undefined as unknown as Promise<Look>;
    if (st.isSymbolicLink() && target !== undefined) {
      const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(r), target));
      if (path.isAbsolute(target) || resolved === '..' || resolved.startsWith('../')) {
        throw fail('invalid_source', `${abs} is a link to ${target}, outside the source folder`);
      }
      out.push({ type: 'link', path: r, target });
    } else if (st.isDirectory()) {
      out.push({ type: 'dir', path: r, mode: st.mode & 0o777 });
      await walk(root, r, out);
    } else if (st.isFile()) {
      if (st.size > LIMITS.fileSize) throw fail('too_large', `${abs} is ${st.size} bytes, over the ${LIMITS.fileSize}-byte limit`);
      if (openError) throw fail('invalid_source', `${abs} cannot be read (${openError})`);
      out.push({ type: 'file', path: r, abs, mode: st.mode & 0o777, size: st.size });
    } else {
      const kind = st.isBlockDevice()
        ? 'a block device'
        : st.isCharacterDevice()
          ? 'a character device'
          : st.isFIFO()
            ? 'a named pipe'
            : st.isSocket()
              ? 'a socket'
              : 'not a regular file';
      throw fail('invalid_source', `${abs} is ${kind}; only files, folders and links inside the source can be packaged`);
    }
  }
}

interface Look {
  st: import('node:fs').Stats;
  target?: string;
  openError?: string;
}

/** What walking needs of one entry: its lstat, a link's target, whether a file opens. */
async function look(abs: string): Promise<Look> {
  const st = await fs.lstat(abs);
  if (st.isSymbolicLink()) return { st, target: await fs.readlink(abs) };
  if (st.isFile()) {
    try {
      const fh = await fs.open(abs, 'r');
      await fh.close();
    } catch (e) {
      return { st, openError: (e as NodeJS.ErrnoException).code ?? (e as Error).message };
    }
  }
  return { st };
}
