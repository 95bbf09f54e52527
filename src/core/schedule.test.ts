import { describe, expect, it } from 'vitest';
import { CascadeError } from './errors.js';
import type { Priority } from './package.js';
import {
  ALWAYS_OPEN,
  allows,
  CELLS,
  type Cell,
  cellAt,
  describeSchedule,
  etaSeconds,
  formatSchedule,
  isOpen,
  localDayHour,
  nextClosing,
  nextOpening,
  openSecondsBetween,
  parseSchedule,
  rateAt,
  type Schedule,
  sameSchedule,
  scheduleFromGrid,
  scheduleTable,
  scheduleToGrid,
  scheduleWarnings,
} from './schedule.js';

const D = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
/** Cell of a schedule by day name and hour. */
const at = (s: Schedule, day: string, hour: number): Cell => s.cells[D.indexOf(day) * 24 + hour]!;
const iso = (d: Date | null): string | null => (d === null ? null : d.toISOString());
const utc = (s: string): Date => new Date(s);
const HOUR = 3600;

function usageError(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(CascadeError);
    expect((e as CascadeError).code).toBe('usage');
    return (e as CascadeError).message;
  }
  throw new Error('expected a usage error');
}

/** Deterministic PRNG (mulberry32) so property tests are repeatable. */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random grids: some noisy, most built of runs like real schedules. */
function randomGrid(r: () => number, timeZone = 'UTC'): Schedule {
  const cells: Cell[] = [];
  const noisy = r() < 0.2;
  let current: Cell = CELLS[Math.floor(r() * 4)]!;
  for (let i = 0; i < 168; i++) {
    if (noisy || r() < 0.15) current = CELLS[Math.floor(r() * 4)]!;
    cells.push(current);
  }
  return { timeZone, cells };
}

describe('allows', () => {
  const table: [Cell, Priority, boolean][] = [
    ['all', 'high', true],
    ['all', 'medium', true],
    ['all', 'low', true],
    ['medium', 'high', true],
    ['medium', 'medium', true],
    ['medium', 'low', false],
    ['high', 'high', true],
    ['high', 'medium', false],
    ['high', 'low', false],
    ['closed', 'high', false],
    ['closed', 'medium', false],
    ['closed', 'low', false],
  ];
  it.each(table)('%s admits %s: %s', (cell, priority, expected) => {
    expect(allows(cell, priority)).toBe(expected);
  });
});

describe('ALWAYS_OPEN', () => {
  it('is 168 `all` cells in UTC and cannot be changed', () => {
    expect(ALWAYS_OPEN.timeZone).toBe('UTC');
    expect(ALWAYS_OPEN.cells).toHaveLength(168);
    expect(new Set(ALWAYS_OPEN.cells)).toEqual(new Set(['all']));
    expect(() => {
      ALWAYS_OPEN.cells[0] = 'closed';
    }).toThrow();
    expect(sameSchedule(parseSchedule('all'), ALWAYS_OPEN)).toBe(true);
  });
});

