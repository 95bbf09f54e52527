#!/usr/bin/env node
// Poll-path benchmark (part of `npm run bench`): a site holding 100,000 enrolled clients, 500
// collections and 200 advertisements answers agents' check-ins, driven by wrk (C, epoll) from a
// separate process with a Lua script that checks in as a random client each time. Beside it, in
// the same run, the same server's /healthz: the HTTP stack's ceiling. SQLite always; PostgreSQL
// too when CASCADE_TEST_PG (or --pg URL) names a server to use.
//
//   node bench/clients.mjs [--clients 100000] [--collections 500] [--advertisements 200]
//                          [--seconds 10] [--connections 20,50] [--pg postgres://...] [--keep]
// wrk runs one thread: on this 2-core machine one core drives the load, one serves it.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { BENCH, BIN, cascade, freePort, have, opt, removeWork, waitUp } from './lib.mjs';

const nClients = Number(opt('clients', '100000'));
const nCollections = Number(opt('collections', '500'));
const nAds = Number(opt('advertisements', '200'));
const seconds = Number(opt('seconds', '10'));
const connections = opt('connections', '20,50').split(',').map(Number);
const pg = opt('pg', process.env.CASCADE_TEST_PG);
const keep = process.argv.includes('--keep');

if (!have('wrk')) {
  console.error('clients benchmark skipped: it needs wrk (apt-get install wrk)');
  process.exit(0);
}

const { Store } = await import('../dist/store/store.js');
const { insertClient } = await import('../dist/store/clients.js');
const { makePolicy, snapshot } = await import('../dist/site/policy.js');
const { memberships, ruleInventory } = await import('../dist/site/clients.js');
const { loadSiteKey } = await import('../dist/content/signing.js');
const { ContentLibrary } = await import('../dist/content/library.js');
const { silentLogger } = await import('../dist/lib/log.js');

/** A site with the package, then the clients and policy written straight into its store. */
async function seed(dir, db) {
  fs.rmSync(dir, { recursive: true, force: true });
  const port = await freePort();
  cascade(['site', 'init', '--data', dir, '--code', 'CEN', '--listen', `127.0.0.1:${port}`, ...(db ? ['--db', db] : [])]);
  const site = await start(dir, port, db);
  const src = path.join(dir, 'src');
  fs.mkdirSync(src);
  fs.writeFileSync(path.join(src, 'install.sh'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  cascade(['package', 'create', src, '--name', 'Tool', '--program', 'Install=./install.sh'], site.env);
  await site.stop();

  const store = await Store.open({ url: db, dataDir: dir });
  const ctx = {
    store,
    library: new ContentLibrary(path.join(dir, 'content')),
    key: loadSiteKey(dir, 'CEN'),
    trusted: [],
    code: 'CEN',
    name: 'Central',
    clock: () => new Date(),
    log: silentLogger(),
  };
  const t0 = performance.now();
  for (let j = 0; j < nCollections; j++) {
    const g = j % 250;
    const rule = j < 250 ? `hostname like "ws-${g}-%"` : `hostname like "ws-${g}-%" and os = "linux" and free_disk > 1000000`;
    await makePolicy(ctx, 'collection', `c${j}`, { name: `c${j}`, clients: [], rule, include: [], exclude: [] });
  }
  const now = new Date().toISOString();
  for (let a = 1; a <= nAds; a++) {
    const id = `CEN-A${String(a).padStart(5, '0')}`;
    await makePolicy(ctx, 'advertisement', id, {
      id,
      packageId: 'CEN00001',
      version: null,
      program: 'Install',
      collection: `c${a - 1}`,
      available: now,
      mandatory: [],
      expires: null,
      slowLink: 'download',
      fallback: false,
      rerun: 'never',
      maxRunSeconds: 3600,
      enabled: true,
    });
  }
  const snap = await snapshot(ctx);
  const BATCH = 2000;
  for (let i = 0; i < nClients; i += BATCH) {
    await store.transaction(async (tx) => {
      const members = [];
      for (let k = i; k < Math.min(nClients, i + BATCH); k++) {
        const id = `CEN-${String(k + 1).padStart(6, '0')}`;
        const inventory = {
          hostname: `ws-${k % 250}-${k}`,
          os: 'linux',
          arch: 'x64',
          version: '0.1.0',
          addresses: [`10.${(k >> 16) & 255}.${(k >> 8) & 255}.${k & 255}`],
          freeDisk: 50e9,
          linkSpeed: 1e7,
        };
        await insertClient(tx, { id, site: 'CEN', credential: `casc_bench_${k + 1}`, inventory, boundary: null, dps: ['CEN'] });
        for (const c of memberships(snap, ruleInventory({ id, site: 'CEN', inventory }))) members.push({ collection: c, client: id });
      }
      for (let m = 0; m < members.length; m += 500)
        await tx.db
          .insertInto('collection_members')
          .values(members.slice(m, m + 500))
          .execute();
    });
  }
  await store.close();
  console.error(
    `seeded ${nClients} clients, ${nCollections} collections, ${nAds} advertisements in ${((performance.now() - t0) / 1000).toFixed(0)} s`,
  );
}

async function start(dir, port, db) {
  const proc = spawn(
    process.execPath,
    [BIN, 'site', 'start', '--data', dir, '--listen', `127.0.0.1:${port}`, ...(db ? ['--db', db] : [])],
    {
      env: { ...process.env, CASCADE_LOG_LEVEL: 'warn' },
      stdio: 'ignore',
    },
  );
  const url = `http://127.0.0.1:${port}`;
  await waitUp(url);
  const token = fs.readFileSync(path.join(dir, 'admin-token'), 'utf8').trim();
  return {
    url,
    pid: proc.pid,
    env: { CASCADE_SITE: url, CASCADE_TOKEN: token },
    stop: () =>
      new Promise((r) => {
        if (proc.exitCode !== null) return r();
        proc.once('exit', r);
        proc.kill('SIGTERM');
      }),
  };
}

/** wrk's requests/s and latency percentiles (ms). */
function wrk(url, script, conns) {
  return new Promise((resolve, reject) => {
    const args = ['-t1', `-c${conns}`, `-d${seconds}s`, '--latency', ...(script ? ['-s', script] : []), url];
    const p = spawn('wrk', args);
    let out = '';
    p.stdout.on('data', (d) => {
      out += d;
    });
    p.on('close', () => {
      const rate = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1]);
      const ms = (q) => {
        const m = new RegExp(`\\s${q}%\\s+([\\d.]+)(us|ms|s)`).exec(out);
        if (!m) return Number.NaN;
        return Number(m[1]) * { us: 0.001, ms: 1, s: 1000 }[m[2]];
      };
      const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0);
      if (!rate) reject(new Error(`wrk failed:\n${out}`));
      else resolve({ rate, p50: ms('50'), p99: ms('99'), non2xx });
    });
  });
}

