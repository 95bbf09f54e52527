import { describe, expect, it } from 'vitest';
import { cidrHolds, parseCidr } from './cidr.js';

describe('boundaries as IP ranges', () => {
  it('matches IPv4 and IPv6 addresses', () => {
    const c = parseCidr('10.20.0.0/16');
    expect(cidrHolds(c, '10.20.255.1')).toBe(true);
    expect(cidrHolds(c, '10.21.0.1')).toBe(false);
    expect(cidrHolds(c, 'fe80::1')).toBe(false);
    expect(cidrHolds(parseCidr('fd00::/8'), 'fd12:3456::1')).toBe(true);
    expect(cidrHolds(parseCidr('fd00::/8'), '10.0.0.1')).toBe(false);
    expect(cidrHolds(parseCidr('127.0.0.1'), '127.0.0.1')).toBe(true);
    expect(cidrHolds(parseCidr('0.0.0.0/0'), '192.168.1.1')).toBe(true);
    expect(cidrHolds(parseCidr('::ffff:10.0.0.0/104'), '10.1.2.3')).toBe(true);
  });

  it('orders by specificity and refuses what is not a range', () => {
    expect(parseCidr('10.20.1.0/24').bits).toBeGreaterThan(parseCidr('10.20.0.0/16').bits);
    expect(() => parseCidr('10.20.1.5/16')).toThrow(/host bits set/);
    expect(() => parseCidr('10.300.0.0/16')).toThrow(/not an IP range/);
    expect(() => parseCidr('10.0.0.0/33')).toThrow(/at most 32/);
    expect(() => parseCidr('berlin')).toThrow(/not an IP range/);
  });
});
