#!/usr/bin/env node
// Validation benchmark (`npm run bench`, after bench/run.mjs): ingests the corpus into a content
// library through the site's own ingest path (ContentLibrary.ingest: worker threads check,
// compress and write each chunk), then times validateVersion over it, normal and low priority,
// against the raw ceiling of the machine on the same stored files.
//
//   node bench/validate.mjs [--size 512MiB] [--runs 3]
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { BENCH, corpus, have, MiB, opt, ROOT, walk } from './lib.mjs';

const dist = (m) => import(path.join(ROOT, 'dist', 'content', m));
const { ContentLibrary } = await dist('library.js');
const { parseManifest } = await dist('manifest.js');
const { closePool, runChunkFiles } = await dist('pool.js');
const { validateVersion } = await dist('validate.js');
const { checkChunks } = await dist('check.js');

const size = opt('size', '512MiB');
const runs = Number(opt('runs', '5'));
const src = corpus(`corpus-${size}`, ['--size', size, '--seed', '1']);
const libDir = path.join(BENCH, `validate-lib-${size}`);
const manifestFile = path.join(libDir, 'manifest.json');

/** Chunks every file in the pool, stores the chunks through the ingest path, builds a manifest. */
async function ingest() {
  fs.rmSync(libDir, { recursive: true, force: true });
  const library = new ContentLibrary(libDir);
  await library.init();
  const files = walk(src);
  const chunked = [];
  for (let i = 0; i < files.length; i += 16) chunked.push(runChunkFiles({ kind: 'chunkFiles', paths: files.slice(i, i + 16) }));
  const lists = (await Promise.all(chunked)).flatMap((r) => r.files);
  const seen = new Set();
  const entries = [];
  const dirs = new Set();
  let bytes = 0;
  const pending = [];
  const flush = async (buf, items) => {
    const staged = await library.ingest(buf, items);
    if (staged.some((s) => !s)) throw new Error('ingest refused a chunk');
    await library.commit(staged);
  };
  for (const [n, file] of files.entries()) {
    const rel = path.relative(src, file);
    for (let d = path.posix.dirname(rel); d !== '.'; d = path.posix.dirname(d)) dirs.add(d);
    const { chunks, size: fileSize } = lists[n];
    entries.push({ type: 'file', path: rel, mode: 0o644, size: fileSize, chunks });
    bytes += fileSize;
    const data = fs.readFileSync(file);
    let at = 0;
    let buf = [];
    let items = [];
    let len = 0;
    for (const [digest, length] of chunks) {
      if (!seen.has(digest)) {
        seen.add(digest);
        items.push({ digest, offset: len, length });
        buf.push(data.subarray(at, at + length));
        len += length;
      }
      at += length;
      if (len >= 4 * MiB) {
        pending.push(flush(new Uint8Array(Buffer.concat(buf)), items));
        buf = [];
        items = [];
        len = 0;
      }
      if (pending.length >= 4) await Promise.all(pending.splice(0));
    }
    if (items.length) pending.push(flush(new Uint8Array(Buffer.concat(buf)), items));
  }
  await Promise.all(pending);
  for (const d of dirs) entries.push({ type: 'dir', path: d, mode: 0o755 });
  const manifest = parseManifest({
    format: 1,
    id: 'CEN00001',
    version: 1,
    name: 'Validation bench',
    priority: 'medium',
    origin: 'CEN',
    created: new Date().toISOString(),
    programs: [],
    files: entries,
    bytes,
  });
  fs.writeFileSync(manifestFile, JSON.stringify(manifest));
  return { library, manifest };
}

const t0 = process.hrtime.bigint();
const built = fs.existsSync(manifestFile)
  ? { library: new ContentLibrary(libDir), manifest: parseManifest(JSON.parse(fs.readFileSync(manifestFile, 'utf8'))) }
  : await ingest();
if (!fs.existsSync(manifestFile)) throw new Error('no manifest');
const { library, manifest } = built;
console.error(`library ready in ${(Number(process.hrtime.bigint() - t0) / 1e9).toFixed(1)} s: ${libDir}`);

