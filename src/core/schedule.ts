/**
 * Route schedules: a week × 24-hour grid saying, for each local hour of the week, which package
 * priorities a route may carry. Evaluated in the sending site's time zone. Pure: no I/O; time zone
 * arithmetic uses `Intl.DateTimeFormat` only. The SPEC syntax is documented in docs/schedules.md.
 */
import { type ErrorCode, fail } from './errors.js';
import type { Priority } from './package.js';
import { formatRate, parseRate } from './rate.js';

/** One hour of the week: open to every priority, to medium and high, to high only, or to none. */
export const CELLS = ['all', 'medium', 'high', 'closed'] as const;
export type Cell = (typeof CELLS)[number];

export interface Schedule {
  /** IANA time zone name (`Europe/Berlin`, `UTC`) of the sending site. */
  timeZone: string;
  /** 168 entries, index `day * 24 + hour`, day 0 = Monday … 6 = Sunday, local time. */
  cells: Cell[];
  /**
   * Per hour, as `cells`: a rate (bytes/s) that caps the route's rate in that hour, or null for
   * the route's own rate. Absent: no hour has one.
   */
  rates?: (number | null)[];
}

export const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as const;
export const HOURS_PER_WEEK = 168;

/** Letters used by `describeSchedule`. */
export const CELL_LETTERS: Record<Cell, string> = { all: 'A', medium: 'M', high: 'H', closed: '.' };

export const ALWAYS_OPEN: Schedule = Object.freeze({
  timeZone: 'UTC',
  cells: Object.freeze(new Array<Cell>(HOURS_PER_WEEK).fill('all')) as Cell[],
});

export const isCell = (v: unknown): v is Cell => typeof v === 'string' && (CELLS as readonly string[]).includes(v);

/** Whether a package of `priority` may be sent during an hour whose cell is `cell`. */
export function allows(cell: Cell, priority: Priority): boolean {
  switch (cell) {
    case 'all':
      return true;
    case 'medium':
      return priority !== 'low';
    case 'high':
      return priority === 'high';
    case 'closed':
      return false;
  }
}

export function sameSchedule(a: Schedule, b: Schedule): boolean {
  return (
    a.timeZone === b.timeZone &&
    a.cells.length === b.cells.length &&
    a.cells.every((c, i) => c === b.cells[i]) &&
    a.cells.every((_, i) => (a.rates?.[i] ?? null) === (b.rates?.[i] ?? null))
  );
}

/**
 * The rate a route may send at, at `date`: its own rate, capped by the rate of the schedule's
 * cell for that local hour when it has one (SMS 2.0's "maximum transfer rates by hour"). Null:
 * unlimited.
 */
export function rateAt(s: Schedule, routeRate: number | null, date: Date): number | null {
  if (!s.rates) return routeRate;
  const { day, hour } = localDayHour(s.timeZone, date);
  const cell = s.rates[day * 24 + hour] ?? null;
  if (cell === null) return routeRate;
  return routeRate === null ? cell : Math.min(routeRate, cell);
}

// ---------------------------------------------------------------------------------------------
// Time zones

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(timeZone, f);
  }
  return f;
}

/**
 * Checks an IANA time zone name and returns it (with its canonical capitalisation when the name
 * only differs in case, so `utc` → `UTC`, `europe/berlin` → `Europe/Berlin`).
 */
export function checkTimeZone(name: string, code: ErrorCode = 'usage'): string {
  const tz = name.trim();
  let resolved: string;
  try {
    if (tz === '') throw new RangeError('empty');
    resolved = new Intl.DateTimeFormat('en-US', { timeZone: tz }).resolvedOptions().timeZone;
  } catch {
    throw fail(code, `unknown time zone "${name}" (use an IANA name such as Europe/Berlin, America/New_York or UTC)`);
  }
  return resolved.toLowerCase() === tz.toLowerCase() ? resolved : tz;
}

const SECOND = 1000;
const HOUR = 3_600_000;
const DAY = 86_400_000;
const WEEK = 7 * DAY;

