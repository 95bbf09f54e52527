import { describe, expect, it } from 'vitest';
import { prng } from '../lib/prng.js';
import { CascadeError } from './errors.js';
import { defaultBurst, formatRate, MIN_BURST, parseRate, TokenBucket } from './rate.js';

const KiB = 1024;
const MiB = 1024 * 1024;

describe('parseRate', () => {
  it.each([
    ['2MiB/s', 2 * MiB],
    ['500KiB/s', 500 * KiB],
    ['10Mbit/s', 1_250_000],
    ['1.5 MB/s', 1_500_000],
    ['1.5MB', 1_500_000],
    ['1GiB/s', 1024 * MiB],
    ['2 GB/s', 2_000_000_000],
    ['100kB/s', 100_000],
    ['100KB/s', 100_000],
    ['64kbit/s', 8000],
    ['1Gbit/s', 125_000_000],
    ['8bit/s', 1],
    ['10Mbps', 1_250_000],
    ['4096', 4096],
    ['4096B/s', 4096],
    ['4096 B / s', 4096],
    ['.5MiB/s', 512 * KiB],
    ['  3MiB/s  ', 3 * MiB],
    ['2MiB/sec', 2 * MiB],
  ])('%s → %d bytes/s', (text, bps) => {
    expect(parseRate(text)).toBe(bps);
  });

  it.each(['unlimited', 'Unlimited', '0', '0MiB/s', '0.0 KB/s'])('%s → no limit', (text) => {
    expect(parseRate(text)).toBeNull();
  });

  it.each([
    '',
    'fast',
    '2 MiB/h',
    '2MiBs',
    '-1MiB/s',
    '2XB/s',
    '2mb/s',
    '2Mb/s',
    '1e6',
    'MiB/s',
    '2 MiB/s extra',
    '10Mbps/s',
    '1bit/s',
    '1.2.3MB/s',
  ])('rejects %j with one clear usage message', (text) => {
    let err: unknown;
    try {
      parseRate(text);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(CascadeError);
    const e = err as CascadeError;
    expect(e.code).toBe('usage');
    expect(e.exitCode).toBe(2);
    expect(e.message).toBe(`--rate "${text}" is not a rate (e.g. 2MiB/s, 10Mbit/s, unlimited)`);
  });

  it('names the option the text came from', () => {
    expect(() => parseRate('fast', '--link-rate')).toThrow('--link-rate "fast" is not a rate (e.g. 2MiB/s, 10Mbit/s, unlimited)');
  });
});

describe('formatRate', () => {
  it.each([
    [null, 'unlimited'],
    [0, 'unlimited'],
    [Number.POSITIVE_INFINITY, 'unlimited'],
    [500, '500 B/s'],
    [1023, '1023 B/s'],
    [1024, '1 KiB/s'],
    [500 * KiB, '500 KiB/s'],
    [2 * MiB, '2 MiB/s'],
    [1_500_000, '1.43 MiB/s'],
    [1_250_000, '1.19 MiB/s'],
    [3 * 1024 * MiB, '3 GiB/s'],
  ])('%s → %s', (bps, text) => {
    expect(formatRate(bps)).toBe(text);
  });

  it('round-trips through parseRate for round values', () => {
    for (const bps of [1, 700, 1024, 64 * KiB, 2 * MiB, 1536 * KiB, 5 * 1024 * MiB, null]) {
      expect(parseRate(formatRate(bps))).toBe(bps);
    }
  });
});

/** A manual clock in milliseconds. */
function fakeClock(start = 0) {
  const clock = { t: start, now: () => clock.t };
  return clock;
}

interface Grant {
  at: number; // ms
  bytes: number;
  taker: number;
}

/**
 * Discrete-event simulation: each taker loops "take a slice, wait, send it", starting again
 * the moment its slice is sent. Events are processed in time order (ties by taker index), the
 * clock jumping to each. `sizeOf` picks each slice's size; `onEvent` may change the bucket.
 */
function simulate(opts: {
  bucket: TokenBucket;
  clock: { t: number };
  takers: number;
  untilMs: number;
  sizeOf: (taker: number) => number;
  startMs?: number;
  onEvent?: (t: number) => void;
}): Grant[] {
  const grants: Grant[] = [];
  const next: number[] = Array.from({ length: opts.takers }, () => opts.startMs ?? opts.clock.t);
  for (;;) {
    let who = -1;
    for (let i = 0; i < next.length; i++) if (who < 0 || next[i]! < next[who]!) who = i;
    const t = next[who]!;
    if (t >= opts.untilMs) break;
    opts.clock.t = t;
    opts.onEvent?.(t);
    const bytes = opts.sizeOf(who);
    const wait = opts.bucket.take(bytes);
    expect(wait).toBeGreaterThanOrEqual(0);
    const at = t + wait;
    grants.push({ at, bytes, taker: who });
    next[who] = at;
  }
  return grants.filter((g) => g.at < opts.untilMs);
}

/** Most bytes granted in any closed window [a, a + w] with from ≤ a and a + w ≤ to (the max starts at a grant). */
function maxWindow(grants: Grant[], w: number, from = Number.NEGATIVE_INFINITY, to = Number.POSITIVE_INFINITY): number {
  const gs = grants.filter((g) => g.at >= from && g.at <= to).sort((x, y) => x.at - y.at);
  let best = 0;
  let sum = 0;
  let j = 0;
  for (let i = 0; i < gs.length; i++) {
    if (gs[i]!.at + w > to) break;
    while (j < gs.length && gs[j]!.at <= gs[i]!.at + w) sum += gs[j++]!.bytes;
    best = Math.max(best, sum);
    sum -= gs[i]!.bytes;
  }
  return best;
}

const total = (grants: Grant[]) => grants.reduce((s, g) => s + g.bytes, 0);

describe('TokenBucket', () => {
  it('defaults the burst to a quarter second at the rate, at least 64 KiB', () => {
    expect(defaultBurst(MiB)).toBe(256 * KiB);
    expect(defaultBurst(100 * KiB)).toBe(MIN_BURST);
    const c = fakeClock();
    expect(new TokenBucket({ rate: 20 * MiB, now: c.now }).burst).toBe(5 * MiB);
    expect(new TokenBucket({ rate: MiB, burst: 10_000, now: c.now }).burst).toBe(10_000);
  });

  it('rejects a rate that is zero, negative or not finite', () => {
    const c = fakeClock();
    for (const rate of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => new TokenBucket({ rate, now: c.now })).toThrow(RangeError);
    }
    expect(() => new TokenBucket({ rate: MiB, burst: 0, now: c.now })).toThrow(RangeError);
  });

  it('grants the burst at once, then paces; waits reflect FIFO reservations', () => {
    const c = fakeClock(1000);
    const b = new TokenBucket({ rate: MiB, burst: 64 * KiB, now: c.now });
    expect(b.take(64 * KiB)).toBe(0);
    // Three more 64 KiB reservations queue one behind the other: 62.5 ms apart at 1 MiB/s.
    expect(b.take(64 * KiB)).toBeCloseTo(62.5, 9);
    expect(b.take(64 * KiB)).toBeCloseTo(125, 9);
    expect(b.take(64 * KiB)).toBeCloseTo(187.5, 9);
    expect(b.available()).toBeCloseTo(-192 * KiB, 6);
    c.t += 187.5;
    expect(b.available()).toBeCloseTo(0, 6);
    expect(b.take(0)).toBe(0);
  });

  it('three concurrent takers at 1 MiB/s for 60 s: every 10 s window ≤ 1.05 × R × 10 s, total ≈ R × 60 s, fair shares', () => {
    const R = MiB;
    const c = fakeClock();
    const bucket = new TokenBucket({ rate: R, now: c.now });
    const grants = simulate({ bucket, clock: c, takers: 3, untilMs: 60_000, sizeOf: () => 16 * KiB });

    const window = maxWindow(grants, 10_000);
    expect(window).toBeLessThanOrEqual(1.05 * R * 10);
    expect(window).toBeLessThanOrEqual(R * 10 + bucket.burst); // the documented bound
    // Every window of any length W obeys rate × W + burst, too.
    for (const w of [0, 1, 100, 250, 1000, 3000, 30_000]) {
      expect(maxWindow(grants, w)).toBeLessThanOrEqual((R * w) / 1000 + bucket.burst + 1e-6);
    }

    const sent = total(grants);
    expect(Math.abs(sent - R * 60) / (R * 60)).toBeLessThan(0.02);

    const shares = [0, 1, 2].map((i) => total(grants.filter((g) => g.taker === i)));
    for (const s of shares) expect(Math.abs(s - sent / 3) / (sent / 3)).toBeLessThan(0.01);
    // FIFO: grant times never go backwards in call order.
    for (let i = 1; i < grants.length; i++) expect(grants[i]!.at).toBeGreaterThanOrEqual(grants[i - 1]!.at);
  });

  it('holds the bound with uneven slice sizes and takers of different appetites', () => {
    const R = MiB;
    const c = fakeClock(5_000);
    const bucket = new TokenBucket({ rate: R, now: c.now });
    const rnd = prng(42);
    const grants = simulate({
      bucket,
      clock: c,
      takers: 5,
      startMs: 5_000,
      untilMs: 65_000,
      sizeOf: (who) => 1 + Math.floor(rnd() * (who === 0 ? 64 * KiB : 8 * KiB)),
    });
    expect(maxWindow(grants, 10_000)).toBeLessThanOrEqual(1.05 * R * 10);
    for (const w of [0, 10, 500, 2000]) {
      expect(maxWindow(grants, w)).toBeLessThanOrEqual((R * w) / 1000 + bucket.burst + 1e-6);
    }
    expect(Math.abs(total(grants) - R * 60) / (R * 60)).toBeLessThan(0.02);
    // Every taker moves: FIFO means nobody starves, even the one with small slices.
    for (let i = 0; i < 5; i++) expect(total(grants.filter((g) => g.taker === i))).toBeGreaterThan(R);
  });

  it('setRate mid-way takes effect at once, without a burst', () => {
    const R1 = MiB;
    const R2 = 256 * KiB;
    const c = fakeClock();
    const bucket = new TokenBucket({ rate: R1, now: c.now });
    let changed = false;
    const grants = simulate({
      bucket,
      clock: c,
      takers: 3,
      untilMs: 60_000,
      sizeOf: () => 16 * KiB,
      onEvent: (t) => {
        if (!changed && t >= 30_000) {
          bucket.setRate(R2);
          changed = true;
        }
      },
    });
    expect(changed).toBe(true);
    expect(bucket.burst).toBe(defaultBurst(R2));
    const before = grants.filter((g) => g.at < 30_000);
    const after = grants.filter((g) => g.at >= 30_100); // reservations made before the change are due within 0.1 s
    expect(maxWindow(before, 10_000)).toBeLessThanOrEqual(1.05 * R1 * 10);
    expect(maxWindow(after, 10_000)).toBeLessThanOrEqual(1.05 * R2 * 10);
    // No burst at the change: the first second after it carries about R2, not R2 + burst.
    expect(maxWindow(grants, 1000, 30_000)).toBeLessThanOrEqual(R2 + 3 * 16 * KiB);
    expect(Math.abs(total(grants) - (R1 * 30 + R2 * 30)) / (R1 * 30 + R2 * 30)).toBeLessThan(0.02);

    // And back up: the faster rate applies at once, still with no burst.
    const c2 = fakeClock();
    const b2 = new TokenBucket({ rate: R2, now: c2.now });
    b2.take(b2.burst);
    expect(b2.available()).toBe(0);
    b2.setRate(4 * MiB);
    expect(b2.available()).toBe(0);
    expect(b2.take(64 * KiB)).toBeCloseTo((64 * KiB * 1000) / (4 * MiB), 9);
  });

  it('setRate keeps queued reservations in order: later takers still wait behind them', () => {
    const c = fakeClock();
    const b = new TokenBucket({ rate: MiB, burst: 64 * KiB, now: c.now });
    b.take(64 * KiB);
    const w1 = b.take(MiB); // due at 1000 ms
    expect(w1).toBeCloseTo(1000, 9);
    c.t = 200;
    b.setRate(4 * MiB); // the earlier reservation keeps its time; bytes after it go 4× faster
    expect(b.take(MiB)).toBeCloseTo(800 + 250, 6);
    c.t = 300;
    b.setRate(null);
    expect(b.take(100 * MiB)).toBe(0);
    b.setRate(MiB); // from no limit to a limit: start empty
    expect(b.available()).toBe(0);
    expect(b.take(1024)).toBeCloseTo((1024 * 1000) / MiB, 9);
  });

  it('no burst after idle beyond `burst`', () => {
    const R = MiB;
    const c = fakeClock();
    const bucket = new TokenBucket({ rate: R, now: c.now });
    // Drain it, then stay idle for 100 s.
    expect(bucket.take(bucket.burst)).toBe(0);
    c.t = 100_000;
    expect(bucket.available()).toBe(bucket.burst);
    // Everything granted without waiting right after idle is at most the burst.
    let immediate = 0;
    for (let i = 0; i < 1000; i++) {
      if (bucket.take(16 * KiB) === 0) immediate += 16 * KiB;
    }
    expect(immediate).toBe(bucket.burst);

    // And a full simulation starting after idle keeps every window within rate × W + burst.
    const c2 = fakeClock();
    const b2 = new TokenBucket({ rate: R, now: c2.now });
    c2.t = 3_600_000;
    const grants = simulate({ bucket: b2, clock: c2, takers: 3, untilMs: 3_610_000, sizeOf: () => 16 * KiB });
    expect(maxWindow(grants, 0)).toBeLessThanOrEqual(b2.burst);
    expect(maxWindow(grants, 1000)).toBeLessThanOrEqual(R + b2.burst);
  });

  it('a clock that steps back earns nothing', () => {
    const c = fakeClock(10_000);
    const b = new TokenBucket({ rate: MiB, burst: 64 * KiB, now: c.now });
    b.take(64 * KiB);
    c.t = 5_000;
    expect(b.available()).toBe(0);
    expect(b.take(64 * KiB)).toBeCloseTo(62.5, 9);
  });

  it('with no limit every take is immediate', () => {
    const c = fakeClock();
    const b = new TokenBucket({ rate: null, now: c.now });
    expect(b.rate).toBeNull();
    for (let i = 0; i < 100; i++) expect(b.take(100 * MiB)).toBe(0);
  });
});
