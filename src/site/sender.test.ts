import { describe, expect, it } from 'vitest';
import { backoffSeconds, RateMeter } from './sender.js';

describe('RateMeter', () => {
  it('measures over the recent window, not from the first burst', () => {
    let now = 0;
    const m = new RateMeter(5000, () => now);
    // 600 KB land in the socket buffer at once, then the link drains 500 KB/s.
    expect(m.add(600_000)).toBe(0);
    let rate = 0;
    for (let s = 1; s <= 20; s++) {
      now = s * 1000;
      rate = m.add(600_000 + s * 500_000);
    }
    expect(rate).toBeCloseTo(500_000, -3);
  });

  it('says nothing before two seconds of data', () => {
    let now = 0;
    const m = new RateMeter(5000, () => now);
    m.add(0);
    now = 1400;
    expect(m.add(1_000_000)).toBe(0);
    now = 2400;
    expect(m.add(2_000_000)).toBeCloseTo(2_000_000 / 2.4, 0);
  });
});

describe('backoffSeconds', () => {
  it('doubles from 5 s and stops at 5 minutes', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8, 20].map(backoffSeconds)).toEqual([5, 10, 20, 40, 80, 160, 300, 300, 300]);
  });
});
