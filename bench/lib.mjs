// Helpers shared by the benchmark scripts (bench/run.mjs, bench/hierarchy.mjs).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const BIN = path.join(ROOT, 'bin', 'cascade');
export const BENCH = path.join(ROOT, '.bench');
export const MiB = 1 << 20;

const args = process.argv.slice(2);
/** `--name value` from the command line, or the default. */
export const opt = (n, d) => (args.includes(`--${n}`) ? args[args.indexOf(`--${n}`) + 1] : d);

/** A corpus made once in .bench/ by make-corpus.mjs; its real path (rsync and find want one). */
export function corpus(name, extra) {
  fs.mkdirSync(BENCH, { recursive: true });
  const dir = path.join(BENCH, name);
  if (!fs.existsSync(path.join(dir, 'setup.exe'))) {
    fs.rmSync(dir, { recursive: true, force: true });
    console.error(`making corpus ${name} ...`);
    execFileSync(process.execPath, [path.join(ROOT, 'bench', 'make-corpus.mjs'), dir, ...extra], {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
  }
  return fs.realpathSync(dir);
}

export const have = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

/** Every regular file below `dir`, in name order. */
export function walk(dir) {
  const out = [];
  const rec = (rel) => {
    for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) rec(r);
      else if (e.isFile()) out.push(path.join(dir, r));
    }
  };
  rec('');
  return out;
}

export const bytesOf = (dir) => walk(dir).reduce((s, f) => s + fs.statSync(f).size, 0);

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Stops with one clear line when the file system of `dir` has less than `bytes` free: a
 * benchmark that fills the disk half way fails obscurely (and CASCADE_BENCH_DEFER_CLEANUP
 * keeps every run's folders until bench/cleanup.mjs runs).
 */
export function needSpace(dir, bytes, what) {
  const s = fs.statfsSync(dir);
  const free = s.bavail * s.bsize;
  if (free >= bytes) return;
  console.error(
    `bench: ${what} needs about ${(bytes / 2 ** 30).toFixed(1)} GiB free in ${dir}, which has ${(free / 2 ** 30).toFixed(1)} GiB` +
      ' (earlier runs kept by CASCADE_BENCH_DEFER_CLEANUP? run node bench/cleanup.mjs)',
  );
  process.exit(1);
}

/** A loopback port free a moment ago. */
export const freePort = () =>
  new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });

/** Waits until a site or DP at `url` answers /healthz (at most 30 s). */
export const waitUp = async (url) => {
  for (let i = 0; i < 300; i++) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) return;
    } catch {}
    await sleep(100);
  }
  throw new Error(`${url} did not start`);
};

/** Runs `cascade ARGV` and returns its stdout; a failure throws with its stderr. */
export const cascade = (argv, env = {}) => {
  const r = spawnSync(process.execPath, [BIN, ...argv], { env: { ...process.env, ...env }, encoding: 'utf8', maxBuffer: 64 * MiB });
  if (r.status !== 0) throw new Error(`cascade ${argv.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
};

/**
 * Removes a benchmark's work folder; under bench/all.mjs (`npm run bench`) it is left for
 * bench/cleanup.mjs at the very end instead. On a file system without a journal (this project's
 * machines), creating files soon after thousands were deleted is several times slower, so one
 * benchmark's cleanup would slow the next one's figures (docs/performance.md).
 */
export function removeWork(dir) {
  if (process.env.CASCADE_BENCH_DEFER_CLEANUP) {
    fs.mkdirSync(BENCH, { recursive: true });
    fs.appendFileSync(path.join(BENCH, 'cleanup.txt'), `${dir}\n`);
    return;
  }
  fs.rmSync(dir, { recursive: true, force: true });
}

/**
 * A site server (CEN) in `dir`, started with log level warn; `init` are more `site init` flags.
 * Answers once it has finished its start-up work (a new site publishes the agent it carries
 * after it starts listening: ~0.15 s of CPU that would otherwise land in the first timing),
 * with its process, URL and the environment that points the CLI at it.
 */
export async function startSite(dir, init = []) {
  execFileSync(process.execPath, [BIN, 'site', 'init', '--data', dir, '--code', 'CEN', ...init], { stdio: 'ignore' });
  const proc = spawn(process.execPath, [BIN, 'site', 'start', '--data', dir, '--listen', '127.0.0.1:0'], {
    env: { ...process.env, CASCADE_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  // Log level warn hides the "listening" line: find the port from /proc instead.
  const url = await new Promise((resolve, reject) => {
    const started = Date.now();
    const poll = () => {
      const port = listeningPort(proc.pid);
      if (port) return resolve(`http://127.0.0.1:${port}`);
      if (Date.now() - started > 20000) return reject(new Error('site did not start'));
      setTimeout(poll, 50);
    };
    poll();
  });
  await settled(proc.pid);
  const token = fs.readFileSync(path.join(dir, 'admin-token'), 'utf8').trim();
  return { proc, url, env: { CASCADE_SITE: url, CASCADE_TOKEN: token } };
}

function listeningPort(pid) {
  try {
    const inodes = new Set(
      fs
        .readdirSync(`/proc/${pid}/fd`)
        .map((fd) => {
          try {
            return /socket:\[(\d+)\]/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1];
          } catch {
            return undefined;
          }
        })
        .filter(Boolean),
    );
    for (const line of fs.readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f[3] === '0A' && inodes.has(f[9])) return Number.parseInt(f[1].split(':')[1], 16);
    }
  } catch {}
  return undefined;
}

/** A process's peak resident set (VmHWM), in bytes. */
/** CPU time of a process so far, in clock ticks (utime + stime from /proc; 100 a second). */
export const cpuTicks = (pid) => {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(f[11]) + Number(f[12]);
};

/** CPU time of a process and every process below it now running, in clock ticks (a DP forks serving processes). */
export const treeTicks = (pid) => {
  let n = 0;
  try {
    n = cpuTicks(pid);
    for (const t of fs.readdirSync(`/proc/${pid}/task`))
      for (const c of fs.readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean))
        n += treeTicks(Number(c));
  } catch {}
  return n;
};

/** CPU time of this process's children that have exited and been waited for, in clock ticks. */
export const childTicks = () => {
  const f = fs.readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ');
  return Number(f[13]) + Number(f[14]);
};

/** Waits until a process has used at most one tick of CPU in each of three 100 ms in a row (10 s at most). */
export async function settled(pid) {
  const until = Date.now() + 10_000;
  let quiet = 0;
  let last = cpuTicks(pid);
  while (quiet < 3 && Date.now() < until) {
    await sleep(100);
    const now = cpuTicks(pid);
    quiet = now - last <= 1 ? quiet + 1 : 0;
    last = now;
  }
}

export const peakRss = (pid) => Number(/VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
