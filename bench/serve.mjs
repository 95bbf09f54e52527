#!/usr/bin/env node
// Serving benchmark (part of `npm run bench`): 200 concurrent downloaders over keep-alive
// loopback connections fetch a package's stored chunk files from (a) Cascade's content server
// (src/dp/serve.ts, as `cascade dp` and the site serve it) and (b) Debian's nginx with
// sendfile serving the same folder (docs/nginx.md's configuration), in the same run.
// The load generator is wrk (C, epoll), far leaner than any Node client.
//
//   node bench/serve.mjs [--size 128MiB] [--seconds 10] [--rounds 3] [--connections 200]
//                        [--cache 256] (MiB) [--workers CORES] [--nginx-workers auto] [--min-size 0] (KiB)
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { startNginx } from '../test/fixtures/nginx.mjs';
import { BENCH, BIN, corpus, freePort, have, MiB, opt, ROOT, removeWork, waitUp } from './lib.mjs';

const size = opt('size', '128MiB');
const seconds = Number(opt('seconds', '10'));
const rounds = Number(opt('rounds', '3'));
const connections = Number(opt('connections', '200'));
const cacheMiB = Number(opt('cache', '256'));
const nginxWorkers = opt('nginx-workers', 'auto');
// As many processes as nginx's `worker_processes auto`: one per core.
const workers = Number(opt('workers', String(os.availableParallelism())));

if (!have('wrk') || !fs.existsSync('/usr/sbin/nginx')) {
  console.error('serve benchmark skipped: it needs wrk and nginx (apt-get install wrk nginx-light)');
  process.exit(0);
}

/** A site's content folder holding the corpus as one package, made once in .bench/. */
async function library() {
  const dir = path.join(BENCH, `serve-${size}`);
  const data = path.join(dir, 'site');
  const content = path.join(data, 'content');
  if (fs.existsSync(path.join(content, 'manifests', 'CEN00001', '1.json'))) return content;
  const src = corpus(`corpus-${size}`, ['--size', size, '--seed', '1']);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  console.error(`making the content folder ${content} ...`);
  execFileSync(process.execPath, [BIN, 'site', 'init', '--data', data, '--code', 'CEN'], { stdio: 'ignore' });
  const port = await freePort();
  const site = spawn(process.execPath, [BIN, 'site', 'start', '--data', data, '--listen', `127.0.0.1:${port}`], {
    env: { ...process.env, CASCADE_LOG_LEVEL: 'warn' },
    stdio: 'ignore',
  });
  try {
    await waitUp(`http://127.0.0.1:${port}`);
    const token = fs.readFileSync(path.join(data, 'admin-token'), 'utf8').trim();
    execFileSync(process.execPath, [BIN, 'package', 'create', src, '--name', 'Corpus'], {
      env: { ...process.env, CASCADE_SITE: `http://127.0.0.1:${port}`, CASCADE_TOKEN: token },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
  } finally {
    site.kill('SIGTERM');
    await new Promise((r) => site.once('exit', r));
  }
  return content;
}

const content = await library();
// nginx's workers drop root for nobody: let them through the site's private data folder.
fs.chmodSync(path.dirname(content), 0o711);

// The URLs: every stored chunk of the package, as clients would fetch them.
const manifest = JSON.parse(fs.readFileSync(path.join(content, 'manifests', 'CEN00001', '1.json'), 'utf8')).manifest;
// --min-size KiB keeps only the larger stored chunks (e.g. 128: the incompressible ones near the 256 KiB maximum).
const minSize = Number(opt('min-size', '0')) * 1024;
const digests = [...new Set(manifest.files.flatMap((f) => (f.type === 'file' ? f.chunks.map(([d]) => d) : [])))].filter(
  (d) => fs.statSync(path.join(content, 'chunks', d.slice(0, 2), d)).size >= minSize,
);
const sizes = digests.map((d) => fs.statSync(path.join(content, 'chunks', d.slice(0, 2), d)).size).sort((a, b) => a - b);
const stored = sizes.reduce((a, b) => a + b, 0);
const pct = (p) => sizes[Math.min(sizes.length - 1, Math.floor((p / 100) * sizes.length))];
console.error(
  `content: ${digests.length} stored chunk files, ${(stored / MiB).toFixed(0)} MiB; sizes p10 ${(pct(10) / 1024).toFixed(0)} KiB, ` +
    `median ${(pct(50) / 1024).toFixed(0)} KiB, p90 ${(pct(90) / 1024).toFixed(0)} KiB, mean ${(stored / sizes.length / 1024).toFixed(0)} KiB`,
);

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-bench-serve-'));
fs.chmodSync(work, 0o755);
// Each wrk thread walks the list from its own random start: like many clients at different
// places in the same package.
const lua = path.join(work, 'urls.lua');
fs.writeFileSync(
  lua,
  `local paths = {\n${digests.map((d) => `"/content/chunks/${d.slice(0, 2)}/${d}"`).join(',\n')}\n}
local reqs = {}
local i = 0
init = function(args)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  for k, p in ipairs(paths) do reqs[k] = wrk.format("GET", p) end
  i = math.random(#reqs)
end
request = function()
  i = i % #reqs + 1
  return reqs[i]
end
`,
);

const UNITS = { B: 1, KB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 };
function wrk(url, secs) {
  const r = spawnSync('wrk', ['-t2', `-c${connections}`, `-d${secs}s`, '-s', lua, url], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`wrk failed: ${r.stderr}`);
  const m = /(\d+) requests in ([\d.]+)(m?s), ([\d.]+)([KMGT]?B) read/.exec(r.stdout);
  if (!m) throw new Error(`cannot read wrk's output:\n${r.stdout}`);
  if (/Non-2xx or 3xx responses/.test(r.stdout)) throw new Error(`error answers during the run against ${url}:\n${r.stdout}`);
  // Socket errors: a timeout (wrk's 2 s) can happen when the machine is overloaded; anything else is a failure.
  const se = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(r.stdout);
  if (se && Number(se[1]) + Number(se[2]) + Number(se[3]) > 0) throw new Error(`socket errors against ${url}:\n${r.stdout}`);
  if (se) console.error(`  (${se[4]} requests to ${url} took over wrk's 2 s timeout: the machine is overloaded)`);
  const time = Number(m[2]) / (m[3] === 'ms' ? 1000 : 1);
  return { requests: Number(m[1]), seconds: time, bytes: Number(m[4]) * UNITS[m[5]] };
}

// Cascade's content server in its own process, as `cascade dp` runs it.
async function startCascade() {
  const port = await freePort();
  const mod = pathToFileURL(path.join(ROOT, 'dist', 'dp', 'serve.js')).href;
  const code = `const { startContentServer } = await import(${JSON.stringify(mod)});
const s = await startContentServer({ root: ${JSON.stringify(content)}, listen: '127.0.0.1:${port}', cacheBytes: ${cacheMiB * MiB}, workers: ${workers} });
process.stdout.write('ready\\n');`;
  const proc = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve, reject) => {
    proc.stdout.once('data', resolve);
    proc.once('exit', (c) => reject(new Error(`content server exited with ${c}`)));
  });
  const stop = () => {
    proc.kill('SIGTERM');
    return new Promise((r) => proc.once('exit', r));
  };
  return { url: `http://127.0.0.1:${port}`, proc, stop };
}

