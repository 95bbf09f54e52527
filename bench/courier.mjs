#!/usr/bin/env node
// Courier benchmarks (issue 5), part of `npm run bench`: CEN and, for each run, a new child
// site whose route runs through a counting TCP proxy (the "WAN"); the 512 MiB corpus
// distributed --via courier, exported at CEN to a parcel file, imported at the child.
//
//   node bench/courier.mjs [--size 512MiB] [--runs 3] [--tmp DIR] [--keep 1]
//
// Export and import are timed as the admin sees them: the whole `cascade courier export`
// (site reads and streams, CLI checks and writes the file, fsync) and `cascade courier import`
// (CLI streams the file, site verifies every chunk and stores it durably, installs). Each run
// has its own child (a fresh library), and the medians are reported. Peers in the same run:
// `dd conv=fdatasync` of the parcel (the disk writing those bytes durably) and `tar -x` of the
// child's chunk files plus `sync -f` (the file system creating those files durably). Nothing
// is deleted until the end: on a file system without a journal, creating files soon after
// thousands were deleted is several times slower (docs/performance.md). Prints a table and
// writes .bench/courier.json.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { BENCH, BIN, bytesOf, corpus, freePort, MiB, needSpace, opt, removeWork, sleep, waitUp } from './lib.mjs';

const size = opt('size', '512MiB');
const runs = Number(opt('runs', '3'));
const cascade = (argv, env = {}) => {
  const t = process.hrtime.bigint();
  // CASCADE_BENCH_PROF=DIR: CPU profiles of the commands there too.
  const prof = process.env.CASCADE_BENCH_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.CASCADE_BENCH_PROF}`] : [];
  const r = spawnSync(process.execPath, [...prof, BIN, ...argv], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
    maxBuffer: 64 * MiB,
  });
  const secs = Number(process.hrtime.bigint() - t) / 1e9;
  if (r.status !== 0) throw new Error(`cascade ${argv.join(' ')} failed: ${r.stderr}`);
  return { out: r.stdout, secs };
};

// A WAN route to a child: every byte the parent sends is counted, and chunk batches noticed.
async function wanProxy(targetPort) {
  const wan = { bytes: 0, chunkBatches: 0 };
  const server = net.createServer((client) => {
    const up = net.connect(targetPort(), '127.0.0.1');
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
  const port = await freePort();
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  proxies.push(server);
  return { wan, port };
}

// --tmp /dev/shm puts the sites and the parcel on tmpfs: the software's own ceiling, no disk.
// Each run keeps a child site, the parcel, its dd copy and the tar peer's files: ~2.5 GB.
needSpace(opt('tmp', os.tmpdir()), (1 + 2.5 * runs) * 2 ** 30, `the courier benchmark (${runs} runs)`);
const work = fs.mkdtempSync(path.join(opt('tmp', os.tmpdir()), 'cascade-cbench-'));
const procs = [];
const proxies = [];
async function site(code, parent) {
  const dir = path.join(work, code);
  const port = await freePort();
  const a = ['site', 'init', '--data', dir, '--code', code, '--listen', `127.0.0.1:${port}`];
  let wan = null;
  if (parent) {
    const p = await wanProxy(() => port);
    wan = p.wan;
    a.push('--url', `http://127.0.0.1:${p.port}`);
    a.push('--parent', parent.url, '--join-token', JSON.parse(cascade(['site', 'join-token', '--json'], parent.env).out).token);
  }
  cascade(a);
  // CASCADE_BENCH_PROF=DIR: CPU profiles of the site servers there.
  const prof = process.env.CASCADE_BENCH_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.CASCADE_BENCH_PROF}`] : [];
  const proc = spawn(process.execPath, [...prof, BIN, 'site', 'start', '--data', dir], {
    env: { ...process.env, CASCADE_LOG_LEVEL: 'warn', CASCADE_REPORT_SECONDS: '1' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  procs.push(proc);
  const url = `http://127.0.0.1:${port}`;
  await waitUp(url);
  const token = fs.readFileSync(path.join(dir, 'admin-token'), 'utf8').trim();
  return { code, dir, url, token, wan, pid: proc.pid, env: { CASCADE_SITE: url, CASCADE_TOKEN: token } };
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