describe('parseSchedule', () => {
  it('reads the single-value schedules', () => {
    expect(new Set(parseSchedule('all').cells)).toEqual(new Set(['all']));
    expect(new Set(parseSchedule('closed').cells)).toEqual(new Set(['closed']));
    expect(new Set(parseSchedule('high').cells)).toEqual(new Set(['high']));
    expect(parseSchedule('medium').cells).toHaveLength(168);
  });

  it('applies day and hour ranges, the end hour excluded, over a default of all', () => {
    const s = parseSchedule('mon-fri 08-18 high; mon-fri 18-08 all; sat-sun all');
    expect(at(s, 'mon', 7)).toBe('all');
    expect(at(s, 'mon', 8)).toBe('high');
    expect(at(s, 'fri', 17)).toBe('high');
    expect(at(s, 'fri', 18)).toBe('all');
    expect(at(s, 'sat', 10)).toBe('all');
    const partial = parseSchedule('wed 08-18 closed');
    expect(at(partial, 'wed', 12)).toBe('closed');
    expect(at(partial, 'tue', 12)).toBe('all');
    expect(at(partial, 'wed', 18)).toBe('all');
    expect(partial.cells.filter((c) => c === 'closed')).toHaveLength(10);
  });

  it('lets later rules override earlier ones', () => {
    const open = parseSchedule('closed; mon-fri 09-17 all');
    expect(at(open, 'mon', 9)).toBe('all');
    expect(at(open, 'mon', 8)).toBe('closed');
    const shut = parseSchedule('mon-fri 09-17 all; closed');
    expect(new Set(shut.cells)).toEqual(new Set(['closed']));
    const layered = parseSchedule('daily 08-20 medium; wed 12-14 high');
    expect(at(layered, 'wed', 11)).toBe('medium');
    expect(at(layered, 'wed', 12)).toBe('high');
    expect(at(layered, 'wed', 13)).toBe('high');
    expect(at(layered, 'wed', 14)).toBe('medium');
    expect(at(layered, 'thu', 12)).toBe('medium');
    expect(at(layered, 'thu', 7)).toBe('all');
  });

  it('wraps an hour range past midnight into the next day', () => {
    const s = parseSchedule('closed; fri 18-08 all');
    expect(at(s, 'fri', 17)).toBe('closed');
    for (let h = 18; h < 24; h++) expect(at(s, 'fri', h)).toBe('all');
    for (let h = 0; h < 8; h++) expect(at(s, 'sat', h)).toBe('all');
    expect(at(s, 'sat', 8)).toBe('closed');
    expect(at(s, 'fri', 0)).toBe('closed');
    expect(s.cells.filter((c) => c === 'all')).toHaveLength(14);
  });

  it('wraps Sunday night into Monday morning', () => {
    const s = parseSchedule('closed; sun 22-06 high');
    expect(at(s, 'sun', 21)).toBe('closed');
    expect(at(s, 'sun', 22)).toBe('high');
    expect(at(s, 'sun', 23)).toBe('high');
    expect(at(s, 'mon', 0)).toBe('high');
    expect(at(s, 'mon', 5)).toBe('high');
    expect(at(s, 'mon', 6)).toBe('closed');
    expect(at(s, 'sat', 23)).toBe('closed');
  });

  it('reads day lists, wrapping day ranges, daily, *, full names and any case', () => {
    const list = parseSchedule('closed; mon,wed,fri 10-11 all');
    expect(D.map((d) => at(list, d, 10))).toEqual(['all', 'closed', 'all', 'closed', 'all', 'closed', 'closed']);
    const wrap = parseSchedule('closed; fri-mon 12-13 all');
    expect(D.map((d) => at(wrap, d, 12))).toEqual(['all', 'closed', 'closed', 'closed', 'all', 'all', 'all']);
    const mixed = parseSchedule('closed; mon-tue,sun all');
    expect(D.map((d) => at(mixed, d, 3))).toEqual(['all', 'all', 'closed', 'closed', 'closed', 'closed', 'all']);
    expect(parseSchedule('closed; daily 10-11 all').cells).toEqual(parseSchedule('closed; * 10-11 all').cells);
    expect(parseSchedule('closed; 10-11 all').cells).toEqual(parseSchedule('closed; daily 10-11 all').cells);
    expect(parseSchedule('Saturday-Sunday CLOSED').cells).toEqual(parseSchedule('sat-sun closed').cells);
    expect(parseSchedule('MON-FRI 08-18 HIGH').cells).toEqual(parseSchedule('mon-fri 08-18 high').cells);
  });

  it('accepts 8-18, 08:00-18:00, 18-00, 00-24, new lines and a trailing ";"', () => {
    const ref = parseSchedule('mon-fri 08-18 high').cells;
    expect(parseSchedule('mon-fri 8-18 high').cells).toEqual(ref);
    expect(parseSchedule('mon-fri 08:00-18:00 high').cells).toEqual(ref);
    expect(parseSchedule('  mon-fri   08-18  high ;').cells).toEqual(ref);
    expect(parseSchedule('closed\nmon 09-10 all\n').cells).toEqual(parseSchedule('closed; mon 09-10 all').cells);
    expect(parseSchedule('mon 18-00 closed').cells).toEqual(parseSchedule('mon 18-24 closed').cells);
    expect(parseSchedule('mon 00-24 closed').cells).toEqual(parseSchedule('mon closed').cells);
  });

  it('keeps the time zone, UTC by default, with canonical capitals', () => {
    expect(parseSchedule('all').timeZone).toBe('UTC');
    expect(parseSchedule('all', 'Europe/Berlin').timeZone).toBe('Europe/Berlin');
    expect(parseSchedule('all', 'europe/berlin').timeZone).toBe('Europe/Berlin');
    expect(usageError(() => parseSchedule('all', 'Mars/Olympus'))).toBe(
      'unknown time zone "Mars/Olympus" (use an IANA name such as Europe/Berlin, America/New_York or UTC)',
    );
    expect(usageError(() => parseSchedule('all', ''))).toMatch(/unknown time zone ""/);
  });

  const malformed: [string, string][] = [
    ['', 'empty schedule: give rules such as "all" or "mon-fri 08-18 high; sat-sun all"'],
    [' ; ;', 'empty schedule: give rules such as "all" or "mon-fri 08-18 high; sat-sun all"'],
    ['mon-fry 08-18 high', 'schedule rule "mon-fry 08-18 high": unknown day "fry" (use mon, tue, wed, thu, fri, sat, sun, daily)'],
    ['all; sat-sn closed', 'schedule rule "sat-sn closed": unknown day "sn" (use mon, tue, wed, thu, fri, sat, sun, daily)'],
    ['mon-fri 08-18', 'schedule rule "mon-fri 08-18": missing the value at the end (use all, medium, high or closed)'],
    ['mon-fri', 'schedule rule "mon-fri": missing the value at the end (use all, medium, high or closed)'],
    ['mon-fri 08-18 hgh', 'schedule rule "mon-fri 08-18 hgh": unknown value "hgh" (use all, medium, high or closed)'],
    ['open', 'schedule rule "open": unknown value "open" (use all, medium, high or closed)'],
    ['mon-fri low', 'schedule rule "mon-fri low": unknown value "low" (use all: it admits every priority, low included)'],
    [
      'mon-fri 08-18 high all',
      'schedule rule "mon-fri 08-18 high all": two values, "high" and "all": a rule has one value (separate rules with ";")',
    ],
    [
      'mon-fri high 08-18',
      'schedule rule "mon-fri high 08-18": "08-18" after the value "high": the value ends a rule (separate rules with ";")',
    ],
    [
      '08-18 mon-fri high',
      'schedule rule "08-18 mon-fri high": days "mon-fri" after the hours "08-18": put the days first, as in "mon-fri 08-18 high"',
    ],
    ['mon fri high', 'schedule rule "mon fri high": two day lists, "mon" and "fri": join days with "," as in mon,fri'],
    ['08-10 12-14 high', 'schedule rule "08-10 12-14 high": two hour ranges, "08-10" and "12-14": use one rule for each'],
    [
      'mon - fri 08-18 high',
      'schedule rule "mon - fri 08-18 high": too many parts: a rule is [days] [hours] value, as in "mon-fri 08-18 high" (no spaces inside a day list or hour range)',
    ],
    ['mon-fri 8 high', 'schedule rule "mon-fri 8 high": hour range "8" needs a start and an end, as in 08-18'],
    ['mon-fri 08-25 high', 'schedule rule "mon-fri 08-25 high": hour range "08-25" ends at 25: a range ends at 00 to 24'],
    ['mon-fri 24-06 high', 'schedule rule "mon-fri 24-06 high": hour range "24-06" starts at 24: a range starts at 00 to 23'],
    [
      'mon-fri 08:30-18 high',
      'schedule rule "mon-fri 08:30-18 high": hour range "08:30-18" has minutes, but schedule cells are whole hours (use HH-HH such as 08-18)',
    ],
    ['mon-fri 08-08 high', 'schedule rule "mon-fri 08-08 high": hour range "08-08" is empty (use 00-24 for the whole day)'],
    [
      'mon-fri 8am-6pm high',
      'schedule rule "mon-fri 8am-6pm high": bad hour range "8am-6pm" (use HH-HH such as 08-18; the end hour is not included)',
    ],
    ['mon,,fri high', 'schedule rule "mon,,fri high": empty day in "mon,,fri" (separate days with one ",", as in mon,wed,fri)'],
    ['mon-tue-wed high', 'schedule rule "mon-tue-wed high": bad day range "mon-tue-wed" (write it as first-last, as in mon-fri)'],
    ['mon- high', 'schedule rule "mon- high": bad day range "mon-" (write it as first-last, as in mon-fri)'],
    ['daily-fri high', 'schedule rule "daily-fri high": "daily" cannot be part of a day range in "daily-fri" (write it alone)'],
  ];
  it.each(malformed)('rejects %j with one clear message', (spec, message) => {
    expect(usageError(() => parseSchedule(spec))).toBe(message);
  });
});

