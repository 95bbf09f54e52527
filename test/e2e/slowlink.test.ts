import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../../src/api/client.js';
import { BIN, cascade, freePort, makeSource, type RunResult, runResult, type SiteProcess, startSite, tmpDir } from './helpers.js';

/*
 * A child site in its own network namespace, behind a veth link limited with tc to 4 Mbit/s.
 * Needs root and iproute2; where a namespace cannot be made the test is skipped, not failed.
 * CASCADE_SLOWLINK_NS=name overrides the namespace's name (an invalid one shows the skip).
 */

interface Target {
  site: string;
  state: string;
  bytesDone: number;
  bytesTotal: number;
  rate: number;
  retries: number;
  lastError: string | null;
}
interface Status {
  summary: { targeted: number; installed: number; sending: number; pending: number; retrying: number; failed: number };
  targets: Target[];
}
interface Transfer {
  packageId: string;
  child: string;
  state: string;
  retries: number;
  wireBytes: number;
  lastError: string | null;
}

const FAST = { CASCADE_PING_SECONDS: '1', CASCADE_REPORT_SECONDS: '1' };
const LINK_RATE = 500_000; // 4 Mbit/s in bytes per second, as tc counts it
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Unique per run: names with the pid, and a /30 inside 10.203.0.0/16 derived from it.
const pid = process.pid;
const NS = process.env.CASCADE_SLOWLINK_NS || `casns${pid}`;
const HOST_IF = `cv${pid}a`;
const NS_IF = `cv${pid}b`;
const slot = pid % 16384;
const HOST_IP = `10.203.${slot >> 6}.${(slot & 63) * 4 + 1}`;
const NS_IP = `10.203.${slot >> 6}.${(slot & 63) * 4 + 2}`;
const TBF = ['root', 'tbf', 'rate', '4mbit', 'burst', '32kbit', 'latency', '400ms'];

const made = { ns: false, veth: false };

function run(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 });
  } catch (e) {
    const err = e as Error & { stderr?: string; code?: string };
    const why = err.code === 'ENOENT' ? `${cmd} is not installed` : (err.stderr || '').trim() || err.message;
    throw new Error(`${cmd} ${args.join(' ')}: ${why}`);
  }
}
const inNs = (cmd: string, args: string[]) => run('ip', ['netns', 'exec', NS, cmd, ...args]);

function teardownNetwork(): void {
  const quiet = (cmd: string, args: string[]) => {
    try {
      run(cmd, args);
    } catch {}
  };
  if (made.veth) quiet('tc', ['qdisc', 'del', 'dev', HOST_IF, 'root']);
  if (made.ns) quiet('ip', ['netns', 'del', NS]);
  // Deleting the namespace deletes its end of the pair, and with it ours; in case it did not:
  if (made.veth) quiet('ip', ['link', 'del', HOST_IF]);
  made.ns = false;
  made.veth = false;
}
process.on('exit', teardownNetwork);

/** The namespace, the veth pair, addresses, links up and tc on both ends; null when done, else why not. */
function makeNetwork(): string | null {
  try {
    if (process.platform !== 'linux') throw new Error(`network namespaces are Linux only (this is ${process.platform})`);
    run('ip', ['netns', 'add', NS]);
    made.ns = true;
    run('ip', ['link', 'add', HOST_IF, 'type', 'veth', 'peer', 'name', NS_IF]);
    made.veth = true;
    run('ip', ['link', 'set', NS_IF, 'netns', NS]);
    run('ip', ['addr', 'add', `${HOST_IP}/30`, 'dev', HOST_IF]);
    run('ip', ['link', 'set', HOST_IF, 'up']);
    inNs('ip', ['addr', 'add', `${NS_IP}/30`, 'dev', NS_IF]);
    inNs('ip', ['link', 'set', NS_IF, 'up']);
    inNs('ip', ['link', 'set', 'lo', 'up']);
    run('tc', ['qdisc', 'add', 'dev', HOST_IF, ...TBF]); // parent → child: the direction that matters
    inNs('tc', ['qdisc', 'add', 'dev', NS_IF, ...TBF]);
    return null;
  } catch (e) {
    teardownNetwork();
    return (e as Error).message;
  }
}

/** A TCP connection from inside the namespace to the host's end of the link (async: we serve it). */
async function probeLink(): Promise<string | null> {
  const server = net.createServer((s) => s.end('ok'));
  try {
    const port = await new Promise<number>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, HOST_IP, () => resolve((server.address() as net.AddressInfo).port));
    });
    const script = `require('net').connect(${port}, '${HOST_IP}').on('data', (d) => { process.stdout.write(d); process.exit(0); }).on('error', (e) => { console.error(e.message); process.exit(1); })`;
    const r = await inNsAsync([process.execPath, '-e', script], {}, 10_000);
    return r.stdout === 'ok' ? null : `no TCP connection across the veth link: ${r.stderr.trim() || `exit ${r.code}`}`;
  } catch (e) {
    return (e as Error).message;
  } finally {
    server.close();
  }
}

