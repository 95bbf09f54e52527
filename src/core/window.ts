/**
 * Maintenance windows: when a collection's mandatory runs may start. A window is written in
 * the week-grid syntax of route schedules (docs/schedules.md) with two values, `open` and
 * `closed`, over a week that starts **closed**: `sat 22-04` (a rule without a value means open)
 * is Saturday 22:00 to Sunday 04:00, every week, in the window's time zone. A client in several
 * collections with windows may run in any of them (their union); a client in none has no limit.
 * Pure: the time zone arithmetic is the schedule's.
 */
import { fail } from './errors.js';
import { formatSchedule, HOURS_PER_WEEK, isOpen, nextClosing, nextOpening, parseSchedule, type Schedule } from './schedule.js';

/** Parses a window SPEC in `timeZone`; a usage error names the bad rule. */
export function parseWindow(spec: string, timeZone = 'UTC'): Schedule {
  const rules = spec
    .split(/[;\n]/)
    .map((r) => r.trim())
    .filter((r) => r !== '');
  if (rules.length === 0)
    throw fail('usage', 'empty maintenance window: give rules such as "sat 22-04" or "mon-fri 20-06 open; fri 20-06 closed"');
  const mapped = rules.map((r) => {
    const words = r.split(/\s+/);
    const last = (words[words.length - 1] as string).toLowerCase();
    if (['all', 'medium', 'high'].includes(last) || /\d+(?:[KMG]i?B|[kMG]bit)\/s$|^unlimited$/i.test(last))
      throw fail('usage', `maintenance window rule "${r}": a window is open or closed; "${last}" belongs to route schedules`);
    if (last === 'open') return [...words.slice(0, -1), 'all'].join(' ');
    if (last === 'closed') return r;
    return `${r} all`;
  });
  const s = parseSchedule(['closed', ...mapped].join('; '), timeZone);
  if (s.cells.every((c) => c === 'closed')) throw fail('usage', `maintenance window "${spec}" is never open`);
  return s;
}

/** The window in its canonical SPEC: `sat 22-04`, `daily 00-24` when always open. */
export function formatWindow(s: Schedule): string {
  if (s.cells.every((c) => c === 'all')) return 'daily 00-24';
  const canonical = formatSchedule(s);
  return canonical
    .split('; ')
    .filter((r) => r !== 'closed')
    .map((r) => r.replace(/ all$/, '').replace(/^all$/, 'daily 00-24'))
    .join('; ');
}

/** The longest time the window stays open at a stretch (s); Infinity when it never closes. */
export function longestOpenSeconds(s: Schedule): number {
  if (s.cells.every((c) => c !== 'closed')) return Number.POSITIVE_INFINITY;
  let best = 0;
  let run = 0;
  // Twice round the week, so a stretch across Sunday midnight is counted whole.
  for (let i = 0; i < 2 * HOURS_PER_WEEK; i++) {
    run = s.cells[i % HOURS_PER_WEEK] !== 'closed' ? run + 1 : 0;
    best = Math.max(best, Math.min(run, HOURS_PER_WEEK));
  }
  return best * 3600;
}

export interface WindowState {
  open: boolean;
  /** Open: when the union of the windows closes (null: not within two weeks). */
  closesAt: Date | null;
  /** Closed: when one of them opens next (null: never). */
  opensAt: Date | null;
}

/** Where `now` stands in the union of `windows` (at least one). */
export function windowState(windows: readonly Schedule[], now: Date): WindowState {
  const openAt = (t: Date) => windows.filter((w) => isOpen(w, 'low', t));
  if (openAt(now).length === 0) {
    const next = windows.map((w) => nextOpening(w, 'low', now)).filter((d): d is Date => d !== null);
    return { open: false, closesAt: null, opensAt: next.length ? new Date(Math.min(...next.map((d) => d.getTime()))) : null };
  }
  // Follow the union: while some window is open at t, jump to the latest closing of those open.
  let t = now;
  for (let i = 0; i < 16; i++) {
    const open = openAt(t);
    if (open.length === 0) return { open: true, closesAt: t, opensAt: null };
    const ends = open.map((w) => nextClosing(w, 'low', t));
    if (ends.some((e) => e === null)) return { open: true, closesAt: null, opensAt: null };
    t = new Date(Math.max(...(ends as Date[]).map((d) => d.getTime())));
  }
  return { open: true, closesAt: t, opensAt: null };
}
