import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { cascade, freePort, type SiteProcess, startSite, tmpDir, until } from './helpers.js';

/**
 * Rollback protection: a version its origin deleted does not come back. The deletion is a
 * signed record that travels down the tree; a courier parcel exported before the deletion is
 * refused at the origin and below it, saying why.
 */
describe('a deleted version', () => {
  const running: SiteProcess[] = [];
  afterAll(async () => {
    for (const s of running) await s.stop();
  });

  it('is not installed again from an old parcel, at its origin or below', async () => {
    const root = tmpDir('cascade-deletion-');
    const env = { CASCADE_REPORT_SECONDS: '0.5', CASCADE_PING_SECONDS: '1' };
    const cenDir = path.join(root, 'CEN');
    expect((await cascade(['site', 'init', '--data', cenDir, '--code', 'CEN', '--listen', `127.0.0.1:${await freePort()}`])).code).toBe(0);
    const cen = await startSite(cenDir, [], { listen: null, env });
    running.push(cen);
    const token = JSON.parse((await cascade(['site', 'join-token', '--json'], { env: cen.env })).stdout).token;
    const berDir = path.join(root, 'BER');
    const init = await cascade([
      'site',
      'init',
      '--data',
      berDir,
      '--code',
      'BER',
      '--listen',
      `127.0.0.1:${await freePort()}`,
      '--parent',
      cen.url,
      '--join-token',
      token,
    ]);
    expect(init.stderr).toBe('');
    const ber = await startSite(berDir, [], { listen: null, env });
    running.push(ber);

    const src = path.join(root, 'src');
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, 'a.txt'), 'version one\n');
    const id = JSON.parse((await cascade(['package', 'create', src, '--name', 'Doc', '--json'], { env: cen.env })).stdout).id;
    fs.writeFileSync(path.join(src, 'a.txt'), 'version two, withdrawn later\n');
    expect((await cascade(['package', 'update', id, src], { env: cen.env })).code).toBe(0);
    const parcel = path.join(root, 'before.parcel');
    expect((await cascade(['courier', 'export', id, '--to-site', 'BER', '-o', parcel], { env: cen.env })).code).toBe(0);

    // Withdrawn at its origin.
    expect((await cascade(['package', 'delete', id, '--version', '2'], { env: cen.env })).code).toBe(0);
    const atCen = await cascade(['courier', 'import', parcel, '--anyway'], { env: cen.env });
    expect(atCen.code).not.toBe(0);
    expect(atCen.stderr).toMatch(
      new RegExp(
        `^cascade: parcel [0-9a-f-]+: ${id} version 2: deleted at its origin, site CEN \\(recorded [^)]+\\): not installed again here`,
      ),
    );
    const show = JSON.parse((await cascade(['package', 'show', id, '--json'], { env: cen.env })).stdout);
    expect(show.version).toBe(1);

    // The deletion reaches BER with its next status answer; then the old parcel is refused there.
    await until('BER holds the deletion record', async () => {
      const db = new Database(path.join(berDir, 'cascade.db'), { readonly: true, fileMustExist: true });
      try {
        return (db.prepare("SELECT count(*) AS n FROM policy WHERE kind = 'deletion'").get() as { n: number }).n === 1;
      } finally {
        db.close();
      }
    });
    const atBer = await cascade(['courier', 'import', parcel], { env: ber.env });
    expect(atBer.code).not.toBe(0);
    expect(atBer.stderr).toMatch(
      new RegExp(
        `^cascade: parcel [0-9a-f-]+: ${id} version 2: deleted at its origin, site CEN \\(recorded [^)]+\\): not installed again here`,
      ),
    );
    const list = JSON.parse((await cascade(['package', 'list', '--json'], { env: ber.env })).stdout) as { packages: { id: string }[] };
    expect(list.packages.some((p) => p.id === id)).toBe(false);
  }, 120_000);
});
