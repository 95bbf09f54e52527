import { describe, expect, it } from 'vitest';
import { formatWindow, longestOpenSeconds, parseWindow, windowState } from './window.js';

describe('maintenance windows', () => {
  it('reads the week grid with open and closed over a closed week, and prints it back', () => {
    const w = parseWindow('sat 22-04');
    expect(w.cells.filter((c) => c !== 'closed')).toHaveLength(6);
    expect(formatWindow(w)).toBe('sat 22-04');
    expect(formatWindow(parseWindow('mon-fri 20-06 open; wed 20-06 closed'))).toBe(formatWindow(parseWindow('mon,tue,thu,fri 20-06')));
    expect(formatWindow(parseWindow('daily 00-24'))).toBe('daily 00-24');
    expect(() => parseWindow('sat 22-04 high')).toThrow(/a window is open or closed; "high" belongs to route schedules/);
    expect(() => parseWindow('sat 22-04 closed')).toThrow(/is never open/);
    expect(() => parseWindow('sat 25-04')).toThrow(/schedule rule/);
    expect(() => parseWindow('')).toThrow(/empty maintenance window/);
    expect(() => parseWindow('sat 22-04', 'Mars/Olympus')).toThrow(/time zone/);
  });

  it('knows its longest stretch, across the end of the week too', () => {
    expect(longestOpenSeconds(parseWindow('sat 22-04'))).toBe(6 * 3600);
    expect(longestOpenSeconds(parseWindow('sun 22-02; mon 02-03'))).toBe(5 * 3600);
    expect(longestOpenSeconds(parseWindow('daily 01-02'))).toBe(3600);
    expect(longestOpenSeconds(parseWindow('daily 00-24'))).toBe(Number.POSITIVE_INFINITY);
  });

  it('says whether the union of windows is open now, until when, or when it opens', () => {
    // 2026-12-05 is a Saturday.
    const sat = parseWindow('sat 22-04');
    const late = parseWindow('sun 03-05');
    const at = (iso: string) => new Date(iso);
    expect(windowState([sat], at('2026-12-05T21:30:00Z'))).toEqual({ open: false, closesAt: null, opensAt: at('2026-12-05T22:00:00Z') });
    expect(windowState([sat], at('2026-12-05T23:00:00Z'))).toEqual({ open: true, closesAt: at('2026-12-06T04:00:00Z'), opensAt: null });
    // Overlapping windows join: open from 22:00 to 05:00.
    expect(windowState([sat, late], at('2026-12-05T23:00:00Z')).closesAt).toEqual(at('2026-12-06T05:00:00Z'));
    // In Berlin (UTC+1 in December) the same SPEC opens an hour earlier in UTC.
    expect(windowState([parseWindow('sat 22-04', 'Europe/Berlin')], at('2026-12-05T21:30:00Z')).open).toBe(true);
    expect(windowState([parseWindow('daily 00-24')], at('2026-12-05T21:30:00Z'))).toEqual({ open: true, closesAt: null, opensAt: null });
  });
});
