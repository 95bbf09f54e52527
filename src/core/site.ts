import { fail } from './errors.js';

/** Site codes are three characters, letters and digits, unique in the hierarchy. */
export const SITE_CODE = /^[A-Z0-9]{3}$/;

export function parseSiteCode(code: string): string {
  const up = code.toUpperCase();
  if (!SITE_CODE.test(up)) throw fail('usage', `"${code}" is not a site code: use three letters or digits, e.g. CEN`);
  return up;
}
