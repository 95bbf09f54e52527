import crypto from 'node:crypto';
import { z } from 'zod';
import { LIMITS } from '../api/manifests.js';
import { TARGET_NAME } from '../core/dp.js';
import { fail } from '../core/errors.js';
import { PACKAGE_ID } from '../core/package.js';
import { SITE_CODE } from '../core/site.js';
import { CHUNK_PARAMS } from './chunker.js';
import { decodeChunk } from './codec.js';
import { type Manifest, parseManifest } from './manifest.js';
import {
  HEADER_SIGNATURE,
  INDEX_ENTRY,
  MAX_OMIT_RANGES,
  type OmitRange,
  PARCEL_END,
  PARCEL_FORMAT,
  PARCEL_LIMITS,
  PARCEL_MAGIC,
  PREFIX,
  TRAILER,
} from './parcel-toc.js';

/**
 * The courier parcel: package versions in one file, for transport on physical media
 * (docs/courier.md). Version 3 of the format, every integer big-endian:
 *
 *   8    magic             "CASCPRCL"
 *   u32  format           3
 *   u32  header length    H (at most 1 MiB)
 *   H    header            JSON (ParcelHeader): parcel id, sites, packages, counts, total length,
 *                          the signing key's id and the source site's certificate
 *   64   header signature  Ed25519, by the source site's key, of "cascade parcel header\n" and
 *                          the H header bytes: where a parcel comes from and is going, its id
 *                          and what it holds are the source's word, checked before anything
 *                          of the parcel is used
 *   ...  per package       its signed manifest (manifestLength bytes), then the origin site's
 *                          certificate as JSON (certificateLength bytes, 0 when the origin is
 *                          the central site)
 *   40×N chunk index       per chunk: 32-byte SHA-256 of the raw chunk, u32 stored length,
 *                          u32 raw size
 *   ...  chunks            each chunk as the library stores it (codec tag byte + payload), in
 *                          index order: no re-compression on either side
 *   8    trailer magic     "CASCEND3"
 *   32   checksum          SHA-256 of the table of contents: every byte before the first chunk
 *                          (prefix, header, manifests, certificates, index)
 *
 * Each chunk is covered by its own digest in the index (checked by decoding it and hashing the
 * result), so the checksum covers the rest. Format 1 hashed every byte of the file as well:
 * a second SHA-256 pass over all chunk data, on the one thread that reads the stream, which
 * capped import and export near 150 MiB/s and caught nothing the chunk digests do not.
 *
 * Both sides stream: the writer reads one stored chunk at a time (a few ahead), the reader
 * hands chunk data out in task buffers of a few MiB. Memory does not grow with the parcel.
 */

const GROUP_BYTES = 4 << 20;

export const parcelHeaderSchema = z.strictObject({
  format: z.literal(PARCEL_FORMAT),
  parcel: z.uuid(),
  created: z.string().max(64),
  source: z.string().regex(SITE_CODE),
  /** A site's code, or a DP's name (a parcel for one of its site's DPs: courier export --to-dp). */
  destination: z.string().regex(TARGET_NAME).nullable(),
  full: z.boolean(),
  packages: z
    .array(
      z.strictObject({
        id: z.string().regex(PACKAGE_ID),
        version: z
          .number()
          .int()
          .min(1)
          .max(2 ** 31),
        /** Bytes of the whole version (its files), from its manifest. */
        bytes: z.number().int().min(0).max(LIMITS.totalBytes),
        manifestLength: z.number().int().min(1).max(LIMITS.manifestBytes),
        certificateLength: z.number().int().min(0).max(PARCEL_LIMITS.certificateBytes),
      }),
    )
    .min(1)
    .max(PARCEL_LIMITS.packages),
  chunks: z.number().int().min(0).max(PARCEL_LIMITS.chunks),
  /** The key that signed this header, and the source site's certificate (null: the central site). */
  signer: z.strictObject({ keyId: z.string().min(1).max(128), certificate: z.unknown().nullable() }),
  /** Stored bytes of the chunks (what the parcel carries). */
  chunkBytes: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  /** Raw bytes of the chunks (what they decode to). */
  rawBytes: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  /** Length of the whole file, trailer included. */
  totalBytes: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
});
export type ParcelHeader = z.infer<typeof parcelHeaderSchema>;

