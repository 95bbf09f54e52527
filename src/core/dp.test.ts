import { describe, expect, it } from 'vitest';
import { parseDpName, parseTargetSpec } from './dp.js';

describe('DP names and target specs', () => {
  it('parses the three kinds of target', () => {
    expect(parseTargetSpec('site:eur')).toEqual({ kind: 'site', code: 'EUR' });
    expect(parseTargetSpec('dp:EUR-dp1')).toEqual({ kind: 'dp', name: 'EUR-dp1' });
    expect(parseTargetSpec('dp:eur')).toEqual({ kind: 'dp', name: 'EUR' });
    expect(parseTargetSpec('group:pilot')).toEqual({ kind: 'group', name: 'pilot' });
  });
  it('refuses malformed targets with a message naming them', () => {
    expect(() => parseTargetSpec('EUR')).toThrow(/not site:CODE, dp:NAME or group:NAME/);
    expect(() => parseTargetSpec('site:EURO')).toThrow(/not a site code/);
    expect(() => parseTargetSpec('dp:a/b')).toThrow(/not a DP name/);
    expect(() => parseTargetSpec('group:')).toThrow(/not site:CODE/);
  });
  it('keeps DP names apart from site codes', () => {
    expect(() => parseDpName('EUR')).toThrow(/not a DP name/);
    expect(parseDpName('eur-1')).toBe('eur-1');
    expect(() => parseDpName('../etc')).toThrow();
  });
});