const mod = (a: number, m: number): number => ((a % m) + m) % m;

/** Local wall clock minus UTC at instant `t` (ms since the epoch), in ms (a whole number of seconds). */
function offsetAt(timeZone: string, t: number): number {
  let y = 1970;
  let mo = 1;
  let d = 1;
  let h = 0;
  let mi = 0;
  let s = 0;
  for (const p of formatter(timeZone).formatToParts(t)) {
    const n = Number(p.value);
    switch (p.type) {
      case 'year':
        y = n;
        break;
      case 'month':
        mo = n;
        break;
      case 'day':
        d = n;
        break;
      case 'hour':
        h = n === 24 ? 0 : n;
        break;
      case 'minute':
        mi = n;
        break;
      case 'second':
        s = n;
        break;
      default:
        break;
    }
  }
  const wall = Date.UTC(y, mo - 1, d, h, mi, s);
  return wall - (t - mod(t, SECOND));
}

/** Index into `cells` of a local wall-clock time expressed as ms since 1970-01-01 00:00 (a Thursday). */
function indexOfWall(wall: number): number {
  const day = mod(Math.floor(wall / DAY) + 3, 7);
  const hour = Math.floor(mod(wall, DAY) / HOUR);
  return day * 24 + hour;
}

/**
 * Walks a time zone's local hours forward from an instant. `t` is the current instant and `off`
 * the offset there; `advance()` moves to the first later instant at which the local hour may
 * change: normally the next local hour boundary, or a DST transition instant (found to the
 * second) when one comes first. Offsets are probed a day ahead, so a quiet day costs one
 * `Intl` call, not 24; this assumes no two offset changes within one day cancel each other out.
 */
class LocalHours {
  t: number;
  off: number;
  /** The offset is known to be `off` on [t, stableTo]. */
  private stableTo: number;

  constructor(
    private readonly timeZone: string,
    t: number,
  ) {
    this.t = t;
    this.off = offsetAt(timeZone, t);
    this.stableTo = t;
  }

  /** Index into a schedule's cells of the local hour at `t`. */
  get index(): number {
    return indexOfWall(this.t + this.off);
  }

  /** The instant `advance()` will move to, without moving. */
  peek(): number {
    this.probe();
    return this.nextT;
  }

  advance(): void {
    this.probe();
    this.t = this.nextT;
    if (this.t > this.stableTo) {
      this.off = offsetAt(this.timeZone, this.t);
      this.stableTo = this.t;
    }
    this.probed = false;
  }

  private probed = false;
  private nextT = 0;

  private probe(): void {
    if (this.probed) return;
    this.probed = true;
    const wall = this.t + this.off;
    const candidate = wall - mod(wall, HOUR) + HOUR - this.off;
    if (candidate <= this.stableTo) {
      this.nextT = candidate;
      return;
    }
    const ahead = this.t + DAY;
    if (offsetAt(this.timeZone, ahead) === this.off) {
      this.stableTo = ahead;
      this.nextT = candidate;
      return;
    }
    // An offset change in (t, ahead]: find its first second.
    let lo = Math.floor(this.t / SECOND);
    let hi = Math.ceil(ahead / SECOND);
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      if (offsetAt(this.timeZone, mid * SECOND) === this.off) lo = mid;
      else hi = mid;
    }
    const change = hi * SECOND;
    this.stableTo = change - SECOND;
    this.nextT = Math.min(candidate, change);
  }
}

/** Local day (0 = Monday) and hour of `date` in `timeZone`. */
export function localDayHour(timeZone: string, date: Date): { day: number; hour: number } {
  const t = date.getTime();
  const i = indexOfWall(t + offsetAt(timeZone, t));
  return { day: Math.floor(i / 24), hour: i % 24 };
}

/** The cell in force at `date`, by the local day and hour in the schedule's time zone. */
export function cellAt(s: Schedule, date: Date): Cell {
  const t = date.getTime();
  return s.cells[indexOfWall(t + offsetAt(s.timeZone, t))]!;
}

