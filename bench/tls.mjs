#!/usr/bin/env node
// TLS benchmark, part of `npm run bench`: the relay CEN -> AAA -> BBB of bench/hierarchy.mjs,
// once with every site serving plain HTTP and once serving HTTPS (self-signed certificates,
// pinned through the join tokens), in the same run:
//   1. routes unlimited: what TLS costs when the machine, not the link, is the limit
//      (wall time, and the CPU seconds of the three site processes);
//   2. routes limited to R: whether TLS keeps the relay at the link's rate.
// The hardware's own AES-GCM rate (`openssl speed`) is printed beside them.
//
//   node bench/tls.mjs [--size 256MiB] [--limited-size 128MiB] [--rate 20]   (rate in MiB/s)
//
// Prints a table and writes .bench/tls.json.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BENCH, BIN, bytesOf, cascade, corpus, freePort, have, MiB, opt, removeWork, sleep } from './lib.mjs';

const { ApiClient } = await import('../dist/api/client.js');
const { certificatePin } = await import('../dist/lib/tls.js');

const size = opt('size', '256MiB');
const limitedSize = opt('limited-size', '128MiB');
const R = Number(opt('rate', '20')) * MiB;
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-tlsbench-'));
const procs = [];

/** utime + stime of a process, in seconds (Linux /proc). */
const cpuOf = (pid) => {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
};
/** Its CPU seconds and its children's (the DP content workers) that are still running. */
const cpuTree = (pid) => {
  let s = cpuOf(pid);
  try {
    for (const c of fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean)) s += cpuOf(Number(c));
  } catch {}
  return s;
};

async function site(tag, code, tls, parent) {
  const dir = path.join(work, `${tag}-${code}`);
  const port = await freePort();
  const a = ['site', 'init', '--data', dir, '--code', code, '--listen', `127.0.0.1:${port}`, tls ? '--tls' : '--no-tls'];
  if (parent) a.push('--parent', parent.url, '--join-token', cascade(['site', 'join-token'], parent.env).trim());
  cascade(a);
  const proc = spawn(process.execPath, [BIN, 'site', 'start', '--data', dir], {
    env: { ...process.env, CASCADE_LOG_LEVEL: 'warn', CASCADE_REPORT_SECONDS: '1' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  procs.push(proc);
  const url = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  const pin = tls ? certificatePin(fs.readFileSync(path.join(dir, 'tls-cert.pem'), 'utf8')) : '';
  const token = fs.readFileSync(path.join(dir, 'admin-token'), 'utf8').trim();
  const api = new ApiClient(url, { token, pin: pin || undefined });
  for (let i = 0; !(await api.healthy(1000)); i++) {
    if (i > 300) throw new Error(`${url} did not start`);
    await sleep(100);
  }
  return { url, api, proc, env: { CASCADE_SITE: url, CASCADE_TOKEN: token, CASCADE_TLS_PIN: pin } };
}

const transferTo = async (s, child, id) =>
  (await s.api.json('GET', '/api/v1/transfers')).transfers.find((t) => t.child === child && t.packageId === id && t.version === 1);

/** Distributes `dir` as a new package from CEN to BBB; seconds until BBB holds it, and CPU seconds of the three sites. */
async function relay(chain, dir, name) {
  const [cen, a] = chain;
  const id = JSON.parse(cascade(['package', 'create', dir, '--name', name, '--priority', 'high', '--json'], cen.env)).id;
  await sleep(300);
  const cpu0 = chain.map((s) => cpuTree(s.proc.pid));
  const t0 = Date.now();
  await cen.api.json('POST', '/api/v1/distributions', { json: { packageId: id, to: ['site:BBB'] } });
  while ((await transferTo(a, 'BBB', id))?.state !== 'done') {
    if (Date.now() - t0 > 15 * 60_000) throw new Error(`${name}: not at BBB after 15 minutes`);
    await sleep(100);
  }
  const seconds = (Date.now() - t0) / 1000;
  const cpu = chain.reduce((n, s, i) => n + cpuTree(s.proc.pid) - cpu0[i], 0);
  return { seconds, cpuSeconds: cpu };
}

const results = { date: new Date().toISOString(), rate: R };
const rows = [];
const row = (metric, value, peer = '') => {
  rows.push([metric, value, peer]);
  console.error(`${metric}: ${value}${peer ? `   (${peer})` : ''}`);
};

try {
  const big = corpus(`corpus-${size}`, ['--size', size, '--seed', '1']);
  const small = corpus(`corpus-${limitedSize}-seed2`, ['--size', limitedSize, '--seed', '2']);
  const S = bytesOf(big);
  const s2 = bytesOf(small);
  // The hardware's AES-128-GCM rate on 16 KiB blocks (TLS records are at most 16 KiB), one core.
  let aes = null;
  if (have('openssl')) {
    const out = execFileSync('openssl', ['speed', '-seconds', '2', '-bytes', '16384', '-evp', 'aes-128-gcm'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    const m = /aes-128-gcm\s+([\d.]+)k/i.exec(out);
    if (m) aes = (Number(m[1]) * 1000) / MiB;
  }
  results.opensslAes128GcmMiBs = aes;

  for (const tls of [false, true]) {
    const tag = tls ? 'https' : 'http';
    const cen = await site(tag, 'CEN', tls);
    const a = await site(tag, 'AAA', tls, cen);
    const b = await site(tag, 'BBB', tls, a);
    const chain = [cen, a, b];
    const free = await relay(chain, big, `Corpus-${tag}`);
    for (const [from, child] of [
      [cen, 'AAA'],
      [a, 'BBB'],
    ])
      cascade(['route', 'set', child, '--rate', `${R / MiB}MiB/s`, '--concurrency', '2'], from.env);
    const limited = await relay(chain, small, `Limited-${tag}`);
    results[tag] = { unlimited: free, limited };
    for (const s of chain) s.proc.kill('SIGTERM');
    await sleep(1000);
  }
  const h = results.http;
  const s = results.https;
  row(
    `relay, routes unlimited: ${(S / MiB).toFixed(0)} MiB CEN -> AAA -> BBB`,
    `HTTPS ${s.unlimited.seconds.toFixed(1)} s (${(S / MiB / s.unlimited.seconds).toFixed(0)} MiB/s end to end), ${s.unlimited.cpuSeconds.toFixed(1)} CPU-s`,
    `HTTP ${h.unlimited.seconds.toFixed(1)} s, ${h.unlimited.cpuSeconds.toFixed(1)} CPU-s: HTTPS takes ${(s.unlimited.seconds / h.unlimited.seconds).toFixed(2)} x the time`,
  );
  row(
    `relay, routes at ${R / MiB} MiB/s: ${(s2 / MiB).toFixed(0)} MiB CEN -> AAA -> BBB`,
    `HTTPS ${s.limited.seconds.toFixed(1)} s = ${(s.limited.seconds / (s2 / R)).toFixed(2)} x S/R`,
    `HTTP ${h.limited.seconds.toFixed(1)} s = ${(h.limited.seconds / (s2 / R)).toFixed(2)} x S/R`,
  );
  if (aes) row('openssl speed -evp aes-128-gcm, 16 KiB blocks, one core', `${aes.toFixed(0)} MiB/s`, 'the hardware limit of encryption');
} finally {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGTERM');
  await sleep(500);
  removeWork(work);
}

fs.writeFileSync(path.join(BENCH, 'tls.json'), `${JSON.stringify(results, null, 2)}\n`);
console.log('\n| metric | Cascade | peer, same run |\n|---|---|---|');
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