export interface IndexEntry {
  digest: string;
  /** Stored length in the parcel (codec tag + payload). */
  stored: number;
  /** Raw size the chunk decodes to. */
  size: number;
}

export interface ParcelPackage {
  id: string;
  version: number;
  manifest: Buffer;
  /** The origin site's certificate (parsed JSON), or null. */
  certificate: unknown;
}

/** The parts of a parcel to write; `writeParcel` fills in the totals. */
export interface ParcelPlan {
  parcel: string;
  created: string;
  source: string;
  destination: string | null;
  full: boolean;
  packages: { id: string; version: number; bytes: number; manifest: Uint8Array; certificate: Uint8Array | null }[];
  chunks: IndexEntry[];
  /** The source site's key id, and its certificate (null at the central site). */
  signer: { keyId: string; certificate: unknown };
}

/** What the header signature covers: a fixed context, then the header's bytes. */
export const signedHeaderBytes = (json: Uint8Array): Buffer => Buffer.concat([Buffer.from('cascade parcel header\n'), json]);

/** The header a plan will have (with its total length). */
export function parcelHeader(plan: ParcelPlan): ParcelHeader {
  const chunkBytes = plan.chunks.reduce((n, c) => n + c.stored, 0);
  const header: ParcelHeader = {
    format: PARCEL_FORMAT,
    parcel: plan.parcel,
    created: plan.created,
    source: plan.source,
    destination: plan.destination,
    full: plan.full,
    packages: plan.packages.map((p) => ({
      id: p.id,
      version: p.version,
      bytes: p.bytes,
      manifestLength: p.manifest.length,
      certificateLength: p.certificate?.length ?? 0,
    })),
    chunks: plan.chunks.length,
    signer: { keyId: plan.signer.keyId, certificate: plan.signer.certificate ?? null },
    chunkBytes,
    rawBytes: plan.chunks.reduce((n, c) => n + c.size, 0),
    totalBytes: 0,
  };
  const body =
    HEADER_SIGNATURE +
    plan.packages.reduce((n, p) => n + p.manifest.length + (p.certificate?.length ?? 0), 0) +
    plan.chunks.length * INDEX_ENTRY +
    chunkBytes +
    TRAILER;
  // The total's own digits are part of the header: settle on a fixed point.
  for (let i = 0; i < 4; i++) header.totalBytes = PREFIX + Buffer.byteLength(JSON.stringify(header)) + body;
  return parcelHeaderSchema.parse(header);
}

/**
 * The parcel as a stream of buffers. `readStored` gives several chunks as the library stores
 * them, end to end, in one buffer whose length must match the index (written first). Reads go
 * in groups of about 4 MiB, two groups ahead. `sign` signs the header with the source site's key.
 */
export async function* writeParcel(
  plan: ParcelPlan,
  readStored: (entries: readonly IndexEntry[]) => Promise<Uint8Array>,
  sign: (bytes: Uint8Array) => Uint8Array,
): AsyncGenerator<Uint8Array> {
  // The checksum covers the table of contents (everything before the first chunk).
  const hash = crypto.createHash('sha256');
  const out = (b: Uint8Array) => {
    hash.update(b);
    return b;
  };
  const header = parcelHeader(plan);
  const json = Buffer.from(JSON.stringify(header));
  const prefix = Buffer.alloc(PREFIX);
  PARCEL_MAGIC.copy(prefix, 0);
  prefix.writeUInt32BE(PARCEL_FORMAT, 8);
  prefix.writeUInt32BE(json.length, 12);
  yield out(prefix);
  yield out(json);
  const signature = sign(signedHeaderBytes(json));
  if (signature.length !== HEADER_SIGNATURE)
    throw new Error(`a parcel header signature is ${HEADER_SIGNATURE} bytes, not ${signature.length}`);
  yield out(signature);
  for (const p of plan.packages) {
    yield out(p.manifest);
    if (p.certificate && p.certificate.length > 0) yield out(p.certificate);
  }
  // The index, in pieces of at most 64k entries.
  for (let i = 0; i < plan.chunks.length; i += 65536) {
    const part = plan.chunks.slice(i, i + 65536);
    const buf = Buffer.allocUnsafe(part.length * INDEX_ENTRY);
    part.forEach((c, n) => {
      const at = n * INDEX_ENTRY;
      buf.write(c.digest, at, 32, 'hex');
      buf.writeUInt32BE(c.stored, at + 32);
      buf.writeUInt32BE(c.size, at + 36);
    });
    yield out(buf);
  }
  const groups: IndexEntry[][] = [];
  let group: IndexEntry[] = [];
  let size = 0;
  for (const c of plan.chunks) {
    group.push(c);
    size += c.stored;
    if (size >= GROUP_BYTES) {
      groups.push(group);
      group = [];
      size = 0;
    }
  }
  if (group.length > 0) groups.push(group);
  const AHEAD = 2;
  const reads: Promise<Uint8Array>[] = [];
  const start = (i: number) => {
    const g = groups[i];
    if (!g) return;
    const p = readStored(g);
    p.catch(() => {});
    reads.push(p);
  };
  for (let i = 0; i < AHEAD; i++) start(i);
  for (let i = 0; i < groups.length; i++) {
    const g = groups[i] as IndexEntry[];
    const data = await (reads.shift() as Promise<Uint8Array>);
    start(i + AHEAD);
    const want = g.reduce((n, c) => n + c.stored, 0);
    if (data.length !== want)
      throw fail('damaged', `chunks ${g[0]?.digest}... are ${data.length} bytes in the library, not the ${want} indexed; export again`);
    yield data;
  }
  const trailer = Buffer.alloc(TRAILER);
  PARCEL_END.copy(trailer, 0);
  hash.digest().copy(trailer, 8);
  yield trailer;
}