describe('formatSchedule', () => {
  const canonical: [string, string][] = [
    ['all', 'all'],
    ['closed', 'closed'],
    ['high', 'high'],
    ['mon-fri 08-18 high; mon-fri 18-08 all; sat-sun all', 'mon-fri 08-18 high'],
    ['closed; mon-fri 20-06 all', 'closed; mon-fri 20-06 all'],
    ['daily 22-06 closed', 'daily 22-06 closed'],
    ['sun 22-06 high', 'sun 22-06 high'],
    ['22-24 closed; 00-06 closed', 'daily 22-06 closed'],
    ['mon,wed,fri 10-11 medium', 'mon,wed,fri 10-11 medium'],
    ['sat-sun closed; mon-fri 08-18 high', 'mon-fri 08-18 high; sat-sun closed'],
    ['MON-FRI 8:00-18:00 HIGH', 'mon-fri 08-18 high'],
    ['fri-mon 12-13 medium; 00-24 all; wed 23-01 closed', 'wed 23-01 closed'],
  ];
  it.each(canonical)('prints %j as %j', (spec, text) => {
    expect(formatSchedule(parseSchedule(spec))).toBe(text);
  });

  it('round-trips random grids: parse(format(s)) has the same cells, and formatting is stable', () => {
    const r = rng(20260329);
    for (let i = 0; i < 400; i++) {
      const s = randomGrid(r, 'Europe/Berlin');
      const text = formatSchedule(s);
      const back = parseSchedule(text, 'Europe/Berlin');
      if (!sameSchedule(back, s)) throw new Error(`grid ${i} did not round-trip through "${text}"`);
      expect(formatSchedule(back)).toBe(text);
    }
  });
});

