import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AllowedDp } from '../api/clients.js';
import { encodeChunk } from '../content/codec.js';
import type { Manifest } from '../content/manifest.js';
import { ChunkCache } from './cache.js';
import { assemble, Downloader, VerifiedChunks } from './download.js';

/** Three chunks: text that Brotli shrinks, and random bytes stored raw. */
const raws = [Buffer.alloc(70_000, 'cascade '), crypto.randomBytes(50_000), crypto.randomBytes(20_000)];
const digests = raws.map((r) => crypto.createHash('sha256').update(r).digest('hex'));
const stored = new Map(digests.map((d, i) => [d, encodeChunk(raws[i] as Buffer)]));
const manifest = {
  id: 'CEN00001',
  version: 1,
  files: [{ type: 'file', path: 'a.bin', mode: 0o644, size: 140_000, chunks: digests.map((d, i) => [d, (raws[i] as Buffer).length]) }],
} as unknown as Manifest;

/** A DP on loopback; `serve` answers a chunk request (digest) or leaves it to the default. */
async function dp(
  serve: (digest: string, res: http.ServerResponse) => boolean,
): Promise<{ url: string; server: http.Server; asked: string[] }> {
  const asked: string[] = [];
  const server = http.createServer((req, res) => {
    const digest = (req.url ?? '').split('/').pop() ?? '';
    asked.push(digest);
    if (serve(digest, res)) return;
    const body = stored.get(digest);
    if (!body) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-length': body.length }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server, asked };
}

const servers: http.Server[] = [];
afterAll(async () => {
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

const allowed = (name: string, url: string, rank: number): AllowedDp => ({ name, url, why: 'boundary', rank, tlsPin: null });

describe('Downloader.fill', () => {
  let good: Awaited<ReturnType<typeof dp>>;
  beforeAll(async () => {
    good = await dp(() => false);
    servers.push(good.server);
  });

  it('falls back from a DP serving a chunk too long or wrong, and names it for each', async () => {
    const bad = await dp((digest, res) => {
      if (digest === digests[0]) {
        // Longer than the chunk can ever be stored.
        const body = Buffer.alloc(200_000, 1);
        res.writeHead(200, { 'content-length': body.length }).end(body);
        return true;
      }
      if (digest === digests[1]) {
        const body = Buffer.from(stored.get(digest) as Buffer);
        body.writeUInt8(body.readUInt8(body.length - 1) ^ 1, body.length - 1);
        res.writeHead(200, { 'content-length': body.length }).end(body);
        return true;
      }
      return false;
    });
    servers.push(bad.server);
    const d = new Downloader([allowed('bad', bad.url, 0), allowed('good', good.url, 1)]);
    const kept = new Map<string, Buffer>();
    const cache = {
      has: async () => false,
      put: async (digest: string, data: Uint8Array) => {
        kept.set(digest, Buffer.from(data));
      },
    };
    const p = await d.fill(manifest, cache, () => {});
    expect(p.fetched).toBe(140_000);
    digests.forEach((dg, i) => {
      expect(kept.get(dg)?.equals(raws[i] as Buffer)).toBe(true);
    });
    expect(d.problems.map((x) => [x.dp, x.chunk, x.text]).sort()).toEqual(
      [
        ['bad', digests[0], 'it is longer than 70000 bytes can be stored'],
        ['bad', digests[1], 'its SHA-256 differs'],
      ].sort(),
    );
  });

  it('reads through node:http from a DP that answers without Content-Length', async () => {
    const chunked = await dp((digest, res) => {
      const body = stored.get(digest);
      if (!body) return false;
      // No length: Node sends it in chunked encoding.
      res.writeHead(200);
      res.write(body.subarray(0, 10));
      res.end(body.subarray(10));
      return true;
    });
    servers.push(chunked.server);
    const d = new Downloader([allowed('chunked', chunked.url, 0)]);
    const kept = new Map<string, Buffer>();
    await d.fill(
      manifest,
      { has: async () => false, put: async (g: string, data: Uint8Array) => void kept.set(g, Buffer.from(data)) },
      () => {},
    );
    expect(d.problems).toEqual([]);
    digests.forEach((dg, i) => {
      expect(kept.get(dg)?.equals(raws[i] as Buffer)).toBe(true);
    });
    // Three chunks take one lane: its first answer is refused by the content connection and asked
    // for again through node:http, which then fetches the other two.
    expect(chunked.asked.length).toBe(4);
  });

  it('compares a chunk already verified instead of checking it again, and still refuses one that differs by a byte', async () => {
    const verified = new VerifiedChunks(1 << 20);
    const fill = async (d: Downloader) => {
      const kept = new Map<string, Buffer>();
      await d.fill(
        manifest,
        { has: async () => false, put: async (g: string, data: Uint8Array) => void kept.set(g, Buffer.from(data)) },
        () => {},
      );
      return kept;
    };
    // The first client verifies every chunk and remembers it.
    const first = await fill(new Downloader([allowed('good', good.url, 0)], {}, verified));
    digests.forEach((dg, i) => {
      expect(first.get(dg)?.equals(raws[i] as Buffer)).toBe(true);
      expect(verified.match(dg, stored.get(dg) as Buffer)?.equals(raws[i] as Buffer)).toBe(true);
    });
    // A later client is served one chunk with its last byte flipped: not the verified bytes, so decoded, hashed and refused.
    const flipped = await dp((digest, res) => {
      if (digest !== digests[1]) return false;
      const body = Buffer.from(stored.get(digest) as Buffer);
      body.writeUInt8(body.readUInt8(body.length - 1) ^ 1, body.length - 1);
      expect(verified.match(digest, body)).toBeNull();
      res.writeHead(200, { 'content-length': body.length }).end(body);
      return true;
    });
    servers.push(flipped.server);
    const d = new Downloader([allowed('flipped', flipped.url, 0), allowed('good', good.url, 1)], {}, verified);
    const second = await fill(d);
    expect(d.problems.map((x) => [x.dp, x.chunk, x.text])).toEqual([['flipped', digests[1], 'its SHA-256 differs']]);
    digests.forEach((dg, i) => {
      expect(second.get(dg)?.equals(raws[i] as Buffer)).toBe(true);
    });
  });

  it('keeps to its rate by the bytes received, so a chunk that crossed compressed costs what it took on the link', async () => {
    // 50,000 bytes a second. The text chunk crosses as ~100 bytes, the random one as 50,001:
    // the last chunk starts about 1 s in. Spaced by decoded sizes (70,000 + 50,000) it would
    // start 2.4 s in.
    const d = new Downloader([allowed('good', good.url, 0)]);
    d.rate = 50_000;
    const t0 = performance.now();
    const starts: number[] = [];
    const cache = {
      has: async () => false,
      put: async () => {
        starts.push(performance.now() - t0);
      },
    };
    const p = await d.fill(manifest, cache, () => {});
    expect(p.fetched).toBe(140_000);
    const wire = (stored.get(digests[0] as string) as Buffer).length + (stored.get(digests[1] as string) as Buffer).length;
    expect(starts[2]).toBeGreaterThanOrEqual((wire / 50_000) * 1000 - 5);
    expect(starts[2]).toBeLessThan(2_200);
  });

  it('remembers chunks only up to its bound', () => {
    const v = new VerifiedChunks(100_000);
    v.remember('a', Buffer.alloc(10, 1), Buffer.alloc(40_000, 1));
    v.remember('b', Buffer.alloc(10, 2), Buffer.alloc(70_000, 2));
    expect(v.match('a', Buffer.alloc(10, 1))?.length).toBe(40_000);
    expect(v.match('b', Buffer.alloc(10, 2))).toBeNull();
  });
});

describe('assemble', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-assemble-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** A file of `n` chunks of distinct bytes (sizes vary), put in the cache. */
  async function file(cache: ChunkCache, p: string, n: number, seed: number) {
    const parts = Array.from({ length: n }, (_, i) => crypto.randomBytes(40_000 + ((seed * 7 + i * 13_337) % 200_000)));
    for (const b of parts) await cache.put(crypto.createHash('sha256').update(b).digest('hex'), b);
    const chunks = parts.map((b) => [crypto.createHash('sha256').update(b).digest('hex'), b.length] as [string, number]);
    const size = parts.reduce((s, b) => s + b.length, 0);
    return { entry: { type: 'file' as const, path: p, mode: 0o755, size, chunks }, bytes: Buffer.concat(parts) };
  }

  it('writes every file byte for byte, over several batches, with folders, modes and links; a chunk gone from the cache is named', async () => {
    const cache = new ChunkCache(path.join(dir, 'cache'), 1 << 30);
    // 60 chunks of 40-240 KB: ~8 MiB, over several 2 MiB batches; a small one and an empty one beside it.
    const big = await file(cache, 'sub/big.bin', 60, 1);
    const small = await file(cache, 'small.txt', 1, 2);
    const m = {
      id: 'CEN00001',
      version: 1,
      files: [
        { type: 'dir', path: 'sub', mode: 0o750 },
        big.entry,
        small.entry,
        { type: 'file', path: 'empty', mode: 0o644, size: 0, chunks: [] },
        { type: 'link', path: 'sub/to-small', target: '../small.txt' },
      ],
    } as unknown as Manifest;
    const dest = path.join(dir, 'out');
    await assemble(m, cache, dest);
    expect(fs.readFileSync(path.join(dest, 'sub/big.bin')).equals(big.bytes)).toBe(true);
    expect(fs.readFileSync(path.join(dest, 'sub/to-small')).equals(small.bytes)).toBe(true);
    expect(fs.statSync(path.join(dest, 'empty')).size).toBe(0);
    expect(fs.statSync(path.join(dest, 'sub/big.bin')).mode & 0o777).toBe(0o755);
    expect(fs.statSync(path.join(dest, 'sub')).mode & 0o777).toBe(0o750);

    // A record damaged in its pack: the chunk is re-checked as it is read, and named.
    await cache.close();
    const pack = fs.readdirSync(path.join(dir, 'cache')).find((n) => n.endsWith('.pack')) as string;
    const bytes = fs.readFileSync(path.join(dir, 'cache', pack));
    const victim = big.entry.chunks[45] as [string, number];
    const at = bytes.indexOf(Buffer.from(victim[0], 'hex'));
    bytes.writeUInt8((bytes[at + 32 + 100] as number) ^ 0xff, at + 32 + 100);
    fs.writeFileSync(path.join(dir, 'cache', pack), bytes);
    const again = new ChunkCache(path.join(dir, 'cache'), 1 << 30);
    await expect(assemble(m, again, dest)).rejects.toThrow(
      `chunk ${victim[0]} of sub/big.bin left the cache before the package was assembled`,
    );
    await again.close();
  });
});
