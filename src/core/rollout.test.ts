import crypto from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { checkWaves, nextStep, parsePercent, parseWave, type Wave, waveOf } from './rollout.js';

/** As src/site/policy.ts rolloutBucket: core takes the bucket, the site hashes. */
const bucketOf = (rollout: string, client: string) =>
  crypto.createHash('sha256').update(`${rollout}\n${client}`).digest().readUIntBE(0, 6) / 2 ** 48;

describe('rollout waves', () => {
  it('parses collections, shares and rest, and refuses waves that leave members out', () => {
    expect(parseWave('Berlin pilot')).toEqual({ collection: 'Berlin pilot' });
    expect(parseWave('10%')).toEqual({ percent: 10 });
    expect(parseWave('REST')).toEqual({ rest: true });
    expect(() => parseWave('0%')).toThrow(/more than 0 %/);
    expect(() => parseWave('a/b')).toThrow(/neither a collection/);
    expect(() => checkWaves([])).toThrow(/at least one/);
    expect(() => checkWaves([{ collection: 'pilot' }])).toThrow(/reach 0 %.*--wave rest/);
    expect(() => checkWaves([{ percent: 10 }, { percent: 40 }])).toThrow(/reach 50 %/);
    expect(() => checkWaves([{ percent: 60 }, { percent: 60 }])).toThrow(/add up to 120 %/);
    expect(() => checkWaves([{ rest: true }, { percent: 10 }])).toThrow(/must be the last/);
    expect(() => checkWaves([{ collection: 'pilot' }, { percent: 10 }, { rest: true }])).not.toThrow();
    expect(() => checkWaves([{ percent: 30 }, { percent: 70 }])).not.toThrow();
    expect(parsePercent('95%', '--success')).toBe(95);
    expect(() => parsePercent('120%', '--success')).toThrow(/0 % to 100 %/);
  });

  it('puts pilots in their wave and spreads the rest by a stable hash, the same on every call', () => {
    const waves: Wave[] = [{ collection: 'pilot' }, { percent: 10 }, { percent: 40 }, { rest: true }];
    const counts = [0, 0, 0, 0];
    const bySite = new Map<string, number[]>();
    for (const site of ['BER', 'MUC']) {
      for (let n = 1; n <= 5000; n++) {
        const id = `${site}-${String(n).padStart(6, '0')}`;
        const w = waveOf(bucketOf('CEN-A00001', id), waves, (c) => c === 'pilot' && n <= 10);
        expect(waveOf(bucketOf('CEN-A00001', id), waves, (c) => c === 'pilot' && n <= 10)).toBe(w);
        counts[w] = (counts[w] ?? 0) + 1;
        const s = bySite.get(site) ?? [0, 0, 0, 0];
        s[w] = (s[w] ?? 0) + 1;
        bySite.set(site, s);
      }
    }
    expect(counts[0]).toBe(20);
    // 9,980 in the remainder: about 10 %, 40 % and 50 % of it, within a few percent.
    expect(Math.abs((counts[1] as number) / 9980 - 0.1)).toBeLessThan(0.02);
    expect(Math.abs((counts[2] as number) / 9980 - 0.4)).toBeLessThan(0.03);
    // Every wave draws from both sites, in about the same proportion.
    for (const s of bySite.values()) expect(Math.abs((s[1] as number) / 4990 - 0.1)).toBeLessThan(0.03);
    // Another rollout draws another sample.
    const a = [...Array(200).keys()].filter((n) => bucketOf('CEN-A00001', `BER-${n}`) < 0.1);
    const b = [...Array(200).keys()].filter((n) => bucketOf('CEN-A00002', `BER-${n}`) < 0.1);
    expect(a).not.toEqual(b);
  });
});

describe('rollout steps', () => {
  const waves: Wave[] = [{ collection: 'pilot' }, { percent: 50 }, { rest: true }];
  const base = { waves, successPercent: 90, failurePercent: 10, holdSeconds: 60, approval: false, failedBaseline: 0, now: 1_000_000 };
  const count = (members: number, succeeded: number, failed = 0, exitCodes: (number | null)[] = []) => ({
    members,
    succeeded,
    failed,
    exitCodes,
  });

  it('waits below the success threshold, holds once it is reached, then releases the next wave', () => {
    const below = nextStep({ ...base, released: 1, counts: [count(10, 8)], reachedAt: null });
    expect(below.step.kind).toBe('none');
    expect(below.step.text).toMatch(/8 of 10 succeeded.*at 90 %/);
    const reached = nextStep({ ...base, released: 1, counts: [count(10, 9)], reachedAt: null });
    expect(reached.reachedAt).toBe(base.now);
    expect(reached.step.text).toMatch(/holding 60 s more/);
    const later = nextStep({ ...base, released: 1, counts: [count(10, 9)], reachedAt: base.now - 60_000 });
    expect(later.step).toMatchObject({ kind: 'release', text: expect.stringMatching(/released wave 2 of 3 \(50 % of the remainder\)/) });
    expect(nextStep({ ...base, approval: true, released: 1, counts: [count(10, 10)], reachedAt: base.now - 60_000 }).step.kind).toBe(
      'await-approval',
    );
    // The last wave done: complete. An empty wave counts as reached.
    expect(nextStep({ ...base, released: 3, counts: [count(1, 1), count(0, 0), count(5, 5)], reachedAt: 0 }).step.kind).toBe('complete');
    expect(nextStep({ ...base, holdSeconds: 0, released: 2, counts: [count(1, 1), count(0, 0)], reachedAt: null }).step.kind).toBe(
      'release',
    );
  });

  it('halts when failures in the released waves reach the threshold, naming the wave and the commonest exit codes', () => {
    const s = nextStep({ ...base, released: 2, counts: [count(10, 10), count(20, 5, 3, [2, 1, 2])], reachedAt: null });
    expect(s.step.kind).toBe('halt');
    expect(s.step.text).toMatch(/3 of 30 clients .* failed \(10 %; the failure threshold is 10 %\)/);
    expect(s.step.text).toMatch(/wave 2 of 3 \(50 % of the remainder\): 3 of 20 failed/);
    expect(s.step.text).toMatch(/commonest exit codes: 2 \(×2\), 1 \(×1\)/);
    // Below the threshold, and failures a resume accepted, do not halt.
    expect(nextStep({ ...base, released: 2, counts: [count(10, 10), count(20, 5, 2)], reachedAt: null }).step.kind).toBe('none');
    expect(nextStep({ ...base, failedBaseline: 3, released: 2, counts: [count(10, 10), count(20, 5, 3)], reachedAt: null }).step.kind).toBe(
      'none',
    );
  });
});
