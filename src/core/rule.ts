import { fail } from './errors.js';

/**
 * The collection rule language: a small expression over a client's inventory (docs/clients.md).
 *
 *   os = "linux" and arch in ("x64", "arm64") and hostname like "ber-%"
 *   not (free_disk < 1000000000) or site = "BER"
 *
 * Fields: id, site, hostname, os, arch, version (the agent's), address (true when any of the
 * client's addresses matches), free_disk (bytes), link_speed (bytes/s). Operators: = != < <= >
 * >= like (`%` any run, `_` one character), in (...), and, or, not, parentheses. Text compares
 * without regard to case. A mistake is reported with the column it is at.
 */

export interface RuleInventory {
  id: string;
  site: string;
  hostname: string;
  os: string;
  arch: string;
  version: string;
  addresses: readonly string[];
  freeDisk: number | null;
  linkSpeed: number | null;
}

export const RULE_FIELDS = ['id', 'site', 'hostname', 'os', 'arch', 'version', 'address', 'free_disk', 'link_speed'] as const;
type Field = (typeof RULE_FIELDS)[number];
const NUMERIC = new Set<Field>(['free_disk', 'link_speed']);

type Value = string | number;
type Token = { kind: 'word' | 'string' | 'number' | 'op' | 'punct' | 'end'; text: string; value?: Value; col: number };

export type Rule = (inv: RuleInventory) => boolean;

const error = (col: number, what: string) => fail('bad_request', `rule error at column ${col}: ${what}`);

function lex(src: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i] as string;
    const col = i + 1;
    if (/\s/.test(c)) {
      i++;
    } else if (c === '"' || c === "'") {
      let j = i + 1;
      let s = '';
      while (j < src.length && src[j] !== c) {
        if (src[j] === '\\' && j + 1 < src.length) j++;
        s += src[j];
        j++;
      }
      if (j >= src.length) throw error(col, `the text starting here has no closing ${c}`);
      out.push({ kind: 'string', text: src.slice(i, j + 1), value: s, col });
      i = j + 1;
    } else if (/[0-9]/.test(c)) {
      const m = /^[0-9]+(?:\.[0-9]+)?/.exec(src.slice(i)) as RegExpExecArray;
      out.push({ kind: 'number', text: m[0], value: Number(m[0]), col });
      i += m[0].length;
    } else if (/[A-Za-z_]/.test(c)) {
      const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(src.slice(i)) as RegExpExecArray;
      out.push({ kind: 'word', text: m[0], col });
      i += m[0].length;
    } else if (/[=!<>]/.test(c)) {
      const two = src.slice(i, i + 2);
      const text = ['!=', '<=', '>='].includes(two) ? two : c;
      if (text === '!') throw error(col, 'unexpected "!" (did you mean "!="?)');
      out.push({ kind: 'op', text, col });
      i += text.length;
    } else if (c === '(' || c === ')' || c === ',') {
      out.push({ kind: 'punct', text: c, col });
      i++;
    } else {
      throw error(col, `unexpected character "${c}"`);
    }
  }
  out.push({ kind: 'end', text: 'the end of the rule', col: src.length + 1 });
  return out;
}

const likeRegex = (pattern: string): RegExp =>
  new RegExp(
    `^${pattern
      .split('')
      .map((ch) => (ch === '%' ? '.*' : ch === '_' ? '.' : ch.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
      .join('')}$`,
    'is',
  );

function fieldValues(inv: RuleInventory, f: Field): Value[] {
  switch (f) {
    case 'address':
      return [...inv.addresses];
    case 'free_disk':
      return inv.freeDisk === null ? [] : [inv.freeDisk];
    case 'link_speed':
      return inv.linkSpeed === null ? [] : [inv.linkSpeed];
    case 'id':
      return [inv.id];
    default:
      return [inv[f]];
  }
}

const norm = (v: Value): Value => (typeof v === 'string' ? v.toLowerCase() : v);

