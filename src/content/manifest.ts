import crypto from 'node:crypto';
import path from 'node:path';
import { z } from 'zod';
import { type Entry, LIMITS, type Manifest, manifestSchema } from '../api/manifests.js';
import { fail } from '../core/errors.js';
import { canonicalJson } from './canonical.js';
import { type SiteKey, sign, type TrustedKey, verifySignature } from './signing.js';

export type { Entry, FileEntry, Manifest, Program } from '../api/manifests.js';

export interface SignedManifest {
  manifest: Manifest;
  signature: { keyId: string; value: string };
}

const envelopeSchema = z.strictObject({
  manifest: z.unknown(),
  signature: z.strictObject({ keyId: z.string().min(1).max(128), value: z.string().min(1).max(256) }),
});

/** Rules zod cannot say: sizes add up, paths are unique, links stay inside, totals match. */
export function checkManifest(m: Manifest): void {
  const seen = new Map<string, Entry['type']>();
  let total = 0;
  for (const e of m.files) {
    if (seen.has(e.path)) throw fail('invalid_manifest', `path ${e.path} appears twice`);
    seen.set(e.path, e.type);
    if (e.type === 'file') {
      let sum = 0;
      for (const [, n] of e.chunks) sum += n;
      if (sum !== e.size) throw fail('invalid_manifest', `file ${e.path}: its chunks add up to ${sum} bytes, not its size ${e.size}`);
      total += e.size;
    } else if (e.type === 'link') {
      if (e.target.startsWith('/') || /^[A-Za-z]:/.test(e.target) || e.target.includes('\\') || e.target.includes('\0')) {
        throw fail('invalid_manifest', `link ${e.path} points outside the package (${e.target})`);
      }
      const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(e.path), e.target));
      if (resolved === '..' || resolved.startsWith('../') || resolved === '.') {
        throw fail('invalid_manifest', `link ${e.path} points outside the package (${e.target})`);
      }
    }
  }
  // A parent of any entry must not itself be a file or link.
  for (const p of seen.keys()) {
    let i = p.indexOf('/');
    while (i >= 0) {
      const parent = p.slice(0, i);
      const t = seen.get(parent);
      if (t && t !== 'dir') throw fail('invalid_manifest', `path ${p} lies under ${parent}, which is a ${t}`);
      i = p.indexOf('/', i + 1);
    }
  }
  // Links again, as the file system will resolve them: a link in the middle of a target is
  // followed, so `up/..` is not `.` when `up` is itself a link (text normalisation is not enough).
  const links = new Map<string, string>();
  for (const e of m.files) if (e.type === 'link') links.set(e.path, e.target);
  if (links.size > 0) {
    const resolver = new LinkResolver(links);
    for (const [p, target] of links) {
      const at = resolver.resolve(p);
      if (at === undefined || at.length === 0) throw fail('invalid_manifest', `link ${p} points outside the package (${target})`);
    }
  }
  if (total !== m.bytes) throw fail('invalid_manifest', `files add up to ${total} bytes, but the manifest says ${m.bytes}`);
  const names = new Set<string>();
  for (const p of m.programs) {
    if (names.has(p.name)) throw fail('invalid_manifest', `program ${p.name} appears twice`);
    names.add(p.name);
  }
}

/**
 * Resolves link targets inside the package the way a file system would, following links met in
 * the middle of a target. `resolve` returns the segments of where a link points (empty: the
 * package root), or undefined when it leaves the package or loops. Results are memoised, so
 * every link is resolved once however many targets pass through it.
 */
class LinkResolver {
  private readonly done = new Map<string, string[] | undefined>();
  private readonly active = new Set<string>();

  constructor(private readonly links: ReadonlyMap<string, string>) {}

