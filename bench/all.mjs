#!/usr/bin/env node
// `npm run bench`: every benchmark in turn, then their work folders removed at the very end
// (bench/lib.mjs removeWork says why). Stops at the first one that fails, and still cleans up.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { ROOT } from './lib.mjs';

const benches = [
  'run.mjs',
  'source.mjs',
  'hierarchy.mjs',
  'validate.mjs',
  'dps.mjs',
  'serve.mjs',
  'courier.mjs',
  'clients.mjs',
  'agent.mjs',
  'caps.mjs',
  'tls.mjs',
  'failover.mjs',
];
let status = 0;
for (const b of benches) {
  console.error(`\n== bench/${b}`);
  const r = spawnSync(process.execPath, [path.join(ROOT, 'bench', b)], {
    stdio: 'inherit',
    env: { ...process.env, CASCADE_BENCH_DEFER_CLEANUP: '1' },
  });
  if (r.status !== 0) {
    status = r.status ?? 1;
    console.error(`bench/${b} failed (exit ${status})`);
    break;
  }
}
spawnSync(process.execPath, [path.join(ROOT, 'bench', 'cleanup.mjs')], { stdio: 'inherit' });
process.exit(status);
