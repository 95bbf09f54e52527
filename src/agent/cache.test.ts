import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ChunkCache, verifiedChunks } from './cache.js';

const chunk = (n: number, size = 20_000): { digest: string; data: Buffer } => {
  const data = crypto.createHash('sha512').update(String(n)).digest();
  const big = Buffer.alloc(size);
  for (let i = 0; i < size; i += data.length) data.copy(big, i);
  big.writeUInt32LE(n, 0);
  return { digest: crypto.createHash('sha256').update(big).digest('hex'), data: big };
};

describe('the agent chunk cache (pack files)', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-cache-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('copies a chunk when put is called: the caller reuses its buffer at once, across many slabs', async () => {
    const c = new ChunkCache(dir, 1 << 30);
    const one = Buffer.alloc(200_000);
    const cs = Array.from({ length: 40 }, (_, i) => chunk(i, 100_000 + i * 2_500));
    const writes: Promise<void>[] = [];
    for (const x of cs) {
      x.data.copy(one);
      writes.push(c.put(x.digest, one.subarray(0, x.data.length)));
      // Overwritten before the cache has written anything.
      one.fill(0xee);
    }
    await Promise.all(writes);
    for (const x of cs) expect((await c.get(x.digest, x.data.length))?.equals(x.data)).toBe(true);
    await c.close();
    expect(verifiedChunks(dir).sort()).toEqual(cs.map((x) => x.digest).sort());
  });

  it('keeps chunks across a restart, sealed or not; a record cut short is cut off and the rest kept', async () => {
    const c = new ChunkCache(dir, 1 << 30);
    const cs = Array.from({ length: 10 }, (_, i) => chunk(i));
    await Promise.all(cs.map((x) => c.put(x.digest, x.data)));
    await c.close();
    // A second pack left unsealed, as a killed agent leaves it, ending in half a record.
    const d = new ChunkCache(dir, 1 << 30);
    const more = Array.from({ length: 5 }, (_, i) => chunk(100 + i));
    for (const x of more) await d.put(x.digest, x.data);
    const packs = fs.readdirSync(dir).filter((n) => n.endsWith('.pack'));
    expect(packs).toHaveLength(2);
    expect(fs.readdirSync(dir).filter((n) => n.endsWith('.idx'))).toHaveLength(1);
    const unsealed = path.join(dir, packs.sort()[1] as string);
    const whole = fs.statSync(unsealed).size;
    fs.appendFileSync(unsealed, fs.readFileSync(unsealed).subarray(0, 1000));
    expect(verifiedChunks(dir).sort()).toEqual([...cs, ...more].map((x) => x.digest).sort());

    const e = new ChunkCache(dir, 1 << 30);
    for (const x of [...cs, ...more]) {
      expect(await e.has(x.digest, x.data.length)).toBe(true);
      expect((await e.get(x.digest, x.data.length))?.equals(x.data)).toBe(true);
    }
    expect(fs.statSync(unsealed).size).toBe(whole);
    expect(fs.readdirSync(dir).filter((n) => n.endsWith('.idx'))).toHaveLength(2);
    expect(await e.usage()).toMatchObject({ chunks: 15, packs: 2 });
    expect(await e.has(chunk(999).digest, 20_000)).toBe(false);
    await e.close();
    await d.close();
  });

  it('stops trusting a record at the first one whose bytes do not match; a damaged record is forgotten when read', async () => {
    const c = new ChunkCache(dir, 1 << 30);
    const cs = Array.from({ length: 4 }, (_, i) => chunk(i));
    for (const x of cs) await c.put(x.digest, x.data);
    await c.seal();
    const pack = path.join(dir, '00000001.pack');
    // Flip a byte inside the second record (40-byte header, then the bytes).
    const fd = fs.openSync(pack, 'r+');
    fs.writeSync(fd, Buffer.from([0xff]), 0, 1, 40 + 20_000 + 40 + 500);
    fs.closeSync(fd);
    // Sealed: the index still lists it, and the read finds it damaged.
    const d = new ChunkCache(dir, 1 << 30);
    expect(await d.has(cs[1]?.digest as string, 20_000)).toBe(true);
    expect(await d.get(cs[1]?.digest as string, 20_000)).toBeUndefined();
    expect(await d.has(cs[1]?.digest as string, 20_000)).toBe(false);
    expect((await d.get(cs[2]?.digest as string, 20_000))?.equals(cs[2]?.data as Buffer)).toBe(true);
    await d.close();
    // The pack's index forgot it: a restarted agent fetches it again.
    const d2 = new ChunkCache(dir, 1 << 30);
    expect(await d2.has(cs[1]?.digest as string, 20_000)).toBe(false);
    expect(await d2.has(cs[2]?.digest as string, 20_000)).toBe(true);
    await d2.close();
    // Its index lost (or damaged): the pack is read again, and only what precedes the damage is kept.
    fs.writeFileSync(path.join(dir, '00000001.idx'), 'garbage');
    const e = new ChunkCache(dir, 1 << 30);
    expect(await e.has(cs[0]?.digest as string, 20_000)).toBe(true);
    expect(await e.has(cs[2]?.digest as string, 20_000)).toBe(false);
    expect(fs.statSync(pack).size).toBe(40 + 20_000);
    await e.close();
  });

  it('frees the least recently used packs past its bound, carrying the chunks still wanted', async () => {
    const c = new ChunkCache(dir, 50_000);
    const old = [chunk(1), chunk(2)];
    for (const x of old) await c.put(x.digest, x.data);
    await c.seal();
    const fresh = [chunk(3), chunk(4)];
    for (const x of fresh) await c.put(x.digest, x.data);
    await c.seal();
    // The first pack was used last an hour ago.
    const t = new Date(Date.now() - 3_600_000);
    fs.utimesSync(path.join(dir, '00000001.pack'), t, t);
    await c.close();
    const d = new ChunkCache(dir, 50_000);
    const freed = await d.trim(new Set([old[0]?.digest as string]));
    expect(freed).toBeGreaterThan(0);
    expect(fs.existsSync(path.join(dir, '00000001.pack'))).toBe(false);
    expect(fs.existsSync(path.join(dir, '00000001.idx'))).toBe(false);
    expect(await d.has(old[0]?.digest as string, 20_000)).toBe(true);
    expect(await d.has(old[1]?.digest as string, 20_000)).toBe(false);
    expect((await d.get(old[0]?.digest as string, 20_000))?.equals(old[0]?.data as Buffer)).toBe(true);
    // Still over the bound: the next least recently used pack goes too.
    expect((await d.usage()).bytes).toBeLessThanOrEqual(50_000);
    await d.close();
    expect(verifiedChunks(dir)).toContain(old[0]?.digest);
  });

  it('is only read when opened read-only (a look while the agent runs), and drops the layout of earlier agents', async () => {
    fs.mkdirSync(path.join(dir, 'ab'));
    fs.writeFileSync(path.join(dir, 'ab', 'abcd'), 'old layout');
    const c = new ChunkCache(dir, 1 << 30);
    const x = chunk(7);
    await c.put(x.digest, x.data);
    // Unsealed: a read-only look counts it and changes nothing.
    const before = fs.readdirSync(dir).sort();
    expect(await new ChunkCache(dir, 1 << 30, true).usage()).toMatchObject({ chunks: 1, packs: 1 });
    expect(fs.readdirSync(dir).sort()).toEqual(before);
    expect(fs.existsSync(path.join(dir, 'ab'))).toBe(false);
    await expect(new ChunkCache(dir, 1 << 30, true).put(x.digest, x.data)).rejects.toThrow(/read only/);
    await c.close();
  });
});
