import { type ChildProcess, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { Store } from '../store/store.js';
import { CHUNK_PARAMS } from './chunker.js';
import { CODEC_BROTLI, CODEC_RAW, decodeChunk } from './codec.js';
import { ContentLibrary } from './library.js';

/**
 * A real crash: a child process writes chunks into a library and records them in SQLite, and is
 * killed with SIGKILL mid-stream, several times over the same folder. Nothing it leaves may be
 * half-written: every chunk file is whole and matches its name, every recorded chunk has its file,
 * and start-up clears the temporary files.
 */
const WRITER = fileURLToPath(new URL('../../test/fixtures/library-writer.mjs', import.meta.url));
const sha = (b: Uint8Array): string => crypto.createHash('sha256').update(b).digest('hex');

function listFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir, { recursive: true, withFileTypes: true })
    .flatMap((d) => (d.isFile() ? [path.join(d.parentPath, d.name)] : []));
}

/** Starts the writer, waits until it has recorded chunks, lets it run `ms` more, then kills it. */
async function runAndKill(dir: string, ms: number): Promise<{ recorded: number; signal: NodeJS.Signals | null }> {
  const child: ChildProcess = spawn(process.execPath, [WRITER, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr?.on('data', (b: Buffer) => {
    err += b.toString();
  });
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (b: Buffer) => {
      out += b.toString();
      // Started and past its first batch: the kill lands in the middle of the loop.
      if (/^ready\n\d+\n/.test(out)) resolve();
    });
    child.on('exit', (code) => reject(new Error(`writer exited early (code ${code}): ${err}`)));
  });
  await new Promise((r) => setTimeout(r, ms));
  child.kill('SIGKILL');
  const signal = await exited;
  const counts = out.split('\n').filter((l) => /^\d+$/.test(l));
  return { recorded: Number(counts[counts.length - 1] ?? 0), signal };
}

describe('content library survives SIGKILL', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-crash-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('leaves only whole chunk files, a file for every row, and temporary files that init() clears', async () => {
    const libRoot = path.join(dir, 'library');
    let tmpSeen = 0;
    let lastRows = 0;
    // At least three kills; more (up to eight) until one lands while temporary files exist.
    for (let round = 0; round < 8 && (round < 3 || tmpSeen === 0); round++) {
      const ms = 250 + 50 * (round % 3);
      const { recorded, signal } = await runAndKill(dir, ms);
      expect(signal).toBe('SIGKILL');
      expect(recorded).toBeGreaterThan(0);

      // Temporary files the writer was in the middle of (often some; each may be partial).
      const tmpDir = path.join(libRoot, 'tmp');
      const tmpFiles = listFiles(tmpDir);
      tmpSeen += tmpFiles.length;

      // Every chunk file is whole: it decodes, and its content hashes to its name.
      const files = listFiles(path.join(libRoot, 'chunks'));
      const onDisk = new Set<string>();
      const codecs = new Set<number>();
      for (const f of files) {
        const name = path.basename(f);
        expect(name).toMatch(/^[0-9a-f]{64}$/);
        expect(path.basename(path.dirname(f))).toBe(name.slice(0, 2));
        const stored = fs.readFileSync(f);
        codecs.add(stored[0] as number);
        const raw = decodeChunk(stored, CHUNK_PARAMS.max);
        expect(raw.length).toBe(64 << 10);
        expect(sha(raw), f).toBe(name);
        onDisk.add(name);
      }
      expect(codecs).toEqual(new Set([CODEC_RAW, CODEC_BROTLI]));

      // Every recorded chunk has its file, of the recorded size.
      const store = await Store.open({ dataDir: dir });
      try {
        const rows = await store.db.selectFrom('chunks').selectAll().execute();
        // At least what the writer reported before it died (a commit may land after the report).
        expect(rows.length).toBeGreaterThanOrEqual(recorded);
        expect(rows.length).toBeGreaterThan(lastRows);
        lastRows = rows.length;
        for (const r of rows) {
          expect(onDisk.has(r.digest), `row ${r.digest} has no file`).toBe(true);
          expect(fs.statSync(new ContentLibrary(libRoot).chunkPath(r.digest)).size).toBe(r.stored_size);
          expect(r.size).toBe(64 << 10);
        }
        // Files without rows are allowed (written, then killed before the insert): at most the
        // two batches of 8 in flight per kill.
        expect(onDisk.size - rows.length).toBeLessThanOrEqual(16 * (round + 1));
      } finally {
        await store.close();
      }

      // Start-up clears the temporary files and keeps the chunks.
      const library = new ContentLibrary(libRoot);
      await library.init();
      // Only this process's own (empty) folder is left.
      expect(fs.readdirSync(tmpDir)).toEqual([path.basename(library.tmpDir)]);
      expect(fs.readdirSync(library.tmpDir)).toEqual([]);
      expect(listFiles(path.join(libRoot, 'chunks')).length).toBe(files.length);
    }
    // The kills landed while chunks were being written at least once: the check above saw real
    // leftovers, not an idle library.
    expect(tmpSeen).toBeGreaterThan(0);
  });

  it('init() removes leftovers of any shape from tmp/', async () => {
    const root = path.join(dir, 'lib2');
    const library = new ContentLibrary(root);
    await library.init();
    fs.writeFileSync(path.join(library.tmpDir, '123-abc.tmp'), 'partial');
    fs.mkdirSync(path.join(library.tmpDir, 'nested', 'deeper'), { recursive: true });
    fs.writeFileSync(path.join(library.tmpDir, 'nested', 'deeper', 'x'), 'y');
    await library.writeChunks([{ digest: sha(Buffer.from('x')), stored: Buffer.from([CODEC_RAW, 0x78]) }]);
    await library.init();
    expect(fs.readdirSync(library.tmpDir)).toEqual([]);
    expect(decodeChunk(await library.readStored(sha(Buffer.from('x'))), 1).toString()).toBe('x');
  });

  it('init() keeps the temporary files of other processes still running, and removes those of the rest', async () => {
    const root = path.join(dir, 'lib3');
    const library = new ContentLibrary(root);
    await library.init();
    const tmp = path.dirname(library.tmpDir);
    for (const tag of ['palive000001', 'pdead0000001']) {
      fs.mkdirSync(path.join(tmp, tag), { recursive: true });
      fs.writeFileSync(path.join(tmp, tag, 'upload.tmp'), 'partial');
      fs.writeFileSync(path.join(root, 'chunks', 'ab', `.tmp-${tag}-1-0`), 'partial');
    }
    fs.writeFileSync(path.join(library.tmpDir, 'mine.tmp'), 'partial');
    await library.init(new Set(['palive000001']));
    expect(fs.readdirSync(tmp).sort()).toEqual(['palive000001', path.basename(library.tmpDir)].sort());
    expect(fs.readdirSync(path.join(tmp, 'palive000001'))).toEqual(['upload.tmp']);
    expect(fs.readdirSync(library.tmpDir)).toEqual([]);
    expect(fs.readdirSync(path.join(root, 'chunks', 'ab'))).toEqual(['.tmp-palive000001-1-0']);
  });
});