/** Whether `priority` may send at `date`. */
export function isOpen(s: Schedule, priority: Priority, date: Date): boolean {
  return allows(cellAt(s, date), priority);
}

/**
 * How far ahead nextOpening/nextClosing look: a week, plus a week for the one case where the only
 * matching hour is skipped by a spring-forward change, plus slack.
 */
const SCAN_LIMIT = 15 * DAY;

function checkDate(d: Date, what: string): number {
  const t = d.getTime();
  if (!Number.isFinite(t)) throw fail('bad_request', `${what} is not a valid date`);
  return t;
}

/** The first instant ≥ `from` (within SCAN_LIMIT) whose cell satisfies `want`. */
function scanFor(s: Schedule, from: Date, want: (c: Cell) => boolean): Date | null {
  const start = checkDate(from, 'from');
  const walk = new LocalHours(s.timeZone, start);
  while (walk.t - start <= SCAN_LIMIT) {
    if (want(s.cells[walk.index]!)) return new Date(walk.t);
    walk.advance();
  }
  return null;
}

/**
 * The earliest instant ≥ `from` at which `priority` may send: `from` itself when open now, else
 * the start of the next local hour whose cell admits it. Null when no cell admits it.
 */
export function nextOpening(s: Schedule, priority: Priority, from: Date): Date | null {
  if (!s.cells.some((c) => allows(c, priority))) return null;
  return scanFor(s, from, (c) => allows(c, priority));
}

/**
 * When the window open to `priority` at `from` ends: the first instant > `from` at which it may
 * no longer send. `from` itself when it is closed already; null when it is never closed.
 */
export function nextClosing(s: Schedule, priority: Priority, from: Date): Date | null {
  if (s.cells.every((c) => allows(c, priority))) return null;
  return scanFor(s, from, (c) => !allows(c, priority));
}

/** Seconds in [from, to) during which `priority` may send. Exact; one cheap step per local hour. */
export function openSecondsBetween(s: Schedule, priority: Priority, from: Date, to: Date): number {
  const start = checkDate(from, 'from');
  const end = checkDate(to, 'to');
  if (end <= start) return 0;
  if (s.cells.every((c) => allows(c, priority))) return (end - start) / SECOND;
  if (!s.cells.some((c) => allows(c, priority))) return 0;
  let open = 0;
  const walk = new LocalHours(s.timeZone, start);
  while (walk.t < end) {
    const t = walk.t;
    const next = walk.peek();
    if (allows(s.cells[walk.index]!, priority)) open += Math.min(next, end) - t;
    walk.advance();
  }
  return open / SECOND;
}

/** Exact hour-by-hour scanning horizon of etaSeconds; beyond it whole weeks are extrapolated. */
const ETA_EXACT_SPAN = 8 * WEEK;

/**
 * Seconds from `from` until `bytes` have been sent at `bytesPerSecond`, counting only the time
 * the schedule lets `priority` send. 0 for no bytes; null when it can never finish (never open,
 * or no positive rate). Exact for the first eight weeks; past that, whole local weeks are skipped
 * using the grid's open hours per week, so a DST change inside a skipped open hour may shift the
 * answer by an hour.
 */
