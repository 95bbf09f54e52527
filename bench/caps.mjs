#!/usr/bin/env node
// Agent-upgrade benchmark under download caps (part of `npm run bench`), all in one run on
// loopback: a central site CEN and its child BER, two DPs each. `cascade agent publish` at CEN
// publishes a newer agent (the bundled dist/cascade-agent.cjs, as a newer release carries it)
// for every client of both sites, spread over --upgrade-spread; `cascade agent simulate` runs the
// clients, half enrolled at each site, first check-ins over --spread, each client on a link of
// --link-rate (on loopback a download takes milliseconds and downloads would barely overlap),
// until every one has upgraded:
//  1. capped: each site allows --cap concurrent downloads (and half of that per DP);
//  2. uncapped: the same with no cap, new clients, the next agent version.
// Reported: peak concurrent downloads per site (seen by the clients and by the site's own
// /metrics), p50/p99 check-in latency (by the simulator, by a probe client in this process, by
// the sites), completion time, bytes per hour per DP, the agent's bytes on each route. The
// simulator stands in for 10,000 machines of their own, so it runs at nice 19 and yields the two
// shared cores to the sites and DPs under test (CAPS_SIM_FULL_PRIORITY=1: it competes with them).
//
// A 2-minute spread is 720 × harsher than the default of 24 hours.
//
//   node bench/caps.mjs [--clients 10000] [--cap 20] [--concurrency 1000] [--upgrade-spread 2m] [--spread 60s] [--link-rate 1Mbit/s]
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { BENCH, BIN, cascade, freePort, opt, ROOT, removeWork, waitUp } from './lib.mjs';

const nClients = Number(opt('clients', '10000'));
const cap = Number(opt('cap', '20'));
const concurrency = opt('concurrency', '1000');
const spread = opt('spread', '60s');
const linkRate = opt('link-rate', '1Mbit/s');
const upgradeSpread = opt('upgrade-spread', '2m');
let agentBytes = 0;
/** Per run, what the agent's content cost each route. */
const routeBytes = {};
const work = path.join(BENCH, 'caps');
fs.rmSync(work, { recursive: true, force: true });
fs.mkdirSync(work, { recursive: true });
const running = [];
process.on('exit', () => {
  for (const p of running) if (p.exitCode === null) p.kill('SIGKILL');
});

function serve(role, dir) {
  // CAPS_PROFILE=DIR: the site servers write CPU profiles there (for finding their stalls).
  const prof = process.env.CAPS_PROFILE && role === 'site' ? ['--cpu-prof', `--cpu-prof-dir=${process.env.CAPS_PROFILE}`] : [];
  const p = spawn(process.execPath, [...prof, BIN, role, 'start', '--data', dir], {
    env: {
      ...process.env,
      CASCADE_LOG_LEVEL: 'warn',
      CASCADE_REPORT_SECONDS: '2',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  running.push(p);
  return p;
}

async function site(code, parent) {
  const dir = path.join(work, code);
  const port = await freePort();
  const a = ['site', 'init', '--data', dir, '--code', code, '--listen', `127.0.0.1:${port}`];
  if (parent) a.push('--parent', parent.url, '--join-token', JSON.parse(cascade(['site', 'join-token', '--json'], parent.env)).token);
  cascade(a);
  serve('site', dir);
  const url = `http://127.0.0.1:${port}`;
  await waitUp(url);
  const token = fs.readFileSync(path.join(dir, 'admin-token'), 'utf8').trim();
  return { code, url, env: { CASCADE_SITE: url, CASCADE_TOKEN: token } };
}

async function dp(s, name) {
  const dir = path.join(work, name);
  const port = await freePort();
  const token = cascade(['dp', 'join-token'], s.env).trim();
  cascade(['dp', 'init', '--data', dir, '--site', s.url, '--join-token', token, '--name', name, '--listen', `127.0.0.1:${port}`]);
  serve('dp', dir);
  await waitUp(`http://127.0.0.1:${port}`);
}

/** A gauge from a site's /metrics, on a connection of its own (the pooled one may have gone idle). */
const metric = (url, name) =>
  new Promise((resolve, reject) => {
    http
      .get(`${url}/metrics`, { agent: false }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d) => {
          text += d;
        });
        res.on('end', () => {
          const m = new RegExp(`^${name} ([0-9.e+-]+)$`, 'm').exec(text);
          resolve(m ? Number(m[1]) : Number.NaN);
        });
      })
      .on('error', reject);
  });

