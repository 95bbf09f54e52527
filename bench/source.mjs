#!/usr/bin/env node
// Server-side ingest: the site reads a source folder itself (`package create --source-on-site`),
// against Debian's casync and openssl on the same bytes, on disk and on tmpfs, in one run.
//
//   node bench/source.mjs [--size 512MiB] [--runs 2] [--where disk,tmpfs]
//
// Per file system: a fresh site whose data folder is there reads the corpus (copied there too);
// `casync make` stores the same tree there; a copy of the tree with `cp -a` and `sync -f` is the
// file system's own floor for writing that many bytes durably. Then the CLI's upload path into
// another fresh site, and refreshes of the unchanged source (by size and time, then re-hashing).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BENCH, bytesOf, cascade, corpus, have, MiB, needSpace, opt, peakRss, removeWork, startSite } from './lib.mjs';

const size = opt('size', '512MiB');
const runs = Number(opt('runs', '2'));
const where = opt('where', 'disk,tmpfs').split(',');
const src = corpus(`corpus-${size}`, ['--size', size, '--seed', '1']);
const total = bytesOf(src);
const mib = total / MiB;

const timed = (fn) => {
  const t = process.hrtime.bigint();
  const out = fn();
  return { secs: Number(process.hrtime.bigint() - t) / 1e9, out };
};
const sh = (cmd) => execFileSync('sh', ['-c', cmd], { stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 64 * MiB }).toString();
const rate = (secs) => `${(mib / secs).toFixed(0)} MiB/s (${secs.toFixed(2)} s)`;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];

const rows = [];
const row = (metric, value, peer = '', target = '') => {
  rows.push([metric, value, peer, target]);
  console.error(`${metric}: ${value}${peer ? `   (${peer})` : ''}`);
};
const results = {
  machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version },
  date: new Date().toISOString(),
  bytes: total,
};

const bases = { disk: os.tmpdir(), tmpfs: '/dev/shm' };
for (const w of where) {
  const base = bases[w];
  if (!base || !fs.existsSync(base)) {
    console.error(`bench: no ${w} file system here (${base}); skipped`);
    continue;
  }
  needSpace(base, 4 * total + 512 * MiB, `server-side ingest on ${w}`);
  const work = fs.mkdtempSync(path.join(base, 'cascade-source-'));
  try {
    // The source on the same file system, warm in the page cache, as the peers read it.
    const tree = path.join(work, 'src');
    sh(`cp -a "${src}" "${tree}" && cat $(find "${tree}" -type f) > /dev/null`);
    const r = { ingest: [], casync: [], floor: [], rss: [] };
    for (let i = 0; i < runs; i++) {
      // The file system's floor: the same bytes copied and flushed (no hashing, no compression).
      const floor = timed(() => sh(`cp -a "${tree}" "${work}/copy-${i}" && sync -f "${work}"`));
      r.floor.push(floor.secs);
      if (have('casync')) {
        const store = path.join(work, `casync-${i}`);
        const c = timed(() =>
          sh(
            `casync make --digest=sha256 --compression=zstd --chunk-size=16384:65536:262144 --store="${store}.castr" "${store}.caidx" "${tree}" > /dev/null && sync -f "${work}"`,
          ),
        );
        r.casync.push(c.secs);
      }
      const site = await startSite(path.join(work, `site-${i}`), ['--source-root', tree]);
      try {
        const c = timed(() => cascade(['package', 'create', '--source-on-site', tree, '--name', 'Corpus', '--json'], site.env));
        const v = JSON.parse(c.out);
        if (v.bytes !== total) throw new Error(`the site read ${v.bytes} bytes, not ${total}`);
        r.ingest.push(c.secs);
        r.rss.push(peakRss(site.proc.pid));
        if (i === runs - 1) {
          const same = timed(() => JSON.parse(cascade(['package', 'update', v.id, '--json'], site.env)));
          const rehash = timed(() => JSON.parse(cascade(['package', 'update', v.id, '--verify-content', '--json'], site.env)));
          if (!same.out.unchanged || !rehash.out.unchanged) throw new Error('an unchanged source made a new version');
          r.refresh = same.secs;
          r.refreshVerify = rehash.secs;
        }
      } finally {
        site.proc.kill('SIGTERM');
        await new Promise((res) => site.proc.once('exit', res));
      }
    }
    // The CLI's upload path into a fresh site on the same file system (two processes, two hashes).
    const up = await startSite(path.join(work, 'site-upload'));
    try {
      r.upload = timed(() => cascade(['package', 'create', tree, '--name', 'Corpus', '--json'], up.env)).secs;
    } finally {
      up.proc.kill('SIGTERM');
      await new Promise((res) => up.proc.once('exit', res));
    }
    let ssl = null;
    if (have('openssl')) ssl = timed(() => sh(`find "${tree}" -type f -print0 | sort -z | xargs -0 cat | openssl dgst -sha256`)).secs;
    const ingest = median(r.ingest);
    const cas = r.casync.length ? median(r.casync) : null;
    results[w] = { ...r, ingestMedian: ingest, casyncMedian: cas, opensslSeconds: ssl };
    row(
      `${w}: server-side ingest (package create --source-on-site, durable)`,
      `${rate(ingest)}; runs ${r.ingest.map((s) => s.toFixed(2)).join(', ')} s`,
      [
        cas ? `casync make: ${rate(cas)}, ratio ${(cas / ingest).toFixed(2)}x` : 'casync not installed',
        ssl ? `openssl dgst -sha256: ${rate(ssl)}` : '',
        `cp -a + sync -f: ${rate(median(r.floor))}`,
      ]
        .filter(Boolean)
        .join('; '),
      '>= 250 MiB/s and >= 1.5 x casync',
    );
    row(`${w}: site peak RSS during it`, `${(Math.max(...r.rss) / MiB).toFixed(0)} MiB`, '', '<= 300 MiB');
    row(`${w}: CLI upload path (package create SRC)`, rate(r.upload), cas ? `casync make: ${rate(cas)}` : '');
    row(
      `${w}: refresh of the unchanged source`,
      `${r.refresh.toFixed(2)} s by size and time; ${r.refreshVerify.toFixed(2)} s with --verify-content`,
      '',
      '< 1 s',
    );
  } finally {
    removeWork(work);
  }
}

fs.mkdirSync(BENCH, { recursive: true });
fs.writeFileSync(path.join(BENCH, 'source.json'), `${JSON.stringify(results, null, 2)}\n`);
console.log('\n| metric | Cascade | peers, same run | target |\n|---|---|---|---|');
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
