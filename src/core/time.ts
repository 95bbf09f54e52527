import { fail } from './errors.js';

const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 7 * 86400 };

/** A duration as people write it: `90`, `30s`, `60m`, `2h`, `7d`, `1w` → seconds. */
export function parseDuration(v: string, what = 'duration'): number {
  const m = /^(\d+)\s*([smhdw]?)$/i.exec(v.trim());
  if (!m || Number(m[1]) <= 0) throw fail('usage', `${what} "${v}" is not a duration (e.g. 90s, 60m, 2h, 7d)`);
  return Number(m[1]) * (UNITS[(m[2] || 's').toLowerCase()] as number);
}

/** A point in time: `now`, `+2h` (from now), or ISO 8601 (`2026-12-24T18:00:00Z`) → ISO. */
export function parseWhen(v: string, now: Date, what = 'time'): string {
  const t = v.trim();
  if (t.toLowerCase() === 'now') return now.toISOString();
  if (t.startsWith('+')) return new Date(now.getTime() + parseDuration(t.slice(1), what) * 1000).toISOString();
  const ms = Date.parse(t);
  if (Number.isNaN(ms) || !/^\d{4}-\d{2}-\d{2}/.test(t))
    throw fail('usage', `${what} "${v}" is not a time (now, +2h, or 2026-12-24T18:00:00Z)`);
  return new Date(ms).toISOString();
}

/** A span of seconds as people read it: `45 s`, `12 min`, `3 h`, `2 d`. */
export function formatAge(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172_800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}