const cen = await site('CEN');
const ber = await site('BER', cen);
for (const [s, n] of [
  [cen, 'cen-dp1'],
  [cen, 'cen-dp2'],
  [ber, 'ber-dp1'],
  [ber, 'ber-dp2'],
])
  await dp(s, n);

// Clients download from the DPs, not from the site servers: a boundary per site names its two.
cascade(['boundary', 'add', 'CEN', '127.0.0.0/8', '--dp', 'cen-dp1', '--dp', 'cen-dp2'], cen.env);
cascade(['boundary', 'add', 'BER', '127.0.0.0/8', '--dp', 'ber-dp1', '--dp', 'ber-dp2'], ber.env);

const { writeAgentRelease } = await import('../dist/lib/version.js');

/** Publishes an agent at CEN (for CEN and BER) and waits until all four DPs serve it. */
async function publish(version) {
  // The built agent as a newer release would carry it.
  const file = writeAgentRelease(path.join(ROOT, 'dist', 'cascade-agent.cjs'), version, path.join(work, `cascade-agent-${version}.cjs`));
  const r = JSON.parse(cascade(['agent', 'publish', '--file', file, '--spread', upgradeSpread, '--grace', '0s', '--json'], cen.env));
  console.error(`agent ${version}: ${r.packageId} version ${r.version}, advertisement ${r.advertisement}; waiting for the four DPs ...`);
  for (let i = 0; ; i++) {
    const st = JSON.parse(cascade(['status', r.packageId, '--json'], cen.env));
    if (['cen-dp1', 'cen-dp2', 'ber-dp1', 'ber-dp2'].every((n) => st.dps?.find((d) => d.dp === n)?.serving === r.version)) break;
    if (i > 300) throw new Error(`the agent did not reach the DPs: ${JSON.stringify(st.dps)}`);
    await new Promise((res) => setTimeout(res, 200));
  }
  // What the agent's content cost each route (site to child site, site to DP): sent once,
  // whatever the number of clients.
  const routes = {};
  for (const s of [cen, ber]) {
    const res = await fetch(`${s.url}/api/v1/transfers`, { headers: { authorization: `Bearer ${s.env.CASCADE_TOKEN}` } });
    for (const t of (await res.json()).transfers)
      if (t.packageId === r.packageId && t.version === r.version)
        routes[`${s.code}->${t.child}`] = { wireBytes: t.wireBytes, seconds: (Date.parse(t.updatedAt) - Date.parse(t.createdAt)) / 1000 };
  }
  console.error(
    `agent ${version} on each route: ${Object.entries(routes)
      .map(([k, v]) => `${k} ${v.wireBytes} bytes in ${v.seconds.toFixed(1)} s`)
      .join(', ')}`,
  );
  return { ...r, bytes: fs.statSync(file).size, routes };
}

