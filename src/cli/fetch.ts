import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { decodeChunk } from '../content/codec.js';
import { type Manifest, verifyManifest } from '../content/manifest.js';
import type { TrustedKey } from '../content/signing.js';
import { fail } from '../core/errors.js';
import type { SiteClient } from './client.js';

const WINDOW = 8;

/**
 * Writes a package version's tree to `dest`: the manifest's signature is checked first, then
 * every chunk against its digest as it arrives. Each file appears under its name only once
 * complete and verified.
 */
export async function fetchVersion(
  client: SiteClient,
  id: string,
  version: number,
  dest: string,
  opts: { force?: boolean; trusted: TrustedKey[]; onProgress?: (done: number, total: number) => void },
): Promise<{ manifest: Manifest; files: number; bytes: number }> {
  const bytes = await client.bytes(`/api/v1/packages/${id}/versions/${version}/manifest`);
  const { manifest } = verifyManifest(bytes, opts.trusted);
  if (manifest.id !== id || manifest.version !== version) {
    throw fail('bad_signature', `the site sent the manifest of ${manifest.id} version ${manifest.version}, not ${id} version ${version}`);
  }
  const root = path.resolve(dest);
  await fs.mkdir(root, { recursive: true });
  const existing = await fs.readdir(root);
  if (existing.length > 0 && !opts.force) throw fail('conflict', `${root} is not empty; choose an empty folder or pass --force`);
  const tmpDir = await fs.mkdtemp(path.join(root, '.cascade-fetch-'));
  let done = 0;
  try {
    for (const e of manifest.files) if (e.type === 'dir') await fs.mkdir(path.join(root, e.path), { recursive: true });
    for (const e of manifest.files) {
      if (e.type !== 'file') continue;
      const target = path.join(root, e.path);
      await fs.mkdir(path.dirname(target), { recursive: true });
      const tmp = path.join(tmpDir, crypto.randomBytes(8).toString('hex'));
      const fh = await fs.open(tmp, 'w', 0o600);
      try {
        const queue: Promise<Buffer>[] = [];
        let next = 0;
        const get = (i: number) => {
          const [digest, size] = e.chunks[i] as [string, number];
          const p = client.bytes(`/api/v1/chunks/${digest}`).then((stored) => {
            const raw = decodeChunk(stored, size);
            if (raw.length !== size || crypto.createHash('sha256').update(raw).digest('hex') !== digest) {
              throw fail(
                'damaged',
                `chunk ${digest} of ${e.path} does not match the signed manifest; the site's copy may be damaged (run "cascade package verify ${id}")`,
              );
            }
            return raw;
          });
          // Read in order below; a failure further ahead must not surface as unhandled.
          p.catch(() => {});
          return p;
        };
        while (next < e.chunks.length && queue.length < WINDOW) queue.push(get(next++));
        while (queue.length > 0) {
          const raw = await (queue.shift() as Promise<Buffer>);
          if (next < e.chunks.length) queue.push(get(next++));
          await fh.write(raw);
          done += raw.length;
          opts.onProgress?.(done, manifest.bytes);
        }
        await fh.sync();
      } finally {
        await fh.close();
      }
      await fs.rm(target, { force: true, recursive: false }).catch(() => {});
      await fs.rename(tmp, target);
      await fs.chmod(target, e.mode);
    }
    for (const e of manifest.files) {
      if (e.type === 'link') {
        const target = path.join(root, e.path);
        await fs.mkdir(path.dirname(target), { recursive: true });
        await fs.rm(target, { force: true });
        await fs.symlink(e.target, target);
      }
    }
    // Folder modes last, so a read-only folder does not stop its own files being written.
    for (const e of [...manifest.files].reverse()) if (e.type === 'dir') await fs.chmod(path.join(root, e.path), e.mode);
  } finally {
    await fs.rm(tmpDir, { recursive: true, force: true });
  }
  return { manifest, files: manifest.files.filter((f) => f.type === 'file').length, bytes: manifest.bytes };
}
