#!/usr/bin/env node
// DP fan-out benchmark (issue 4), part of `npm run bench`: CEN -> EUR, with 20 DPs under EUR;
// one package distributed to every DP of EUR. The CEN -> EUR route must carry each chunk once.
//
//   node bench/dps.mjs [--size 128MiB] [--dps 20]
//
// Prints a table and writes .bench/dps.json.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BENCH, BIN, cascade, corpus, freePort, opt, removeWork, sleep, waitUp } from './lib.mjs';

const size = opt('size', '128MiB');
const count = Number(opt('dps', '20'));
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-dpbench-'));
const procs = [];
const run = (role, dir, listen) => {
  const p = spawn(process.execPath, [BIN, role, 'start', '--data', dir, '--listen', listen], {
    env: { ...process.env, CASCADE_LOG_LEVEL: 'warn', CASCADE_REPORT_SECONDS: '1' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  procs.push(p);
};
async function site(code, parent) {
  const dir = path.join(work, code);
  const port = await freePort();
  const a = ['site', 'init', '--data', dir, '--code', code, '--listen', `127.0.0.1:${port}`];
  if (parent) a.push('--parent', parent.url, '--join-token', JSON.parse(cascade(['site', 'join-token', '--json'], parent.env)).token);
  cascade(a);
  run('site', dir, `127.0.0.1:${port}`);
  const url = `http://127.0.0.1:${port}`;
  await waitUp(url);
  const token = fs.readFileSync(path.join(dir, 'admin-token'), 'utf8').trim();
  return { url, token, env: { CASCADE_SITE: url, CASCADE_TOKEN: token } };
}
async function dp(name, at) {
  const dir = path.join(work, name);
  const port = await freePort();
  const token = JSON.parse(cascade(['dp', 'join-token', '--json'], at.env)).token;
  cascade(['dp', 'init', '--data', dir, '--site', at.url, '--join-token', token, '--name', name, '--listen', `127.0.0.1:${port}`]);
  run('dp', dir, `127.0.0.1:${port}`);
  await waitUp(`http://127.0.0.1:${port}`);
}
const api = async (s, p, init = {}) =>
  (await fetch(`${s.url}${p}`, { ...init, headers: { authorization: `Bearer ${s.token}`, 'content-type': 'application/json' } })).json();

const results = {};
try {
  const src = corpus(`corpus-${size}`, ['--size', size, '--seed', '1']);
  const cen = await site('CEN');
  const eur = await site('EUR', cen);
  const t0 = Date.now();
  for (let i = 1; i <= count; i++) await dp(`eur-dp${String(i).padStart(2, '0')}`, eur);
  console.error(`${count} DPs joined and started in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const id = JSON.parse(cascade(['package', 'create', src, '--name', 'Fanout', '--json'], cen.env)).id;
  const plan = JSON.parse(cascade(['distribute', id, '--to', 'site:EUR', '--json'], cen.env));
  const t1 = Date.now();
  let s;
  for (let i = 0; i < 4800; i++) {
    s = await api(cen, `/api/v1/distributions/${id}`);
    if (s.summary.installed === count + 1) break;
    await sleep(250);
  }
  const seconds = (Date.now() - t1) / 1000;
  const down = (await api(cen, '/api/v1/transfers')).transfers.filter((t) => t.packageId === id);
  const toDps = (await api(eur, '/api/v1/transfers')).transfers.filter((t) => t.packageId === id);
  const routeBytes = down.reduce((n, t) => n + t.wireBytes, 0);
  Object.assign(results, {
    dps: count,
    installed: s.summary.installed,
    uniqueBytes: plan.uniqueBytes,
    cenToEurWireBytes: routeBytes,
    ratio: routeBytes / plan.uniqueBytes,
    eurToDpsWireBytes: toDps.reduce((n, t) => n + t.wireBytes, 0),
    seconds,
  });
  console.log('\n| metric | Cascade | target |\n|---|---|---|');
  console.log(`| DPs installed under EUR (+ EUR's local DP) | ${s.summary.installed} of ${count + 1} in ${seconds.toFixed(1)} s | all |`);
  console.log(
    `| CEN -> EUR route bytes / unique bytes | ${(routeBytes / 1e6).toFixed(1)} MB / ${(plan.uniqueBytes / 1e6).toFixed(1)} MB = ${results.ratio.toFixed(4)} | <= 1.02 |`,
  );
  console.log(
    `| EUR -> its ${count} DPs, all routes | ${(results.eurToDpsWireBytes / 1e6).toFixed(1)} MB (${(results.eurToDpsWireBytes / plan.uniqueBytes).toFixed(2)} x unique) | ${count} x, each DP once |`,
  );
} finally {
  for (const p of procs) p.kill('SIGTERM');
  await sleep(1000);
  removeWork(work);
}
fs.mkdirSync(BENCH, { recursive: true });
fs.writeFileSync(path.join(BENCH, 'dps.json'), `${JSON.stringify(results, null, 2)}\n`);