/** A command inside the namespace, run to completion without blocking this process. */
function inNsAsync(cmd: string[], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const p = spawn('ip', ['netns', 'exec', NS, ...cmd], {
      env: { ...process.env, CASCADE_SITE: '', CASCADE_TOKEN: '', CASCADE_DATA: '', ...env },
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => {
      stdout += d;
    });
    p.stderr.on('data', (d) => {
      stderr += d;
    });
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('error', reject);
    p.on('close', (code, signal) => {
      clearTimeout(t);
      resolve(runResult(code, signal, stdout, stderr));
    });
  });
}

/** `node bin/cascade ARGS` inside the namespace. */
const cascadeInNs = (args: string[]) => inNsAsync([process.execPath, BIN, ...args]);

/** SIGTERM, then SIGKILL if it has not gone after a few seconds. */
function stopProcess(p: ChildProcess | undefined): Promise<void> {
  if (!p || p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const k = setTimeout(() => p.kill('SIGKILL'), 5000);
    p.once('exit', () => {
      clearTimeout(k);
      resolve();
    });
    p.kill('SIGTERM');
  });
}

describe('a child site behind a slow link', () => {
  const root = tmpDir('cascade-slowlink-');
  let skipReason: string | null = null;
  let cen: SiteProcess | undefined;
  let nyc: { proc: ChildProcess; url: string; token: string; pin: string; logs: () => string } | undefined;

  beforeAll(async () => {
    skipReason = makeNetwork() ?? (await probeLink());
    if (skipReason) {
      teardownNetwork();
      console.warn(`slow-link test skipped: network namespaces cannot be made here: ${skipReason}`);
      return;
    }
    // CEN on the host, listening on the host's end of the link.
    const cenPort = await freePort();
    const cenDir = path.join(root, 'CEN');
    const ci = await cascade(['site', 'init', '--data', cenDir, '--code', 'CEN', '--listen', `${HOST_IP}:${cenPort}`]);
    expect(ci.stderr).toBe('');
    cen = await startSite(cenDir, [], { listen: null, env: FAST });
    expect(cen.url).toBe(`https://${HOST_IP}:${cenPort}`);

    // NYC inside the namespace joins CEN across the link.
    const tok = await cascade(['site', 'join-token', '--json'], { env: cen.env });
    expect(tok.code).toBe(0);
    const nycPort = 8100 + (pid % 1000); // the namespace is ours alone: any port is free there
    const nycDir = path.join(root, 'NYC');
    const ni = await cascadeInNs([
      'site',
      'init',
      '--data',
      nycDir,
      '--code',
      'NYC',
      '--listen',
      `${NS_IP}:${nycPort}`,
      '--parent',
      cen.url,
      '--join-token',
      JSON.parse(tok.stdout).token,
    ]);
    expect(ni.stderr).toBe('');
    expect(ni.code).toBe(0);
    const proc = spawn('ip', ['netns', 'exec', NS, process.execPath, BIN, 'site', 'start', '--data', nycDir], {
      env: { ...process.env, CASCADE_SITE: '', CASCADE_TOKEN: '', CASCADE_DATA: '', CASCADE_LOG_LEVEL: 'info', ...FAST },
    });
    process.on('exit', () => {
      if (proc.exitCode === null) proc.kill('SIGKILL');
    });
    let out = '';
    proc.stderr.on('data', (d) => {
      out += d;
    });
    const url = await new Promise<string>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`NYC did not start:\n${out}`)), 30_000);
      proc.stdout.on('data', (d) => {
        out += d;
        const m = /"url":"(https:\/\/[^"]+)".*"msg":"site listening"/.exec(out);
        if (m) {
          clearTimeout(t);
          resolve(m[1] as string);
        }
      });
      proc.once('exit', (code) => {
        clearTimeout(t);
        reject(new Error(`NYC exited with ${code}:\n${out}`));
      });
    });
    expect(url).toBe(`https://${NS_IP}:${nycPort}`);
    // Both ends serve HTTPS (the default off loopback): the CLI pins NYC's certificate.
    const pin = /"tlsPin":"([0-9a-f]{64})"/.exec(out)?.[1] as string;
    expect(pin).toBeDefined();
    nyc = { proc, url, token: fs.readFileSync(path.join(nycDir, 'admin-token'), 'utf8').trim(), pin, logs: () => out };
  });

  afterAll(async () => {
    try {
      await stopProcess(nyc?.proc);
      await stopProcess(cen?.proc);
    } finally {
      teardownNetwork();
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  it('carries a package over a 4 Mbit/s link with no timeouts, and the status shows the real rate', async (ctx) => {
    if (skipReason) ctx.skip(`network namespaces cannot be made here: ${skipReason}`);
    const c0 = cen as SiteProcess;
    const n0 = nyc as NonNullable<typeof nyc>;

    const src = path.join(root, 'src');
    makeSource(src, 41, 3 << 20); // random, incompressible
    const created = await cascade(['package', 'create', src, '--name', 'SlowLink', '--json'], { env: c0.env });
    expect(created.stderr).toBe('');
    const pkg = JSON.parse(created.stdout) as { id: string; bytes: number };
    const sentBefore = Number(/Sent (\d+) bytes/.exec(run('tc', ['-s', 'qdisc', 'show', 'dev', HOST_IF]))?.[1]);

    const t0 = Date.now();
    const d = await cascade(['distribute', pkg.id, '--to', 'site:NYC', '--json'], { env: c0.env });
    expect(d.stderr).toBe('');

    // What the status says about NYC while it travels: the CLI, and the same API polled finely,
    // since the sender updates the rate once per batch of chunks.
    const seen: { via: string; at: number; state: string; rate: number; bytesDone: number }[] = [];
    const note = (via: string, s: Status) => {
      const t = s.targets.find((x) => x.site === 'NYC');
      if (t) seen.push({ via, at: Date.now() - t0, state: t.state, rate: t.rate, bytesDone: t.bytesDone });
      return t;
    };
    // CEN serves HTTPS with a self-signed certificate: the one HTTP client, pinned.
    const api = new ApiClient(c0.url, { token: c0.token, pin: c0.env.CASCADE_TLS_PIN });
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const r = await api.json<Status>('GET', `/api/v1/distributions/${pkg.id}`).catch(() => null);
        if (r) note('api', r);
        await sleep(100);
      }
    })();
    let last: Status | undefined;
    try {
      const end = t0 + 60_000;
      for (;;) {
        const r = await cascade(['status', pkg.id, '--json'], { env: c0.env });
        expect(r.stderr).toBe('');
        last = JSON.parse(r.stdout) as Status;
        const t = note('cli', last);
        if (t?.state === 'installed' || t?.state === 'failed') break;
        if (Date.now() > end) throw new Error(`NYC not installed after 60 s; status: ${JSON.stringify(last)}`);
        await sleep(200);
      }
    } finally {
      sampling = false;
      await sampler;
    }
    const secs = (Date.now() - t0) / 1000;

    expect(last?.summary).toMatchObject({ targeted: 1, installed: 1, failed: 0, retrying: 0 });
    const target = last?.targets.find((t) => t.site === 'NYC');
    expect(target).toMatchObject({ state: 'installed', retries: 0, lastError: null });

    // No timeouts: the one transfer finished at the first attempt.
    const tr = (await api.json<{ transfers: Transfer[] }>('GET', '/api/v1/transfers')).transfers.filter((t) => t.packageId === pkg.id);
    expect(tr).toHaveLength(1);
    expect(tr[0]).toMatchObject({ child: 'NYC', state: 'done', retries: 0, lastError: null });
    const wire = tr[0]?.wireBytes ?? 0;
    expect(wire).toBeGreaterThan(3 << 20);
    const msgs = JSON.parse((await cascade(['messages', '--package', pkg.id, '--json'], { env: c0.env })).stdout) as {
      messages: { code: string }[];
    };
    expect(msgs.messages.map((m) => m.code)).not.toContain('transfer_retrying');

    // The bytes went through the limited link, and could not have crossed it faster than it allows.
    const sentAfter = Number(/Sent (\d+) bytes/.exec(run('tc', ['-s', 'qdisc', 'show', 'dev', HOST_IF]))?.[1]);
    expect(sentAfter - sentBefore).toBeGreaterThanOrEqual(wire);
    expect(secs).toBeGreaterThanOrEqual((0.8 * wire) / LINK_RATE);

    // The status showed the rate the link really carries.
    const best = Math.max(0, ...seen.map((s) => s.rate));
    const shown = seen.filter((s) => s.rate > 0);
    console.log(
      `slow link: ${wire} bytes in ${secs.toFixed(1)} s (${Math.round(wire / secs)} B/s end to end); ` +
        `highest rate in status ${Math.round(best)} B/s (link ${LINK_RATE} B/s); ` +
        `rate > 0 in ${shown.filter((s) => s.via === 'cli').length} CLI and ${shown.filter((s) => s.via === 'api').length} API polls ` +
        `of ${seen.length}, first at ${shown[0] ? (shown[0].at / 1000).toFixed(1) : '-'} s`,
    );
    expect(best).toBeGreaterThan(0.3 * LINK_RATE);
    expect(best).toBeLessThan(1.3 * LINK_RATE);

    // NYC holds it intact.
    const v = await cascadeInNs(['package', 'verify', pkg.id, '--json', '--site', n0.url, '--token', n0.token, '--tls-pin', n0.pin]);
    expect(v.stderr).toBe('');
    expect(JSON.parse(v.stdout).ok).toBe(true);
  }, 90_000);
});
