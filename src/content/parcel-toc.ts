/**
 * The framing constants of the courier parcel format (see parcel.ts for the whole format), and
 * a quick read of where a parcel's chunks lie. Kept apart from parcel.ts so that a command that
 * only needs the chunk index (courier import's resume plan) loads neither zod nor the manifest
 * code: ~0.2 s of the import's start, while the site waited (measured).
 */
export const PARCEL_MAGIC = Buffer.from('CASCPRCL', 'latin1');
export const PARCEL_END = Buffer.from('CASCEND3', 'latin1');
export const PARCEL_FORMAT = 3;
/** Magic, format and header length. */
export const PREFIX = 16;
/** The Ed25519 signature of the header by the site that made the parcel, right after it. */
export const HEADER_SIGNATURE = 64;
export const INDEX_ENTRY = 40;
export const TRAILER = 40;

export const PARCEL_LIMITS = {
  headerBytes: 1 << 20,
  packages: 1000,
  certificateBytes: 64 << 10,
  chunks: 1 << 24,
} as const;

/** Index entries `[from, to)` left out of a parcel's stream: they are not read. */
export type OmitRange = readonly [from: number, to: number];

/** At most this many ranges in `x-cascade-omit` (a request header: a few KiB). */
export const MAX_OMIT_RANGES = 512;

/** Ranges as the `x-cascade-omit` header spells them: `0-4000,4100-4200`. */
export const formatOmitHeader = (ranges: readonly OmitRange[]): string => ranges.map(([a, b]) => `${a}-${b}`).join(',');

export interface ParcelToc {
  /** Where the first chunk starts: the table of contents is every byte before it. */
  tocEnd: number;
  /** Per chunk, in file order: its digest and the bytes it takes in the file. */
  entries: { digest: string; stored: number }[];
}

const count = (v: unknown, max: number): number | undefined =>
  Number.isSafeInteger(v) && (v as number) >= 0 && (v as number) <= max ? (v as number) : undefined;

/**
 * The chunk index of a parcel, read through `readAt` (bytes at a file position; shorter at the
 * end), without checking signatures, manifests or sums: for a sender deciding what to leave out.
 * The receiver checks everything. Undefined when the bytes do not look like a parcel of this
 * format.
 */
export async function readParcelToc(readAt: (position: number, length: number) => Promise<Uint8Array>): Promise<ParcelToc | undefined> {
  const prefix = Buffer.from(await readAt(0, PREFIX));
  if (prefix.length < PREFIX || !prefix.subarray(0, 8).equals(PARCEL_MAGIC) || prefix.readUInt32BE(8) !== PARCEL_FORMAT) return undefined;
  const len = prefix.readUInt32BE(12);
  if (len < 2 || len > PARCEL_LIMITS.headerBytes) return undefined;
  const text = Buffer.from(await readAt(PREFIX, len));
  if (text.length < len) return undefined;
  let header: { packages?: unknown; chunks?: unknown };
  try {
    header = JSON.parse(text.toString('utf8')) as typeof header;
  } catch {
    return undefined;
  }
  const chunks = count(header?.chunks, PARCEL_LIMITS.chunks);
  if (chunks === undefined || !Array.isArray(header.packages) || header.packages.length > PARCEL_LIMITS.packages) return undefined;
  let at = PREFIX + len + HEADER_SIGNATURE;
  for (const p of header.packages as { manifestLength?: unknown; certificateLength?: unknown }[]) {
    const m = count(p?.manifestLength, 2 ** 32);
    const c = count(p?.certificateLength, PARCEL_LIMITS.certificateBytes);
    if (m === undefined || c === undefined) return undefined;
    at += m + c;
  }
  const entries: ParcelToc['entries'] = [];
  for (let i = 0; i < chunks; i += 65536) {
    const n = Math.min(65536, chunks - i);
    const buf = Buffer.from(await readAt(at, n * INDEX_ENTRY));
    if (buf.length < n * INDEX_ENTRY) return undefined;
    for (let k = 0; k < n; k++) {
      const e = k * INDEX_ENTRY;
      entries.push({ digest: buf.toString('hex', e, e + 32), stored: buf.readUInt32BE(e + 32) });
    }
    at += n * INDEX_ENTRY;
  }
  return { tocEnd: at, entries };
}