const servers = {
  cascade: await startCascade(),
  nginx: await startNginx({ prefix: path.join(work, 'nginx'), root: content, port: await freePort(), workers: nginxWorkers }),
};
const results = { cascade: [], nginx: [] };
try {
  // Same bytes from both.
  const probe = `/content/chunks/${digests[0].slice(0, 2)}/${digests[0]}`;
  const a = Buffer.from(await (await fetch(servers.cascade.url + probe)).arrayBuffer());
  const b = Buffer.from(await (await fetch(servers.nginx.url + probe)).arrayBuffer());
  if (!a.equals(b) || !a.equals(fs.readFileSync(path.join(content, 'chunks', digests[0].slice(0, 2), digests[0]))))
    throw new Error('the two servers do not send the same bytes');
  // Warm up both (page cache, Cascade's cache, JIT).
  for (const s of Object.values(servers)) wrk(s.url, 3);
  for (let r = 0; r < rounds; r++) {
    for (const name of r % 2 === 0 ? ['cascade', 'nginx'] : ['nginx', 'cascade']) {
      const x = wrk(servers[name].url, seconds);
      const gbps = x.bytes / x.seconds / 1e9;
      results[name].push({ ...x, gbps, rps: x.requests / x.seconds });
      console.error(`round ${r + 1} ${name.padEnd(7)}: ${gbps.toFixed(2)} GB/s, ${(x.requests / x.seconds).toFixed(0)} requests/s`);
    }
  }
} finally {
  await servers.cascade.stop();
  await servers.nginx.stop();
  removeWork(work);
}

const median = (xs) => [...xs].sort((p, q) => p - q)[Math.floor(xs.length / 2)];
const sum = (name, k) => results[name].map((x) => x[k]);
const c = median(sum('cascade', 'gbps'));
const n = median(sum('nginx', 'gbps'));
const ratios = results.cascade.map((x, i) => x.gbps / results.nginx[i].gbps);
const line = (name) =>
  `${median(sum(name, 'gbps')).toFixed(2)} GB/s (${Math.min(...sum(name, 'gbps')).toFixed(2)}–${Math.max(...sum(name, 'gbps')).toFixed(2)}), ` +
  `${median(sum(name, 'rps')).toFixed(0)} requests/s`;
console.log(`serving: ${connections} concurrent keep-alive downloads of ${digests.length} stored chunks, ${rounds} × ${seconds} s rounds`);
console.log(`  cascade content server (${workers} process${workers > 1 ? 'es' : ''}): ${line('cascade')}`);
console.log(`  nginx (sendfile, worker_processes ${nginxWorkers}): ${line('nginx')}`);
console.log(
  `  ratio cascade/nginx:    ${(c / n).toFixed(2)} (per round ${ratios.map((r) => r.toFixed(2)).join(', ')}); target >= 0.5 — ${c / n >= 0.5 ? 'met' : 'NOT met'}`,
);
const out = path.join(BENCH, `serve${minSize ? `-min${minSize / 1024}k` : ''}-w${workers}.json`);
fs.writeFileSync(
  out,
  `${JSON.stringify({ date: new Date().toISOString(), size, minSize, workers, nginxWorkers, connections, seconds, rounds, chunks: digests.length, storedBytes: stored, results, ratio: c / n }, null, 2)}\n`,
);