const lua = (dir) => {
  const f = path.join(dir, 'poll.lua');
  fs.writeFileSync(
    f,
    `local n = ${nClients}
local body = '{"inventory":null,"reports":[],"problems":[]}'
request = function()
  local i = math.random(1, n)
  return wrk.format("POST", "/api/v1/agent/checkin", { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer casc_bench_" .. i }, body)
end
`,
  );
  return f;
};

async function run(label, db) {
  const dir = path.join(BENCH, `clients-${label}`);
  // --keep: seed once and keep the store (SQLite only) to measure changes to the site quickly.
  const reuse = keep && !db && fs.existsSync(path.join(dir, 'seeded'));
  if (!reuse) await seed(dir, db);
  if (keep) fs.writeFileSync(path.join(dir, 'seeded'), '');
  const port = await freePort();
  const site = await start(dir, port, db);
  try {
    // One check-in, to see the answer is real: offers, and no error.
    const probe = await fetch(`${site.url}/api/v1/agent/checkin`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer casc_bench_1' },
      body: '{"inventory":null,"reports":[],"problems":[]}',
    });
    const answer = await probe.json();
    if (!probe.ok) throw new Error(`check-in failed: ${JSON.stringify(answer)}`);
    const script = lua(dir);
    await wrk(site.url, script, connections[0]); // warm-up
    for (const c of connections) {
      const health = await wrk(`${site.url}/healthz`, undefined, c);
      const polls = await wrk(site.url, script, c);
      console.log(
        `${label}, ${c} connections: check-ins ${polls.rate.toFixed(0)}/s, p50 ${polls.p50.toFixed(1)} ms, p99 ${polls.p99.toFixed(1)} ms` +
          ` (${polls.non2xx} not 2xx; client 1 is offered ${answer.offers.length} advertisement(s));` +
          ` /healthz ${health.rate.toFixed(0)}/s, p99 ${health.p99.toFixed(1)} ms`,
      );
    }
  } finally {
    await site.stop();
    if (!keep) removeWork(dir);
  }
}

console.log(`poll path: ${nClients} clients, ${nCollections} collections, ${nAds} advertisements; wrk -t1 -d${seconds}s`);
await run('SQLite');
if (pg) {
  // A fresh database for the PostgreSQL run.
  const url = new URL(pg);
  const dbName = `cascade_bench_${Date.now()}`;
  const { default: pgLib } = await import('pg');
  const admin = new pgLib.Client({ connectionString: pg });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  url.pathname = `/${dbName}`;
  try {
    await run('PostgreSQL', url.toString());
  } finally {
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`).catch(() => {});
    await admin.end();
  }
}
