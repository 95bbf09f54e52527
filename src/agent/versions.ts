import fs from 'node:fs';
import path from 'node:path';
import { writeFileDurableSync } from '../lib/durable.js';

/**
 * Which agent version runs on this client (docs/agent.md#upgrades). `versions.json` in the data
 * folder names it; each upgraded version lives in `versions/V/cascade-agent.cjs`. `null` is the
 * launcher's own code: the file the service starts, which never changes by itself.
 */
export interface UpgradeRecord {
  version: string;
  /** The version it replaces (null: the launcher's own). */
  from: string | null;
  advertisement: string;
  packageId: string;
  packageVersion: number;
  graceSeconds: number;
  since: string;
}

export interface AgentVersionsFile {
  current: string | null;
  previous: string | null;
  /** Installed and being tried: the launcher starts it; it becomes current at its first check-in. */
  trying: UpgradeRecord | null;
  /** The last confirmed upgrade: programs wait until `graceUntil`. */
  upgraded: (UpgradeRecord & { at: string; graceUntil: string }) | null;
  /** A version that failed to start, not yet reported by the agent that took over again. */
  rolledBack: (UpgradeRecord & { reason: string; at: string }) | null;
}

export const VERSIONS_FILE = 'versions.json';
export const VERSIONS_DIR = 'versions';

export const versionDir = (dir: string, version: string): string => path.join(dir, VERSIONS_DIR, version);

export function readVersions(dir: string): AgentVersionsFile {
  const empty: AgentVersionsFile = { current: null, previous: null, trying: null, upgraded: null, rolledBack: null };
  try {
    return { ...empty, ...(JSON.parse(fs.readFileSync(path.join(dir, VERSIONS_FILE), 'utf8')) as AgentVersionsFile) };
  } catch {
    return empty;
  }
}

export function writeVersions(dir: string, v: AgentVersionsFile): void {
  writeFileDurableSync(path.join(dir, VERSIONS_FILE), `${JSON.stringify(v, null, 2)}\n`);
}

/** The version that failed goes back to the one before; the agent that takes over reports why. */
export function rollBack(dir: string, reason: string): AgentVersionsFile {
  const v = readVersions(dir);
  if (!v.trying) return v;
  const t = v.trying;
  const next: AgentVersionsFile = {
    ...v,
    current: t.from,
    trying: null,
    rolledBack: { ...t, reason: reason.slice(0, 900), at: new Date().toISOString() },
  };
  writeVersions(dir, next);
  fs.rmSync(versionDir(dir, t.version), { recursive: true, force: true });
  return next;
}
