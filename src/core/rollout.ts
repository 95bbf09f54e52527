import { fail } from './errors.js';

/**
 * Rollouts: an advertisement released to its collection in waves (docs/rollouts.md). Pure: the
 * site and the agent share these rules. A wave is a collection (a pilot) or a share of the
 * **remainder** (the members in no collection wave); shares stack in order, and `rest` is
 * whatever of the remainder no earlier share took. Which share a client falls in is a stable
 * hash of the rollout and the client ID, so each wave spreads over every site.
 */

export type Wave = { collection: string } | { percent: number } | { rest: true };

export const ROLLOUT_STATES = ['running', 'awaiting-approval', 'paused', 'halted', 'cancelled', 'completed'] as const;
export type RolloutState = (typeof ROLLOUT_STATES)[number];

/** `pilot`, `"Berlin pilot"`, `10%`, `rest` → a wave. */
export function parseWave(spec: string): Wave {
  const s = spec.trim();
  if (/^rest$/i.test(s)) return { rest: true };
  const m = /^(\d+(?:\.\d+)?)\s*%$/.exec(s);
  if (m) {
    const p = Number(m[1]);
    if (!(p > 0 && p <= 100)) throw fail('usage', `wave "${spec}": a share is more than 0 % and at most 100 %`);
    return { percent: p };
  }
  if (!/^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$/.test(s))
    throw fail('usage', `wave "${spec}" is neither a collection name nor a share of the remainder (10%, rest)`);
  return { collection: s };
}

export const waveText = (w: Wave): string =>
  'collection' in w ? `collection "${w.collection}"` : 'percent' in w ? `${w.percent} % of the remainder` : 'the rest';

/**
 * Checks a list of waves: at least one; percentages stack to at most 100 (a share beyond what
 * is left is refused, not silently cut); the last wave must reach everyone (`rest` or shares
 * summing to 100), or some members would never be offered the program.
 */
export function checkWaves(waves: readonly Wave[]): void {
  if (waves.length === 0) throw fail('usage', 'a rollout needs at least one --wave (a pilot collection, 10%, rest)');
  if (waves.length > 20) throw fail('usage', 'a rollout has at most 20 waves');
  let sum = 0;
  for (const [i, w] of waves.entries()) {
    if ('rest' in w) {
      if (i !== waves.length - 1) throw fail('usage', 'the "rest" wave must be the last one');
      return;
    }
    if (!('percent' in w)) continue;
    sum += w.percent;
    if (sum > 100 + 1e-9)
      throw fail(
        'usage',
        `the waves' shares add up to ${Math.round(sum)} % of the remainder; at most 100 % (write "rest" for the last one)`,
      );
  }
  if (sum < 100 - 1e-9)
    throw fail(
      'usage',
      `the waves reach ${Math.round(sum)} % of the remainder: the others would never be offered it; end with --wave rest`,
    );
}

/**
 * The wave that holds a member of the rollout's collection: the first collection wave it is a
 * member of, otherwise the share its `bucket` falls in: where the client falls in [0, 1), a
 * stable hash of the rollout and the client (`rolloutBucket` in src/site/policy.ts).
 * `inCollection` says whether the client is a member of a collection (by name, as the waves
 * spell it).
 */
export function waveOf(bucket: number, waves: readonly Wave[], inCollection: (name: string) => boolean): number {
  for (const [i, w] of waves.entries()) if ('collection' in w && inCollection(w.collection)) return i;
  const b = bucket * 100;
  let upTo = 0;
  let last = -1;
  for (const [i, w] of waves.entries()) {
    if ('collection' in w) continue;
    upTo = 'rest' in w ? 100 : Math.min(100, upTo + w.percent);
    last = i;
    if (b < upTo) return i;
  }
  // Only rounding can leave a bucket past the end: it belongs to the last share.
  return last >= 0 ? last : waves.length - 1;
}

/** `95%`, `95`, `0.5%` → 95, 95, 0.5 (a percentage, 0 to 100). */
export function parsePercent(v: string, what: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*%?$/.exec(v.trim());
  const p = m ? Number(m[1]) : Number.NaN;
  if (!(p >= 0 && p <= 100)) throw fail('usage', `${what} "${v}" is not a percentage from 0 % to 100 %`);
  return p;
}

