import { describe, expect, it } from 'vitest';
import { parseDuration, parseWhen } from './time.js';

describe('durations and times', () => {
  it('reads durations', () => {
    expect(parseDuration('90')).toBe(90);
    expect(parseDuration('60m')).toBe(3600);
    expect(parseDuration('2h')).toBe(7200);
    expect(parseDuration('7d')).toBe(604800);
    expect(() => parseDuration('soon', '--ttl')).toThrow(/--ttl "soon" is not a duration/);
    expect(() => parseDuration('0m')).toThrow(/not a duration/);
  });
  it('reads times', () => {
    const now = new Date('2026-12-03T10:00:00Z');
    expect(parseWhen('now', now)).toBe('2026-12-03T10:00:00.000Z');
    expect(parseWhen('+2h', now)).toBe('2026-12-03T12:00:00.000Z');
    expect(parseWhen('2026-12-24T18:00:00Z', now)).toBe('2026-12-24T18:00:00.000Z');
    expect(() => parseWhen('tomorrow', now, '--mandatory')).toThrow(/--mandatory "tomorrow" is not a time/);
  });
});
