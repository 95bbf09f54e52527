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
