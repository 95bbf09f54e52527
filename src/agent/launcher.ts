import path from 'node:path';
import { AGENT_FILE } from '../core/client.js';
import { launch as launchVersion, type Outcome } from '../lib/launcher.js';
import { agentVersions } from './versions.js';

/**
 * The agent's launcher (docs/agent.md#upgrades): `agent start` and `agent run-now` run the agent
 * version `versions.json` names (src/lib/launcher.ts); an upgraded one runs from
 * `versions/V/cascade-agent.cjs`. A version on trial that exits before its first check-in, or
 * does not check in within CASCADE_AGENT_START_SECONDS (default 600), is rolled back.
 */

export { SWITCH_EXIT } from '../lib/launcher.js';
export type { Outcome };
/** Set for an agent the launcher started: it runs, and leaves switching versions to the launcher. */
export const SUPERVISED_ENV = 'CASCADE_AGENT_SUPERVISED';

export interface LaunchOptions {
  dir: string;
  mode: 'start' | 'run-now';
  /** Extra arguments for a child agent (after `MODE --data DIR`). */
  args: string[];
  /** Runs the agent of this process; 'switch' when it installed another version. */
  inProcess: () => Promise<Outcome>;
  say: (line: string) => void;
  /** Aborted: stop (SIGTERM); a child agent gets SIGTERM too. */
  signal: AbortSignal;
  /** Seconds a version being tried has to complete its first check-in (default 600). */
  startSeconds?: number;
}

export const supervised = (): boolean => process.env[SUPERVISED_ENV] === '1';

export function launch(o: LaunchOptions): Promise<void> {
  const versions = agentVersions(o.dir);
  return launchVersion({
    what: 'agent',
    versions,
    supervisedEnv: SUPERVISED_ENV,
    child: (v) => ({ file: path.join(versions.versionDir(v), AGENT_FILE), args: [o.mode, '--data', o.dir, ...o.args] }),
    oneShot: o.mode === 'run-now',
    inProcess: o.inProcess,
    say: o.say,
    signal: o.signal,
    proof: { verb: 'check in', noun: 'first check-in' },
    startSeconds: o.startSeconds ?? (Number(process.env.CASCADE_AGENT_START_SECONDS) || 600),
  });
}