describe('scheduleFromGrid / scheduleToGrid', () => {
  it('accepts the JSON form and gives it back', () => {
    const s = parseSchedule('closed; mon-fri 20-06 all', 'America/New_York');
    const json = JSON.parse(JSON.stringify(scheduleToGrid(s))) as unknown;
    expect(sameSchedule(scheduleFromGrid(json), s)).toBe(true);
  });

  const bad: [string, unknown, string][] = [
    ['not an object', [1, 2], 'a schedule grid is an object { timeZone, cells } with 168 cells'],
    ['no time zone', { cells: ALWAYS_OPEN.cells }, 'schedule grid: timeZone must be a string such as "Europe/Berlin" or "UTC"'],
    [
      'a bad time zone',
      { timeZone: 'Europe/Nowhere', cells: ALWAYS_OPEN.cells },
      'unknown time zone "Europe/Nowhere" (use an IANA name such as Europe/Berlin, America/New_York or UTC)',
    ],
    [
      '167 cells',
      { timeZone: 'UTC', cells: ALWAYS_OPEN.cells.slice(1) },
      'schedule grid: cells must be an array of 168 values (7 days × 24 hours, Monday 00:00 first), got 167 entries',
    ],
    [
      'cells that are not an array',
      { timeZone: 'UTC', cells: 'all' },
      'schedule grid: cells must be an array of 168 values (7 days × 24 hours, Monday 00:00 first), got string',
    ],
    [
      'a bad cell',
      { timeZone: 'UTC', cells: ALWAYS_OPEN.cells.map((c, i) => (i === 33 ? 'low' : c)) },
      'schedule grid: cells[33] (tue 09:00) is "low"; use all, medium, high or closed',
    ],
  ];
  it.each(bad)('rejects %s', (_, value, message) => {
    try {
      scheduleFromGrid(value);
      throw new Error('expected an error');
    } catch (e) {
      expect(e).toBeInstanceOf(CascadeError);
      expect((e as CascadeError).code).toBe('bad_request');
      expect((e as CascadeError).message).toBe(message);
    }
  });

  it('uses the error code it is given', () => {
    expect(() => scheduleFromGrid(null, 'invalid_config')).toThrow(expect.objectContaining({ code: 'invalid_config' }));
  });
});

describe('cellAt', () => {
  it('uses Monday as day 0 (UTC)', () => {
    const s = parseSchedule('closed; mon 09-10 all; sun 23-24 high');
    expect(cellAt(s, utc('2026-01-05T09:30:00Z'))).toBe('all'); // a Monday
    expect(cellAt(s, utc('2026-01-05T10:00:00Z'))).toBe('closed');
    expect(cellAt(s, utc('2026-01-05T08:59:59.999Z'))).toBe('closed');
    expect(cellAt(s, utc('2026-01-11T23:59:00Z'))).toBe('high'); // a Sunday
    expect(cellAt(s, utc('2026-01-12T00:00:00Z'))).toBe('closed');
  });

  it('follows local time in Europe/Berlin across both DST changes of 2026', () => {
    // Spring: 2026-03-29 01:00Z, 02:00 CET becomes 03:00 CEST.
    expect(localDayHour('Europe/Berlin', utc('2026-03-28T23:30:00Z'))).toEqual({ day: 6, hour: 0 });
    expect(localDayHour('Europe/Berlin', utc('2026-03-29T00:59:59Z'))).toEqual({ day: 6, hour: 1 });
    expect(localDayHour('Europe/Berlin', utc('2026-03-29T01:00:00Z'))).toEqual({ day: 6, hour: 3 });
    // Autumn: 2026-10-25 01:00Z, 03:00 CEST becomes 02:00 CET: 02:xx happens twice.
    expect(localDayHour('Europe/Berlin', utc('2026-10-25T00:30:00Z'))).toEqual({ day: 6, hour: 2 });
    expect(localDayHour('Europe/Berlin', utc('2026-10-25T01:30:00Z'))).toEqual({ day: 6, hour: 2 });
    expect(localDayHour('Europe/Berlin', utc('2026-10-25T02:00:00Z'))).toEqual({ day: 6, hour: 3 });

    const s = parseSchedule('closed; sun 02-03 high; sun 03-04 medium', 'Europe/Berlin');
    expect(cellAt(s, utc('2026-03-29T00:59:00Z'))).toBe('closed');
    expect(cellAt(s, utc('2026-03-29T01:00:00Z'))).toBe('medium');
    expect(cellAt(s, utc('2026-10-24T23:59:00Z'))).toBe('closed');
    expect(cellAt(s, utc('2026-10-25T00:00:00Z'))).toBe('high');
    expect(cellAt(s, utc('2026-10-25T01:30:00Z'))).toBe('high');
    expect(cellAt(s, utc('2026-10-25T02:00:00Z'))).toBe('medium');
    // The same local hour in winter and summer is a different UTC hour.
    const office = parseSchedule('closed; mon 09-10 all', 'Europe/Berlin');
    expect(cellAt(office, utc('2026-01-05T08:00:00Z'))).toBe('all');
    expect(cellAt(office, utc('2026-07-06T07:00:00Z'))).toBe('all');
    expect(cellAt(office, utc('2026-07-06T08:00:00Z'))).toBe('closed');
  });

  it('follows local time in America/New_York across both DST changes of 2026', () => {
    // Spring: 2026-03-08 07:00Z, 02:00 EST becomes 03:00 EDT; no 02:xx that day.
    const skipped = parseSchedule('closed; sun 02-03 all', 'America/New_York');
    expect(cellAt(skipped, utc('2026-03-08T06:59:00Z'))).toBe('closed');
    expect(cellAt(skipped, utc('2026-03-08T07:00:00Z'))).toBe('closed');
    expect(localDayHour('America/New_York', utc('2026-03-08T07:00:00Z'))).toEqual({ day: 6, hour: 3 });
    expect(cellAt(skipped, utc('2026-03-15T06:30:00Z'))).toBe('all'); // 02:30 EDT a week later
    // Autumn: 2026-11-01 06:00Z, 02:00 EDT becomes 01:00 EST: 01:xx happens twice.
    const doubled = parseSchedule('closed; sun 01-02 all', 'America/New_York');
    expect(cellAt(doubled, utc('2026-11-01T04:59:00Z'))).toBe('closed');
    expect(cellAt(doubled, utc('2026-11-01T05:30:00Z'))).toBe('all');
    expect(cellAt(doubled, utc('2026-11-01T06:30:00Z'))).toBe('all');
    expect(cellAt(doubled, utc('2026-11-01T07:00:00Z'))).toBe('closed');
    // Local Monday starts on UTC Monday 05:00 in winter.
    const monday = parseSchedule('closed; mon all', 'America/New_York');
    expect(cellAt(monday, utc('2026-01-05T04:59:00Z'))).toBe('closed');
    expect(cellAt(monday, utc('2026-01-05T05:00:00Z'))).toBe('all');
    expect(isOpen(monday, 'low', utc('2026-01-06T04:59:00Z'))).toBe(true);
    expect(isOpen(monday, 'high', utc('2026-01-06T05:00:00Z'))).toBe(false);
  });
});

