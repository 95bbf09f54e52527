#!/usr/bin/env node
// Failover benchmark, part of `npm run bench`: a site CEN served by two processes on one
// PostgreSQL database behind Debian's nginx, distributing a package to its child site BER over
// a route limited to R, under load: 200 concurrent API readers and 1,000 simulated agents
// checking in, all through nginx. Run twice in the same run:
//   1. no failure;
//   2. the process sending on the route is SIGKILLed once a third of the package is across.
// Reports: seconds until the other process holds the route, and until BER receives again;
// the distribution's total time; requests that failed (readers and agents) and over how long;
// bytes on the wire beyond what BER lacked, and chunks BER received that it already held
// (the goal: none).
//
//   node bench/failover.mjs [--size 128MiB] [--rate 16] [--readers 200] [--agents 1000]   (rate in MiB/s)
//
// Needs PostgreSQL (CASCADE_TEST_PG, else .ci/postgres.sh sets one up) and nginx. Prints a
// table and writes .bench/failover.json.
import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { NGINX, startBalancer } from '../test/fixtures/nginx.mjs';
import { BENCH, BIN, bytesOf, cascade, corpus, freePort, MiB, opt, ROOT, removeWork, sleep } from './lib.mjs';

const { ApiClient } = await import('../dist/api/client.js');

