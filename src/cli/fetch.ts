import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { ApiClient } from '../api/client.js';
import { fillPath, PATHS } from '../api/paths.js';
import { decodeChunk } from '../content/codec.js';
import { type Manifest, verifyManifest } from '../content/manifest.js';
import type { TrustedKey } from '../content/signing.js';
import { CascadeError, fail } from '../core/errors.js';

const WINDOW = 8;

/**
 * Where a fetch reads a version's signed manifest and stored chunks from. Nothing it returns
 * is trusted: fetchVersion checks the manifest's signature and every chunk's digest.
 */
export interface ContentSource {
  /** Who serves, for messages: "the site" or "http://dp:8100". */
  readonly name: string;
  manifest(id: string, version: number): Promise<Buffer>;
  /** A stored chunk (codec tag byte + payload). */
  chunk(digest: string): Promise<Buffer>;
  /** A site's certificate, where the static layout serves one (content/certificates/CODE.json). */
  certificate?(code: string): Promise<Buffer>;
}

/** A site's API: the signed manifest and the stored chunks (token needed). */
export function siteSource(client: ApiClient): ContentSource {
  return {
    name: 'the site',
    manifest: (id, version) => client.bytes(fillPath(PATHS.manifest, { id, version })),
    chunk: (digest) => client.bytes(fillPath(PATHS.chunk, { digest })),
  };
}

/**
 * A DP, nginx or any static web server in the public content layout below `base`:
 * `BASE/content/manifests/ID/N.json` and `BASE/content/chunks/ab/DIGEST`. No token.
 */
export function staticSource(base: string): ContentSource {
  let client: ApiClient;
  try {
    client = new ApiClient(base, { who: base.replace(/\/+$/, '') });
  } catch (e) {
    throw fail('usage', `--from ${(e as Error).message}`);
  }
  const root = client.base;
  const get = (p: string, what: string): Promise<Buffer> =>
    client.bytes(p).catch((e: unknown) => {
      if (e instanceof CascadeError && e.code === 'not_found') throw fail('not_found', `${root} does not hold ${what} (HTTP 404 for ${p})`);
      throw e;
    });
  return {
    name: root,
    certificate: (code) => get(`/content/certificates/${code}.json`, `the certificate of site ${code}`),
    manifest: (id, version) => get(`/content/manifests/${id}/${version}.json`, `the manifest of ${id} version ${version}`),
    chunk: (digest) => get(`/content/chunks/${digest.slice(0, 2)}/${digest}`, `chunk ${digest}`),
  };
}

/**
 * Writes a package version's tree to `dest`: the manifest's signature is checked first, then
 * every chunk against its digest as it arrives. Each file appears under its name only once
 * complete and verified. `from`: a site's API (a ApiClient) or any ContentSource.
 */
export async function fetchVersion(
  from: ApiClient | ContentSource,
  id: string,
  version: number,
  dest: string,
  opts: { force?: boolean; trusted: TrustedKey[]; onProgress?: (done: number, total: number) => void },
): Promise<{ manifest: Manifest; files: number; bytes: number }> {
  const source = from instanceof ApiClient ? siteSource(from) : from;
  const bytes = await source.manifest(id, version);
  const { manifest } = verifyManifest(bytes, opts.trusted);
  if (manifest.id !== id || manifest.version !== version) {
    throw fail(
      'bad_signature',
      `${source.name} sent the manifest of ${manifest.id} version ${manifest.version}, not ${id} version ${version}`,
    );
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
          const p = source.chunk(digest).then((stored) => {
            let raw: Buffer | undefined;
            try {
              raw = decodeChunk(stored, size);
            } catch {}
            if (!raw || raw.length !== size || crypto.createHash('sha256').update(raw).digest('hex') !== digest) {
              throw fail(
                'damaged',
                from instanceof ApiClient
                  ? `chunk ${digest} of ${e.path} does not match the signed manifest; the site's copy may be damaged (run "cascade package verify ${id}")`
                  : `chunk ${digest} of ${e.path} from ${source.name} does not match the signed manifest: that server's copy is damaged or altered; nothing of ${e.path} was written`,
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