const bad = (what: string) => fail('bad_parcel', what);

/** Reads exactly the bytes asked for from a stream of pieces, hashing the table of contents. */
class ByteSource {
  private piece: Uint8Array = new Uint8Array(0);
  private at = 0;
  private ended = false;
  readonly hash = crypto.createHash('sha256');
  consumed = 0;
  private readonly it: AsyncIterator<Uint8Array>;

  constructor(
    body: AsyncIterable<Uint8Array>,
    private readonly where: () => string,
  ) {
    this.it = body[Symbol.asyncIterator]();
  }

  private async fill(): Promise<boolean> {
    while (this.at >= this.piece.length) {
      if (this.ended) return false;
      const r = await this.it.next();
      if (r.done) {
        this.ended = true;
        return false;
      }
      this.piece = r.value;
      this.at = 0;
    }
    return true;
  }

  /** Copies `n` bytes into `dst` at `off`, hashing them when `hash` (the table of contents). */
  async into(dst: Uint8Array, off: number, n: number, hash: boolean): Promise<void> {
    let left = n;
    while (left > 0) {
      if (!(await this.fill())) throw bad(`the parcel is truncated: it ends ${this.where()}`);
      const k = Math.min(left, this.piece.length - this.at);
      const src = this.piece.subarray(this.at, this.at + k);
      dst.set(src, off + n - left);
      if (hash) this.hash.update(src);
      this.at += k;
      this.consumed += k;
      left -= k;
    }
  }

  async exact(n: number, hash: boolean): Promise<Buffer> {
    const b = Buffer.allocUnsafe(n);
    await this.into(b, 0, n, hash);
    return b;
  }

  async skip(n: number, onBytes?: (n: number) => void): Promise<void> {
    let left = n;
    while (left > 0) {
      if (!(await this.fill())) throw bad(`the parcel is truncated: it ends ${this.where()}`);
      const k = Math.min(left, this.piece.length - this.at);
      this.at += k;
      this.consumed += k;
      left -= k;
      onBytes?.(k);
    }
  }

  async atEnd(): Promise<boolean> {
    return !(await this.fill());
  }

  /** Stops reading the body (lets its producer clean up). */
  async close(): Promise<void> {
    await this.it.return?.();
  }
}

/** `x-cascade-omit: 0-4000,4100-4200` (half-open ranges of index entries) to ranges. */
export function parseOmitHeader(v: string | undefined): OmitRange[] {
  if (!v) return [];
  const parts = v.split(',');
  if (parts.length > MAX_OMIT_RANGES) throw fail('bad_request', `x-cascade-omit names ${parts.length} ranges, over ${MAX_OMIT_RANGES}`);
  return parts.map((p) => {
    const m = /^\s*(\d{1,9})-(\d{1,9})\s*$/.exec(p);
    if (!m) throw fail('bad_request', `x-cascade-omit: "${p.slice(0, 40)}" is not a range FROM-TO of chunk numbers`);
    return [Number(m[1]), Number(m[2])] as const;
  });
}

