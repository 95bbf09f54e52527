#!/usr/bin/env node
import crypto from 'node:crypto';
// Copied from the project brief (shared/bench/make-corpus.mjs) so benchmarks run from a clone alone.
// Deterministic package corpus for Cascade benchmarks and tests.
//
//   node make-corpus.mjs OUT [--size 256MiB] [--seed 1]
//       writes a package-like folder tree of about --size bytes into OUT
//   node make-corpus.mjs OUT --from DIR [--change 1%] [--seed 2]
//       writes the "next version" of DIR into OUT: scattered in-place edits, insertions
//       that shift the rest of a file, a few deleted, added and renamed files, with about
//       --change of the bytes new
//
// The mix imitates an installation source: many small files, some medium ones, a few
// large archives; a third of the bytes compress well (text), the rest do not.
// Same arguments, same bytes, on every machine. No dependencies beyond Node.js.
import fs from 'node:fs';
import path from 'node:path';

const args = process.argv.slice(2);
const out = args.find((a, i) => !a.startsWith('--') && !args[i - 1]?.startsWith('--'));
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
if (!out) {
  console.error('usage: make-corpus.mjs OUT [--size 256MiB] [--seed N] [--from DIR --change 1%]');
  process.exit(2);
}
const parseSize = (s) => {
  const m = /^(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|K|M|G)?$/i.exec(s);
  if (!m) throw new Error(`bad size: ${s}`);
  const mult = { b: 1, k: 1024, kib: 1024, m: 1 << 20, mib: 1 << 20, g: 1 << 30, gib: 1 << 30 };
  return Math.round(Number(m[1]) * mult[(m[2] ?? 'b').toLowerCase()]);
};

// xorshift-based PRNG: fast, seedable, portable.
function rng(seed) {
  let s = BigInt(seed) * 0x9e3779b97f4a7c15n + 0x632be59bd9b4e019n;
  const mask = (1n << 64n) - 1n;
  return () => {
    s ^= (s << 13n) & mask;
    s ^= s >> 7n;
    s ^= (s << 17n) & mask;
    return Number(s & 0xffffffffn) / 0x100000000;
  };
}
const seed = Number(opt('seed', opt('from') ? '2' : '1'));
const rand = rng(seed);
const int = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));

// Incompressible bytes from a seeded stream cipher: fast and deterministic.
function randomBytes(n, tag) {
  const key = crypto.createHash('sha256').update(`${seed}:${tag}`).digest();
  const c = crypto.createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  return c.update(Buffer.alloc(n));
}
const WORDS = (
  'setup install server client package site distribution point windows driver ' +
  'service registry advertisement program collection network bandwidth upgrade courier ' +
  'sender schedule priority status message inventory hardware software file folder ' +
  'the of and to in is for with on by this that from at as be are'
).split(' ');
function textBytes(n) {
  const parts = [];
  let len = 0;
  while (len < n) {
    const line =
      Array.from({ length: int(4, 14) }, () => WORDS[int(0, WORDS.length - 1)]).join(' ') +
      (rand() < 0.3 ? ` = 0x${int(0, 0xffffff).toString(16)}` : '') +
      '\n';
    parts.push(line);
    len += line.length;
  }
  return Buffer.from(parts.join('')).subarray(0, n);
}
const content = (n, tag) => (rand() < 0.33 ? textBytes(n) : randomBytes(n, tag));

function writeFile(root, rel, buf) {
  const p = path.join(root, rel);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, buf);
}

function generate(root, total) {
  const dirs = ['setup', 'i386', 'i386/drivers', 'i386/system32', 'support/tools', 'docs', 'lang/en', 'lang/de'];
  let written = 0;
  let n = 0;
  // 10% of bytes in many small files, 30% in medium files, 60% in a few large ones.
  const plan = [
    [0.1, 1 << 10, 64 << 10],
    [0.3, 1 << 20, 16 << 20],
    [0.6, 32 << 20, 256 << 20],
  ];
  for (const [share, lo, hi] of plan) {
    const budget = Math.round(total * share);
    let used = 0;
    while (used < budget) {
      const size = Math.min(int(lo, hi), budget - used);
      if (size <= 0) break;
      const dir = dirs[int(0, dirs.length - 1)];
      const ext = size >= 32 << 20 ? 'cab' : ['dll', 'sys', 'inf', 'txt', 'exe', 'dat'][int(0, 5)];
      writeFile(root, `${dir}/file${String(n).padStart(5, '0')}.${ext}`, content(size, `f${n}`));
      used += size;
      n++;
    }
    written += used;
  }
  writeFile(root, 'setup.exe', randomBytes(512 << 10, 'setup'));
  return { files: n + 1, bytes: written + (512 << 10) };
}

function* walk(root, rel = '') {
  for (const e of fs.readdirSync(path.join(root, rel), { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) yield* walk(root, r);
    else yield r;
  }
}

function mutate(from, root, share) {
  const files = [...walk(from)];
  const total = files.reduce((s, f) => s + fs.statSync(path.join(from, f)).size, 0);
  let budget = Math.round(total * share);
  const stats = { edited: 0, inserted: 0, deleted: 0, added: 0, renamed: 0, newBytes: 0 };
  for (const f of files) {
    let buf = fs.readFileSync(path.join(from, f));
    let rel = f;
    const r = rand();
    if (r < 0.01) {
      stats.deleted++;
      continue;
    }
    if (r < 0.02) {
      rel = f.replace(/(\.\w+)$/, '-v2$1');
      stats.renamed++;
    } else if (r < 0.12 && budget > 0 && buf.length > 4096) {
      // A few scattered in-place edits of 1-16 KiB.
      const edits = int(1, 4);
      buf = Buffer.from(buf);
      for (let i = 0; i < edits && budget > 0; i++) {
        const len = Math.min(int(1 << 10, 16 << 10), buf.length, budget);
        const at = int(0, buf.length - len);
        randomBytes(len, `e${f}${i}`).copy(buf, at);
        budget -= len;
        stats.newBytes += len;
      }
      stats.edited++;
    } else if (r < 0.16 && budget > 0 && buf.length > 4096) {
      // An insertion that shifts everything after it.
      const len = Math.min(int(256, 64 << 10), budget);
      const at = int(0, buf.length);
      buf = Buffer.concat([buf.subarray(0, at), randomBytes(len, `i${f}`), buf.subarray(at)]);
      budget -= len;
      stats.newBytes += len;
      stats.inserted++;
    }
    writeFile(root, rel, buf);
  }
  let k = 0;
  while (budget > 0) {
    const len = Math.min(int(4 << 10, 4 << 20), budget);
    writeFile(root, `i386/new/update${String(k++).padStart(3, '0')}.dll`, content(len, `n${k}`));
    budget -= len;
    stats.newBytes += len;
    stats.added++;
  }
  return { files: [...walk(root)].length, bytes: [...walk(root)].reduce((s, f) => s + fs.statSync(path.join(root, f)).size, 0), ...stats };
}

if (fs.existsSync(out) && fs.readdirSync(out).length) {
  console.error(`refusing to write into non-empty ${out}`);
  process.exit(2);
}
const from = opt('from');
const result = from ? mutate(from, out, parseFloat(opt('change', '1%')) / 100) : generate(out, parseSize(opt('size', '256MiB')));
console.log(JSON.stringify({ out, seed, ...result }));