const size = opt('size', '128MiB');
const R = Number(opt('rate', '16')) * MiB;
const READERS = Number(opt('readers', '200'));
const AGENTS = Number(opt('agents', '1000'));
if (!fs.existsSync(NGINX)) {
  console.error(`bench/failover.mjs: ${NGINX} is not installed (apt-get install nginx-light); skipped`);
  process.exit(0);
}
let admin = process.env.CASCADE_TEST_PG;
if (!admin) {
  const out = execFileSync('bash', [path.join(ROOT, '.ci', 'postgres.sh')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  admin = /CASCADE_TEST_PG=['"]?([^'"\n]+)/.exec(out)?.[1];
  if (!admin) throw new Error('PostgreSQL could not be set up (.ci/postgres.sh)');
}
const sql = async (q) => {
  const c = new pg.Client({ connectionString: admin });
  await c.connect();
  try {
    await c.query(q);
  } finally {
    await c.end();
  }
};

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-failover-'));
const procs = [];
const FAST = { CASCADE_LOG_LEVEL: 'info', CASCADE_REPORT_SECONDS: '1', CASCADE_PING_SECONDS: '2' };

function start(dir, role, listen) {
  const proc = spawn(process.execPath, [BIN, role, 'start', '--data', dir, ...(listen ? ['--listen', listen] : [])], {
    env: { ...process.env, ...FAST },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let log = '';
  proc.stdout.on('data', (d) => {
    log += d;
    if (log.length > 8 << 20) log = log.slice(-(4 << 20));
  });
  procs.push(proc);
  const listening = new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${dir} did not start`)), 30_000);
    const check = () => {
      const m = /"url":"(https?:\/\/[^"]+)".*"msg":"(site|dp) listening"/.exec(log);
      if (m) {
        clearTimeout(t);
        resolve(m[1]);
      } else setTimeout(check, 50);
    };
    check();
  });
  return { proc, logs: () => log, listening };
}

async function scenario(name, kill) {
  const db = `cascade_failover_${process.pid}_${crypto.randomBytes(3).toString('hex')}`;
  const url = admin.replace(/\/[^/]*$/, `/${db}`);
  await sql(`CREATE DATABASE ${db}`);
  const dir = path.join(work, name);
  const [lbPort, pa, pb, berPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const lb = `http://127.0.0.1:${lbPort}`;
  const cenDir = path.join(dir, 'cen');
  cascade(['site', 'init', '--data', cenDir, '--code', 'CEN', '--db', url, '--url', lb]);
  const token = fs.readFileSync(path.join(cenDir, 'admin-token'), 'utf8').trim();
  const env = { CASCADE_SITE: lb, CASCADE_TOKEN: token };
  const a = start(cenDir, 'site', `127.0.0.1:${pa}`);
  const b = start(cenDir, 'site', `127.0.0.1:${pb}`);
  const urls = [await a.listening, await b.listening];
  const nginx = await startBalancer({
    prefix: path.join(dir, 'nginx'),
    port: lbPort,
    upstreams: [`127.0.0.1:${pa}`, `127.0.0.1:${pb}`],
    workers: 1,
  });
  const api = new ApiClient(lb, { token });
  const berDir = path.join(dir, 'ber');
  cascade([
    'site',
    'init',
    '--data',
    berDir,
    '--code',
    'BER',
    '--listen',
    `127.0.0.1:${berPort}`,
    '--parent',
    lb,
    '--join-token',
    cascade(['site', 'join-token'], env).trim(),
  ]);
  const ber = start(berDir, 'site');
  await ber.listening;
  cascade(['site', 'set', '--client-cycle', '10s'], env);
  cascade(['route', 'set', 'BER', '--rate', `${R / MiB}MiB/s`], env);
  const id = JSON.parse(cascade(['package', 'create', big, '--name', `Failover-${name}`, '--json'], env)).id;

  // The load: 1,000 simulated agents checking in every 10 s and 200 API readers, all through nginx.
  const agentToken = JSON.parse(cascade(['agent', 'join-token', '--uses', String(AGENTS + 10), '--json'], env)).token;
  const sim = spawn(
    process.execPath,
    [
      BIN,
      'agent',
      'simulate',
      '--site',
      lb,
      '--join-token',
      agentToken,
      '--clients',
      String(AGENTS),
      '--duration',
      '10m',
      '--spread',
      '5s',
      '--json',
    ],
    { env: { ...process.env, CASCADE_LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  procs.push(sim);
  let simOut = '';
  sim.stdout.on('data', (d) => {
    simOut += d;
  });
  await sleep(8000);
  let reading = true;
  const reads = { ok: 0, failed: 0, firstFail: null, lastFail: null, latencies: [] };
  const readers = Array.from({ length: READERS }, async () => {
    while (reading) {
      const t = performance.now();
      try {
        await api.json('GET', `/api/v1/distributions/${id}`);
        reads.ok++;
        reads.latencies.push(performance.now() - t);
      } catch {
        reads.failed++;
        reads.firstFail ??= Date.now();
        reads.lastFail = Date.now();
        await sleep(100);
      }
    }
  });

  const processes = async () => (await api.json('GET', '/api/v1/sites')).processes ?? [];
  const transfer = async () => (await api.json('GET', '/api/v1/transfers')).transfers.find((t) => t.child === 'BER' && t.packageId === id);
  const t0 = Date.now();
  await api.json('POST', '/api/v1/distributions', { json: { packageId: id, to: ['site:BER'] } });
  const out = { name, killedAt: null, leaseSeconds: null, resumedSeconds: null };
  if (kill) {
    let holder;
    for (;;) {
      const t = await transfer().catch(() => null);
      if (t && t.bytesTotal > 0 && t.bytesDone >= t.bytesTotal / 3) {
        holder = (await processes()).find((p) => p.holds.includes('route:BER'));
        if (holder) break;
      }
      await sleep(50);
    }
    const victim = holder.url === urls[0] ? a : b;
    const before = (await transfer()).bytesDone;
    victim.proc.kill('SIGKILL');
    const killedAt = Date.now();
    out.killedAt = (killedAt - t0) / 1000;
    for (;;) {
      const ps = await processes().catch(() => []);
      if (ps.some((p) => p.url !== holder.url && p.holds.includes('route:BER'))) break;
      await sleep(50);
    }
    out.leaseSeconds = (Date.now() - killedAt) / 1000;
    for (;;) {
      const t = await transfer().catch(() => null);
      if (t && (t.bytesDone > before || t.state === 'done')) break;
      await sleep(50);
    }
    out.resumedSeconds = (Date.now() - killedAt) / 1000;
  }
  for (;;) {
    const t = await transfer().catch(() => null);
    if (t?.state === 'done') {
      out.transfer = t;
      break;
    }
    if (Date.now() - t0 > 10 * 60_000) throw new Error(`${name}: not done after 10 minutes`);
    await sleep(100);
  }
  out.seconds = (Date.now() - t0) / 1000;
  reading = false;
  await Promise.all(readers);
  sim.kill('SIGINT');
  await new Promise((r) => sim.once('exit', r));
  const simResult = (() => {
    try {
      return JSON.parse(simOut);
    } catch {
      return null;
    }
  })();
  reads.latencies.sort((x, y) => x - y);
  out.reads = {
    ok: reads.ok,
    failed: reads.failed,
    failingSeconds: reads.firstFail ? (reads.lastFail - reads.firstFail) / 1000 : 0,
    p99Ms: Math.round(reads.latencies[Math.floor(reads.latencies.length * 0.99)] ?? 0),
  };
  out.agents = simResult ? { checkins: simResult.checkins, errors: simResult.checkinErrors, p99Ms: simResult.checkinP99Ms } : null;
  out.again = (ber.logs().match(/chunks received that this site already held/g) ?? []).length;
  // Counted by BER as the bytes arrive: batches cut off by the kill included.
  const metrics = await (await fetch(`http://127.0.0.1:${berPort}/metrics`)).text();
  out.wireBytes = Number(/^cascade_transfer_bytes_received_total (\d+)/m.exec(metrics)?.[1] ?? Number.NaN);
  for (const p of [a, b, ber]) if (p.proc.exitCode === null) p.proc.kill('SIGTERM');
  await nginx.stop();
  await sleep(1500);
  await sql(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  return out;
}

const results = { date: new Date().toISOString(), rate: R, readers: READERS, agents: AGENTS };
const rows = [];
const row = (metric, value, peer = '') => {
  rows.push([metric, value, peer]);
  console.error(`${metric}: ${value}${peer ? `   (${peer})` : ''}`);
};
let big;
try {
  big = corpus(`corpus-${size}-seed3`, ['--size', size, '--seed', '3']);
  const S = bytesOf(big);
  results.bytes = S;
  const calm = await scenario('calm', false);
  const failover = await scenario('failover', true);
  results.calm = calm;
  results.failover = failover;
  const mb = (n) => `${(n / MiB).toFixed(1)} MiB`;
  row(
    `SIGKILL of the process sending ${(S / MiB).toFixed(0)} MiB to BER at ${R / MiB} MiB/s, a third across`,
    `route taken over in ${failover.leaseSeconds.toFixed(1)} s, BER receiving again ${failover.resumedSeconds.toFixed(1)} s after the kill (goal: under 15 s)`,
  );
  row(
    'the distribution, end to end',
    `${failover.seconds.toFixed(1)} s with the kill`,
    `${calm.seconds.toFixed(1)} s with no failure, same run; S/R = ${(S / R).toFixed(1)} s`,
  );
  row(
    `${READERS} API readers through nginx`,
    `${failover.reads.failed} of ${failover.reads.ok + failover.reads.failed} failed (over ${failover.reads.failingSeconds.toFixed(1)} s); p99 ${failover.reads.p99Ms} ms`,
    `${calm.reads.failed} of ${calm.reads.ok + calm.reads.failed} failed; p99 ${calm.reads.p99Ms} ms with no failure`,
  );
  if (failover.agents && calm.agents)
    row(
      `${AGENTS} simulated agents checking in through nginx`,
      `${failover.agents.errors} of ${failover.agents.checkins + failover.agents.errors} check-ins failed; p99 ${failover.agents.p99Ms} ms`,
      `${calm.agents.errors} of ${calm.agents.checkins + calm.agents.errors} failed; p99 ${calm.agents.p99Ms} ms with no failure`,
    );
  row(
    'bytes re-sent',
    `${failover.again} verified chunks received twice (goal: none); BER received ${mb(failover.wireBytes)}, ${mb(failover.wireBytes - calm.wireBytes)} more than with no failure (the batch cut off by the kill)`,
    `${mb(calm.wireBytes)} received with no failure`,
  );
} finally {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  await sleep(500);
  removeWork(work);
}

fs.mkdirSync(BENCH, { recursive: true });
fs.writeFileSync(path.join(BENCH, 'failover.json'), `${JSON.stringify(results, null, 2)}\n`);
console.log('\n| metric | Cascade | same run, no failure |\n|---|---|---|');
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
