import { fail } from './errors.js';
import { SITE_CODE } from './site.js';

/**
 * Distribution points and the targets of a distribution. A site's local DP is named after the
 * site (its three-character code); any other DP has a name of 4 to 64 characters, so the two
 * can never be confused. Names are unique in the whole hierarchy (the central site checks).
 */
export const DP_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{3,63}$/;

/** A target of a distribution: a DP by name, or a site code (that site's local DP). */
export const TARGET_NAME = /^(?:[A-Z0-9]{3}|[A-Za-z0-9][A-Za-z0-9._-]{3,63})$/;

export const GROUP_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function parseDpName(name: string): string {
  if (!DP_NAME.test(name))
    throw fail('usage', `"${name}" is not a DP name: use 4 to 64 letters, digits, ".", "_" or "-", starting with a letter or digit`);
  return name;
}

export function parseGroupName(name: string): string {
  if (!GROUP_NAME.test(name))
    throw fail('usage', `"${name}" is not a DP group name: use up to 64 letters, digits, ".", "_" or "-", starting with a letter or digit`);
  return name;
}

export const isSiteCode = (name: string): boolean => SITE_CODE.test(name);

/** A target name as typed: a three-character site code in any case, or a DP name as it is. */
export const normaliseTarget = (name: string): string => (name.length === 3 ? name.toUpperCase() : name);

export type TargetSpec = { kind: 'site'; code: string } | { kind: 'dp'; name: string } | { kind: 'group'; name: string };

/** `site:CODE` (every DP of that site), `dp:NAME` (one DP; a site's code names its local DP) or `group:NAME`. */
export function parseTargetSpec(spec: string): TargetSpec {
  const m = /^(site|dp|group):(.+)$/.exec(spec);
  if (!m) throw fail('bad_request', `target "${spec}" is not site:CODE, dp:NAME or group:NAME`);
  const [, kind, value] = m as unknown as [string, string, string];
  if (kind === 'site') {
    const code = value.toUpperCase();
    if (!SITE_CODE.test(code)) throw fail('bad_request', `"${value}" in "${spec}" is not a site code (three letters or digits)`);
    return { kind: 'site', code };
  }
  if (kind === 'dp') {
    if (value.length === 3 && SITE_CODE.test(value.toUpperCase())) return { kind: 'dp', name: normaliseTarget(value) };
    if (!DP_NAME.test(value)) throw fail('bad_request', `"${value}" in "${spec}" is not a DP name`);
    return { kind: 'dp', name: value };
  }
  if (!GROUP_NAME.test(value)) throw fail('bad_request', `"${value}" in "${spec}" is not a DP group name`);
  return { kind: 'group', name: value };
}
