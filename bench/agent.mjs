#!/usr/bin/env node
// Agent benchmark (part of `npm run bench`), all in one run on loopback:
//  1. Download: the bundled agent (dist/cascade-agent.cjs, what a client runs) installs the
//     512 MiB corpus from one DP; beside it, curl fetches the same stored chunk files from the
//     same DP, 8 at a time like the agent, in alternating rounds (the median ratio is
//     reported). The agent's peak RSS is read from /proc, as shipped (it sets its own V8
//     flags: src/agent/lean.ts).
//  2. Update: the corpus with 1 % changed becomes version 2 (it flows to the DP by itself); the
//     agent fetches only what its cache lacks, against rsync's literal bytes for the same change.
//  3. Reaction: three agents on a 10 s client cycle; the time from "installed on the DP" to
//     "succeeded" on all three, for a small package.
//
// AGENT_PROFILE=DIR: each agent run of the download rounds writes a CPU profile there.
//
//   node bench/agent.mjs [--size 512MiB] [--rounds 3]
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BENCH, BIN, cascade, childTicks, corpus, freePort, have, MiB, opt, ROOT, removeWork, sleep, treeTicks, waitUp } from './lib.mjs';

const size = opt('size', '512MiB');
const work = path.join(BENCH, 'agent');
fs.rmSync(work, { recursive: true, force: true });
fs.mkdirSync(work, { recursive: true });
const running = [];
process.on('exit', () => {
  for (const p of running) if (p.exitCode === null) p.kill('SIGKILL');
});

const v1 = corpus(`corpus-${size}`, ['--size', size, '--seed', '1']);
const v2 = corpus(`corpus-${size}-change1`, ['--from', v1, '--change', '1%']);
execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'bundle-agent.mjs')], { cwd: ROOT });
const AGENT = path.join(ROOT, 'dist', 'cascade-agent.cjs');

function serve(role, dir, port) {
  const p = spawn(process.execPath, [BIN, role, 'start', '--data', dir, '--listen', `127.0.0.1:${port}`], {
    env: { ...process.env, CASCADE_LOG_LEVEL: 'warn' },
    stdio: 'ignore',
  });
  running.push(p);
  return p;
}

// --- a site and one DP -----------------------------------------------------------------------
const cenPort = await freePort();
const cenDir = path.join(work, 'cen');
cascade(['site', 'init', '--data', cenDir, '--code', 'CEN', '--listen', `127.0.0.1:${cenPort}`]);
serve('site', cenDir, cenPort);
const url = `http://127.0.0.1:${cenPort}`;
await waitUp(url);
const env = { CASCADE_SITE: url, CASCADE_TOKEN: fs.readFileSync(path.join(cenDir, 'admin-token'), 'utf8').trim() };
const dpPort = await freePort();
const dpDir = path.join(work, 'dp1');
cascade([
  'dp',
  'init',
  '--data',
  dpDir,
  '--site',
  url,
  '--join-token',
  cascade(['dp', 'join-token'], env).trim(),
  '--name',
  'cen-dp1',
  '--listen',
  `127.0.0.1:${dpPort}`,
]);
const dpProc = serve('dp', dpDir, dpPort);
const dpUrl = `http://127.0.0.1:${dpPort}`;
await waitUp(dpUrl);
// Clients use the DP only: a boundary for loopback naming it.
cascade(['boundary', 'add', 'CEN', '127.0.0.0/8', '--dp', 'cen-dp1'], env);

const status = (id) => JSON.parse(cascade(['status', id, '--json'], env));
async function onDp(id, version) {
  for (;;) {
    const d = status(id).dps.find((x) => x.dp === 'cen-dp1');
    if (d?.serving === version) return Date.now();
    await sleep(100);
  }
}

console.error(`packaging the ${size} corpus ...`);
const pkg = JSON.parse(cascade(['package', 'create', v1, '--name', 'Corpus', '--program', 'Install=true', '--json'], env)).id;
cascade(['distribute', pkg, '--to', 'dp:cen-dp1'], env);
await onDp(pkg, 1);
cascade(['collection', 'create', 'Bench', '--rule', 'hostname like "bench-%"'], env);
const ad = JSON.parse(cascade(['advertise', pkg, '--program', 'Install', '--collection', 'Bench', '--mandatory', 'now', '--json'], env)).id;

