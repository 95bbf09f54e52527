#!/usr/bin/env node
// Courier benchmarks (issue 5), part of `npm run bench`: CEN and a child EUR whose route runs
// through a counting TCP proxy (the "WAN"); the 512 MiB corpus distributed --via courier,
// exported at CEN to a parcel file, imported at EUR.
//
//   node bench/courier.mjs [--size 512MiB] [--tmp DIR] [--keep 1]
//
// Export and import are timed as the admin sees them: the whole `cascade courier export`
// (site reads and streams, CLI checks and writes the file, fsync) and `cascade courier import`
// (CLI streams the file, site verifies every chunk and stores it durably, installs). Prints a
// table and writes .bench/courier.json.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { BENCH, BIN, bytesOf, corpus, MiB, opt, walk } from './lib.mjs';

const size = opt('size', '512MiB');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const freePort = () =>
  new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
const cascade = (argv, env = {}) => {
  const t = process.hrtime.bigint();
  const r = spawnSync(process.execPath, [BIN, ...argv], { env: { ...process.env, ...env }, encoding: 'utf8', maxBuffer: 64 * MiB });
  const secs = Number(process.hrtime.bigint() - t) / 1e9;
  if (r.status !== 0) throw new Error(`cascade ${argv.join(' ')} failed: ${r.stderr}`);
  return { out: r.stdout, secs };
};

// The WAN route CEN -> EUR: every byte CEN sends EUR is counted, and chunk batches noticed.
const wan = { bytes: 0, chunkBatches: 0 };
let eurPort = 0;
const proxy = net.createServer((client) => {
  const up = net.connect(eurPort, '127.0.0.1');
  let tail = '';
  client.on('data', (d) => {
    wan.bytes += d.length;
    const text = tail + d.toString('latin1');
    wan.chunkBatches += text.split('POST /api/v1/transfers/chunks').length - 1;
    tail = text.slice(-40);
  });
  client.pipe(up);
  up.pipe(client);
  const end = () => {
    client.destroy();
    up.destroy();
  };
  for (const s of [client, up]) {
    s.on('error', end);
    s.on('close', end);
  }
});

