import { type Trial, VersionsFile, type VersionsState } from '../lib/versions.js';

/**
 * Which agent version runs on this client (docs/agent.md#upgrades). `versions.json` in the data
 * folder names it; each upgraded version lives in `versions/V/cascade-agent.cjs`. `null` is the
 * launcher's own code: the file the service starts, which never changes by itself.
 */
export interface UpgradeRecord extends Trial {
  advertisement: string;
  packageId: string;
  packageVersion: number;
  graceSeconds: number;
  since: string;
}

export interface AgentVersionsFile extends VersionsState<UpgradeRecord> {
  /** The last confirmed upgrade: programs wait until `graceUntil`. */
  upgraded: (UpgradeRecord & { at: string; graceUntil: string }) | null;
}

export const VERSIONS_FILE = 'versions.json';
export const VERSIONS_DIR = 'versions';

export const agentVersions = (dir: string) =>
  new VersionsFile<UpgradeRecord, AgentVersionsFile>(dir, VERSIONS_FILE, VERSIONS_DIR, {
    current: null,
    previous: null,
    trying: null,
    upgraded: null,
    rolledBack: null,
  });

export const versionDir = (dir: string, version: string): string => agentVersions(dir).versionDir(version);
export const readVersions = (dir: string): AgentVersionsFile => agentVersions(dir).read();
export const writeVersions = (dir: string, v: AgentVersionsFile): void => agentVersions(dir).write(v);
/** The version that failed goes back to the one before; the agent that takes over reports why. */
export const rollBack = (dir: string, reason: string): AgentVersionsFile => agentVersions(dir).rollBack(reason);