describe('nextOpening / nextClosing', () => {
  // 2026-01-05 is a Monday.
  const nights = parseSchedule('closed; mon-fri 20-06 all');

  it('finds the next window, or now when open', () => {
    expect(iso(nextOpening(nights, 'low', utc('2026-01-05T12:00:00Z')))).toBe('2026-01-05T20:00:00.000Z');
    expect(iso(nextOpening(nights, 'low', utc('2026-01-05T21:15:00Z')))).toBe('2026-01-05T21:15:00.000Z');
    expect(iso(nextOpening(nights, 'low', utc('2026-01-10T12:00:00Z')))).toBe('2026-01-12T20:00:00.000Z'); // Saturday → Monday
  });

  it('finds where a window spanning midnight ends, or now when closed', () => {
    expect(iso(nextClosing(nights, 'low', utc('2026-01-05T21:15:00Z')))).toBe('2026-01-06T06:00:00.000Z');
    expect(iso(nextClosing(nights, 'low', utc('2026-01-09T23:00:00Z')))).toBe('2026-01-10T06:00:00.000Z'); // Friday night
    expect(iso(nextClosing(nights, 'low', utc('2026-01-05T12:00:00Z')))).toBe('2026-01-05T12:00:00.000Z');
    const weekend = parseSchedule('closed; sat-sun all');
    expect(iso(nextClosing(weekend, 'medium', utc('2026-01-10T10:00:00Z')))).toBe('2026-01-12T00:00:00.000Z');
  });

  it('crosses the week end, Sunday night to Monday morning', () => {
    const s = parseSchedule('closed; sun 22-06 all');
    expect(iso(nextClosing(s, 'low', utc('2026-01-11T23:00:00Z')))).toBe('2026-01-12T06:00:00.000Z');
    expect(iso(nextOpening(s, 'low', utc('2026-01-12T07:00:00Z')))).toBe('2026-01-18T22:00:00.000Z');
    expect(iso(nextOpening(s, 'low', utc('2026-01-12T05:59:59Z')))).toBe('2026-01-12T05:59:59.000Z');
  });

  it('honours priorities', () => {
    const s = parseSchedule('mon-fri 08-18 high');
    const mon10 = utc('2026-01-05T10:00:00Z');
    expect(iso(nextOpening(s, 'high', mon10))).toBe('2026-01-05T10:00:00.000Z');
    expect(iso(nextOpening(s, 'medium', mon10))).toBe('2026-01-05T18:00:00.000Z');
    expect(iso(nextOpening(s, 'low', mon10))).toBe('2026-01-05T18:00:00.000Z');
    expect(iso(nextClosing(s, 'low', utc('2026-01-05T07:00:00Z')))).toBe('2026-01-05T08:00:00.000Z');
    expect(nextClosing(s, 'high', mon10)).toBeNull();
  });

  it('says never', () => {
    const t = utc('2026-01-05T10:00:00Z');
    expect(nextOpening(parseSchedule('closed'), 'high', t)).toBeNull();
    expect(nextOpening(parseSchedule('high'), 'low', t)).toBeNull();
    expect(nextOpening(parseSchedule('medium'), 'low', t)).toBeNull();
    expect(iso(nextOpening(parseSchedule('high'), 'high', t))).toBe(t.toISOString());
    expect(nextClosing(ALWAYS_OPEN, 'low', t)).toBeNull();
    expect(nextClosing(parseSchedule('medium'), 'medium', t)).toBeNull();
    expect(iso(nextClosing(parseSchedule('medium'), 'low', t))).toBe(t.toISOString());
  });

  it('is exact across the DST changes in Europe/Berlin', () => {
    const nightly = parseSchedule('daily 08-18 closed', 'Europe/Berlin');
    expect(iso(nextOpening(nightly, 'low', utc('2026-03-28T08:00:00Z')))).toBe('2026-03-28T17:00:00.000Z'); // 18:00 CET
    expect(iso(nextOpening(nightly, 'low', utc('2026-03-29T07:00:00Z')))).toBe('2026-03-29T16:00:00.000Z'); // 18:00 CEST
    // The night of the change is an hour shorter: 18:00 CET to 08:00 CEST.
    expect(iso(nextClosing(nightly, 'low', utc('2026-03-28T17:00:00Z')))).toBe('2026-03-29T06:00:00.000Z');
    expect(iso(nextClosing(nightly, 'low', utc('2026-10-24T16:00:00Z')))).toBe('2026-10-25T07:00:00.000Z');

    const early = parseSchedule('closed; sun 03-04 all', 'Europe/Berlin');
    expect(iso(nextOpening(early, 'low', utc('2026-03-28T12:00:00Z')))).toBe('2026-03-29T01:00:00.000Z');
    expect(iso(nextClosing(early, 'low', utc('2026-03-29T01:00:00Z')))).toBe('2026-03-29T02:00:00.000Z');

    // Sunday 02:xx does not exist on 2026-03-29: the next one is a week later.
    const two = parseSchedule('closed; sun 02-03 all', 'Europe/Berlin');
    expect(iso(nextOpening(two, 'low', utc('2026-03-22T03:00:00Z')))).toBe('2026-04-05T00:00:00.000Z');
    // On 2026-10-25 it lasts two hours.
    expect(iso(nextOpening(two, 'low', utc('2026-10-20T00:00:00Z')))).toBe('2026-10-25T00:00:00.000Z');
    expect(iso(nextClosing(two, 'low', utc('2026-10-25T00:30:00Z')))).toBe('2026-10-25T02:00:00.000Z');
  });

  it('is exact in America/New_York and in zones with half-hour offsets', () => {
    const doubled = parseSchedule('closed; sun 01-02 all', 'America/New_York');
    expect(iso(nextOpening(doubled, 'low', utc('2026-10-30T00:00:00Z')))).toBe('2026-11-01T05:00:00.000Z');
    expect(iso(nextClosing(doubled, 'low', utc('2026-11-01T05:10:00Z')))).toBe('2026-11-01T07:00:00.000Z');
    const kolkata = parseSchedule('closed; mon 09-10 all', 'Asia/Kolkata'); // UTC+05:30
    expect(iso(nextOpening(kolkata, 'low', utc('2026-01-05T00:00:00Z')))).toBe('2026-01-05T03:30:00.000Z');
    expect(iso(nextClosing(kolkata, 'low', utc('2026-01-05T03:30:00Z')))).toBe('2026-01-05T04:30:00.000Z');
    const kathmandu = parseSchedule('closed; mon 09-10 all', 'Asia/Kathmandu'); // UTC+05:45
    expect(iso(nextOpening(kathmandu, 'low', utc('2026-01-05T00:00:00Z')))).toBe('2026-01-05T03:15:00.000Z');
  });

  it('is exact where DST moves the clock by half an hour (Australia/Lord_Howe)', () => {
    // 2026-10-03 15:30Z: Sunday 02:00 +10:30 becomes 02:30 +11, so 03:00 comes at 16:00Z.
    const three = parseSchedule('closed; sun 03-04 all', 'Australia/Lord_Howe');
    expect(iso(nextOpening(three, 'low', utc('2026-10-03T12:00:00Z')))).toBe('2026-10-03T16:00:00.000Z');
    expect(iso(nextClosing(three, 'low', utc('2026-10-03T16:00:00Z')))).toBe('2026-10-03T17:00:00.000Z');
    const two = parseSchedule('closed; sun 02-03 all', 'Australia/Lord_Howe');
    expect(openSecondsBetween(two, 'low', utc('2026-10-03T12:00:00Z'), utc('2026-10-03T18:00:00Z'))).toBe(1800);
    // 2026-04-04 15:00Z: Sunday 02:00 +11 becomes 01:30 +10:30, so 02:00 comes at 15:30Z.
    expect(iso(nextOpening(two, 'low', utc('2026-04-04T12:00:00Z')))).toBe('2026-04-04T15:30:00.000Z');
    expect(iso(nextClosing(two, 'low', utc('2026-04-04T15:30:00Z')))).toBe('2026-04-04T16:30:00.000Z');
  });

  it('agrees with cellAt on random schedules and instants', () => {
    const r = rng(7);
    const priorities: Priority[] = ['high', 'medium', 'low'];
    for (let i = 0; i < 60; i++) {
      const s = randomGrid(r, i % 2 === 0 ? 'Europe/Berlin' : 'America/New_York');
      const p = priorities[i % 3]!;
      const from = new Date(Date.UTC(2026, 0, 1) + Math.floor(r() * 365 * 86400) * 1000);
      const opening = nextOpening(s, p, from);
      if (opening === null) {
        expect(s.cells.some((c) => allows(c, p))).toBe(false);
        continue;
      }
      expect(isOpen(s, p, opening)).toBe(true);
      expect(opening.getTime()).toBeGreaterThanOrEqual(from.getTime());
      // Closed just before it (unless it is `from` itself).
      if (opening.getTime() > from.getTime()) expect(isOpen(s, p, new Date(opening.getTime() - 1000))).toBe(false);
      const closing = nextClosing(s, p, opening);
      if (closing === null) continue;
      expect(closing.getTime()).toBeGreaterThan(opening.getTime());
      expect(isOpen(s, p, closing)).toBe(false);
      expect(isOpen(s, p, new Date(closing.getTime() - 1000))).toBe(true);
    }
  });
});

