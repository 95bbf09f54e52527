#!/usr/bin/env node
// Hierarchy benchmarks (issue 3), part of `npm run bench`: a chain CEN -> A -> B on loopback,
// every route limited to R, the 256 MiB corpus sent to B.
//
//   node bench/hierarchy.mjs [--size 256MiB] [--rate 20]   (rate in MiB/s)
//
// Prints a table and writes .bench/hierarchy.json.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BENCH, BIN, bytesOf, cascade, corpus, freePort, have, MiB, opt, removeWork, sleep, waitUp } from './lib.mjs';

const size = opt('size', '256MiB');
const R = Number(opt('rate', '20')) * 1024 * 1024;

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-hbench-'));
const procs = [];
const sites = {};
async function site(code, parent) {
  const dir = path.join(work, code);
  const port = await freePort();
  const a = ['site', 'init', '--data', dir, '--code', code, '--listen', `127.0.0.1:${port}`];
  if (parent) a.push('--parent', parent.url, '--join-token', JSON.parse(cascade(['site', 'join-token', '--json'], parent.env)).token);
  cascade(a);
  const proc = spawn(process.execPath, [BIN, 'site', 'start', '--data', dir], {
    env: { ...process.env, CASCADE_LOG_LEVEL: 'warn', CASCADE_REPORT_SECONDS: '1' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  procs.push(proc);
  const url = `http://127.0.0.1:${port}`;
  await waitUp(url);
  const token = fs.readFileSync(path.join(dir, 'admin-token'), 'utf8').trim();
  sites[code] = { url, token, env: { CASCADE_SITE: url, CASCADE_TOKEN: token } };
  return sites[code];
}
const api = async (s, p, init = {}) => {
  const r = await fetch(`${s.url}${p}`, {
    ...init,
    headers: { authorization: `Bearer ${s.token}`, 'content-type': 'application/json', ...(init.headers ?? {}) },
  });
  return r.json();
};
const transfersTo = async (s, child, id, version) =>
  (await api(s, '/api/v1/transfers')).transfers.find((t) => t.child === child && t.packageId === id && t.version === version);

const rows = [];
const row = (metric, value, peer = '', target = '') => {
  rows.push([metric, value, peer, target]);
  console.error(`${metric}: ${value}${peer ? `   (${peer})` : ''}`);
};
const results = { date: new Date().toISOString(), rate: R };

try {
  const v1 = corpus(`corpus-${size}`, ['--size', size, '--seed', '1']);
  const v2 = corpus(`corpus-${size}-change1`, ['--from', v1, '--change', '1%']);
  const S = bytesOf(v1);
  const cen = await site('CEN');
  const a = await site('AAA', cen);
  const _b = await site('BBB', a);
  for (const [from, child] of [
    [cen, 'AAA'],
    [a, 'BBB'],
  ]) {
    cascade(['route', 'set', child, '--rate', `${R / MiB}MiB/s`, '--concurrency', '2'], from.env);
  }
  const created = JSON.parse(cascade(['package', 'create', v1, '--name', 'Corpus', '--priority', 'high', '--json'], cen.env));
  const id = created.id;

  // Relay: completion at B against S/R.
  const samples = [];
  const t0 = Date.now();
  await api(cen, '/api/v1/distributions', { method: 'POST', body: JSON.stringify({ packageId: id, to: ['site:BBB'] }) });
  let doneAt = 0;
  while (Date.now() - t0 < 10 * 60_000) {
    const t1 = await transfersTo(cen, 'AAA', id, 1);
    const t2 = await transfersTo(a, 'BBB', id, 1);
    samples.push({ t: (Date.now() - t0) / 1000, w1: t1?.wireBytes ?? 0, w2: t2?.wireBytes ?? 0 });
    if (t2?.state === 'done') {
      doneAt = (Date.now() - t0) / 1000;
      break;
    }
    await sleep(250);
  }
  const ideal = S / R;
  const firstB = samples.find((x) => x.w2 > 0)?.t ?? null;
  const aDone = samples.find((x) => x.w1 >= S)?.t ?? null;
  results.relay = { bytes: S, seconds: doneAt, idealSeconds: ideal, ratio: doneAt / ideal, firstByteToB: firstB, allToA: aDone };
  console.error(`relay timeline: first bytes to B at ${firstB} s, all bytes to A at ${aDone} s, done at B ${doneAt} s`);

  // rsync hop by hop with the same limit (store-and-forward).
  let rsyncSecs = null;
  if (have('rsync')) {
    const h1 = path.join(work, 'rsync-A');
    const h2 = path.join(work, 'rsync-B');
    const t = Date.now();
    execFileSync('rsync', ['-a', `--bwlimit=${Math.round(R / 1024)}`, `${v1}/`, `${h1}/`]);
    execFileSync('rsync', ['-a', `--bwlimit=${Math.round(R / 1024)}`, `${h1}/`, `${h2}/`]);
    rsyncSecs = (Date.now() - t) / 1000;
  }
  results.relay.rsyncHopByHopSeconds = rsyncSecs;
  row(
    `relay: ${(S / MiB).toFixed(0)} MiB CEN -> A -> B, each route ${R / MiB} MiB/s`,
    `${doneAt.toFixed(1)} s = ${(doneAt / ideal).toFixed(2)} x S/R (S/R = ${ideal.toFixed(1)} s)`,
    rsyncSecs ? `rsync hop by hop, --bwlimit: ${rsyncSecs.toFixed(1)} s = ${(rsyncSecs / ideal).toFixed(2)} x S/R` : '',
    '<= 1.25 x S/R',
  );

  // Bytes on each route against the bytes of the chunks the receiver lacked (all of them here).
  const t1 = await transfersTo(cen, 'AAA', id, 1);
  const t2 = await transfersTo(a, 'BBB', id, 1);
  results.routeBytes = { cenToA: t1.wireBytes, aToB: t2.wireBytes, lacked: S };
  row(
    'bytes on each route / bytes the receiver lacked',
    `CEN->A ${(t1.wireBytes / S).toFixed(4)}, A->B ${(t2.wireBytes / S).toFixed(4)}`,
    '',
    '<= 1.02',
  );

  // Rate: the most any 10 s window carried, per route.
  const maxWindow = (key) => {
    let best = 0;
    for (let i = 0; i < samples.length; i++) {
      for (let j = i; j < samples.length && samples[j].t - samples[i].t <= 10; j++) {
        if (samples[j].t - samples[i].t >= 9.5) best = Math.max(best, (samples[j][key] - samples[i][key]) / (samples[j].t - samples[i].t));
      }
    }
    return best;
  };
  const w1 = maxWindow('w1');
  const w2 = maxWindow('w2');
  results.rateWindows = { cenToA: w1 / R, aToB: w2 / R };
  row('rate: most carried in any 10 s window / R', `CEN->A ${(w1 / R).toFixed(3)}, A->B ${(w2 / R).toFixed(3)}`, '', '<= 1.05');

  // Schedule: a low-priority package while the route is open to high only.
  cascade(['route', 'set', 'AAA', '--schedule', 'daily 00-24 high'], cen.env);
  const smallDir = path.join(work, 'small');
  fs.mkdirSync(smallDir);
  fs.writeFileSync(path.join(smallDir, 'x.bin'), fs.readFileSync(path.join(v1, 'setup.exe')).subarray(0, 256 << 10));
  fs.writeFileSync(path.join(smallDir, 'y.bin'), Buffer.from(String(Date.now()).repeat(50000)));
  const low = JSON.parse(cascade(['package', 'create', smallDir, '--name', 'Low', '--priority', 'low', '--json'], cen.env)).id;
  await api(cen, '/api/v1/distributions', { method: 'POST', body: JSON.stringify({ packageId: low, to: ['site:AAA'] }) });
  await sleep(5000);
  const held = await transfersTo(cen, 'AAA', low, 1);
  results.schedule = { heldWireBytes: held?.wireBytes ?? 0 };
  row('schedule: content bytes while the cell forbids the priority (5 s)', `${held?.wireBytes ?? 0} bytes`, '', '0');
  cascade(['route', 'set', 'AAA', '--schedule', 'all'], cen.env);

  // The 1% update, on each route, against rsync's literal data for the same change.
  const u = JSON.parse(cascade(['package', 'update', id, v2, '--json'], cen.env));
  await api(cen, '/api/v1/distributions', { method: 'POST', body: JSON.stringify({ packageId: id, to: ['site:BBB'] }) });
  for (let i = 0; i < 2400; i++) {
    const t = await transfersTo(a, 'BBB', id, u.version);
    if (t?.state === 'done') break;
    await sleep(250);
  }
  const u1 = await transfersTo(cen, 'AAA', id, u.version);
  const u2 = await transfersTo(a, 'BBB', id, u.version);
  // The peer: rsync's literal data for the same change (skipped, and said, without rsync).
  let literal = Number.NaN;
  if (have('rsync')) {
    const copy = path.join(work, 'rsync-update');
    execFileSync('cp', ['-a', `${v1}/.`, copy]);
    const stats = execFileSync('rsync', ['-a', '--no-whole-file', '--stats', `${v2}/`, `${copy}/`], { encoding: 'utf8' });
    literal = Number(/Literal data: ([\d,]+) bytes/.exec(stats)?.[1].replace(/,/g, ''));
  }
  results.update = { cenToA: u1?.wireBytes, aToB: u2?.wireBytes, rsyncLiteral: Number.isNaN(literal) ? null : literal };
  row(
    'the 1% update on each route',
    `CEN->A ${(u1.wireBytes / 1e6).toFixed(2)} MB (${(u1.wireBytes / literal).toFixed(2)} x), A->B ${(u2.wireBytes / 1e6).toFixed(2)} MB (${(u2.wireBytes / literal).toFixed(2)} x)`,
    Number.isNaN(literal) ? 'rsync not installed: no peer' : `rsync literal data: ${(literal / 1e6).toFixed(2)} MB`,
    '<= 1.5 x rsync',
  );
} finally {
  for (const p of procs) p.kill('SIGTERM');
  await sleep(500);
  removeWork(work);
}

fs.writeFileSync(path.join(BENCH, 'hierarchy.json'), `${JSON.stringify(results, null, 2)}\n`);
console.log('\n| metric | Cascade | peer, same run | target |\n|---|---|---|---|');
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
