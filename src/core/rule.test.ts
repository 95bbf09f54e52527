import { describe, expect, it } from 'vitest';
import { parseRule, type RuleInventory } from './rule.js';

const inv = (o: Partial<RuleInventory> = {}): RuleInventory => ({
  id: 'BER-000001',
  site: 'BER',
  hostname: 'ber-ws-01',
  os: 'linux',
  arch: 'x64',
  version: '0.1.0',
  addresses: ['10.20.1.5', 'fe80::1'],
  freeDisk: 5e9,
  linkSpeed: 1e6,
  ...o,
});

describe('collection rules', () => {
  it('evaluates the documented example', () => {
    const r = parseRule('os = "linux" and arch in ("x64", "arm64") and hostname like "ber-%"');
    expect(r(inv())).toBe(true);
    expect(r(inv({ arch: 'ia32' }))).toBe(false);
    expect(r(inv({ hostname: 'lon-ws-01' }))).toBe(false);
    expect(r(inv({ os: 'LINUX', hostname: 'BER-X' }))).toBe(true);
  });

  it('has precedence, parentheses, not, numbers and many-valued fields', () => {
    expect(parseRule('os = "windows" or os = "linux" and arch = "x64"')(inv())).toBe(true);
    expect(parseRule('(os = "windows" or os = "linux") and arch = "arm64"')(inv())).toBe(false);
    expect(parseRule('not free_disk < 1000000000')(inv())).toBe(true);
    expect(parseRule('free_disk >= 6000000000')(inv())).toBe(false);
    expect(parseRule('address like "10.20.%"')(inv())).toBe(true);
    expect(parseRule('address != "10.20.1.5"')(inv())).toBe(false);
    expect(parseRule('hostname not like "lon-%" and site not in ("LON")')(inv())).toBe(true);
    expect(parseRule('link_speed > 0')(inv({ linkSpeed: null }))).toBe(false);
    expect(parseRule("hostname = 'ber-ws-01'")(inv())).toBe(true);
    expect(parseRule('hostname like "ber_ws_01"')(inv())).toBe(true);
  });

  it('points at the column of a mistake', () => {
    const cases: [string, RegExp][] = [
      ['os = "linux" and hostnme = "x"', /column 18: unknown field "hostnme"/],
      ['os = ', /column 6: expected a value/],
      ['os = "linux" arch = "x64"', /column 14: expected "and", "or" or the end/],
      ['os = "linux', /column 6: the text starting here has no closing "/],
      ['free_disk > "big"', /column 13: free_disk is a number/],
      ['arch in ("x64" "arm64")', /column 16: expected "," or "\)"/],
      ['(os = "linux"', /column 14: expected "\)"/],
      ['', /the rule is empty/],
      ['os ~ "x"', /column 4: unexpected character "~"/],
    ];
    for (const [src, re] of cases) expect(() => parseRule(src), src).toThrow(re);
  });
});
