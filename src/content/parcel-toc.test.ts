import crypto from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { encodeChunk } from './codec.js';
import { type Manifest, manifestChunks, signManifest } from './manifest.js';
import { type ParcelPlan, ParcelReader, unverifiedManifest, writeParcel } from './parcel.js';
import { formatOmitHeader, readParcelToc } from './parcel-toc.js';
import { generateSiteKey } from './signing.js';

const key = generateSiteKey('CEN');
const signer = (b: Uint8Array) => crypto.sign(null, b, key.privateKey);

/** A parcel of two versions, `n` chunks each (text and random), as the exporter writes it. */
async function parcel(n: number): Promise<Buffer> {
  const stored = new Map<string, Buffer>();
  const versions = [1, 2].map((version) => {
    const chunks: [string, number][] = [];
    for (let i = 0; i < n; i++) {
      const raw = i % 2 ? crypto.randomBytes(1000 + i * 37) : Buffer.from(`v${version} chunk ${i} `.repeat(200));
      const digest = crypto.createHash('sha256').update(raw).digest('hex');
      stored.set(digest, encodeChunk(raw));
      chunks.push([digest, raw.length]);
    }
    const size = chunks.reduce((s, [, l]) => s + l, 0);
    const manifest: Manifest = {
      format: 1,
      id: 'CEN00001',
      version,
      name: 'Toc',
      origin: 'CEN',
      priority: 'medium',
      created: '2026-11-22T00:00:00.000Z',
      bytes: size,
      programs: [],
      files: [{ type: 'file', path: 'a.bin', mode: 0o644, size, chunks }],
    };
    return { manifest, bytes: signManifest(manifest, key), chunks };
  });
  const plan: ParcelPlan = {
    parcel: crypto.randomUUID(),
    created: new Date().toISOString(),
    source: 'CEN',
    destination: 'EUR',
    full: true,
    packages: versions.map((v) => ({
      id: 'CEN00001',
      version: v.manifest.version,
      bytes: v.manifest.bytes,
      manifest: v.bytes,
      certificate: null,
    })),
    signer: { keyId: key.keyId, certificate: null },
    chunks: versions.flatMap((v) => v.chunks.map(([digest, size]) => ({ digest, size, stored: (stored.get(digest) as Buffer).length }))),
  };
  const parts: Uint8Array[] = [];
  for await (const b of writeParcel(plan, async (es) => Buffer.concat(es.map((e) => stored.get(e.digest) as Buffer)), signer))
    parts.push(b);
  return Buffer.concat(parts);
}

/** The parcel's prefix with another header. */
function withHeader(whole: Buffer, header: string): Buffer {
  const prefix = Buffer.from(whole.subarray(0, 16));
  prefix.writeUInt32BE(Buffer.byteLength(header), 12);
  return Buffer.concat([prefix, Buffer.from(header), Buffer.alloc(4096)]);
}

const reader = (b: Buffer) => async (position: number, length: number) => b.subarray(position, position + length);

describe('readParcelToc', () => {
  it('finds the same index and the same first chunk as the full reader', async () => {
    const whole = await parcel(40);
    const toc = await readParcelToc(reader(whole));
    const r = new ParcelReader(
      (async function* () {
        yield whole;
      })(),
    );
    await r.header();
    const sizes = new Map<string, number>();
    for (const p of await r.packages()) for (const [d, n] of manifestChunks(unverifiedManifest(p.manifest).manifest)) sizes.set(d, n);
    const full = await r.index((d) => sizes.get(d));
    // …and the quick read gives the same entries, in order, and where the chunks start.
    expect(toc?.entries).toEqual(full.map((e) => ({ digest: e.digest, stored: e.stored })));
    expect(toc?.tocEnd).toBe(r.bytesRead);
    expect(toc?.entries.length).toBe(80);
  });

  it('says undefined, never throws, for files that are not whole parcels of this format', async () => {
    const whole = await parcel(6);
    const toc = await readParcelToc(reader(whole));
    expect(toc).toBeDefined();
    const tocEnd = toc?.tocEnd as number;
    const other = Buffer.from(whole);
    other.writeUInt32BE(1, 8); // format 1
    const cases = [
      Buffer.alloc(0),
      Buffer.from('not a parcel at all, just some text'),
      whole.subarray(0, 10),
      whole.subarray(0, 100),
      whole.subarray(0, tocEnd - 1),
      other,
      withHeader(whole, '{"packages": 5, "chunks": 1}'),
      withHeader(whole, '{"packages": [{"manifestLength": -1, "certificateLength": 0}], "chunks": 1}'),
      withHeader(whole, '{"packages": [], "chunks": 1e12}'),
      withHeader(whole, '{not json'),
    ];
    for (const c of cases) expect(await readParcelToc(reader(c))).toBeUndefined();
  });

  it('spells omit ranges as the site parses them', () => {
    expect(
      formatOmitHeader([
        [0, 20],
        [25, 30],
      ]),
    ).toBe('0-20,25-30');
  });
});