// What is stored: distinct chunks, their files, how many are Brotli.
const chunkFiles = [];
const digests = [];
const seen = new Set();
for (const e of manifest.files)
  if (e.type === 'file')
    for (const [d, n] of e.chunks)
      if (!seen.has(d)) {
        seen.add(d);
        digests.push(d);
        chunkFiles.push({ file: library.chunkPath(d), size: n });
      }
let storedBytes = 0;
let brotliChunks = 0;
let brotliRaw = 0;
const stored = chunkFiles.map((c) => {
  const b = fs.readFileSync(c.file); // also warms the page cache
  storedBytes += b.length;
  if (b[0] === 1) {
    brotliChunks++;
    brotliRaw += c.size;
  }
  return b;
});
const pkgMiB = manifest.bytes / MiB;
console.error(
  `package ${pkgMiB.toFixed(0)} MiB, ${chunkFiles.length} distinct chunks, ${(storedBytes / MiB).toFixed(0)} MiB stored; ` +
    `${brotliChunks} Brotli chunks holding ${(brotliRaw / MiB).toFixed(0)} MiB`,
);

/** Wall seconds, and CPU seconds of the whole process (main and worker threads). */
const time = async (fn) => {
  const c = process.cpuUsage();
  const t = process.hrtime.bigint();
  const r = await fn();
  const u = process.cpuUsage(c);
  return { secs: Number(process.hrtime.bigint() - t) / 1e9, cpu: (u.user + u.system) / 1e6, r };
};
const spread = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return { min: s[0], median: s[Math.floor(s.length / 2)], max: s[s.length - 1] };
};
const fmt = (s) => `${s.median.toFixed(0)} MiB/s (${s.min.toFixed(0)}-${s.max.toFixed(0)})`;

// The raw ceiling: the same stored files, hashed by the system's tools and in-process.
const listFile = path.join(BENCH, 'validate-chunk-files.txt');
fs.writeFileSync(listFile, `${chunkFiles.map((c) => c.file).join('\0')}\0`);
const shell = (cmd) => time(() => execFileSync('sh', ['-c', cmd], { stdio: ['ignore', 'ignore', 'inherit'] }));
const ceiling = {};
{
  const stMiB = storedBytes / MiB; // the tools hash the stored files as they are
  ceiling.catSha256sum = stMiB / (await shell(`xargs -0 cat < ${listFile} | sha256sum`)).secs;
  if (have('openssl')) {
    ceiling.catOpenssl = stMiB / (await shell(`xargs -0 cat < ${listFile} | openssl dgst -sha256`)).secs;
    ceiling.opensslTwoProcs = stMiB / (await shell(`xargs -0 -P2 -n 1000 openssl dgst -sha256 < ${listFile}`)).secs;
  }
  // In this process, one core: SHA-256 of every raw chunk; Brotli decoding of the compressed ones.
  let hashSecs = 0;
  let decodeSecs = 0;
  for (const b of stored) {
    let raw = b.subarray(1);
    if (b[0] === 1) {
      const t = process.hrtime.bigint();
      raw = zlib.brotliDecompressSync(raw);
      decodeSecs += Number(process.hrtime.bigint() - t) / 1e9;
    }
    const t = process.hrtime.bigint();
    crypto.createHash('sha256').update(raw).digest('hex');
    hashSecs += Number(process.hrtime.bigint() - t) / 1e9;
  }
  ceiling.sha256OneCore = pkgMiB / hashSecs;
  ceiling.brotliDecodeOneCore = brotliRaw / MiB / decodeSecs;
  // The whole check (open, read, decode, hash) of every chunk on this thread: one core's worth.
  const items = chunkFiles.map((c, i) => ({ file: c.file, digest: digests[i], size: c.size }));
  const one = await time(() => checkChunks({ kind: 'checkChunks', items }));
  ceiling.checkOneCore = pkgMiB / one.secs;
  ceiling.checkTwoCoresIdeal = (2 * pkgMiB) / one.secs;
}
stored.length = 0;