describe('openSecondsBetween', () => {
  const nights = parseSchedule('daily 22-06 closed');

  it('counts only open time, to the second', () => {
    expect(openSecondsBetween(nights, 'low', utc('2026-01-05T00:00:00Z'), utc('2026-01-06T00:00:00Z'))).toBe(16 * HOUR);
    expect(openSecondsBetween(nights, 'low', utc('2026-01-05T21:00:00Z'), utc('2026-01-06T07:00:00Z'))).toBe(2 * HOUR);
    expect(openSecondsBetween(nights, 'low', utc('2026-01-05T21:30:00Z'), utc('2026-01-05T22:15:00Z'))).toBe(1800);
    expect(openSecondsBetween(nights, 'low', utc('2026-01-05T23:00:00Z'), utc('2026-01-06T05:00:00Z'))).toBe(0);
    expect(openSecondsBetween(nights, 'low', utc('2026-01-06T00:00:00Z'), utc('2026-01-05T00:00:00Z'))).toBe(0);
  });

  it('honours priorities', () => {
    const s = parseSchedule('mon-fri 08-18 high');
    const day = [utc('2026-01-05T00:00:00Z'), utc('2026-01-06T00:00:00Z')] as const;
    expect(openSecondsBetween(s, 'low', ...day)).toBe(14 * HOUR);
    expect(openSecondsBetween(s, 'medium', ...day)).toBe(14 * HOUR);
    expect(openSecondsBetween(s, 'high', ...day)).toBe(24 * HOUR);
    expect(openSecondsBetween(parseSchedule('closed'), 'high', ...day)).toBe(0);
  });

  it('counts the 23-hour and 25-hour Sundays in Europe/Berlin', () => {
    const sunday = parseSchedule('closed; sun all', 'Europe/Berlin');
    expect(openSecondsBetween(sunday, 'low', utc('2026-03-23T00:00:00Z'), utc('2026-03-30T12:00:00Z'))).toBe(23 * HOUR);
    expect(openSecondsBetween(sunday, 'low', utc('2026-10-19T00:00:00Z'), utc('2026-10-26T12:00:00Z'))).toBe(25 * HOUR);
    expect(openSecondsBetween(sunday, 'low', utc('2026-01-05T00:00:00Z'), utc('2026-01-12T12:00:00Z'))).toBe(24 * HOUR);
  });

  it('counts a whole year in a DST zone exactly', () => {
    // 8 open hours a day, local: 365 days; the skipped and doubled hours fall at 02:00, inside the closed night.
    const s = parseSchedule('closed; daily 09-17 all', 'Europe/Berlin');
    expect(openSecondsBetween(s, 'low', utc('2025-12-31T23:00:00Z'), utc('2026-12-31T23:00:00Z'))).toBe(365 * 8 * HOUR);
  });
});