/** Not zero-filled, and owning its memory (so it can be moved to a worker thread). */
const fresh = (bytes: number): Uint8Array => Buffer.allocUnsafeSlow(bytes);

/** Chunk data handed out in one buffer of its own (movable to a worker thread). */
export interface ChunkTask {
  buf: Uint8Array;
  items: { digest: string; offset: number; length: number; size: number }[];
}

/**
 * Reads a parcel step by step, checking as it goes: header(), packages(), index(sizeOf),
 * then chunks() (or skipChunks()), then finish() for the trailing checksum. Any malformed,
 * truncated or hostile input is one `bad_parcel` error.
 */
export class ParcelReader {
  private readonly src: ByteSource;
  private step: 'header' | 'packages' | 'index' | 'chunks' | 'finish' | 'done' = 'header';
  private hdr: ParcelHeader | undefined;
  private entries: IndexEntry[] = [];
  private chunkAt = 0;
  /** The checksum of the table of contents, once read. */
  private toc: Buffer | undefined;
  /** Index entries whose bytes the sender left out of the stream (see `omitRanges`). */
  private omitted: OmitRange[] = [];
  /** The header's signed bytes and its signature, once read. */
  private signedHeader: { bytes: Buffer; signature: Buffer } | undefined;

  constructor(body: AsyncIterable<Uint8Array>) {
    this.src = new ByteSource(body, () => this.where());
  }

  get bytesRead(): number {
    return this.src.consumed;
  }

  private where(): string {
    switch (this.step) {
      case 'header':
        return 'inside its header';
      case 'packages':
        return 'inside its manifests';
      case 'index':
        return 'inside its chunk index';
      case 'chunks':
        return `inside chunk ${this.chunkAt + 1} of ${this.hdr?.chunks ?? '?'}`;
      default:
        return 'before its trailing checksum';
    }
  }

  private expect(s: ParcelReader['step']): void {
    if (this.step !== s) throw new Error(`parcel reader: ${s} called during ${this.step}`);
  }

  async header(): Promise<ParcelHeader> {
    this.expect('header');
    if (await this.src.atEnd()) throw bad('the file is empty: not a courier parcel');
    const prefix = await this.src.exact(PREFIX, true).catch(() => {
      throw bad('the file is too short to be a courier parcel');
    });
    if (!prefix.subarray(0, 8).equals(PARCEL_MAGIC)) throw bad('the file is not a courier parcel (no CASCPRCL magic)');
    const format = prefix.readUInt32BE(8);
    if (format !== PARCEL_FORMAT)
      throw bad(
        format < PARCEL_FORMAT
          ? `the parcel has format ${format}, made by an older Cascade; this one reads format ${PARCEL_FORMAT}: export it again`
          : `the parcel has format ${format}; this Cascade reads format ${PARCEL_FORMAT} (upgrade it to read newer parcels)`,
      );
    const len = prefix.readUInt32BE(12);
    if (len < 2 || len > PARCEL_LIMITS.headerBytes) throw bad(`the parcel header is ${len} bytes (2..${PARCEL_LIMITS.headerBytes})`);
    const json = await this.src.exact(len, true);
    const text = json.toString('utf8');
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch {
      throw bad('the parcel header is not valid JSON');
    }
    const r = parcelHeaderSchema.safeParse(raw);
    if (!r.success) {
      const i = r.error.issues[0];
      throw bad(`the parcel header is invalid: ${i?.path.join('.') || 'header'}: ${i?.message ?? 'invalid'}`);
    }
    const h = r.data;
    const body =
      HEADER_SIGNATURE +
      h.packages.reduce((n, p) => n + p.manifestLength + p.certificateLength, 0) +
      h.chunks * INDEX_ENTRY +
      h.chunkBytes +
      TRAILER;
    if (PREFIX + len + body !== h.totalBytes)
      throw bad(`the parcel header does not add up: its parts make ${PREFIX + len + body} bytes, not the ${h.totalBytes} it states`);
    const seen = new Set<string>();
    for (const p of h.packages) {
      const k = `${p.id}/${p.version}`;
      if (seen.has(k)) throw bad(`the parcel names ${p.id} version ${p.version} twice`);
      seen.add(k);
    }
    const signature = await this.src.exact(HEADER_SIGNATURE, true);
    this.signedHeader = { bytes: signedHeaderBytes(json), signature };
    this.hdr = h;
    this.step = 'packages';
    return h;
  }