// --tmp /dev/shm puts the sites and the parcel on tmpfs: the software's own ceiling, no disk.
const work = fs.mkdtempSync(path.join(opt('tmp', os.tmpdir()), 'cascade-cbench-'));
const procs = [];
async function site(code, parent, viaProxy) {
  const dir = path.join(work, code);
  const port = await freePort();
  const a = ['site', 'init', '--data', dir, '--code', code, '--listen', `127.0.0.1:${port}`];
  if (viaProxy) {
    eurPort = port;
    const p = await freePort();
    await new Promise((r) => proxy.listen(p, '127.0.0.1', r));
    a.push('--url', `http://127.0.0.1:${p}`);
  }
  if (parent) a.push('--parent', parent.url, '--join-token', JSON.parse(cascade(['site', 'join-token', '--json'], parent.env).out).token);
  cascade(a);
  // CASCADE_BENCH_PROF=DIR: CPU profiles of the site servers there.
  const prof = process.env.CASCADE_BENCH_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.CASCADE_BENCH_PROF}`] : [];
  const proc = spawn(process.execPath, [...prof, BIN, 'site', 'start', '--data', dir], {
    env: { ...process.env, CASCADE_LOG_LEVEL: 'warn', CASCADE_REPORT_SECONDS: '1' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  procs.push(proc);
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) break;
    } catch {}
    await sleep(100);
  }
  const token = fs.readFileSync(path.join(dir, 'admin-token'), 'utf8').trim();
  return { url, token, pid: proc.pid, env: { CASCADE_SITE: url, CASCADE_TOKEN: token } };
}
const target = (s, id, code) => JSON.parse(cascade(['status', id, '--json'], s.env).out).targets.find((t) => t.site === code);
const until = async (what, ok, ms = 120_000) => {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await ok()) return;
    await sleep(250);
  }
  throw new Error(`timed out waiting for ${what}`);
};
const cpuSecs = (pid) => {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
};
const peakRss = (pid) => Number(/VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;

const rows = [];
const row = (metric, value, peer = '', goal = '') => {
  rows.push([metric, value, peer, goal]);
  console.error(`${metric}: ${value}${peer ? `   (${peer})` : ''}`);
};
const results = { date: new Date().toISOString(), machine: { cpus: os.cpus().length, node: process.version } };

try {
  const v1 = corpus(`corpus-${size}`, ['--size', size, '--seed', '1']);
  const S = bytesOf(v1);
  const cen = await site('CEN');
  const eur = await site('EUR', cen, true);
  const created = JSON.parse(cascade(['package', 'create', v1, '--name', 'Corpus', '--json'], cen.env).out);
  const id = created.id;
  const wan0 = { ...wan };
  cascade(['distribute', id, '--to', 'site:EUR', '--via', 'courier'], cen.env);
  await until('EUR waiting for a parcel', () => /waiting for a courier parcel/.test(target(cen, id, 'EUR')?.detail ?? ''));

  // Export: the site streams the parcel, the CLI reads it through and writes it (fsync'd).
  const file = path.join(work, 'corpus.parcel');
  for (const f of walk(v1)) fs.readFileSync(f); // the same warm page cache for every run
  results.load = os.loadavg();
  const c0 = cpuSecs(cen.pid);
  const ex = cascade(['courier', 'export', id, '--to-site', 'EUR', '-o', file, '--json'], cen.env);
  const exportCpu = cpuSecs(cen.pid) - c0;
  const x = JSON.parse(ex.out);
  // The disk's own rate for the same bytes, same run: what writing the parcel durably costs.
  const t0 = process.hrtime.bigint();
  spawnSync('dd', [`if=${file}`, `of=${file}.dd`, 'bs=4M', 'conv=fdatasync'], { stdio: 'ignore' });
  const ddSecs = Number(process.hrtime.bigint() - t0) / 1e9;
  fs.rmSync(`${file}.dd`, { force: true });
  results.export = {
    corpusBytes: S,
    parcelBytes: x.bytes,
    chunks: x.chunks,
    seconds: ex.secs,
    mibPerSec: S / MiB / ex.secs,
    siteCpuSeconds: exportCpu,
    ddSeconds: ddSecs,
  };
  row(
    `courier export of the ${(S / MiB).toFixed(0)} MiB corpus (whole CLI run, file fsync'd)`,
    `${(S / MiB / ex.secs).toFixed(0)} MiB/s (${ex.secs.toFixed(2)} s; parcel ${(x.bytes / MiB).toFixed(0)} MiB, ${x.chunks} chunks; site CPU ${exportCpu.toFixed(2)} s)`,
    `dd conv=fdatasync of the parcel: ${(x.bytes / MiB / ddSecs).toFixed(0)} MiB/s (${ddSecs.toFixed(2)} s); load average ${results.load[0].toFixed(1)}`,
    '>= 200 MiB/s',
  );

  // Import at EUR: every chunk decoded and hashed, stored durably, the version installed.
  const e0 = cpuSecs(eur.pid);
  const im = cascade(['courier', 'import', file, '--json'], eur.env);
  const importCpu = cpuSecs(eur.pid) - e0;
  const r = JSON.parse(im.out);
  if (r.packages[0]?.state !== 'installed') throw new Error(`import did not install: ${im.out}`);
  results.import = {
    corpusBytes: S,
    parcelBytes: x.bytes,
    seconds: im.secs,
    mibPerSec: S / MiB / im.secs,
    siteCpuSeconds: importCpu,
    report: r,
  };
  results.import.eurRssPeak = peakRss(eur.pid);
  row(
    'courier import at the child (verify every chunk, store durably, install)',
    `${(S / MiB / im.secs).toFixed(0)} MiB/s (${im.secs.toFixed(2)} s; site CPU ${importCpu.toFixed(2)} s)`,
    `site peak RSS ${(results.import.eurRssPeak / MiB).toFixed(0)} MiB; load average ${os.loadavg()[0].toFixed(1)}`,
    '>= 200 MiB/s',
  );

  // Import the same parcel again: every chunk is already there.
  const again = cascade(['courier', 'import', file, '--json'], eur.env);
  results.reimport = { seconds: again.secs, stored: JSON.parse(again.out).chunks.stored };
  row('import of the same parcel again', `${again.secs.toFixed(2)} s, ${results.reimport.stored} chunks stored`, '', 'harmless');

  await until('EUR installed, seen from CEN', () => target(cen, id, 'EUR')?.state === 'installed');
  const t = JSON.parse(
    await (await fetch(`${cen.url}/api/v1/transfers`, { headers: { authorization: `Bearer ${cen.token}` } })).text(),
  ).transfers.find((z) => z.packageId === id);
  const routeBytes = wan.bytes - wan0.bytes;
  const manifestBytes = fs.statSync(path.join(work, 'CEN', 'content', 'manifests', id, '1.json')).size;
  results.wan = {
    chunkBatches: wan.chunkBatches - wan0.chunkBatches,
    transferWireBytes: t.wireBytes,
    routeBytes,
    manifestBytes,
  };
  row(
    'content bytes on the WAN route for a courier distribution (counted on the wire)',
    `${t.wireBytes} chunk bytes, ${results.wan.chunkBatches} chunk batches`,
    `all traffic CEN->EUR: ${(routeBytes / 1e6).toFixed(2)} MB (offers carry the ${(manifestBytes / 1e6).toFixed(2)} MB manifest; corpus ${(S / 1e6).toFixed(0)} MB)`,
    '0',
  );
} finally {
  for (const p of procs) p.kill('SIGTERM');
  proxy.close();
  await sleep(500);
  if (opt('keep', null) === null) fs.rmSync(work, { recursive: true, force: true });
  else console.error(`kept ${work}`);
}

fs.mkdirSync(BENCH, { recursive: true });
fs.writeFileSync(path.join(BENCH, 'courier.json'), `${JSON.stringify(results, null, 2)}\n`);
console.log('\n| metric | Cascade | note | target |\n|---|---|---|---|');
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