describe('etaSeconds', () => {
  const MB = 1_000_000;
  const nights = parseSchedule('daily 22-06 closed');

  it('waits through a closed night', () => {
    // 4 hours of sending at 1 MB/s from Monday 20:00: 2 hours, closed 22-06, 2 more hours → Tuesday 08:00.
    expect(etaSeconds(nights, 'low', utc('2026-01-05T20:00:00Z'), 4 * HOUR * MB, MB)).toBe(12 * HOUR);
    // Starting inside the closed night: nothing moves until 06:00.
    expect(etaSeconds(nights, 'low', utc('2026-01-05T23:00:00Z'), HOUR * MB, MB)).toBe(8 * HOUR);
    // Fits before the night.
    expect(etaSeconds(nights, 'low', utc('2026-01-05T20:00:00Z'), 90 * 60 * MB, MB)).toBe(90 * 60);
  });

  it('is plain size / rate when always open, 0 for nothing, null when never possible', () => {
    expect(etaSeconds(ALWAYS_OPEN, 'low', utc('2026-01-05T20:00:00Z'), 1000, 100)).toBe(10);
    expect(etaSeconds(nights, 'low', utc('2026-01-05T23:00:00Z'), 0, MB)).toBe(0);
    expect(etaSeconds(parseSchedule('high'), 'low', utc('2026-01-05T20:00:00Z'), MB, MB)).toBeNull();
    expect(etaSeconds(parseSchedule('high'), 'high', utc('2026-01-05T20:00:00Z'), MB, MB)).toBe(1);
    expect(etaSeconds(nights, 'low', utc('2026-01-05T20:00:00Z'), MB, 0)).toBeNull();
  });

  it('matches openSecondsBetween, including long waits in a DST zone', () => {
    const weekly = parseSchedule('closed; mon 09-10 all', 'Europe/Berlin');
    const from = utc('2026-01-05T12:00:00Z');
    const eta = etaSeconds(weekly, 'low', from, 100 * HOUR * MB, MB)!;
    const end = new Date(from.getTime() + eta * 1000);
    expect(openSecondsBetween(weekly, 'low', from, end)).toBe(100 * HOUR);
    expect(localDayHour('Europe/Berlin', end)).toEqual({ day: 0, hour: 10 });
    expect(isOpen(weekly, 'low', new Date(end.getTime() - 1000))).toBe(true);

    const r = rng(99);
    for (let i = 0; i < 40; i++) {
      const s = randomGrid(r, 'America/New_York');
      const start = new Date(Date.UTC(2026, 0, 1) + Math.floor(r() * 365 * 86400) * 1000);
      const seconds = 1 + Math.floor(r() * 40 * HOUR);
      const e = etaSeconds(s, 'medium', start, seconds * 1000, 1000);
      if (e === null) {
        expect(s.cells.some((c) => allows(c, 'medium'))).toBe(false);
        continue;
      }
      expect(openSecondsBetween(s, 'medium', start, new Date(start.getTime() + e * 1000))).toBe(seconds);
    }
  });
});

