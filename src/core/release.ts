/**
 * Releases of Cascade itself (docs/dp.md#releases): a site server started on a newer release
 * stores that release's code as a package of its own, upgrades its DPs one at a time and
 * offers the release to its child sites. Pure rules; the work is in src/site/release.ts.
 */
import { compareAgentVersions } from './client.js';

export const RELEASE_PACKAGE_NAME = 'Cascade release';
export const RELEASE_PROGRAM = 'Run release';
export const releaseCommand = (version: string): string => `cascade-release --to ${version}`;
export const releaseCommandVersion = (command: string): string | null => /^cascade-release --to (\S+)$/.exec(command)?.[1] ?? null;

/** Releases are numbered as agents are (semver); newer compares greater. */
export const compareReleases = compareAgentVersions;

/**
 * Where a DP or a child site stands in following its site's release:
 * - `waiting`: the release is on its way to the DP;
 * - `draining`: clients are steered to the other DPs before it restarts;
 * - `upgrading`: told to restart on the release; not back yet;
 * - `upgraded`: back, reporting the release;
 * - `rolled-back`: the release did not start there; it runs the one before, and the upgrade of
 *   the site's DPs is halted (`cascade dp upgrade` resumes it);
 * - `failed`: not back on either release within the deadline;
 * - `offered`: a child site was sent the release; its operator starts it there.
 */
export const UPGRADE_STATES = ['waiting', 'draining', 'upgrading', 'upgraded', 'rolled-back', 'failed', 'offered'] as const;
export type UpgradeState = (typeof UPGRADE_STATES)[number];

/** A state in which a DP is, or is about to be, out of service for its clients. */
export const isRestarting = (s: UpgradeState | undefined): boolean => s === 'draining' || s === 'upgrading';