const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const timed = (argv, opts = {}) => {
  const t = process.hrtime.bigint();
  const r = spawnSync(argv[0], argv.slice(1), { stdio: 'ignore', ...opts });
  if (r.status !== 0) throw new Error(`${argv.join(' ')} failed`);
  return Number(process.hrtime.bigint() - t) / 1e9;
};

try {
  const v1 = corpus(`corpus-${size}`, ['--size', size, '--seed', '1']);
  const S = bytesOf(v1);
  const cen = await site('CEN');
  const created = JSON.parse(cascade(['package', 'create', v1, '--name', 'Corpus', '--json'], cen.env).out);
  const id = created.id;
  results.runs = [];
  const codes = ['EUR', 'NYC', 'TYO', 'SYD', 'RIO', 'LAX', 'PAR', 'OSL', 'ROM'].slice(0, Math.max(1, Math.min(runs, 9)));
  for (const code of codes) {
    const child = await site(code, cen);
    cascade(['distribute', id, '--to', `site:${code}`, '--via', 'courier'], cen.env);
    await until(`${code} waiting for a parcel`, () => /waiting for a courier parcel/.test(target(cen, id, code)?.detail ?? ''));
    const run = { child: code, load: os.loadavg()[0] };

    // Export: the site streams the parcel, the CLI reads it through and writes it (fsync'd).
    const file = path.join(work, `${code}.parcel`);
    const c0 = cpuSecs(cen.pid);
    const ex = cascade(['courier', 'export', id, '--to-site', code, '-o', file, '--json'], cen.env);
    const x = JSON.parse(ex.out);
    run.export = { seconds: ex.secs, siteCpuSeconds: cpuSecs(cen.pid) - c0, parcelBytes: x.bytes, chunks: x.chunks };
    // The disk's own rate for the same bytes, same run: what writing the parcel durably costs.
    // The export writes past the page cache (O_DIRECT): read the parcel into it first, untimed,
    // so that dd measures writing alone, as it did when the export left the file cached.
    timed(['cat', file], { stdio: ['ignore', 'ignore', 'ignore'] });
    run.export.ddSeconds = timed(['dd', `if=${file}`, `of=${file}.dd`, 'bs=4M', 'conv=fdatasync']);

    // Import at the child: every chunk decoded and hashed, stored durably, the version installed.
    const e0 = cpuSecs(child.pid);
    const im = cascade(['courier', 'import', file, '--json'], child.env);
    const r = JSON.parse(im.out);
    if (r.packages[0]?.state !== 'installed') throw new Error(`import did not install: ${im.out}`);
    run.import = { seconds: im.secs, siteCpuSeconds: cpuSecs(child.pid) - e0, rssPeak: peakRss(child.pid), stored: r.chunks.stored };
    // The file system's own rate for the same files: tar -x of the child's chunk files, then sync.
    const tar = path.join(work, `${code}.tar`);
    spawnSync('tar', ['-cf', tar, '-C', path.join(child.dir, 'content'), 'chunks']);
    const into = path.join(work, `${code}-tar`);
    fs.mkdirSync(into);
    run.import.tarSeconds = timed(['sh', '-c', `tar -xf "${tar}" -C "${into}" && sync -f "${into}"`]);

    // Import the same parcel again: every chunk is already there.
    const again = cascade(['courier', 'import', file, '--json'], child.env);
    const a = JSON.parse(again.out);
    run.reimport = { seconds: again.secs, stored: a.chunks.stored, received: a.bytes.received };

    await until(`${code} installed, seen from CEN`, () => target(cen, id, code)?.state === 'installed');
    const t = JSON.parse(
      await (await fetch(`${cen.url}/api/v1/transfers`, { headers: { authorization: `Bearer ${cen.token}` } })).text(),
    ).transfers.find((z) => z.packageId === id && z.child === code);
    run.wan = { chunkBatches: child.wan.chunkBatches, transferWireBytes: t.wireBytes, routeBytes: child.wan.bytes };
    results.runs.push(run);
    console.error(
      `run ${code}: export ${(S / MiB / run.export.seconds).toFixed(0)} MiB/s (dd ${(x.bytes / MiB / run.export.ddSeconds).toFixed(0)}), ` +
        `import ${(S / MiB / run.import.seconds).toFixed(0)} MiB/s (tar -x + sync ${(S / MiB / run.import.tarSeconds).toFixed(0)}), ` +
        `${t.wireBytes} chunk bytes on the WAN, load ${run.load.toFixed(1)}`,
    );
  }
  const R = results.runs;
  const m = (f) => median(R.map(f));
  const P = R[0].export.parcelBytes;
  const list = (f) => R.map((r) => (S / MiB / f(r)).toFixed(0)).join(', ');
  results.corpusBytes = S;
  results.parcelBytes = P;
  results.export = {
    medianSeconds: m((r) => r.export.seconds),
    mibPerSec: S / MiB / m((r) => r.export.seconds),
    ddMedianSeconds: m((r) => r.export.ddSeconds),
  };
  results.import = {
    medianSeconds: m((r) => r.import.seconds),
    mibPerSec: S / MiB / m((r) => r.import.seconds),
    tarMedianSeconds: m((r) => r.import.tarSeconds),
  };
  row(
    `courier export of the ${(S / MiB).toFixed(0)} MiB corpus (whole CLI run, file fsync'd), median of ${R.length}`,
    `${results.export.mibPerSec.toFixed(0)} MiB/s (${results.export.medianSeconds.toFixed(2)} s; runs: ${list((r) => r.export.seconds)} MiB/s; parcel ${(P / MiB).toFixed(0)} MiB, ${R[0].export.chunks} chunks; site CPU ${m((r) => r.export.siteCpuSeconds).toFixed(2)} s)`,
    `dd conv=fdatasync of the parcel: ${(P / MiB / results.export.ddMedianSeconds).toFixed(0)} MiB/s of parcel = ${(S / MiB / results.export.ddMedianSeconds).toFixed(0)} MiB/s of corpus (runs: ${list((r) => r.export.ddSeconds)})`,
    '>= 200 MiB/s',
  );
  row(
    `courier import at a new child (verify every chunk, store durably, install), median of ${R.length}`,
    `${results.import.mibPerSec.toFixed(0)} MiB/s (${results.import.medianSeconds.toFixed(2)} s; runs: ${list((r) => r.import.seconds)} MiB/s; site CPU ${m((r) => r.import.siteCpuSeconds).toFixed(2)} s; peak RSS ${(m((r) => r.import.rssPeak) / MiB).toFixed(0)} MiB)`,
    `tar -x of the same chunk files + sync -f: ${(S / MiB / results.import.tarMedianSeconds).toFixed(0)} MiB/s of corpus (runs: ${list((r) => r.import.tarSeconds)})`,
    '>= 200 MiB/s',
  );
  row(
    'import of the same parcel again',
    `${R.map((r) => `${r.reimport.seconds.toFixed(2)} s`).join(', ')}; chunks stored: ${R.map((r) => r.reimport.stored).join(', ')}; parcel bytes sent: ${R.map((r) => `${(r.reimport.received / 1e6).toFixed(2)} MB`).join(', ')}`,
    '',
    'harmless',
  );
  row(
    'content bytes on the WAN route for a courier distribution (counted on the wire)',
    `${R.map((r) => r.wan.transferWireBytes).join(', ')} chunk bytes; ${R.map((r) => r.wan.chunkBatches).join(', ')} chunk batches`,
    `all traffic to each child: ${R.map((r) => (r.wan.routeBytes / 1e6).toFixed(2)).join(', ')} MB (offers carry the manifest; corpus ${(S / 1e6).toFixed(0)} MB)`,
    '0',
  );
} finally {
  for (const p of procs) p.kill('SIGTERM');
  for (const p of proxies) p.close();
  await sleep(500);
  if (opt('keep', null) === null) removeWork(work);
  else console.error(`kept ${work}`);
}

fs.mkdirSync(BENCH, { recursive: true });
fs.writeFileSync(path.join(BENCH, 'courier.json'), `${JSON.stringify(results, null, 2)}\n`);
console.log('\n| metric | Cascade | peer, same runs | target |\n|---|---|---|---|');
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
