import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeAgentRelease } from '../../src/lib/version.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const BIN = path.join(ROOT, 'bin', 'cascade');

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * A finished command's result. Killed by a signal: the shell's 128 + its number, and its name
 * at the end of stderr, so a failed assertion on the code says which (134: SIGABRT, 137:
 * SIGKILL, 139: SIGSEGV).
 */
export function runResult(code: number | null, signal: NodeJS.Signals | null, stdout: string, stderr: string): RunResult {
  if (code === null && signal)
    return { code: 128 + (os.constants.signals[signal] ?? 0), stdout, stderr: `${stderr}[killed by ${signal}]\n` };
  return { code: code ?? 1, stdout, stderr };
}

/** Runs `bin/cascade ARGS` to completion. */
export function cascade(
  args: string[],
  opts: { env?: Record<string, string>; uid?: number; timeoutMs?: number; cwd?: string } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [BIN, ...args], {
      env: { ...process.env, CASCADE_SITE: '', CASCADE_TOKEN: '', CASCADE_DATA: '', CASCADE_TLS_PIN: '', ...opts.env },
      ...(opts.cwd ? { cwd: opts.cwd } : {}),
      ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.uid } : {}),
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => {
      stdout += d;
    });
    p.stderr.on('data', (d) => {
      stderr += d;
    });
    const t = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    p.on('error', reject);
    p.on('close', (code, signal) => {
      clearTimeout(t);
      resolve(runResult(code, signal, stdout, stderr));
    });
  });
}

export function tmpDir(prefix = 'cascade-e2e-'): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  fs.chmodSync(d, 0o755);
  return d;
}

export interface SiteProcess {
  url: string;
  dataDir: string;
  token: string;
  proc: ChildProcess;
  logs: () => string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  env: Record<string, string>;
}

// Whatever a test started dies with the test run, even when an assertion failed first.
const started = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of started) if (p.exitCode === null) p.kill('SIGKILL');
});

/**
 * Starts `cascade site start` on a free port and waits until it listens. `listen: null` leaves
 * out --listen, so the site serves where its config.json says.
 */
export async function startSite(
  dataDir: string,
  extra: string[] = [],
  opts: { listen?: string | null; env?: Record<string, string>; role?: 'site' | 'dp'; bin?: string } = {},
): Promise<SiteProcess> {
  const role = opts.role ?? 'site';
  const listen = opts.listen === null ? [] : ['--listen', opts.listen ?? '127.0.0.1:0'];
  const proc = spawn(process.execPath, [opts.bin ?? BIN, role, 'start', '--data', dataDir, ...listen, ...extra], {
    env: { ...process.env, CASCADE_LOG_LEVEL: 'info', ...opts.env },
  });
  started.add(proc);
  proc.once('exit', () => started.delete(proc));
  let out = '';
  proc.stderr?.on('data', (d) => {
    out += d;
  });
  const url = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${role} did not start:\n${out}`)), 30_000);
    const ready = new RegExp(`"url":"(https?://[^"]+)".*"msg":"${role} listening"`);
    proc.stdout?.on('data', (d) => {
      out += d;
      const m = ready.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(m[1] as string);
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`${role} exited with ${code}:\n${out}`));
    });
  });
  // A DP has no admin token: it answers only its site.
  const token = role === 'dp' ? '' : fs.readFileSync(path.join(dataDir, 'admin-token'), 'utf8').trim();
  return {
    url,
    dataDir,
    token,
    proc,
    logs: () => out,
    // A site serving HTTPS with a self-signed certificate: the CLI pins it (the log names it).
    env: { CASCADE_SITE: url, CASCADE_TOKEN: token, CASCADE_TLS_PIN: /"tlsPin":"([0-9a-f]{64})"/.exec(out)?.[1] ?? '' },
    stop(signal: NodeJS.Signals = 'SIGTERM') {
      return new Promise((resolve, reject) => {
        if (proc.exitCode !== null) return resolve(proc.exitCode);
        // A process that ignores its signal fails the test with its log, not a hook timeout.
        const t = setTimeout(() => {
          proc.kill('SIGKILL');
          reject(new Error(`${role} ${dataDir} did not exit within 30 s of ${signal}:\n${out.slice(-4000)}`));
        }, 30_000);
        proc.once('exit', (code) => {
          clearTimeout(t);
          resolve(code);
        });
        proc.kill(signal);
      });
    },
  };
}

/** `site init` in a new folder, then start it. */
export async function newSite(code = 'CEN'): Promise<SiteProcess> {
  const dir = path.join(tmpDir(), 'site');
  const r = await cascade(['site', 'init', '--data', dir, '--code', code]);
  if (r.code !== 0) throw new Error(`site init failed: ${r.stderr}`);
  return startSite(dir);
}

/** A small source tree with text, random bytes, a sub-folder and an internal link. */
export function makeSource(dir: string, seed = 1, big = 3 << 20): void {
  fs.mkdirSync(path.join(dir, 'sub'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'readme.txt'), `hello ${seed}\n`.repeat(1000));
  let x = seed * 2654435761;
  const buf = Buffer.alloc(big);
  for (let i = 0; i < big; i += 4) {
    x = (x ^ (x << 13)) >>> 0;
    x = (x ^ (x >>> 17)) >>> 0;
    x = (x ^ (x << 5)) >>> 0;
    buf.writeUInt32LE(x, i);
  }
  fs.writeFileSync(path.join(dir, 'sub', 'data.bin'), buf);
  fs.writeFileSync(path.join(dir, 'setup.exe'), buf.subarray(0, 100_000), { mode: 0o755 });
  fs.symlinkSync('../readme.txt', path.join(dir, 'sub', 'readme-link'));
}

/** A port nothing listens on (it was free a moment ago). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `ok` every 250 ms until it holds; fails naming `what` after `ms`. */
export async function until(what: string, ok: () => Promise<boolean>, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await ok()) return;
    await sleep(250);
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** The built agent (dist/cascade-agent.cjs) as release `version` would carry it, written to `dir`; its path. */
export const agentRelease = (version: string, dir: string): string =>
  writeAgentRelease(path.join(ROOT, 'dist', 'cascade-agent.cjs'), version, path.join(dir, `cascade-agent-${version}.cjs`));