  resolve(linkPath: string): string[] | undefined {
    if (this.done.has(linkPath)) return this.done.get(linkPath);
    if (this.active.has(linkPath)) return undefined; // a loop
    this.active.add(linkPath);
    const target = this.links.get(linkPath) as string;
    const stack = linkPath.split('/').slice(0, -1);
    const segs = target.split('/');
    let out: string[] | undefined = stack;
    for (let i = 0; i < segs.length; i++) {
      const seg = segs[i] as string;
      if (seg === '' || seg === '.') continue;
      if (seg === '..') {
        if (stack.length === 0) {
          out = undefined;
          break;
        }
        stack.pop();
        continue;
      }
      stack.push(seg);
      // The last segment may be a link: that link is checked on its own.
      if (i < segs.length - 1) {
        const here = stack.join('/');
        if (this.links.has(here)) {
          const via = this.resolve(here);
          if (via === undefined) {
            out = undefined;
            break;
          }
          stack.length = 0;
          stack.push(...via);
        }
      }
    }
    this.active.delete(linkPath);
    this.done.set(linkPath, out);
    return out;
  }
}

function describeZod(err: z.ZodError): string {
  const first = err.issues[0];
  if (!first) return 'invalid';
  const where = first.path.length ? `${first.path.join('.')}: ` : '';
  return `${where}${first.message}`;
}

/** Validates an untrusted manifest object (structure and rules); returns it typed. */
export function parseManifest(value: unknown): Manifest {
  const r = manifestSchema.safeParse(value);
  if (!r.success) throw fail('invalid_manifest', `manifest rejected: ${describeZod(r.error)}`);
  checkManifest(r.data);
  return r.data;
}

export const encodeManifest = (m: Manifest): Buffer => Buffer.from(canonicalJson(m));

/** The manifest's identity: SHA-256 of its canonical encoding. */
export const manifestDigest = (m: Manifest): string => digestOf(encodeManifest(m));

const digestOf = (encoded: Buffer): string => crypto.createHash('sha256').update(encoded).digest('hex');

/** Signs a manifest; returns the canonical bytes of `{manifest, signature}` as stored and sent. */
export const signManifest = (m: Manifest, key: SiteKey): Buffer => signManifestWithDigest(m, key).signed;

/** Signs a manifest and gives its identity too, from one canonical encoding. */
export function signManifestWithDigest(m: Manifest, key: SiteKey): { signed: Buffer; digest: string } {
  checkManifest(m);
  const encoded = Buffer.from(canonicalJson(m));
  const value = sign(key, encoded);
  // canonicalJson({manifest, signature}), without encoding the manifest a second time (~25 ms
  // for 8,000 chunks): the keys sort as written here.
  const signed = Buffer.concat([
    Buffer.from('{"manifest":'),
    encoded,
    Buffer.from(`,"signature":${canonicalJson({ keyId: key.keyId, value })}}`),
  ]);
  return { signed, digest: digestOf(encoded) };
}

/**
 * Manifests verified lately, by the SHA-256 of their exact bytes: a site reads the same
 * manifest again and again (an offer, its commit, an import, the report up), and a full check
 * of a large one costs ~70 ms of the main thread (8,000 chunks: JSON, canonical form twice,
 * every rule); hashing its bytes costs under 1 ms. A hit counts only while the key that
 * signed it is still trusted, unchanged; callers get their own copy.
 */
const VERIFIED_MAX = 16;
const VERIFIED_MAX_BYTES = 16 << 20;
const verified = new Map<string, { signer: TrustedKey; result: SignedManifest; bytes: number }>();
let verifiedBytes = 0;

/**
 * The one verification function used wherever a manifest is read: the bytes must be the
 * canonical encoding, the signature must be by a trusted key, and the manifest must pass every
 * rule. Any altered byte fails here.
 */
