import fs from 'node:fs';
import path from 'node:path';
import { checkPath, LIMITS } from '../api/manifests.js';
import { fail } from '../core/errors.js';

export type SourceEntry =
  | { type: 'file'; path: string; abs: string; mode: number; size: number; mtimeMs: number }
  | { type: 'dir'; path: string; mode: number }
  | { type: 'link'; path: string; target: string };

/**
 * Walks a source folder for packaging. Refuses, naming the file, anything that cannot be
 * packaged faithfully: links that leave the folder, devices, pipes, sockets, unreadable files.
 * Synchronous calls, a few microseconds each: run it in a worker thread (`walkSource` in
 * ./pool.ts), where a promise per call would cost the main thread ten times more.
 */
export function walkSourceSync(root: string): SourceEntry[] {
  const abs = path.resolve(root);
  let st: fs.Stats;
  try {
    st = fs.statSync(abs);
  } catch (e) {
    throw fail('invalid_source', `source ${root} cannot be read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (!st.isDirectory()) throw fail('invalid_source', `source ${root} is not a folder`);
  const out: SourceEntry[] = [];
  walk(abs, '', out);
  return out;
}

function walk(root: string, rel: string, out: SourceEntry[]): void {
  const dir = rel ? path.join(root, rel) : root;
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (e) {
    throw fail('invalid_source', `folder ${dir} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  for (const name of names) {
    const r = rel ? `${rel}/${name}` : name;
    const abs = path.join(root, r);
    const why = checkPath(r);
    if (why) throw fail('invalid_source', `${abs}: the name ${why}`);
    if (out.length >= LIMITS.entries) throw fail('too_large', `source holds more than ${LIMITS.entries} entries`);
    let st: fs.Stats;
    try {
      st = fs.lstatSync(abs);
    } catch (e) {
      throw fail('invalid_source', `${abs} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    if (st.isSymbolicLink()) {
      const target = fs.readlinkSync(abs);
      const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(r), target));
      if (path.isAbsolute(target) || resolved === '..' || resolved.startsWith('../')) {
        throw fail('invalid_source', `${abs} is a link to ${target}, outside the source folder`);
      }
      out.push({ type: 'link', path: r, target });
    } else if (st.isDirectory()) {
      out.push({ type: 'dir', path: r, mode: st.mode & 0o777 });
      walk(root, r, out);
    } else if (st.isFile()) {
      if (st.size > LIMITS.fileSize) throw fail('too_large', `${abs} is ${st.size} bytes, over the ${LIMITS.fileSize}-byte limit`);
      try {
        fs.closeSync(fs.openSync(abs, 'r'));
      } catch (e) {
        throw fail('invalid_source', `${abs} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
      }
      out.push({ type: 'file', path: r, abs, mode: st.mode & 0o777, size: st.size, mtimeMs: st.mtimeMs });
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
