import { spawn } from 'node:child_process';
import path from 'node:path';

/** How a program ended: its exit code (null when killed), and the last bytes of its output. */
export interface RunResult {
  exitCode: number | null;
  timedOut: boolean;
  output: string;
  error: string | null;
}

const TAIL_BYTES = 4096;

/**
 * Runs a program's command line in the staging folder, through the shell, with a time limit:
 * past it, the whole process group is killed. Standard output and error are kept together,
 * the last 4 KiB of them reported.
 */
export function runProgram(command: string, cwd: string, maxRunSeconds: number, env: Record<string, string>): Promise<RunResult> {
  return new Promise((resolve) => {
    let tail = Buffer.alloc(0);
    const keep = (b: Buffer) => {
      tail = Buffer.concat([tail, b]);
      if (tail.length > TAIL_BYTES) tail = tail.subarray(tail.length - TAIL_BYTES);
    };
    // The package's folder comes first on PATH, so `setup.exe /q` finds the package's setup.exe
    // on every system, as it does on Windows.
    const PATH = [cwd, process.env.PATH ?? ''].filter(Boolean).join(path.delimiter);
    const child = spawn(command, {
      cwd,
      shell: true,
      detached: process.platform !== 'win32',
      env: { ...process.env, PATH, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        if (child.pid !== undefined) process.kill(process.platform === 'win32' ? child.pid : -child.pid, 'SIGKILL');
      } catch {}
    }, maxRunSeconds * 1000);
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ exitCode: null, timedOut: false, output: tail.toString('utf8'), error: e.message });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({
        exitCode: timedOut ? null : code,
        timedOut,
        output: tail.toString('utf8'),
        error: timedOut ? `killed after its time limit of ${maxRunSeconds} s` : null,
      });
    });
  });
}
