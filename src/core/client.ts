import { fail } from './errors.js';

/** Clients, collections and advertisements: the words and rules the site and the agent share. */

/** Client IDs: the site's code and six digits, `BER-000042`. */
export const CLIENT_ID = /^[A-Z0-9]{3}-\d{6}$/;
export const formatClientId = (site: string, n: number): string => `${site}-${String(n).padStart(6, '0')}`;

/** Advertisement IDs: the site that made it, `A` and five digits, `CEN-A00001`. */
export const ADVERTISEMENT_ID = /^[A-Z0-9]{3}-A\d{5}$/;
export const formatAdvertisementId = (site: string, n: number): string => `${site}-A${String(n).padStart(5, '0')}`;

export function parseAdvertisementId(s: string): string {
  const up = s.toUpperCase();
  if (!ADVERTISEMENT_ID.test(up)) throw fail('usage', `"${s}" is not an advertisement ID (e.g. CEN-A00001)`);
  return up;
}

export function parseClientId(s: string): string {
  const up = s.toUpperCase();
  if (!CLIENT_ID.test(up)) throw fail('usage', `"${s}" is not a client ID (e.g. BER-000042)`);
  return up;
}

/** Collection names: like DP group names, compared without regard to case. */
export const COLLECTION_NAME = /^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$/;

/**
 * Where an advertisement stands for one client. The site works out `scheduled` (not available
 * yet), `waiting-wave` (a rollout has not released the client's wave, or is paused),
 * `waiting-content` (no DP it may use holds the version), `available` and `expired`; the agent
 * reports the others. `waiting-slot`: the site caps downloads and none was free; the agent asks
 * again when told. `restart-pending`: the program succeeded and asked for a restart that has
 * not happened yet (it becomes `succeeded` once the agent sees the machine restarted).
 */
export const CLIENT_STATES = [
  'scheduled',
  'waiting-wave',
  'waiting-content',
  'available',
  'waiting-slot',
  'waiting-window',
  'downloading',
  'running',
  'restart-pending',
  'succeeded',
  'failed',
  'deferred-slow-link',
  'expired',
] as const;
export type ClientState = (typeof CLIENT_STATES)[number];

/** States the agent reports (the others the site works out). */
export const AGENT_STATES = [
  'waiting-slot',
  'waiting-window',
  'downloading',
  'running',
  'restart-pending',
  'succeeded',
  'failed',
  'deferred-slow-link',
] as const;
export type AgentState = (typeof AGENT_STATES)[number];

export const RERUN = ['never', 'always', 'if-failed'] as const;
export type Rerun = (typeof RERUN)[number];

export const SLOW_LINK = ['skip', 'download'] as const;
export type SlowLink = (typeof SLOW_LINK)[number];

/**
 * Exit codes of a program: 0 succeeded; 3010 and 1641 (Windows Installer's) succeeded and a
 * restart is needed; anything else failed.
 */
export const REBOOT_EXIT_CODES: readonly number[] = [3010, 1641];
export const exitSucceeded = (code: number | null): boolean => code === 0 || (code !== null && REBOOT_EXIT_CODES.includes(code));

/** A link below this many bytes per second is slow (as Configuration Manager's default of 1 Mbit/s). */
export const SLOW_LINK_BYTES_PER_SECOND = 128 * 1024;

/**
 * Whether an agent that last ran the advertisement with `last` result should run it again
 * (`null`: never ran; `revision`: a new version or an edited advertisement counts as new).
 */
export function shouldRun(rerun: Rerun, last: 'succeeded' | 'failed' | null): boolean {
  if (last === null) return true;
  if (rerun === 'always') return true;
  if (rerun === 'if-failed') return last === 'failed';
  return false;
}

/** Agent versions: `0.2.0`, `1.4.0-rc.1`; also the name of the folder an upgraded agent runs from. */
export const AGENT_VERSION = /^\d{1,6}\.\d{1,6}\.\d{1,6}(?:[-+][0-9A-Za-z.-]{1,32})?$/;

export function parseAgentVersion(s: string, what = '--version'): string {
  if (!AGENT_VERSION.test(s)) throw fail('usage', `${what} "${s}" is not an agent version (e.g. 0.2.0 or 1.0.0-rc.1)`);
  return s;
}

/** Orders agent versions: numerically by their three numbers, then a pre-release before its release. */
export function compareAgentVersions(a: string, b: string): number {
  const parts = (v: string) => {
    const m = /^(\d+)\.(\d+)\.(\d+)(?:-(.*))?/.exec(v);
    return m ? { n: [Number(m[1]), Number(m[2]), Number(m[3])], pre: m[4] ?? null } : { n: [0, 0, 0], pre: v };
  };
  const x = parts(a);
  const y = parts(b);
  for (let i = 0; i < 3; i++) if ((x.n[i] as number) !== (y.n[i] as number)) return (x.n[i] as number) - (y.n[i] as number);
  if (x.pre === y.pre) return 0;
  if (x.pre === null) return 1;
  if (y.pre === null) return -1;
  return x.pre.localeCompare(y.pre, undefined, { numeric: true });
}

/**
 * The agent as a package: one file, and one program whose command names the version the file
 * is. An agent never runs that command through a shell: it recognises it, and swaps itself
 * for the file (docs/agent.md#upgrades).
 */
export const AGENT_FILE = 'cascade-agent.cjs';
export const AGENT_PACKAGE_NAME = 'Cascade agent';
export const AGENT_PROGRAM = 'Upgrade agent';
export const agentUpgradeCommand = (version: string): string => `cascade-agent-upgrade --to ${version}`;
export const upgradeCommandVersion = (command: string): string | null => /^cascade-agent-upgrade --to (\S+)$/.exec(command)?.[1] ?? null;
/** The collection every agent-upgrade advertisement of a site goes to: every client. */
export const ALL_CLIENTS = 'All clients';
export const ALL_CLIENTS_RULE = 'id != ""';
