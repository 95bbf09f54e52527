import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { AGENT_FILE } from '../core/client.js';
import { VERSION } from '../lib/version.js';
import { readVersions, rollBack, versionDir, writeVersions } from './versions.js';

/**
 * The launcher (docs/agent.md#upgrades): `agent start` and `agent run-now` run the agent version
 * `versions.json` names. While that is the launcher's own, it runs in this process; an upgraded
 * version runs as a child process (`versions/V/cascade-agent.cjs`), which exits with
 * SWITCH_EXIT when it has installed a newer one. A version being tried that exits before its
 * first check-in, or does not check in within the start deadline, is rolled back: the version
 * before it runs again and reports why.
 */

/** A supervised agent exits with this when it has installed another version to switch to. */
export const SWITCH_EXIT = 75;
/** Set for an agent the launcher started: it runs, and leaves switching versions to the launcher. */
export const SUPERVISED_ENV = 'CASCADE_AGENT_SUPERVISED';
const TAIL_BYTES = 2048;

export type Outcome = 'switch' | 'done';

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

export async function launch(o: LaunchOptions): Promise<void> {
  if (supervised()) {
    // The launcher above switches versions: hand it over.
    if ((await o.inProcess()) === 'switch') process.exit(SWITCH_EXIT);
    return;
  }
  let crashes = 0;
  while (!o.signal.aborted) {
    const v = readVersions(o.dir);
    const target = v.trying?.version ?? v.current;
    const file = target === null ? null : path.join(versionDir(o.dir, target), AGENT_FILE);
    if (target === null || target === VERSION || !file || !fs.existsSync(file)) {
      if (target !== null && target !== VERSION) {
        o.say(`agent ${target} is missing from ${file}; running ${VERSION}, the launcher's own`);
        if (v.trying) rollBack(o.dir, `its file ${file} is missing`);
        else writeVersions(o.dir, { ...v, current: null });
      }
      if ((await o.inProcess()) === 'switch') continue;
      return;
    }
    const r = await runChild(o, file, target, v.trying !== null);
    if (o.signal.aborted) return;
    if (r.code === SWITCH_EXIT) {
      crashes = 0;
      continue;
    }
    const after = readVersions(o.dir);
    // A one-cycle run that ended well without checking in (the site was down) is no failure:
    // the version stays on trial for the next run.
    const inconclusive = o.mode === 'run-now' && r.code === 0 && !r.timedOut;
    if (after.trying?.version === target && !inconclusive) {
      const reason = r.timedOut
        ? `agent ${target} did not check in within ${r.deadline} s of starting`
        : `agent ${target} exited (${r.signal ? `signal ${r.signal}` : `code ${r.code}`}) before its first check-in${r.tail ? `: ${r.tail.trim().split('\n').slice(-3).join(' | ')}` : ''}`;
      o.say(`${reason}; rolling back to ${after.trying.from ?? VERSION}`);
      rollBack(o.dir, reason);
      continue;
    }
    if (o.mode === 'run-now') {
      process.exitCode = r.code ?? 1;
      return;
    }
    // A confirmed version that stopped on its own: start it again, slower each time.
    crashes++;
    const wait = Math.min(300, 5 * 2 ** Math.min(6, crashes - 1));
    o.say(`agent ${target} stopped (${r.signal ? `signal ${r.signal}` : `code ${r.code}`}); starting it again in ${wait} s`);
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, wait * 1000);
      o.signal.addEventListener(
        'abort',
        () => {
          clearTimeout(t);
          resolve();
        },
        { once: true },
      );
    });
  }
}

function runChild(
  o: LaunchOptions,
  file: string,
  version: string,
  trying: boolean,
): Promise<{ code: number | null; signal: string | null; tail: string; timedOut: boolean; deadline: number }> {
  const deadline = o.startSeconds ?? (Number(process.env.CASCADE_AGENT_START_SECONDS) || 600);
  return new Promise((resolve) => {
    o.say(`starting agent ${version}${trying ? ' (first start: rolled back if it does not check in)' : ''}`);
    const child = spawn(process.execPath, [file, o.mode, '--data', o.dir, ...o.args], {
      env: { ...process.env, [SUPERVISED_ENV]: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let tail = '';
    const keep = (b: Buffer) => {
      tail = (tail + b.toString('utf8')).slice(-TAIL_BYTES);
    };
    child.stdout.on('data', (b: Buffer) => {
      process.stdout.write(b);
      keep(b);
    });
    child.stderr.on('data', (b: Buffer) => {
      process.stderr.write(b);
      keep(b);
    });
    const stop = () => child.kill('SIGTERM');
    o.signal.addEventListener('abort', stop, { once: true });
    let timedOut = false;
    // A version being tried must check in (and so leave `trying`) before the deadline.
    const watch = trying
      ? setInterval(() => {
          if (readVersions(o.dir).trying?.version !== version) {
            clearInterval(watch);
            clearTimeout(limit);
          }
        }, 1000)
      : undefined;
    const limit = trying
      ? setTimeout(() => {
          timedOut = true;
          child.kill('SIGKILL');
        }, deadline * 1000)
      : undefined;
    let done = false;
    const finish = (code: number | null, signal: string | null) => {
      if (done) return;
      done = true;
      clearInterval(watch);
      clearTimeout(limit);
      o.signal.removeEventListener('abort', stop);
      resolve({ code, signal, tail, timedOut, deadline });
    };
    child.on('error', (e) => {
      keep(Buffer.from(e.message));
      finish(null, null);
    });
    // After its output has all arrived (the tail is what a rollback reports).
    child.on('close', (code, signal) => finish(code, signal));
  });
}
