#!/usr/bin/env node
// Cascade benchmarks: `npm run bench` (not part of the tests). Prints a table and writes
// .bench/results.json. Corpora are made once in .bench/ by bench/make-corpus.mjs.
//
//   node bench/run.mjs [--size 512MiB] [--only ingest,update]
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BENCH, BIN, bytesOf, corpus, have, MiB, needSpace, opt, peakRss, removeWork, startSite, walk } from './lib.mjs';

const size = opt('size', '512MiB');
const only = opt('only', 'ingest,update').split(',');

const warm = (dir) => {
  for (const f of walk(dir)) fs.readFileSync(f);
};

function cascade(argv, env) {
  const t = process.hrtime.bigint();
  const r = spawnSync(process.execPath, [BIN, ...argv], { env: { ...process.env, ...env }, encoding: 'utf8', maxBuffer: 64 * MiB });
  const secs = Number(process.hrtime.bigint() - t) / 1e9;
  if (r.status !== 0) throw new Error(`cascade ${argv.join(' ')} failed: ${r.stderr}`);
  return { secs, out: r.stdout };
}

const results = { machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version }, date: new Date().toISOString() };
const rows = [];
const row = (metric, value, peer = '', target = '') => {
  rows.push([metric, value, peer, target]);
  console.error(`${metric}: ${value}${peer ? `   (${peer})` : ''}`);
};

const v1 = corpus(`corpus-${size}`, ['--size', size, '--seed', '1']);
const v2 = corpus(`corpus-${size}-change1`, ['--from', v1, '--change', '1%']);
const total = bytesOf(v1);
// The site's library holds both versions; rsync's peer copies the corpus: ~2 GB in all.
needSpace(os.tmpdir(), 2.5 * 2 ** 30, 'the ingest and update benchmark');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-bench-'));
const site = await startSite(path.join(work, 'cen'));
try {
  if (only.includes('ingest') || only.includes('update')) {
    warm(v1);
    const create = cascade(['package', 'create', v1, '--name', 'Corpus', '--json'], site.env);
    const c = JSON.parse(create.out);
    const rate = total / MiB / create.secs;
    // The hashing limit: openssl over the same bytes, from the page cache.
    let sslRate = null;
    if (have('openssl')) {
      const t = process.hrtime.bigint();
      execFileSync('sh', ['-c', `find "${v1}" -type f -print0 | sort -z | xargs -0 cat | openssl dgst -sha256 > /dev/null`]);
      sslRate = total / MiB / (Number(process.hrtime.bigint() - t) / 1e9);
    }
    results.ingest = { bytes: total, seconds: create.secs, mibPerSec: rate, opensslSha256MibPerSec: sslRate, package: c };
    row(
      'ingest: package create over loopback',
      `${rate.toFixed(0)} MiB/s (${(total / MiB).toFixed(0)} MiB in ${create.secs.toFixed(2)} s)`,
      sslRate ? `openssl dgst -sha256: ${sslRate.toFixed(0)} MiB/s` : '',
      '>= 250 MiB/s',
    );
    results.ingest.siteRssPeak = peakRss(site.proc.pid);
    row('site server peak RSS during ingest', `${(results.ingest.siteRssPeak / MiB).toFixed(0)} MiB`, '', '<= 300 MiB');
  }
  if (only.includes('update')) {
    warm(v2);
    const list = JSON.parse(cascade(['package', 'list', '--json'], site.env).out);
    const id = list.packages.find((p) => p.name === 'Corpus').id;
    const up = cascade(['package', 'update', id, v2, '--json'], site.env);
    const u = JSON.parse(up.out);
    let literal = null;
    if (have('rsync')) {
      const copy = path.join(work, 'rsync-dest');
      execFileSync('cp', ['-a', `${v1}/.`, copy]);
      const stats = execFileSync('rsync', ['-a', '--no-whole-file', '--stats', `${v2}/`, `${copy}/`], { encoding: 'utf8' });
      literal = Number(/Literal data: ([\d,]+) bytes/.exec(stats)?.[1].replace(/,/g, '') ?? Number.NaN);
    }
    results.update = {
      newBytes: u.newBytes,
      sentBytes: u.sentBytes,
      newChunkBytes: u.newChunkBytes,
      seconds: up.secs,
      rsyncLiteral: literal,
    };
    const ratio = literal ? u.newBytes / literal : null;
    row(
      'update to the 1% change: newBytes',
      `${(u.newBytes / 1e6).toFixed(2)} MB (sent ${(u.sentBytes / 1e6).toFixed(2)} MB; whole new chunks would be ${(u.newChunkBytes / 1e6).toFixed(1)} MB) in ${up.secs.toFixed(1)} s`,
      literal ? `rsync literal data: ${(literal / 1e6).toFixed(2)} MB; ratio ${ratio.toFixed(2)}` : '',
      '<= 1.5 x rsync',
    );
  }
} finally {
  site.proc.kill('SIGTERM');
  await new Promise((r) => site.proc.once('exit', r));
  removeWork(work);
}

fs.writeFileSync(path.join(BENCH, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
console.log('\n| metric | Cascade | peer, same run | target |\n|---|---|---|---|');
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