/** One client of a site that checks in every 200 ms until stopped; its latencies. */
async function probe(s) {
  const token = cascade(['agent', 'join-token'], s.env).trim();
  const inventory = {
    hostname: `probe-${s.code}`,
    os: 'linux',
    arch: 'x64',
    version: '0.0.1',
    addresses: [],
    freeDisk: null,
    linkSpeed: null,
  };
  const post = async (p, body, auth) => {
    const res = await fetch(`${s.url}${p}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(auth ? { authorization: `Bearer ${auth}` } : {}) },
      body: JSON.stringify(body),
    });
    if (!res.ok) throw new Error(`${p}: ${res.status} ${await res.text()}`);
    return res.json();
  };
  const { credential } = await post('/api/v1/agent/enrol', { token, inventory });
  const times = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const t = performance.now();
      await post('/api/v1/agent/checkin', { inventory: null, reports: [], problems: [] }, credential);
      times.push(performance.now() - t);
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
  return {
    code: s.code,
    stop() {
      running = false;
      void loop;
      const xs = [...times].sort((a, b) => a - b);
      const at = (p) => Math.round(xs[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] ?? 0);
      return { n: xs.length, p50Ms: at(50), p99Ms: at(99), maxMs: Math.round(xs.at(-1) ?? 0) };
    },
  };
}

const results = { date: new Date().toISOString(), clients: nClients, cap, runs: {} };
for (const [label, seed, capped] of [
  ['capped', 1, true],
  ['uncapped', 2, false],
]) {
  for (const s of [cen, ber])
    cascade(
      capped
        ? ['site', 'set', '--download-slots', String(cap), '--dp-download-slots', String(Math.ceil(cap / 2)), '--client-cycle', '10m']
        : ['site', 'set', '--download-slots', 'none', '--dp-download-slots', 'none', '--client-cycle', '10m'],
      s.env,
    );
  // Each run upgrades fresh clients (still on this release's agent) to a newer agent.
  const pub = await publish(`0.9.${seed}`);
  agentBytes = pub.bytes;
  routeBytes[label] = pub.routes;
  // The advertisement reaches BER with CEN's next policy push.
  await new Promise((r) => setTimeout(r, 3000));
  const args = ['agent', 'simulate', '--clients', String(nClients), '--seed', String(seed), '--until-done', '--duration', '20m'];
  for (const s of [cen, ber])
    args.push('--site', s.url, '--join-token', cascade(['agent', 'join-token', '--uses', String(nClients)], s.env).trim());
  args.push('--concurrency', concurrency, '--spread', spread, '--link-rate', linkRate, '--json');
  console.error(`${label}: ${nClients} simulated clients ...`);
  // A probe per site, in this (otherwise idle) process: one more client checking in every
  // 200 ms while the fleet upgrades, timed apart from the simulator's own busy event loop.
  const probes = await Promise.all([cen, ber].map((s) => probe(s)));
  const r = await new Promise((resolve) => {
    // CAPS_PROFILE=DIR: the simulator writes a CPU profile there too.
    const simProf = process.env.CAPS_PROFILE
      ? ['--cpu-prof', `--cpu-prof-dir=${process.env.CAPS_PROFILE}`, '--cpu-prof-name=simulator.cpuprofile']
      : [];
    const p = spawn(process.execPath, [...simProf, BIN, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    // The simulator stands in for 10,000 machines of their own: on these two shared cores it
    // yields to the sites and DPs under test (nice 19) instead of competing with them.
    if (!process.env.CAPS_SIM_FULL_PRIORITY) os.setPriority(p.pid, 19);
    let stdout = '';
    p.stdout.on('data', (d) => {
      stdout += d;
    });
    p.on('close', (status) => resolve({ status, stdout }));
  });
  const probed = Object.fromEntries(probes.map((p) => [p.code, p.stop()]));
  if (r.status !== 0) throw new Error(`agent simulate failed (exit ${r.status})`);
  fs.writeFileSync(path.join(BENCH, `caps-${label}.json`), r.stdout);
  const sim = JSON.parse(r.stdout);
  console.error(
    `${label}: ${sim.upgrades} of ${sim.clients} upgraded in ${sim.seconds} s; check-in p99 ${sim.checkinP99Ms} ms (${sim.checkinErrors} failed); cycles started after falling due, p50 / p99: ${sim.startLagP50Ms} / ${sim.startLagP99Ms} ms`,
  );
  const sitePeaks = {};
  const stalls = {};
  const handled = {};
  for (const s of [cen, ber]) {
    sitePeaks[s.code] = await metric(s.url, 'cascade_client_downloads_peak');
    handled[s.code] = {
      p99Ms: Math.round((await metric(s.url, 'cascade_checkin_p99_seconds')) * 1000),
      maxMs: Math.round((await metric(s.url, 'cascade_checkin_max_seconds')) * 1000),
    };
    stalls[s.code] = {
      p99Ms: Math.round((await metric(s.url, 'cascade_event_loop_delay_p99_seconds')) * 1000),
      maxMs: Math.round((await metric(s.url, 'cascade_event_loop_delay_max_seconds')) * 1000),
    };
  }
  console.error(
    `${label}: event-loop delay of the sites since start (p99 / max): ${Object.entries(stalls)
      .map(([c, d]) => `${c} ${d.p99Ms} / ${d.maxMs} ms`)
      .join(', ')}`,
  );
  console.error(
    `${label}: check-ins as the sites handled them (p99 / max of the last 10,000): ${Object.entries(handled)
      .map(([c, d]) => `${c} ${d.p99Ms} / ${d.maxMs} ms`)
      .join(', ')}; the simulator's own event-loop delay p99 ${sim.eventLoopP99Ms} ms, max ${sim.eventLoopMaxMs} ms`,
  );
  console.error(
    `${label}: probe check-ins every 200 ms (p50 / p99 / max): ${Object.entries(probed)
      .map(([c, d]) => `${c} ${d.p50Ms} / ${d.p99Ms} / ${d.maxMs} ms (${d.n})`)
      .join(', ')}`,
  );
  results.runs[label] = { ...sim, sitePeaks, stalls, handled, probed, routes: routeBytes[label] };
}

const fmtSeconds = (a, b) => ((Date.parse(b) - Date.parse(a)) / 1000).toFixed(1);
const rows = [];
for (const [label, run] of Object.entries(results.runs)) {
  for (const [code, f] of Object.entries(run.sites)) {
    const secs = (Date.parse(f.lastDownloadAt) - Date.parse(f.firstDownloadAt)) / 1000;
    const perDp = Object.entries(f.dps)
      .sort()
      .map(
        ([d, b]) =>
          `${d} ${((b / secs) * 3600) / 2 ** 30 < 10 ? (((b / secs) * 3600) / 2 ** 30).toFixed(2) : Math.round(((b / secs) * 3600) / 2 ** 30)} GiB/h`,
      )
      .join(', ');
    rows.push([
      label,
      code,
      f.clients,
      f.downloads,
      `${f.peakDownloads} (site: ${label === 'capped' ? run.sitePeaks[code] : '—'})`,
      f.slotRefusals,
      `${f.checkinP50Ms} / ${f.checkinP99Ms}`,
      fmtSeconds(f.firstDownloadAt, f.lastDownloadAt),
      perDp,
    ]);
  }
  rows.push([
    label,
    'all',
    run.clients,
    run.downloads,
    '',
    '',
    `${run.checkinP50Ms} / ${run.checkinP99Ms}`,
    `${run.seconds} (${run.checkinErrors} check-ins failed)`,
    '',
  ]);
}
fs.writeFileSync(path.join(BENCH, 'caps.json'), `${JSON.stringify(results, null, 2)}\n`);
console.log(
  `\nAgent upgrade under download caps: ${nClients} simulated clients over CEN and BER (two DPs each), cap ${cap} per site and ${Math.ceil(cap / 2)} per DP, agent of ${agentBytes} bytes published with --spread ${upgradeSpread}, first check-ins over ${spread}, each client on a link of ${linkRate}`,
);
console.log(
  '| run | site | clients | downloads | peak concurrent (clients; site /metrics) | slot refusals | check-in p50 / p99 (ms) | download span (s) | bytes per hour per DP |',
);
console.log('|---|---|---|---|---|---|---|---|---|');
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
for (const [label, routes] of Object.entries(routeBytes))
  console.log(
    `${label}, the agent's content on each route (once, whatever the number of clients): ${Object.entries(routes)
      .map(([k, v]) => `${k} ${v.wireBytes} bytes`)
      .join(', ')}`,
  );
for (const p of running) p.kill('SIGTERM');
removeWork(work);