/** Runs the bundled agent once; its download line and its peak RSS (VmHWM, read until it exits). */
async function agentOnce(dir, nodeArgs = []) {
  const prof = process.env.AGENT_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.AGENT_PROFILE}`] : [];
  const p = spawn(process.execPath, [...prof, ...nodeArgs, AGENT, 'run-now', '--data', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout.on('data', (d) => {
    out += d;
  });
  p.stderr.on('data', (d) => {
    out += d;
  });
  let hwm = 0;
  const t = setInterval(() => {
    try {
      const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${p.pid}/status`, 'utf8'));
      if (m) hwm = Math.max(hwm, Number(m[1]) * 1024);
    } catch {}
  }, 20);
  await new Promise((r) => p.once('exit', r));
  clearInterval(t);
  const m = /fetched (\d+) bytes in (\d+) ms.*; ([\d.]+) CPU-s/.exec(out);
  if (!m || !out.includes('succeeded')) throw new Error(`agent run failed:\n${out}`);
  const assembled = /assembled in (\d+) ms/.exec(out);
  return {
    bytes: Number(m[1]),
    ms: Number(m[2]),
    downloadCpu: Number(m[3]),
    assembleMs: assembled ? Number(assembled[1]) : null,
    rss: hwm,
  };
}

const ROUNDS = Number(opt('rounds', '3'));
const joinToken = cascade(['agent', 'join-token', '--uses', String(ROUNDS + 2)], env).trim();
let agents = 0;
/** A newly enrolled agent (an empty cache). */
function newAgent() {
  const dir = path.join(work, `agent${++agents}`);
  execFileSync(
    process.execPath,
    [AGENT, 'init', '--data', dir, '--site', url, '--join-token', joinToken, '--hostname', `bench-${agents}`],
    {
      stdio: 'ignore',
    },
  );
  return dir;
}

// curl: the same stored chunk files from the same DP, 8 transfers at a time.
const manifest = JSON.parse(fs.readFileSync(path.join(dpDir, 'content', 'manifests', pkg, '1.json'), 'utf8')).manifest;
const digests = [...new Set(manifest.files.flatMap((f) => (f.type === 'file' ? f.chunks.map((c) => c[0]) : [])))];
const cfg = path.join(work, 'curl.cfg');
fs.writeFileSync(cfg, digests.map((d) => `url = "${dpUrl}/content/chunks/${d.slice(0, 2)}/${d}"\noutput = "/dev/null"\n`).join(''));
const storedBytes = digests.reduce((n, d) => n + fs.statSync(path.join(dpDir, 'content', 'chunks', d.slice(0, 2), d)).size, 0);
function curlOnce() {
  const c0 = performance.now();
  const curl = spawnSync('curl', ['--silent', '--fail', '--parallel', '--parallel-max', '8', '--config', cfg]);
  if (curl.status !== 0) throw new Error(`curl failed: ${curl.stderr}`);
  return performance.now() - c0;
}