export function etaSeconds(s: Schedule, priority: Priority, from: Date, bytes: number, bytesPerSecond: number): number | null {
  const start = checkDate(from, 'from');
  if (!(bytes > 0)) return 0;
  if (!(bytesPerSecond > 0) || !Number.isFinite(bytesPerSecond)) return null;
  const openCells = s.cells.filter((c) => allows(c, priority)).length;
  if (openCells === 0) return null;
  const need = (bytes / bytesPerSecond) * SECOND;
  if (openCells === HOURS_PER_WEEK) return need / SECOND;
  const perWeek = openCells * HOUR;
  let done = 0;
  let walk = new LocalHours(s.timeZone, start);
  let skipped = false;
  for (;;) {
    const t = walk.t;
    const next = walk.peek();
    if (allows(s.cells[walk.index]!, priority)) {
      if (done + (next - t) >= need) return (t + (need - done) - start) / SECOND;
      done += next - t;
    }
    walk.advance();
    if (!skipped && walk.t - start > ETA_EXACT_SPAN) {
      skipped = true;
      const weeks = Math.floor((need - done) / perWeek) - 1;
      // Past a century the answer is only an order of magnitude: do not walk dates that far.
      if (weeks > 5200) return (walk.t - start + ((need - done) / perWeek) * WEEK) / SECOND;
      if (weeks >= 1) {
        // Jump to the same local wall-clock time `weeks` weeks later.
        const wall = walk.t + walk.off + weeks * WEEK;
        walk = new LocalHours(s.timeZone, wall - offsetAt(s.timeZone, wall - walk.off));
        done += weeks * perWeek;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// SPEC text

const VALUE_HINT = 'use all, medium, high or closed';
const DAY_HINT = 'use mon, tue, wed, thu, fri, sat, sun, daily';
const FULL_DAY_NAMES = ['monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday'];
const WHOLE_WEEK = new Set(['daily', '*']);

function dayIndex(name: string, token: string, bad: (why: string) => Error): number {
  const short = DAYS.indexOf(name as (typeof DAYS)[number]);
  if (short >= 0) return short;
  const full = FULL_DAY_NAMES.indexOf(name);
  if (full >= 0) return full;
  if (WHOLE_WEEK.has(name)) throw bad(`"${name}" cannot be part of a day range in "${token}" (write it alone)`);
  throw bad(`unknown day "${name}" (${DAY_HINT})`);
}

/** Days named by a day token: `mon`, `mon-fri`, `fri-mon` (wraps), `mon,wed,fri`, `daily`, `*`. */
function parseDays(token: string, bad: (why: string) => Error): number[] {
  if (WHOLE_WEEK.has(token)) return [0, 1, 2, 3, 4, 5, 6];
  const days = new Set<number>();
  for (const item of token.split(',')) {
    if (item === '') throw bad(`empty day in "${token}" (separate days with one ",", as in mon,wed,fri)`);
    if (WHOLE_WEEK.has(item)) {
      for (let d = 0; d < 7; d++) days.add(d);
      continue;
    }
    const parts = item.split('-');
    if (parts.length > 2) throw bad(`bad day range "${item}" (write it as first-last, as in mon-fri)`);
    const [first, last] = parts as [string, string | undefined];
    if (first === '' || last === '') throw bad(`bad day range "${item}" (write it as first-last, as in mon-fri)`);
    const a = dayIndex(first, token, bad);
    if (last === undefined) {
      days.add(a);
      continue;
    }
    const b = dayIndex(last, token, bad);
    for (let d = a; ; d = (d + 1) % 7) {
      days.add(d);
      if (d === b) break;
    }
  }
  return [...days].sort((x, y) => x - y);
}

/** An hour range `HH-HH` (end excluded; `18-08` wraps past midnight). `08:00-18:00` is accepted. */
function parseHours(token: string, bad: (why: string) => Error): { start: number; end: number } {
  const m = /^(\d{1,2})(?::(\d{2}))?-(\d{1,2})(?::(\d{2}))?$/.exec(token);
  if (!m) {
    if (/^\d{1,2}(?::\d{2})?$/.test(token)) throw bad(`hour range "${token}" needs a start and an end, as in 08-18`);
    throw bad(`bad hour range "${token}" (use HH-HH such as 08-18; the end hour is not included)`);
  }
  const [, h1, m1, h2, m2] = m;
  if ((m1 !== undefined && m1 !== '00') || (m2 !== undefined && m2 !== '00')) {
    throw bad(`hour range "${token}" has minutes, but schedule cells are whole hours (use HH-HH such as 08-18)`);
  }
  const start = Number(h1);
  const end = Number(h2);
  if (start > 23) throw bad(`hour range "${token}" starts at ${h1}: a range starts at 00 to 23`);
  if (end > 24) throw bad(`hour range "${token}" ends at ${h2}: a range ends at 00 to 24`);
  if (start === end) throw bad(`hour range "${token}" is empty (use 00-24 for the whole day)`);
  return { start, end };
}

const isHoursToken = (t: string): boolean => /^\d/.test(t);

/** A rate written after a rule's value, e.g. `512KiB/s` (no space inside), or undefined. */
function ruleRate(token: string): number | null | undefined {
  if (!/^(\d|\.\d)/.test(token) && token.toLowerCase() !== 'unlimited') return undefined;
  try {
    return parseRate(token);
  } catch {
    return undefined;
  }
}

function applyRule(cells: Cell[], rates: (number | null)[], text: string): void {
  const bad = (why: string): Error => fail('usage', `schedule rule "${text}": ${why}`);
  const raw = text.split(/\s+/);
  const tokens = raw.map((t) => t.toLowerCase());
  const valueAt = tokens.findIndex(isCell);
  if (valueAt === -1) {
    const last = tokens[tokens.length - 1]!;
    let looksLikeDaysOrHours = isHoursToken(last);
    if (!looksLikeDaysOrHours) {
      try {
        parseDays(last, bad);
        looksLikeDaysOrHours = true;
      } catch {
        looksLikeDaysOrHours = false;
      }
    }
    if (looksLikeDaysOrHours) throw bad(`missing the value at the end (${VALUE_HINT})`);
    if (last === 'low') throw bad(`unknown value "low" (use all: it admits every priority, low included)`);
    throw bad(`unknown value "${last}" (${VALUE_HINT})`);
  }
  const value = tokens[valueAt] as Cell;
  let after = tokens.slice(valueAt + 1);
  // An optional rate after the value caps the route's rate in those hours.
  let rate: number | null = null;
  const rateText = raw[valueAt + 1] as string;
  if (after.length === 1 && ruleRate(rateText) !== undefined) {
    if (value === 'closed') throw bad(`a rate after "closed" means nothing: nothing is sent in those hours`);
    rate = ruleRate(rateText) as number | null;
    after = [];
  }
  const second = after.find(isCell);
  if (second !== undefined) throw bad(`two values, "${value}" and "${second}": a rule has one value (separate rules with ";")`);
  if (after.length > 0) throw bad(`"${after.join(' ')}" after the value "${value}": the value ends a rule (separate rules with ";")`);
  const before = tokens.slice(0, valueAt);
  if (before.length > 2) {
    throw bad(`too many parts: a rule is [days] [hours] value, as in "mon-fri 08-18 high" (no spaces inside a day list or hour range)`);
  }
  let dayToken: string | undefined;
  let hourToken: string | undefined;
  for (const t of before) {
    if (isHoursToken(t)) {
      if (hourToken !== undefined) throw bad(`two hour ranges, "${hourToken}" and "${t}": use one rule for each`);
      hourToken = t;
    } else {
      if (dayToken !== undefined) throw bad(`two day lists, "${dayToken}" and "${t}": join days with "," as in ${dayToken},${t}`);
      if (hourToken !== undefined)
        throw bad(`days "${t}" after the hours "${hourToken}": put the days first, as in "${t} ${hourToken} ${value}"`);
      dayToken = t;
    }
  }
  const days = dayToken === undefined ? [0, 1, 2, 3, 4, 5, 6] : parseDays(dayToken, bad);
  const hours = hourToken === undefined ? { start: 0, end: 24 } : parseHours(hourToken, bad);
  for (const d of days) {
    const set = (i: number) => {
      cells[i] = value;
      rates[i] = rate;
    };
    if (hours.start < hours.end) {
      for (let h = hours.start; h < hours.end; h++) set(d * 24 + h);
    } else {
      for (let h = hours.start; h < 24; h++) set(d * 24 + h);
      const next = ((d + 1) % 7) * 24;
      for (let h = 0; h < hours.end; h++) set(next + h);
    }
  }
}

/**
 * Parses SPEC text: rules separated by ";" (or new lines), applied left to right over a week
 * that starts all `all`; a later rule overrides an earlier one where they overlap. Each rule is
 * `[days] [hours] value [rate]`. Throws a `usage` error naming the bad part.
 */
export function parseSchedule(spec: string, timeZone = 'UTC'): Schedule {
  const tz = checkTimeZone(timeZone, 'usage');
  const rules = spec
    .split(/[;\n]/)
    .map((r) => r.trim())
    .filter((r) => r !== '');
  if (rules.length === 0) throw fail('usage', 'empty schedule: give rules such as "all" or "mon-fri 08-18 high; sat-sun all"');
  const cells = new Array<Cell>(HOURS_PER_WEEK).fill('all');
  const rates = new Array<number | null>(HOURS_PER_WEEK).fill(null);
  for (const rule of rules) applyRule(cells, rates, rule);
  return rates.some((r) => r !== null) ? { timeZone: tz, cells, rates } : { timeZone: tz, cells };
}

const pad2 = (n: number): string => String(n).padStart(2, '0');

/**
 * What a SPEC does that its author may not mean, one line each: an hour range whose end comes
 * before its start wraps past midnight (`9-5` is 09:00 to 05:00 the next day). The SPEC must
 * parse (call parseSchedule first).
 */
export function scheduleWarnings(spec: string): string[] {
  const out: string[] = [];
  for (const rule of spec.split(/[;\n]/)) {
    for (const t of rule.trim().split(/\s+/)) {
      if (!isHoursToken(t) || ruleRate(t) !== undefined) continue;
      const { start, end } = parseHours(t, (why) => new Error(why));
      if (start < end) continue;
      const pm =
        end + 12 > start && end + 12 <= 24
          ? ` (for ${pad2(start)}:00 to ${pad2(end + 12)}:00, write ${pad2(start)}-${pad2(end + 12)})`
          : '';
      out.push(`hour range "${t}" wraps past midnight: read as ${pad2(start)}:00 to ${pad2(end)}:00 the next day${pm}`);
    }
  }
  return out;
}

function formatDays(days: number[]): string {
  if (days.length === 7) return 'daily';
  const parts: string[] = [];
  let i = 0;
  while (i < days.length) {
    let j = i;
    while (j + 1 < days.length && days[j + 1] === days[j]! + 1) j++;
    parts.push(i === j ? DAYS[days[i]!]! : `${DAYS[days[i]!]}-${DAYS[days[j]!]}`);
    i = j + 1;
  }
  return parts.join(',');
}

interface Run {
  start: number;
  end: number;
  value: Cell;
  rate: number | null;
}

/** A rate as one SPEC token: `512KiB/s`. */
const rateToken = (bps: number | null): string => formatRate(bps).replace(/\s+/g, '');

/**
 * Canonical SPEC text for a schedule (the time zone is not part of it). Parsing the result gives
 * the same grid. The most common cell becomes the base (`all` is implied; another is written
 * first); other hours are written as runs, a run crossing midnight as one wrapping range, and
 * days with identical runs are grouped.
 */
export function formatSchedule(s: Schedule): string {
  const counts = new Map<Cell, number>(CELLS.map((c) => [c, 0]));
  for (const c of s.cells) counts.set(c, (counts.get(c) ?? 0) + 1);
  let base: Cell = 'all';
  for (const c of CELLS) if (counts.get(c)! > counts.get(base)!) base = c;

  const runs: Run[][] = [];
  for (let d = 0; d < 7; d++) {
    const dayRuns: Run[] = [];
    let h = 0;
    while (h < 24) {
      const value = s.cells[d * 24 + h]!;
      const rate = s.rates?.[d * 24 + h] ?? null;
      let e = h + 1;
      while (e < 24 && s.cells[d * 24 + e] === value && (s.rates?.[d * 24 + e] ?? null) === rate) e++;
      if (value !== base || rate !== null) dayRuns.push({ start: h, end: e, value, rate });
      h = e;
    }
    runs.push(dayRuns);
  }
  // Join a run reaching midnight with the next day's run of the same value from midnight.
  for (let d = 0; d < 7; d++) {
    const today = runs[d]!;
    const tomorrow = runs[(d + 1) % 7]!;
    const tail = today[today.length - 1];
    const head = tomorrow[0];
    if (
      tail &&
      head &&
      tail.end === 24 &&
      head.start === 0 &&
      tail.value === head.value &&
      tail.rate === head.rate &&
      head.end < tail.start
    ) {
      tail.end = head.end;
      tomorrow.shift();
    }
  }
  const rules: string[] = base === 'all' ? [] : [base];
  const done = new Set<number>();
  for (let d = 0; d < 7; d++) {
    if (done.has(d) || runs[d]!.length === 0) continue;
    const key = JSON.stringify(runs[d]);
    const group = [d];
    for (let o = d + 1; o < 7; o++) if (!done.has(o) && JSON.stringify(runs[o]) === key) group.push(o);
    for (const g of group) done.add(g);
    const days = formatDays(group);
    for (const r of runs[d]!) {
      const value = r.rate === null ? r.value : `${r.value} ${rateToken(r.rate)}`;
      rules.push(r.start === 0 && r.end === 24 ? `${days} ${value}` : `${days} ${pad2(r.start)}-${pad2(r.end)} ${value}`);
    }
  }
  return rules.length === 0 ? 'all' : rules.join('; ');
}

/** The JSON form of a schedule. */
export function scheduleToGrid(s: Schedule): { timeZone: string; cells: Cell[]; rates?: (number | null)[] } {
  return s.rates ? { timeZone: s.timeZone, cells: [...s.cells], rates: [...s.rates] } : { timeZone: s.timeZone, cells: [...s.cells] };
}

/** Validates the JSON form `{ timeZone, cells }` (168 cells, Monday 00:00 first). */
export function scheduleFromGrid(value: unknown, code: ErrorCode = 'bad_request'): Schedule {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw fail(code, 'a schedule grid is an object { timeZone, cells } with 168 cells');
  }
  const { timeZone, cells, rates } = value as Record<string, unknown>;
  if (typeof timeZone !== 'string') throw fail(code, 'schedule grid: timeZone must be a string such as "Europe/Berlin" or "UTC"');
  const tz = checkTimeZone(timeZone, code);
  if (!Array.isArray(cells) || cells.length !== HOURS_PER_WEEK) {
    const got = Array.isArray(cells) ? `${cells.length} entries` : typeof cells;
    throw fail(code, `schedule grid: cells must be an array of 168 values (7 days × 24 hours, Monday 00:00 first), got ${got}`);
  }
  const out: Cell[] = [];
  for (let i = 0; i < HOURS_PER_WEEK; i++) {
    const c: unknown = cells[i];
    if (!isCell(c)) {
      throw fail(
        code,
        `schedule grid: cells[${i}] (${DAYS[Math.floor(i / 24)]} ${pad2(i % 24)}:00) is ${JSON.stringify(c)}; ${VALUE_HINT}`,
      );
    }
    out.push(c);
  }
  if (rates === undefined || rates === null) return { timeZone: tz, cells: out };
  if (
    !Array.isArray(rates) ||
    rates.length !== HOURS_PER_WEEK ||
    !rates.every((r) => r === null || (typeof r === 'number' && Number.isSafeInteger(r) && r > 0))
  )
    throw fail(code, 'schedule grid: rates must be an array of 168 values, each null or a positive whole number of bytes per second');
  return rates.some((r) => r !== null) ? { timeZone: tz, cells: out, rates: rates as (number | null)[] } : { timeZone: tz, cells: out };
}

/** Seven lines, Monday first, 24 characters each: `A` all, `M` medium, `H` high, `.` closed. */
export function describeSchedule(s: Schedule): string[] {
  return DAYS.map((_, d) =>
    s.cells
      .slice(d * 24, d * 24 + 24)
      .map((c) => CELL_LETTERS[c])
      .join(''),
  );
}

/** describeSchedule with an hour header and day labels, for `cascade route show`. */
export function scheduleTable(s: Schedule): string[] {
  const rows = describeSchedule(s);
  return ['     00    06    12    18', ...rows.map((r, d) => `${DAYS[d]}  ${r}`)];
}
