import { fail } from './errors.js';

export const PRIORITIES = ['high', 'medium', 'low'] as const;
export type Priority = (typeof PRIORITIES)[number];

/** The sender's order: higher priority first. */
export const PRIORITY_ORDER: Record<Priority, number> = { high: 0, medium: 1, low: 2 };

/** Package IDs: the origin site's code and five digits, e.g. `CEN00001`. */
export const PACKAGE_ID = /^[A-Z0-9]{3}\d{5}$/;

export function formatPackageId(siteCode: string, n: number): string {
  if (n < 1 || n > 99_999) throw fail('conflict', `site ${siteCode} has used all 99,999 package numbers`);
  return `${siteCode}${String(n).padStart(5, '0')}`;
}

export function parsePackageId(id: string): string {
  const up = id.toUpperCase();
  if (!PACKAGE_ID.test(up)) throw fail('usage', `"${id}" is not a package ID (three-character site code and five digits, e.g. CEN00001)`);
  return up;
}

/** Program names are short identifiers; the command line is free text. */
export const PROGRAM_NAME = /^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$/;

/**
 * The file a program's command line runs, as a package-relative path (`setup.exe /q` →
 * `setup.exe`, `".\\bin\\install.cmd" -s` → `bin/install.cmd`); undefined for an absolute path,
 * which names a program of the client machine.
 */
export function programFile(command: string): string | undefined {
  const c = command.trim();
  const m = c.startsWith('"') ? /^"([^"]*)"/.exec(c) : /^(\S+)/.exec(c);
  let f = (m?.[1] ?? '').replace(/\\/g, '/');
  if (f === '' || f.startsWith('/') || /^[A-Za-z]:/.test(f) || f.startsWith('%') || f.startsWith('$')) return undefined;
  while (f.startsWith('./')) f = f.slice(2);
  return f;
}

/**
 * Programs whose command runs a file the package does not hold: one warning each (a command
 * may well run a program of the client machine, so it is not an error).
 */
export function programWarnings(programs: readonly { name: string; command: string }[], paths: Iterable<string>): string[] {
  const held = new Set([...paths].map((p) => p.toLowerCase()));
  const out: string[] = [];
  for (const p of programs) {
    const f = programFile(p.command);
    if (f !== undefined && !held.has(f.toLowerCase()))
      out.push(`program ${p.name} runs "${f}", which is not in the package (fine if it is a program of the client machine)`);
  }
  return out;
}
