import fs from 'node:fs';
import path from 'node:path';
import type { AgentReport, ContentProblem } from '../api/clients.js';
import { fail } from '../core/errors.js';
import { writeFileDurableSync } from '../lib/durable.js';

/**
 * The agent's data folder: `agent.json` (who it is: its site, client ID, credential, the pinned
 * central key, settings; mode 600), `state.json` (what it has done: per advertisement, the
 * reports not yet delivered), `cache/` (verified chunks), `staging/` (assembled packages).
 * Both files are written whole and durably: a killed agent restarts where it was.
 */

export interface AgentConfig {
  site: string;
  /** The site serves HTTPS with the certificate of this SHA-256 (from the join token); the agent trusts only that one. */
  sitePin?: string | null;
  client: string;
  credential: string;
  central: { code: string; keyId: string; publicKey: string };
  /** auto: measure the link to the DP; slow or fast: as told. */
  link: 'auto' | 'slow' | 'fast';
  cacheBytes: number;
  /** Simulated or extra identity (several agents on one machine, tests, the demo). */
  hostname: string | null;
  addresses: string[];
}

export interface AdvertisementState {
  packageId: string;
  version: number;
  state: AgentReport['state'] | 'available';
  bytesDone: number;
  bytesTotal: number;
  exitCode: number | null;
  output: string | null;
  detail: string | null;
  at: string;
  /** restart-pending: the boot the program asked to restart from (succeeded once it changed). */
  bootId?: string;
  /** Result of the last run per version: whether to run again is decided from these. */
  runs: Record<string, { result: 'succeeded' | 'failed'; at: string }>;
}

export interface AgentState {
  /** Inventory as last accepted by the site (JSON), to send it only when it changes. */
  inventorySent: string | null;
  advertisements: Record<string, AdvertisementState>;
  outbox: AgentReport[];
  problems: ContentProblem[];
  /** Bytes per second measured on the last download, or null. */
  linkSpeed: number | null;
  /** Each DP's measured response time (ms, smoothed): DPs of one rank are tried fastest first. */
  responseMs: Record<string, number>;
  lastCheckin: string | null;
  nextCheckin: string | null;
  lastError: string | null;
  /** What the site offered at the last check-in: advertisement → version, program, DPs. */
  offers: {
    advertisement: string;
    packageId: string;
    version: number;
    program: string;
    mandatory: string[];
    dps: string[];
    /** Not acted on now, and why (an agent upgrade under way, or its grace period). */
    held?: string;
  }[];
}

export const CONFIG_FILE = 'agent.json';
export const STATE_FILE = 'state.json';

export function loadConfig(dir: string): AgentConfig {
  const file = path.join(dir, CONFIG_FILE);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw fail(
      'invalid_config',
      `${file} is missing: enrol this agent first with "cascade agent init --data ${dir} --site URL --join-token T"`,
    );
  }
  try {
    return JSON.parse(text) as AgentConfig;
  } catch {
    throw fail('invalid_config', `${file} is not valid JSON; enrol again into an empty folder`);
  }
}

export function saveConfig(dir: string, c: AgentConfig): void {
  writeFileDurableSync(path.join(dir, CONFIG_FILE), `${JSON.stringify(c, null, 2)}\n`, 0o600);
}

export const emptyState = (): AgentState => ({
  inventorySent: null,
  advertisements: {},
  outbox: [],
  problems: [],
  linkSpeed: null,
  responseMs: {},
  lastCheckin: null,
  nextCheckin: null,
  lastError: null,
  offers: [],
});

export function loadState(dir: string): AgentState {
  try {
    return { ...emptyState(), ...(JSON.parse(fs.readFileSync(path.join(dir, STATE_FILE), 'utf8')) as AgentState) };
  } catch {
    return emptyState();
  }
}

export function saveState(dir: string, s: AgentState): void {
  writeFileDurableSync(path.join(dir, STATE_FILE), JSON.stringify(s));
}
