import { performance } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import { TokenBucket } from '../core/rate.js';
import { sleep, throttle } from './throttle.js';

const KiB = 1024;
const MiB = 1024 * 1024;

async function* chunks(total: number, size: number): AsyncGenerator<Uint8Array> {
  let sent = 0;
  let n = 0;
  while (sent < total) {
    const len = Math.min(size, total - sent);
    yield new Uint8Array(len).fill(n++ & 0xff);
    sent += len;
  }
}

const now = () => performance.now();

describe('sleep', () => {
  it('waits on a real timer', async () => {
    const t0 = now();
    await sleep(30);
    expect(now() - t0).toBeGreaterThanOrEqual(25);
  });

  it('rejects with the abort reason, before or during the wait', async () => {
    const before = new AbortController();
    before.abort(new Error('stopped early'));
    await expect(sleep(10, before.signal)).rejects.toThrow('stopped early');

    const during = new AbortController();
    const p = sleep(600_000, during.signal); // a 10-minute wait: the test only ends if abort ends it
    setTimeout(() => during.abort(new Error('stopped')), 20);
    await expect(p).rejects.toThrow('stopped');
  });

  it('resolves at once for zero or negative waits', async () => {
    await sleep(0);
    await sleep(-5);
  });
});

describe('throttle', () => {
  it('pushes 600 KiB through a 1 MiB/s bucket with a 64 KiB burst no faster than the rate allows', async () => {
    const bucket = new TokenBucket({ rate: MiB, burst: 64 * KiB, now });
    const t0 = now();
    let bytes = 0;
    let largest = 0;
    const expected = [...(await collect(chunks(600 * KiB, 100 * KiB)))];
    const got: Uint8Array[] = [];
    for await (const slice of throttle(chunks(600 * KiB, 100 * KiB), bucket)) {
      bytes += slice.length;
      largest = Math.max(largest, slice.length);
      got.push(slice);
    }
    const elapsed = (now() - t0) / 1000;
    expect(bytes).toBe(600 * KiB);
    expect(largest).toBeLessThanOrEqual(16 * KiB);
    expect(Buffer.concat(got).equals(Buffer.concat(expected))).toBe(true);
    // Lower bound only: machines are noisy, so no upper bound on time.
    expect(elapsed).toBeGreaterThanOrEqual(((600 - 64) / 1024) * 0.95);
  });

  it('shares one bucket between concurrent streams: each moves, the total stays within the rate', async () => {
    const bucket = new TokenBucket({ rate: MiB, burst: 64 * KiB, now });
    const t0 = now();
    const counts = await Promise.all(
      [0, 1, 2].map(async () => {
        let n = 0;
        for await (const slice of throttle(chunks(100 * KiB, 32 * KiB), bucket, { sliceBytes: 8 * KiB })) {
          expect(slice.length).toBeLessThanOrEqual(8 * KiB);
          n += slice.length;
        }
        return n;
      }),
    );
    expect(counts).toEqual([100 * KiB, 100 * KiB, 100 * KiB]);
    expect((now() - t0) / 1000).toBeGreaterThanOrEqual(((300 - 64) / 1024) * 0.95);
  });

  it('never takes more than the burst at once', async () => {
    const bucket = new TokenBucket({ rate: 10 * MiB, burst: 4 * KiB, now });
    for await (const slice of throttle(chunks(64 * KiB, 64 * KiB), bucket, { sliceBytes: 16 * KiB })) {
      expect(slice.length).toBeLessThanOrEqual(4 * KiB);
    }
  });

  it('passes chunks through whole when there is no limit', async () => {
    const bucket = new TokenBucket({ rate: null, now });
    const sizes: number[] = [];
    for await (const slice of throttle(chunks(300 * KiB, 100 * KiB), bucket)) sizes.push(slice.length);
    expect(sizes).toEqual([100 * KiB, 100 * KiB, 100 * KiB]);
  });

  it('abort stops it, mid-wait, and closes the source', async () => {
    const bucket = new TokenBucket({ rate: 64 * KiB, burst: 64 * KiB, now });
    const ac = new AbortController();
    let closed = false;
    async function* source(): AsyncGenerator<Uint8Array> {
      try {
        yield* chunks(10 * MiB, 256 * KiB);
      } finally {
        closed = true;
      }
    }
    let bytes = 0;
    setTimeout(() => ac.abort(new Error('route closed')), 150);
    await expect(
      (async () => {
        for await (const slice of throttle(source(), bucket, { signal: ac.signal })) bytes += slice.length;
      })(),
    ).rejects.toThrow('route closed');
    // It stopped long before the end (10 MiB would take 160 s at this rate).
    expect(bytes).toBeGreaterThanOrEqual(64 * KiB);
    expect(bytes).toBeLessThan(1 * MiB);
    expect(closed).toBe(true);
  });

  it('an already aborted signal yields nothing', async () => {
    const bucket = new TokenBucket({ rate: MiB, now });
    const ac = new AbortController();
    ac.abort(new Error('no'));
    const got: Uint8Array[] = [];
    await expect(
      (async () => {
        for await (const slice of throttle(chunks(10 * KiB, 1 * KiB), bucket, { signal: ac.signal })) got.push(slice);
      })(),
    ).rejects.toThrow('no');
    expect(got).toEqual([]);
  });
});

async function collect(source: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const c of source) out.push(c);
  return out;
}