  /** What the header's signature covers, and the signature (after header()). */
  get headerSignature(): { bytes: Buffer; signature: Buffer } {
    if (!this.signedHeader) throw new Error('parcel reader: headerSignature before header()');
    return this.signedHeader;
  }

  async packages(): Promise<ParcelPackage[]> {
    this.expect('packages');
    const out: ParcelPackage[] = [];
    for (const p of (this.hdr as ParcelHeader).packages) {
      const manifest = await this.src.exact(p.manifestLength, true);
      let certificate: unknown = null;
      if (p.certificateLength > 0) {
        try {
          certificate = JSON.parse((await this.src.exact(p.certificateLength, true)).toString('utf8'));
        } catch (e) {
          if ((e as { code?: string }).code === 'bad_parcel') throw e;
          throw bad(`the certificate that comes with ${p.id} version ${p.version} is not valid JSON`);
        }
      }
      out.push({ id: p.id, version: p.version, manifest, certificate });
    }
    this.step = 'index';
    return out;
  }

  /**
   * The chunk index. `sizeOf` gives the raw size of a chunk the parcel's manifests name (or
   * undefined): a chunk no manifest names, one listed twice, or sizes that disagree are refused.
   */
  async index(sizeOf: (digest: string) => number | undefined): Promise<IndexEntry[]> {
    this.expect('index');
    const h = this.hdr as ParcelHeader;
    const seen = new Set<string>();
    let stored = 0;
    let raw = 0;
    const entries: IndexEntry[] = [];
    for (let i = 0; i < h.chunks; i += 65536) {
      const n = Math.min(65536, h.chunks - i);
      const buf = await this.src.exact(n * INDEX_ENTRY, true);
      for (let k = 0; k < n; k++) {
        const at = k * INDEX_ENTRY;
        const digest = buf.toString('hex', at, at + 32);
        const e = { digest, stored: buf.readUInt32BE(at + 32), size: buf.readUInt32BE(at + 36) };
        if (seen.has(digest)) throw bad(`the parcel's index lists chunk ${digest} twice`);
        seen.add(digest);
        const want = sizeOf(digest);
        if (want === undefined) throw bad(`the parcel's index lists chunk ${digest}, which none of its manifests names`);
        if (e.size !== want || e.size < 1 || e.size > CHUNK_PARAMS.max)
          throw bad(`the parcel's index gives chunk ${digest} a size of ${e.size} bytes; its manifest says ${want}`);
        if (e.stored < 2 || e.stored > e.size + 1)
          throw bad(`the parcel's index gives chunk ${digest} a stored length of ${e.stored} bytes (2..${e.size + 1})`);
        stored += e.stored;
        raw += e.size;
        entries.push(e);
      }
    }
    if (stored !== h.chunkBytes || raw !== h.rawBytes)
      throw bad(
        `the parcel's index adds up to ${stored} stored and ${raw} raw bytes, not the ${h.chunkBytes} and ${h.rawBytes} its header states`,
      );
    this.entries = entries;
    this.toc = this.src.hash.digest();
    this.step = 'chunks';
    return entries;
  }

  /**
   * The chunk data, in tasks of about `taskBytes`, each in a buffer of its own from `alloc`
   * (which may hand back buffers of earlier tasks: fewer fresh pages, less garbage).
   */
  async *chunks(taskBytes = 4 << 20, alloc: (bytes: number) => Uint8Array = fresh): AsyncGenerator<ChunkTask> {
    this.expect('chunks');
    let task: ChunkTask = { buf: alloc(taskBytes), items: [] };
    let used = 0;
    for (; this.chunkAt < this.entries.length; this.chunkAt++) {
      if (this.isOmitted(this.chunkAt)) continue;
      const e = this.entries[this.chunkAt] as IndexEntry;
      if (used + e.stored > task.buf.length) {
        if (task.items.length > 0) yield task;
        task = { buf: alloc(Math.max(taskBytes, e.stored)), items: [] };
        used = 0;
      }
      await this.src.into(task.buf, used, e.stored, false);
      task.items.push({ digest: e.digest, offset: used, length: e.stored, size: e.size });
      used += e.stored;
    }
    if (task.items.length > 0) yield task;
    this.step = 'finish';
  }