const normal = [];
const low = [];
const perCpuSecond = [];
const cores = [];
let report;
for (let i = 0; i < runs; i++) {
  const a = await time(() => validateVersion(library, manifest));
  normal.push(pkgMiB / a.secs);
  perCpuSecond.push(pkgMiB / a.cpu);
  cores.push(a.cpu / a.secs);
  report = a.r;
  const b = await time(() => validateVersion(library, manifest, { lowPriority: true }));
  low.push(pkgMiB / b.secs);
  if (!a.r.ok || !b.r.ok) throw new Error(`validation found problems: ${JSON.stringify(a.r.problems.slice(0, 3))}`);
}

// Does a scheduled (low-priority) validation starve other work? Stand-in for transfers: a
// normal-priority validation, timed alone, beside a low-priority one, and beside a second
// normal one (what running the scheduled validation at normal priority would cost).
const beside = async (other) => {
  const bg = other ? validateVersion(library, manifest, { lowPriority: other === 'low' }) : Promise.resolve();
  const a = await time(() => validateVersion(library, manifest));
  await bg;
  return pkgMiB / a.secs;
};
const interference = { alone: [], besideLow: [], besideNormal: [] };
for (let i = 0; i < runs; i++) {
  interference.alone.push(await beside(null));
  interference.besideLow.push(await beside('low'));
  interference.besideNormal.push(await beside('normal'));
}
await closePool();

const result = {
  machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version, loadavg: os.loadavg() },
  package: { MiB: Math.round(pkgMiB), files: report.checkedFiles, chunks: report.checkedChunks, storedMiB: Math.round(storedBytes / MiB) },
  validateMiBs: spread(normal),
  validateLowPriorityMiBs: spread(low),
  /** Load-independent: package MiB validated per CPU-second, and the cores the runs got. */
  validateMiBPerCpuSecond: spread(perCpuSecond),
  coresUsed: spread(cores),
  foregroundMiBs: Object.fromEntries(Object.entries(interference).map(([k, v]) => [k, spread(v)])),
  ceilingMiBs: Object.fromEntries(Object.entries(ceiling).map(([k, v]) => [k, Math.round(v)])),
};
console.error(
  `validation: ${fmt(result.validateMiBs)}   low priority: ${fmt(result.validateLowPriorityMiBs)}   (${runs} runs, median (min-max))`,
);
const w = result.validateMiBPerCpuSecond;
const k = result.coresUsed;
console.error(
  `validation work: ${w.median.toFixed(0)} MiB per CPU-second (${w.min.toFixed(0)}-${w.max.toFixed(0)}); the runs got ` +
    `${k.median.toFixed(2)} cores (${k.min.toFixed(2)}-${k.max.toFixed(2)}) of 2; load average ${os.loadavg()[0].toFixed(1)} (machine shared)`,
);
const fg = result.foregroundMiBs;
console.error(
  `foreground validation: alone ${fmt(fg.alone)}, beside a low-priority one ${fmt(fg.besideLow)}, beside a normal one ${fmt(fg.besideNormal)}`,
);
const c = result.ceilingMiBs;
console.error(
  `ceiling, stored files: cat|sha256sum ${c.catSha256sum} MiB/s, cat|openssl ${c.catOpenssl ?? '-'} MiB/s, openssl x2 ${c.opensslTwoProcs ?? '-'} MiB/s\n` +
    `ceiling, in-process per core: SHA-256 ${c.sha256OneCore} MiB/s, Brotli decode ${c.brotliDecodeOneCore} MiB/s (of its output); ` +
    `the whole check on one thread ${c.checkOneCore} MiB/s, so ${c.checkTwoCoresIdeal} MiB/s on two idle cores`,
);
console.log(JSON.stringify(result));
fs.writeFileSync(path.join(BENCH, 'validate-results.json'), `${JSON.stringify(result, null, 2)}\n`);
