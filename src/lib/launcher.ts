import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { VERSION } from './version.js';
import type { Trial, VersionsFile, VersionsState } from './versions.js';

/**
 * The launcher of a program that upgrades itself (the agent, a DP; docs/agent.md#upgrades,
 * docs/dp.md#releases): it runs the version the data folder's versions file names. While that
 * is the launcher's own, it runs in this process; an upgraded version runs as a child process,
 * which exits with SWITCH_EXIT when it has installed a newer one. A version on trial that exits
 * before it shows it works (and so leaves `trying`), or does not within the start deadline, is
 * rolled back: the version before it runs again and reports why.
 */

/** A supervised process exits with this when it has installed another version to switch to. */
export const SWITCH_EXIT = 75;
const TAIL_BYTES = 2048;

export type Outcome = 'switch' | 'done';

export interface LaunchOptions<T extends Trial, S extends VersionsState<T>> {
  /** What runs, for messages: "agent", "DP". */
  what: string;
  versions: VersionsFile<T, S>;
  /** Set for a process the launcher started: it runs, and leaves switching versions to the launcher. */
  supervisedEnv: string;
  /** The file of version V to run with node, and its arguments. */
  child: (version: string) => { file: string; args: string[] };
  /** A one-shot run (the agent's run-now): exit 0 without having shown it works stays on trial. */
  oneShot?: boolean;
  /** Runs this process's own version; 'switch' when it installed another. */
  inProcess: () => Promise<Outcome>;
  say: (line: string) => void;
  /** Aborted: stop (SIGTERM); a child gets SIGTERM too. */
  signal: AbortSignal;
  /** Seconds a version on trial has to show it works. */
  startSeconds: number;
  /** How a version shows it works, for messages: "check in" (the agent), "report to its site" (a DP). */
  proof: { verb: string; noun: string };
}

export async function launch<T extends Trial, S extends VersionsState<T>>(o: LaunchOptions<T, S>): Promise<void> {
  if (process.env[o.supervisedEnv] === '1') {
    // The launcher above switches versions: hand it over.
    if ((await o.inProcess()) === 'switch') process.exit(SWITCH_EXIT);
    return;
  }
  let crashes = 0;
  while (!o.signal.aborted) {
    const v = o.versions.read();
    const target = v.trying?.version ?? v.current;
    const child = target === null ? null : o.child(target);
    if (target === null || target === VERSION || !child || !fs.existsSync(child.file)) {
      if (target !== null && target !== VERSION) {
        o.say(`${o.what} ${target} is missing from ${child?.file}; running ${VERSION}, the launcher's own`);
        if (v.trying) o.versions.rollBack(`its file ${child?.file} is missing`);
        else o.versions.write({ ...v, current: null });
      }
      if ((await o.inProcess()) === 'switch') continue;
      return;
    }
    const r = await runChild(o, child, target, v.trying !== null);
    if (o.signal.aborted) return;
    if (r.code === SWITCH_EXIT) {
      crashes = 0;
      continue;
    }
    const after = o.versions.read();
    // A one-shot run that ended well without showing it works (its site was down) is no
    // failure: the version stays on trial for the next run.
    const inconclusive = o.oneShot && r.code === 0 && !r.timedOut;
    if (after.trying?.version === target && !inconclusive) {
      const reason = r.timedOut
        ? `${o.what} ${target} did not ${o.proof.verb} within ${r.deadline} s of starting`
        : `${o.what} ${target} exited (${r.signal ? `signal ${r.signal}` : `code ${r.code}`}) before its ${o.proof.noun}${r.tail ? `: ${r.tail.trim().split('\n').slice(-3).join(' | ')}` : ''}`;
      o.say(`${reason}; rolling back to ${after.trying.from ?? VERSION}`);
      o.versions.rollBack(reason);
      continue;
    }
    if (o.oneShot) {
      process.exitCode = r.code ?? 1;
      return;
    }
    // A confirmed version that stopped on its own: start it again, slower each time.
    crashes++;
    const wait = Math.min(300, 5 * 2 ** Math.min(6, crashes - 1));
    o.say(`${o.what} ${target} stopped (${r.signal ? `signal ${r.signal}` : `code ${r.code}`}); starting it again in ${wait} s`);
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

function runChild<T extends Trial, S extends VersionsState<T>>(
  o: LaunchOptions<T, S>,
  child: { file: string; args: string[] },
  version: string,
  trying: boolean,
): Promise<{ code: number | null; signal: string | null; tail: string; timedOut: boolean; deadline: number }> {
  const deadline = o.startSeconds;
  return new Promise((resolve) => {
    o.say(`starting ${o.what} ${version}${trying ? ` (first start: rolled back if it does not ${o.proof.verb})` : ''}`);
    // Node's own options given on the command line (e.g. --max-old-space-size) carry over to the version it runs.
    const proc = spawn(process.execPath, [...process.execArgv, child.file, ...child.args], {
      env: { ...process.env, [o.supervisedEnv]: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let tail = '';
    const keep = (b: Buffer) => {
      tail = (tail + b.toString('utf8')).slice(-TAIL_BYTES);
    };
    proc.stdout.on('data', (b: Buffer) => {
      process.stdout.write(b);
      keep(b);
    });
    proc.stderr.on('data', (b: Buffer) => {
      process.stderr.write(b);
      keep(b);
    });
    const stop = () => proc.kill('SIGTERM');
    o.signal.addEventListener('abort', stop, { once: true });
    let timedOut = false;
    // A version on trial must show it works (and so leave `trying`) before the deadline.
    const watch = trying
      ? setInterval(() => {
          if (o.versions.read().trying?.version !== version) {
            clearInterval(watch);
            clearTimeout(limit);
          }
        }, 1000)
      : undefined;
    const limit = trying
      ? setTimeout(() => {
          timedOut = true;
          proc.kill('SIGKILL');
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
    proc.on('error', (e) => {
      keep(Buffer.from(e.message));
      finish(null, null);
    });
    // After its output has all arrived (the tail is what a rollback reports).
    proc.on('close', (code, signal) => finish(code, signal));
  });
}