  /**
   * Reads past the chunk data (the framing only), or with `check` decodes each chunk and checks
   * it against its size and digest (`courier inspect`): a chunk that does not match is a
   * `bad_parcel` error naming it.
   */
  async skipChunks(onBytes?: (n: number) => void, check = false): Promise<void> {
    this.expect('chunks');
    for (; this.chunkAt < this.entries.length; this.chunkAt++) {
      if (this.isOmitted(this.chunkAt)) continue;
      const e = this.entries[this.chunkAt] as IndexEntry;
      if (!check) {
        await this.src.skip(e.stored, onBytes);
        continue;
      }
      const stored = await this.src.exact(e.stored, false);
      let ok = false;
      try {
        const raw = decodeChunk(stored, e.size);
        ok = raw.length === e.size && crypto.createHash('sha256').update(raw).digest('hex') === e.digest;
      } catch {}
      if (!ok) throw bad(`the parcel is damaged or altered: chunk ${e.digest} (number ${this.chunkAt + 1}) does not match its digest`);
      onBytes?.(e.stored);
    }
    this.step = 'finish';
  }

  /**
   * Index entries the sender left out of the stream (chunks the receiver said it holds: a
   * resumed or repeated import reads only the rest). Call after index(), before chunks().
   * The table of contents and its checksum are whole; only those chunks' bytes are missing.
   */
  omitRanges(ranges: readonly OmitRange[]): void {
    this.expect('chunks');
    let end = 0;
    for (const [from, to] of ranges) {
      if (!(Number.isInteger(from) && Number.isInteger(to) && from >= end && to > from && to <= this.entries.length))
        throw fail(
          'bad_request',
          `omitted chunk range ${from}-${to} is not in order or not within the parcel's ${this.entries.length} chunks`,
        );
      end = to;
    }
    this.omitted = [...ranges];
  }

  /** Whether index entry `i` was left out of the stream. */
  isOmitted(i: number): boolean {
    // The ranges are in order and do not overlap: the last one starting at or before i.
    let lo = 0;
    let hi = this.omitted.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((this.omitted[mid] as OmitRange)[0] <= i) lo = mid + 1;
      else hi = mid;
    }
    const r = this.omitted[lo - 1];
    return r !== undefined && i < r[1];
  }

  /** The trailing checksum must match the table of contents, and nothing may follow. */
  async finish(): Promise<{ checksum: string }> {
    this.expect('finish');
    const want = this.toc as Buffer;
    const trailer = await this.src.exact(TRAILER, false);
    if (!trailer.subarray(0, 8).equals(PARCEL_END))
      throw bad('the parcel has no trailer where its header says it ends (altered or truncated)');
    if (!trailer.subarray(8).equals(want))
      throw bad('the parcel is damaged or altered: its trailing checksum does not match its header, manifests and index');
    if (!(await this.src.atEnd())) throw bad('the parcel has bytes after its trailer (altered, or two files joined)');
    this.step = 'done';
    return { checksum: trailer.subarray(8).toString('hex') };
  }

  async close(): Promise<void> {
    await this.src.close();
  }
}

/**
 * A parcel's manifest read for display only (`courier inspect`): checked against every rule,
 * but its signature is not (that needs the receiving site's trust, and happens at import).
 */
export function unverifiedManifest(bytes: Uint8Array): { manifest: Manifest; keyId: string } {
  let raw: { manifest?: unknown; signature?: { keyId?: unknown } };
  try {
    raw = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    throw bad('a manifest in the parcel is not valid JSON');
  }
  const keyId = typeof raw?.signature?.keyId === 'string' ? raw.signature.keyId : '?';
  return { manifest: parseManifest(raw?.manifest), keyId };
}

/** What an import did (the answer of POST /api/v1/courier/import and `courier import --json`). */
export interface ImportReport {
  parcel: string;
  source: string;
  destination: string | null;
  /** The site that imported it (set by the site, not the parcel). */
  importedAt?: string;
  created: string;
  packages: {
    id: string;
    version: number;
    bytes: number;
    state: 'installed' | 'incomplete';
    missingChunks: number;
    missingBytes: number;
  }[];
  /** Chunks in the parcel, stored now, and already held before. */
  chunks: { inParcel: number; stored: number; alreadyHeld: number };
  /**
   * The parcel's size, the bytes of it received (less when the sender left out chunks held
   * here), and raw bytes of the chunks stored now.
   */
  bytes: { parcel: number; received: number; stored: number };
}
