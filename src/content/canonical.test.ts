import { describe, expect, it } from 'vitest';
import { canonicalJson } from './canonical.js';

describe('canonical JSON', () => {
  it('sorts object keys at every depth and writes no white space', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, { z: true, y: null }], c: 'x' } })).toBe('{"a":{"c":"x","d":[3,{"y":null,"z":true}]},"b":1}');
  });

  it('gives one encoding whatever the order keys were added in', () => {
    const a: Record<string, number> = {};
    const b: Record<string, number> = {};
    const keys = ['path', 'mode', 'size', 'chunks', 'type', 'Zeta', 'alpha', '10', '9', 'é', 'e'];
    for (const k of keys) a[k] = k.length;
    for (const k of [...keys].reverse()) b[k] = k.length;
    expect(canonicalJson(a)).toBe(canonicalJson(b));
    // Code-unit order: digits < upper case < lower case < non-ASCII.
    expect(canonicalJson(a)).toBe('{"10":2,"9":1,"Zeta":4,"alpha":5,"chunks":6,"e":1,"mode":4,"path":4,"size":4,"type":4,"é":1}');
  });

  it('round-trips through JSON.parse to an equal value', () => {
    const v = { name: 'Office "2024"\n\ttab \\ back', list: [0, -1, 9007199254740991, 'ü', '😀', ''], empty: {}, none: [] };
    const s = canonicalJson(v);
    expect(JSON.parse(s)).toEqual(v);
    expect(canonicalJson(JSON.parse(s))).toBe(s);
  });

  it('escapes strings the way JSON.stringify does, including lone surrogates', () => {
    for (const s of ['plain', 'quote"', 'nl\n', '\u0000\u001f', '\u2028', '\ud800', 'a\udc00b'])
      expect(canonicalJson(s)).toBe(JSON.stringify(s));
    expect(canonicalJson('\ud800')).toBe('"\\ud800"');
  });

  it('drops keys whose value is undefined (as JSON.stringify does)', () => {
    expect(canonicalJson({ a: undefined, b: 2 })).toBe('{"b":2}');
  });

  it('holds integers only', () => {
    for (const bad of [1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53, -(2 ** 53), 1e300]) {
      expect(() => canonicalJson(bad), String(bad)).toThrow(/integers only/);
      expect(() => canonicalJson({ nested: [bad] }), String(bad)).toThrow(/integers only/);
    }
    expect(canonicalJson(-0)).toBe('0');
    expect(canonicalJson(2 ** 53 - 1)).toBe('9007199254740991');
  });

  it('refuses values JSON cannot hold', () => {
    expect(() => canonicalJson(undefined)).toThrow(/cannot hold a undefined/);
    expect(() => canonicalJson(() => 1)).toThrow(/cannot hold a function/);
    expect(() => canonicalJson(10n)).toThrow(/cannot hold a bigint/);
    expect(() => canonicalJson(Symbol('s'))).toThrow(/cannot hold a symbol/);
    expect(() => canonicalJson([1, undefined])).toThrow();
  });

  it('writes booleans and null literally', () => {
    expect(canonicalJson([true, false, null])).toBe('[true,false,null]');
  });
});