/** What the site counted for one wave: its members, and their reports for the rollout's version. */
export interface WaveCount {
  members: number;
  succeeded: number;
  failed: number;
  /** Exit codes of the failed runs (null: it failed before or without an exit code). */
  exitCodes: (number | null)[];
}

export type Step =
  | { kind: 'none'; text: string | null }
  | { kind: 'halt'; text: string }
  | { kind: 'release'; text: string }
  | { kind: 'await-approval'; text: string }
  | { kind: 'complete'; text: string };

const pct = (n: number, of: number): string => `${of > 0 ? Math.round((n / of) * 1000) / 10 : 0} %`;

/** The commonest exit codes, commonest first: `1 (×3), 2 (×1)`. */
export function commonestExitCodes(codes: readonly (number | null)[], top = 3): string {
  const n = new Map<string, number>();
  for (const c of codes) {
    const k = c === null ? 'none' : String(c);
    n.set(k, (n.get(k) ?? 0) + 1);
  }
  return [...n.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([k, v]) => `${k} (×${v})`)
    .join(', ');
}

/**
 * One look at a running rollout: halt when failures in the released waves (beyond those a
 * resume accepted) reach the failure threshold; else, once the newest released wave has
 * reached the success threshold and stayed there for the hold time, release the next wave (or
 * wait for approval), or complete after the last. An empty wave counts as reached.
 */
export function nextStep(o: {
  waves: readonly Wave[];
  released: number;
  counts: readonly WaveCount[];
  successPercent: number;
  failurePercent: number;
  holdSeconds: number;
  approval: boolean;
  reachedAt: number | null;
  failedBaseline: number;
  now: number;
}): { step: Step; reachedAt: number | null } {
  const current = o.released - 1;
  const name = (i: number) => `wave ${i + 1} of ${o.waves.length} (${waveText(o.waves[i] as Wave)})`;
  let members = 0;
  let failed = 0;
  const codes: (number | null)[] = [];
  for (let i = 0; i < o.released; i++) {
    const c = o.counts[i];
    if (!c) continue;
    members += c.members;
    failed += c.failed;
    codes.push(...c.exitCodes);
  }
  const counted = failed - o.failedBaseline;
  if (counted > 0 && members > 0 && (counted / members) * 100 >= o.failurePercent) {
    const where = [...Array(o.released).keys()].filter((i) => (o.counts[i]?.failed ?? 0) > 0);
    const inWave = where.map((i) => `${name(i)}: ${o.counts[i]?.failed} of ${o.counts[i]?.members} failed`).join('; ');
    return {
      reachedAt: o.reachedAt,
      step: {
        kind: 'halt',
        text: `halted: ${counted} of ${members} clients in the released waves failed (${pct(counted, members)}; the failure threshold is ${o.failurePercent} %) — ${inWave}; commonest exit codes: ${commonestExitCodes(codes)}`,
      },
    };
  }
  const c = o.counts[current] ?? { members: 0, succeeded: 0, failed: 0, exitCodes: [] };
  const reached = c.members === 0 || (c.succeeded / c.members) * 100 >= o.successPercent;
  if (!reached)
    return {
      reachedAt: null,
      step: {
        kind: 'none',
        text: `${name(current)}: ${c.succeeded} of ${c.members} succeeded (${pct(c.succeeded, c.members)}); it advances at ${o.successPercent} %`,
      },
    };
  const since = o.reachedAt ?? o.now;
  const holdLeft = Math.ceil((since + o.holdSeconds * 1000 - o.now) / 1000);
  const done = `${name(current)} reached ${pct(c.succeeded, c.members)} succeeded (${c.succeeded} of ${c.members})`;
  if (holdLeft > 0) return { reachedAt: since, step: { kind: 'none', text: `${done}; holding ${holdLeft} s more` } };
  if (current >= o.waves.length - 1) return { reachedAt: since, step: { kind: 'complete', text: `completed: ${done}` } };
  if (o.approval)
    return {
      reachedAt: since,
      step: { kind: 'await-approval', text: `${done}; ${name(current + 1)} waits for "cascade rollout approve"` },
    };
  return { reachedAt: null, step: { kind: 'release', text: `${done}; released ${name(current + 1)}` } };
}