export function verifyManifest(bytes: Uint8Array, trusted: readonly TrustedKey[]): SignedManifest {
  if (bytes.length > LIMITS.manifestBytes)
    throw fail('too_large', `manifest is ${bytes.length} bytes, over the limit of ${LIMITS.manifestBytes}`);
  const digest = crypto.createHash('sha256').update(bytes).digest('hex');
  const hit = verified.get(digest);
  if (
    hit &&
    trusted.some((k) => k.keyId === hit.signer.keyId && k.publicKeyPem === hit.signer.publicKeyPem && k.site === hit.signer.site)
  ) {
    verified.delete(digest);
    verified.set(digest, hit);
    return structuredClone(hit.result);
  }
  const result = checkManifestBytes(bytes, trusted);
  if (bytes.length <= VERIFIED_MAX_BYTES) {
    const signer = trusted.find((k) => k.keyId === result.signature.keyId) as TrustedKey;
    verified.set(digest, { signer: { ...signer }, result: structuredClone(result), bytes: bytes.length });
    verifiedBytes += bytes.length;
    for (const [d, v] of verified) {
      if (verified.size <= VERIFIED_MAX && verifiedBytes <= VERIFIED_MAX_BYTES) break;
      verified.delete(d);
      verifiedBytes -= v.bytes;
    }
  }
  return result;
}

function checkManifestBytes(bytes: Uint8Array, trusted: readonly TrustedKey[]): SignedManifest {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const text = buf.toString('utf8');
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw fail('invalid_manifest', 'manifest is not valid JSON');
  }
  const env = envelopeSchema.safeParse(raw);
  if (!env.success) throw fail('invalid_manifest', `manifest envelope rejected: ${describeZod(env.error)}`);
  let canonical: string;
  try {
    canonical = canonicalJson(raw);
  } catch (e) {
    throw fail('invalid_manifest', `manifest is not canonical: ${(e as Error).message}`);
  }
  // Compare bytes, not text: invalid UTF-8 decodes to U+FFFD, so two byte strings can read the same.
  if (!Buffer.from(canonical).equals(buf)) throw fail('invalid_manifest', 'manifest is not in canonical form (altered or re-encoded)');
  verifySignature(trusted, env.data.signature.keyId, Buffer.from(canonicalJson(env.data.manifest)), env.data.signature.value);
  const manifest = parseManifest(env.data.manifest);
  checkSigner(manifest, trusted.find((k) => k.keyId === env.data.signature.keyId) as TrustedKey);
  return { manifest, signature: env.data.signature };
}

/**
 * A site's key signs only its own site's packages: the package ID's first three characters
 * and the manifest's origin must both be the site the signing key belongs to. Without this, a
 * child site's (valid, vouched) key could sign a new version of the central site's package.
 */
export function checkSigner(m: Pick<Manifest, 'id' | 'origin'>, signer: TrustedKey): void {
  const owner = m.id.slice(0, 3);
  if (signer.site !== owner || m.origin !== owner)
    throw fail(
      'bad_signature',
      `${m.id} belongs to site ${owner}, but its manifest ${m.origin !== owner ? `names origin ${m.origin} and ` : ''}is signed by site ${signer.site}'s key ${signer.keyId}: a site signs only its own packages`,
    );
}

/** Unique chunk digests of a manifest, with their sizes. */
export function manifestChunks(m: Manifest): Map<string, number> {
  const out = new Map<string, number>();
  for (const e of m.files) if (e.type === 'file') for (const [d, n] of e.chunks) out.set(d, n);
  return out;
}

/** Where each file's chunks lie: path -> [{digest, offset, size}] in file order. */
export type ChunkIndex = Map<string, { digest: string; offset: number; size: number }[]>;

export function chunkIndex(m: Manifest | undefined): ChunkIndex {
  const idx: ChunkIndex = new Map();
  if (!m) return idx;
  for (const e of m.files) {
    if (e.type !== 'file') continue;
    let offset = 0;
    idx.set(
      e.path,
      e.chunks.map(([digest, size]) => {
        const r = { digest, offset, size };
        offset += size;
        return r;
      }),
    );
  }
  return idx;
}