// Rounds alternate the agent (a new one each time: an empty cache) and curl; on two shared
// cores single runs vary by a third, so the median ratio is reported.
const rounds = [];
let agentDir;
for (let i = 0; i < ROUNDS; i++) {
  const dir = newAgent();
  agentDir ??= dir;
  // CPU seconds of each side: the client (a waited-for child of this process; the agent's whole
  // run-now, its start-up, check-in and the package's assembly included) and the DP's processes.
  let c0 = childTicks();
  let d0 = treeTicks(dpProc.pid);
  const a = await agentOnce(dir);
  const cpu = { agent: (childTicks() - c0) / 100, dpForAgent: (treeTicks(dpProc.pid) - d0) / 100 };
  c0 = childTicks();
  d0 = treeTicks(dpProc.pid);
  const curlMs = curlOnce();
  cpu.curl = (childTicks() - c0) / 100;
  cpu.dpForCurl = (treeTicks(dpProc.pid) - d0) / 100;
  rounds.push({ ...a, curlMs, ratio: curlMs / a.ms, cpu });
  console.error(
    `  round ${i + 1}: agent ${(a.ms / 1000).toFixed(2)} s, curl ${(curlMs / 1000).toFixed(2)} s, ${(curlMs / a.ms).toFixed(2)}; ` +
      `CPU-s: agent ${a.downloadCpu.toFixed(2)} downloading (${cpu.agent.toFixed(2)} in all) + DP ${cpu.dpForAgent.toFixed(2)}, curl ${cpu.curl.toFixed(2)} + DP ${cpu.dpForCurl.toFixed(2)}`,
  );
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const mid = rounds.find((r) => r.ratio === median(rounds.map((x) => x.ratio)));
const rawBytes = manifest.bytes;
console.log(
  `download ${size}: agent ${(((mid.bytes / mid.ms) * 1000) / MiB).toFixed(0)} MiB/s of package bytes (${(mid.ms / 1000).toFixed(1)} s; verified, decoded, cached) ` +
    `against curl ${(((storedBytes / mid.curlMs) * 1000) / MiB).toFixed(0)} MiB/s of the stored chunk files (${(mid.curlMs / 1000).toFixed(1)} s, 8 in parallel, to /dev/null): ` +
    `agent/curl ${mid.ratio.toFixed(2)} by time (median of ${ROUNDS} rounds: ${rounds.map((r) => r.ratio.toFixed(2)).join(', ')}; ${rawBytes} package bytes, ${storedBytes} stored)`,
);
console.log(`agent peak RSS: ${rounds.map((r) => (r.rss / MiB).toFixed(0)).join(', ')} MiB as shipped (node cascade-agent.cjs)`);
console.log(
  `CPU seconds in the median round: agent ${mid.downloadCpu.toFixed(2)} downloading (${mid.cpu.agent.toFixed(2)} for its whole run-now: start-up, check-in, assembly) + DP ${mid.cpu.dpForAgent.toFixed(2)}; ` +
    `curl ${mid.cpu.curl.toFixed(2)} + DP ${mid.cpu.dpForCurl.toFixed(2)}; on ${os.cpus().length} cores, a download cannot take less than (client + DP) / cores: ` +
    `agent ${((mid.downloadCpu + mid.cpu.dpForAgent) / os.cpus().length).toFixed(2)} s, curl ${((mid.cpu.curl + mid.cpu.dpForCurl) / os.cpus().length).toFixed(2)} s. ` +
    `Assembling the package from the cache: ${rounds.map((r) => r.assembleMs).join(', ')} ms`,
);

// --- 2. the 1 % update ------------------------------------------------------------------------
const up = JSON.parse(cascade(['package', 'update', pkg, v2, '--json'], env));
if (!up.flowsTo?.includes('cen-dp1')) throw new Error(`version 2 did not flow to the DP: ${JSON.stringify(up)}`);
await onDp(pkg, 2);
const second = await agentOnce(agentDir);
let literal = Number.NaN;
if (have('rsync')) {
  const dst = path.join(work, 'rsync-dst');
  spawnSync('rsync', ['-a', `${v1}/`, `${dst}/`]);
  const r = spawnSync('rsync', ['-a', '--no-whole-file', '--stats', `${v2}/`, `${dst}/`], { encoding: 'utf8' });
  literal = Number(/Literal data: ([\d,]+)/.exec(r.stdout)?.[1].replace(/,/g, ''));
}
console.log(
  `1 % update: the agent fetched ${second.bytes} bytes (${(second.bytes / MiB).toFixed(2)} MiB) for version 2; rsync's literal data ${Number.isNaN(literal) ? 'n/a (no rsync)' : `${literal} bytes (${(literal / MiB).toFixed(2)} MiB)`}; ratio ${(second.bytes / literal).toFixed(2)}`,
);

// --- 3. reaction: three agents on a 10 s cycle ------------------------------------------------
cascade(['site', 'set', '--client-cycle', '10s'], env);
const small = path.join(work, 'small');
fs.mkdirSync(small);
fs.writeFileSync(path.join(small, 'install.sh'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
fs.writeFileSync(path.join(small, 'payload.bin'), Buffer.alloc(4 * MiB, 7));
const pkg2 = JSON.parse(cascade(['package', 'create', small, '--name', 'Small', '--program', 'Install=./install.sh', '--json'], env)).id;
cascade(['collection', 'create', 'Trio', '--rule', 'hostname like "trio-%"'], env);
const ad2 = JSON.parse(
  cascade(['advertise', pkg2, '--program', 'Install', '--collection', 'Trio', '--mandatory', 'now', '--json'], env),
).id;
const token = cascade(['agent', 'join-token', '--uses', '3'], env).trim();
for (const i of [1, 2, 3]) {
  const dir = path.join(work, `trio-${i}`);
  execFileSync(process.execPath, [AGENT, 'init', '--data', dir, '--site', url, '--join-token', token, '--hostname', `trio-${i}`], {
    stdio: 'ignore',
  });
  running.push(spawn(process.execPath, [AGENT, 'start', '--data', dir], { stdio: 'ignore' }));
}
await sleep(3000); // each has checked in once, with nothing to do
cascade(['distribute', pkg2, '--to', 'dp:cen-dp1'], env);
const installedAt = await onDp(pkg2, 1);
let doneAt = 0;
while (!doneAt) {
  const s = JSON.parse(cascade(['advertisement', 'status', ad2, '--json'], env));
  if ((s.summary.succeeded ?? 0) === 3) doneAt = Date.now();
  else await sleep(100);
}
console.log(
  `reaction: 10 s cycle, 3 agents: ${((doneAt - installedAt) / 1000).toFixed(1)} s from "installed on the DP" to "succeeded" on all three (bound: one cycle plus download and run)`,
);
void ad;
for (const p of running) p.kill('SIGTERM');
await sleep(500);
removeWork(work);
