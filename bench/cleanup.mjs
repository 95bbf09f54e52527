#!/usr/bin/env node
// Removes the work folders benchmarks left for the end (.bench/cleanup.txt; see bench/lib.mjs).
import fs from 'node:fs';
import path from 'node:path';
import { BENCH } from './lib.mjs';

const list = path.join(BENCH, 'cleanup.txt');
if (fs.existsSync(list)) {
  for (const dir of fs.readFileSync(list, 'utf8').split('\n').filter(Boolean)) fs.rmSync(dir, { recursive: true, force: true });
  fs.rmSync(list, { force: true });
}
