import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cascade, tmpDir } from './helpers.js';

/** A site whose database was emptied or damaged refuses to start with one line saying so. */
describe('a damaged database', () => {
  it('is named at start: emptied, or not a database', async () => {
    const dir = path.join(tmpDir(), 'site');
    expect((await cascade(['site', 'init', '--data', dir, '--code', 'TRN'])).code).toBe(0);
    const db = path.join(dir, 'cascade.db');
    for (const f of ['cascade.db-wal', 'cascade.db-shm']) fs.rmSync(path.join(dir, f), { force: true });

    fs.truncateSync(db, 0);
    const empty = await cascade(['site', 'start', '--data', dir, '--listen', '127.0.0.1:0']);
    expect(empty.code).toBe(1);
    expect(empty.stderr).toBe(
      `cascade: the database of ${dir} holds no site (it is empty: truncated, replaced or lost?), but the folder is site TRN: restore the database from a backup (docs/operations.md)\n`,
    );

    fs.writeFileSync(db, Buffer.alloc(20_000, 0x5a));
    for (const f of ['cascade.db-wal', 'cascade.db-shm']) fs.rmSync(path.join(dir, f), { force: true });
    const garbage = await cascade(['site', 'start', '--data', dir, '--listen', '127.0.0.1:0']);
    expect(garbage.code).toBe(1);
    expect(garbage.stderr).toMatch(
      new RegExp(
        `^cascade: the database ${db} is damaged \\(.+\\): restore it from a backup \\(docs/operations.md\\); nothing was changed\\n$`,
      ),
    );
  }, 60_000);
});