describe('describeSchedule', () => {
  it('prints seven 24-character lines, Monday first', () => {
    const s = parseSchedule('mon-fri 08-18 high; sat-sun closed; wed 12-13 medium');
    const lines = describeSchedule(s);
    expect(lines).toHaveLength(7);
    for (const l of lines) expect(l).toHaveLength(24);
    expect(lines[0]).toBe('AAAAAAAAHHHHHHHHHHAAAAAA');
    expect(lines[2]).toBe('AAAAAAAAHHHHMHHHHHAAAAAA');
    expect(lines[5]).toBe('........................');
    expect(lines[6]).toBe('........................');
  });

  it('has a labelled form for route show', () => {
    const table = scheduleTable(parseSchedule('closed; sun 22-06 all'));
    expect(table).toEqual([
      '     00    06    12    18',
      'mon  AAAAAA..................',
      'tue  ........................',
      'wed  ........................',
      'thu  ........................',
      'fri  ........................',
      'sat  ........................',
      'sun  ......................AA',
    ]);
  });
});

describe('scheduleWarnings', () => {
  it('says when an hour range wraps past midnight, and how it was read', () => {
    expect(scheduleWarnings('mon-fri 9-5 high')).toEqual([
      'hour range "9-5" wraps past midnight: read as 09:00 to 05:00 the next day (for 09:00 to 17:00, write 09-17)',
    ]);
    expect(scheduleWarnings('daily 22-06 all; mon-fri 08-18 high')).toEqual([
      'hour range "22-06" wraps past midnight: read as 22:00 to 06:00 the next day',
    ]);
    expect(scheduleWarnings('mon-fri 08-18 high; sat-sun all')).toEqual([]);
    expect(scheduleWarnings('all')).toEqual([]);
  });
});

describe('rates by hour', () => {
  const MiB = 1 << 20;
  it('reads a rate after a rule’s value, and the route’s rate elsewhere', () => {
    const s = parseSchedule('all 4MiB/s; mon-fri 08-18 high 512KiB/s; sat-sun all unlimited', 'UTC');
    expect(s.rates?.[0]).toBe(4 * MiB); // Monday 00:00
    expect(s.rates?.[8]).toBe(512 * 1024); // Monday 08:00
    expect(s.cells[8]).toBe('high');
    expect(s.rates?.[5 * 24 + 12]).toBeNull(); // Saturday noon: unlimited, the route's own rate
    // Monday 10:00 UTC: the cell's 512 KiB/s caps a 2 MiB/s route; no route rate: the cell's.
    const monday10 = new Date('2026-11-30T10:00:00Z');
    expect(rateAt(s, 2 * MiB, monday10)).toBe(512 * 1024);
    expect(rateAt(s, null, monday10)).toBe(512 * 1024);
    expect(rateAt(s, 256 * 1024, monday10)).toBe(256 * 1024);
    expect(rateAt(s, 2 * MiB, new Date('2026-12-05T12:00:00Z'))).toBe(2 * MiB);
    expect(rateAt(parseSchedule('all'), 2 * MiB, monday10)).toBe(2 * MiB);
  });

  it('writes rates back into SPEC and the grid, and compares them', () => {
    const s = parseSchedule('mon-fri 08-18 high 512KiB/s', 'UTC');
    expect(formatSchedule(s)).toBe('mon-fri 08-18 high 512KiB/s');
    expect(sameSchedule(parseSchedule(formatSchedule(s), 'UTC'), s)).toBe(true);
    expect(sameSchedule(s, parseSchedule('mon-fri 08-18 high', 'UTC'))).toBe(false);
    expect(sameSchedule(scheduleFromGrid(scheduleToGrid(s)), s)).toBe(true);
    expect(scheduleToGrid(parseSchedule('all')).rates).toBeUndefined();
  });

  it('refuses what it cannot mean', () => {
    expect(() => parseSchedule('closed 1MiB/s')).toThrow(/a rate after "closed" means nothing/);
    expect(() => parseSchedule('mon-fri high fast')).toThrow(/"fast" after the value "high": the value ends a rule/);
    expect(() => scheduleFromGrid({ timeZone: 'UTC', cells: new Array(168).fill('all'), rates: [1] })).toThrow(
      /rates must be an array of 168/,
    );
  });
});
