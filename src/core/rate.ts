import { fail } from './errors.js';

/**
 * Route rates: parsing and printing them, and the byte token bucket that enforces one.
 *
 * A route's rate is a real token bucket on bytes, not time slicing: every transfer on the
 * route keeps its own connection and draws from the route's one bucket, so the route's total
 * stays within the rate while concurrency is untouched. Pure: the clock is injected.
 */

const UNITS: Record<string, number> = {
  B: 1,
  KB: 1000,
  kB: 1000,
  MB: 1000 ** 2,
  GB: 1000 ** 3,
  KiB: 1024,
  kiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
  bit: 1 / 8,
  kbit: 1000 / 8,
  Kbit: 1000 / 8,
  Mbit: 1000 ** 2 / 8,
  Gbit: 1000 ** 3 / 8,
  bps: 1 / 8,
  kbps: 1000 / 8,
  Kbps: 1000 / 8,
  Mbps: 1000 ** 2 / 8,
  Gbps: 1000 ** 3 / 8,
};

/** Units that already mean "per second": a following `/s` would be doubled. */
const PER_SECOND_UNITS = new Set(['bps', 'kbps', 'Kbps', 'Mbps', 'Gbps']);

const RATE_TEXT = /^(\d+(?:\.\d+)?|\.\d+)\s*([A-Za-z]+)?\s*(\/\s*s(?:ec)?)?$/;

/**
 * Bytes per second from human text, or `null` for no limit.
 *
 * Accepts a number, an optional unit and an optional `/s`: `2MiB/s`, `500KiB/s`, `10Mbit/s`,
 * `1.5 MB/s`, `1048576` (bytes). Units: `B`, `KB`, `MB`, `GB` (1000-based), `KiB`, `MiB`, `GiB`
 * (1024-based), `bit`, `kbit`, `Mbit`, `Gbit` (bits, 1000-based; also `Mbps` and friends, without
 * `/s`). Unit case matters (`Mb` would be ambiguous). `unlimited` or any zero (`0`, `0MiB/s`)
 * means no limit. The result is rounded to whole bytes per second and is at least 1.
 *
 * @throws CascadeError `usage` on anything else, naming `option` (the flag the text came from).
 */
export function parseRate(text: string, option = '--rate'): number | null {
  const s = text.trim();
  const bad = () => fail('usage', `${option} "${text}" is not a rate (e.g. 2MiB/s, 10Mbit/s, unlimited)`);
  if (s.toLowerCase() === 'unlimited') return null;
  const m = RATE_TEXT.exec(s);
  if (!m) throw bad();
  const value = Number(m[1]);
  const unit = m[2] ?? 'B';
  const factor = UNITS[unit];
  if (factor === undefined || !Number.isFinite(value)) throw bad();
  if (m[3] !== undefined && PER_SECOND_UNITS.has(unit)) throw bad();
  if (value === 0) return null;
  const bps = Math.round(value * factor);
  if (bps < 1 || !Number.isSafeInteger(bps)) throw bad();
  return bps;
}

const FORMAT_UNITS = ['B/s', 'KiB/s', 'MiB/s', 'GiB/s', 'TiB/s'] as const;

/**
 * Human text for a rate: `2 MiB/s`, `1.43 MiB/s`, `500 B/s`, `unlimited` (null, 0 or Infinity).
 * 1024-based, at most two decimals; `parseRate` reads it back (exactly for round values).
 */
export function formatRate(bps: number | null): string {
  if (bps === null || bps <= 0 || !Number.isFinite(bps)) return 'unlimited';
  let value = bps;
  let i = 0;
  while (value >= 1024 && i < FORMAT_UNITS.length - 1) {
    value /= 1024;
    i++;
  }
  const shown = Number(value.toFixed(i === 0 ? 0 : 2));
  return `${shown} ${FORMAT_UNITS[i]}`;
}

/** Smallest default burst: enough for a few slices, so a slow route still moves in useful pieces. */
export const MIN_BURST = 64 * 1024;

/** Default burst: a quarter second at the rate, at least `MIN_BURST`. */
export const defaultBurst = (rate: number): number => Math.max(MIN_BURST, Math.ceil(rate * 0.25));

export interface TokenBucketOptions {
  /** Bytes per second; `null` for no limit. Must be positive and finite otherwise. */
  rate: number | null;
  /** Bucket size in bytes. Default: `defaultBurst(rate)`, recomputed when the rate changes. */
  burst?: number;
  /** The clock, in milliseconds (e.g. `Date.now` or `performance.now`). */
  now: () => number;
}

