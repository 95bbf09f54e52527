import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BlockFileWriter } from './blockfile.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-blockfile-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Writes `data` through a writer as a stream would: pieces of uneven sizes into the blocks. */
async function writeThrough(file: string, data: Buffer, direct?: boolean): Promise<BlockFileWriter> {
  const w = await BlockFileWriter.open(file, direct === undefined ? {} : { direct });
  let fill = 0;
  for (let at = 0; at < data.length; ) {
    const n = Math.min(BlockFileWriter.BLOCK - fill, 300_001, data.length - at);
    data.copy(w.block, fill, at, at + n);
    fill += n;
    at += n;
    if (fill === BlockFileWriter.BLOCK) {
      await w.put(fill);
      fill = 0;
    }
  }
  if (fill > 0) await w.put(fill);
  await w.finish();
  return w;
}

describe('BlockFileWriter', () => {
  // Lengths around the block and alignment edges: the last block of a direct file is padded, then cut.
  const sizes = [0, 1, 4095, 4097, BlockFileWriter.BLOCK, BlockFileWriter.BLOCK + 1, 3 * BlockFileWriter.BLOCK - 12_345];
  for (const direct of [undefined, false]) {
    for (const size of sizes) {
      it(`writes ${size} bytes exactly (${direct === false ? 'buffered' : 'direct where possible'})`, async () => {
        const data = crypto.randomBytes(size);
        const file = path.join(dir, `f-${size}-${direct}`);
        const w = await writeThrough(file, data, direct);
        if (direct === false) expect(w.direct).toBe(false);
        expect(fs.statSync(file).size).toBe(size);
        expect(fs.readFileSync(file).equals(data)).toBe(true);
      });
    }
  }

  it('refuses a block after a short one (the blocks of a direct file must stay aligned)', async () => {
    const w = await BlockFileWriter.open(path.join(dir, 'short'));
    await w.put(100);
    await expect(w.put(BlockFileWriter.BLOCK)).rejects.toThrow(/short block/);
    await w.abort();
  });

  it('replaces what a file held before', async () => {
    const file = path.join(dir, 'again');
    fs.writeFileSync(file, crypto.randomBytes(9 << 20));
    const data = crypto.randomBytes(5000);
    await writeThrough(file, data);
    expect(fs.readFileSync(file).equals(data)).toBe(true);
  });
});