/** Parses a rule; throws bad_request naming the column of the first mistake. */
export function parseRule(src: string): Rule {
  if (src.length > 4096) throw fail('bad_request', 'a rule is at most 4,096 characters');
  const toks = lex(src);
  let p = 0;
  const peek = () => toks[p] as Token;
  const next = () => toks[p++] as Token;
  const isWord = (t: Token, w: string) => t.kind === 'word' && t.text.toLowerCase() === w;
  const expectValue = (field: Field): Value => {
    const t = next();
    if (t.kind !== 'string' && t.kind !== 'number') throw error(t.col, `expected a value (a "quoted text" or a number), found ${t.text}`);
    if (NUMERIC.has(field) && t.kind !== 'number') throw error(t.col, `${field} is a number; found ${t.text}`);
    return t.value as Value;
  };

  const comparison = (): Rule => {
    const t = next();
    if (t.kind === 'punct' && t.text === '(') {
      const inner = or();
      const close = next();
      if (close.text !== ')' || close.kind !== 'punct') throw error(close.col, `expected ")", found ${close.text}`);
      return inner;
    }
    if (t.kind !== 'word') throw error(t.col, `expected a field (${RULE_FIELDS.join(', ')}), found ${t.text}`);
    const field = t.text.toLowerCase() as Field;
    if (!RULE_FIELDS.includes(field)) throw error(t.col, `unknown field "${t.text}" (fields: ${RULE_FIELDS.join(', ')})`);
    let negate = false;
    let opTok = next();
    if (isWord(opTok, 'not')) {
      negate = true;
      opTok = next();
      if (!isWord(opTok, 'like') && !isWord(opTok, 'in'))
        throw error(opTok.col, `expected "like" or "in" after "not", found ${opTok.text}`);
    }
    const op = opTok.text.toLowerCase();
    let test: (v: Value) => boolean;
    if (opTok.kind === 'op') {
      const want = norm(expectValue(field));
      const cmp = (v: Value) => {
        const a = norm(v);
        return a < want ? -1 : a > want ? 1 : 0;
      };
      test = {
        '=': (v: Value) => cmp(v) === 0,
        '!=': (v: Value) => cmp(v) !== 0,
        '<': (v: Value) => cmp(v) < 0,
        '<=': (v: Value) => cmp(v) <= 0,
        '>': (v: Value) => cmp(v) > 0,
        '>=': (v: Value) => cmp(v) >= 0,
      }[op] as (v: Value) => boolean;
    } else if (op === 'like') {
      const v = next();
      if (v.kind !== 'string') throw error(v.col, `"like" needs a "quoted pattern", found ${v.text}`);
      const re = likeRegex(v.value as string);
      test = (x) => re.test(String(x));
    } else if (op === 'in') {
      const open = next();
      if (open.text !== '(') throw error(open.col, `expected "(" after "in", found ${open.text}`);
      const set = new Set<Value>([norm(expectValue(field))]);
      for (;;) {
        const sep = next();
        if (sep.text === ')') break;
        if (sep.text !== ',') throw error(sep.col, `expected "," or ")" in the list, found ${sep.text}`);
        set.add(norm(expectValue(field)));
      }
      test = (x) => set.has(norm(x));
    } else {
      throw error(opTok.col, `expected an operator (= != < <= > >= like in) after ${t.text}, found ${opTok.text}`);
    }
    const negated = op === '!=' ? false : negate;
    // `address != "x"`: no address is x. Otherwise a field with several values matches if any does.
    if (op === '!=') return (inv) => fieldValues(inv, field).every(test);
    return (inv) => fieldValues(inv, field).some(test) !== negated;
  };
  const not = (): Rule => {
    if (isWord(peek(), 'not')) {
      next();
      const inner = not();
      return (inv) => !inner(inv);
    }
    return comparison();
  };
  const and = (): Rule => {
    let left = not();
    while (isWord(peek(), 'and')) {
      next();
      const a = left;
      const b = not();
      left = (inv) => a(inv) && b(inv);
    }
    return left;
  };
  const or = (): Rule => {
    let left = and();
    while (isWord(peek(), 'or')) {
      next();
      const a = left;
      const b = and();
      left = (inv) => a(inv) || b(inv);
    }
    return left;
  };
  if (peek().kind === 'end') throw error(1, 'the rule is empty');
  const rule = or();
  const rest = peek();
  if (rest.kind !== 'end') throw error(rest.col, `expected "and", "or" or the end of the rule, found ${rest.text}`);
  return rule;
}