/**
 * A byte token bucket that hands out reservations.
 *
 * Tokens accrue at `rate` bytes per second up to `burst`; the bucket starts full.
 * `take(n)` removes `n` tokens at once — the level may go negative, a debt that stands for
 * bytes reserved but not yet due — and returns how long the caller must wait before sending
 * them: 0 if the tokens were there, otherwise the time until the debt is repaid. Later calls
 * see the debt of earlier ones, so concurrent takers are served in the order they called
 * (FIFO): several transfers share the route's one bucket, each on its own connection, and
 * together they stay within the rate. A rate does not reduce concurrency.
 *
 * Guarantee: if each caller sends its bytes when its wait ends (the grant time), then over ANY
 * window of length W during which the rate did not change, the bytes granted are at most
 * `rate × W + burst`. This needs each `take` to be at most `burst` bytes (a larger take is
 * granted whole, so the bound becomes `rate × W + largest take`): slice transfers, as
 * `throttle` does. Proof sketch: the first reservation granted in the window was still in debt
 * (level ≤ 0) at the window's start, so every reservation granted in the window was made
 * against a level of at most `burst` minus those already outstanding, and the level gains at
 * most `rate × W` during the window.
 *
 * Idle time never earns more than `burst`. `setRate` takes effect at once for bytes not yet
 * reserved and grants no burst; reservations already made keep their grant times.
 */
export class TokenBucket {
  #rate: number | null;
  #burst: number;
  readonly #fixedBurst: number | undefined;
  readonly #now: () => number;
  /** Tokens at `#last`; negative while bytes are reserved but not yet due. */
  #tokens: number;
  #last: number;

  constructor(opts: TokenBucketOptions) {
    checkRate(opts.rate);
    if (opts.burst !== undefined && !(Number.isFinite(opts.burst) && opts.burst > 0)) {
      throw new RangeError(`token bucket burst must be a positive number of bytes, not ${opts.burst}`);
    }
    this.#rate = opts.rate;
    this.#fixedBurst = opts.burst;
    this.#burst = opts.burst ?? defaultBurst(opts.rate ?? 0);
    this.#now = opts.now;
    this.#tokens = this.#burst;
    this.#last = opts.now();
  }

  /** Bytes per second, or `null` for no limit. */
  get rate(): number | null {
    return this.#rate;
  }

  /** Bucket size in bytes: the most that may go out at once after idle time. */
  get burst(): number {
    return this.#burst;
  }

  /** Tokens available now; negative while reservations are queued (their total, in bytes). */
  available(): number {
    this.#refill();
    return this.#tokens;
  }

  /**
   * Change the rate (`null`: no limit). Bytes not yet reserved are paced at the new rate from
   * now on; reservations already made keep their grant times, and later takers still queue
   * behind them. No tokens are granted: the level stays where it was (capped at the new
   * burst), and a bucket that had no limit starts empty.
   */
  setRate(rate: number | null): void {
    checkRate(rate);
    this.#refill();
    const old = this.#rate;
    this.#rate = rate;
    this.#burst = this.#fixedBurst ?? defaultBurst(rate ?? 0);
    if (rate === null) {
      this.#tokens = this.#burst;
    } else if (old === null) {
      this.#tokens = 0;
    } else if (this.#tokens < 0) {
      // Keep the time at which the outstanding debt is repaid: re-express it at the new rate.
      this.#tokens = (this.#tokens * rate) / old;
    } else {
      this.#tokens = Math.min(this.#tokens, this.#burst);
    }
  }

  /**
   * Reserve `bytes` and return the milliseconds to wait before sending them (0: send now).
   * The reservation is made at once, whether or not the caller then waits; keep each take
   * at most `burst` bytes for the window guarantee.
   */
  take(bytes: number): number {
    if (!(bytes > 0)) return 0;
    const rate = this.#rate;
    if (rate === null) return 0;
    this.#refill();
    this.#tokens -= bytes;
    return this.#tokens >= 0 ? 0 : (-this.#tokens * 1000) / rate;
  }

  #refill(): void {
    const t = this.#now();
    const elapsed = t - this.#last;
    if (!(elapsed > 0)) return; // a clock that stands still or steps back earns nothing
    this.#last = t;
    if (this.#rate === null) {
      this.#tokens = this.#burst;
      return;
    }
    this.#tokens = Math.min(this.#burst, this.#tokens + (this.#rate * elapsed) / 1000);
  }
}

function checkRate(rate: number | null): void {
  if (rate !== null && !(Number.isFinite(rate) && rate > 0)) {
    throw new RangeError(`token bucket rate must be positive bytes per second or null (no limit), not ${rate}`);
  }
}
