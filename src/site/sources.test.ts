import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ContentLibrary } from '../content/library.js';
import { closePool } from '../content/pool.js';
import { generateSiteKey, publicKeyPem } from '../content/signing.js';
import { silentLogger } from '../lib/log.js';
import { writeSiteConfig } from '../lib/site-config.js';
import { getSource } from '../store/sources.js';
import { Store } from '../store/store.js';
import { deletePackage, readVersion } from './content.js';
import type { SiteContext } from './context.js';
import { allowedSource, createFromSource, packageSource, refreshFromSource, setSourceSettings, tickRefreshes } from './sources.js';

/** In-process: a real library and store in a temporary data folder, a clock the test moves. */
describe('package sources read on the site', () => {
  let ctx: SiteContext;
  let dir: string;
  let root: string;
  let now = new Date('2026-06-01T00:00:00Z');

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-sources-'));
    root = path.join(dir, 'sources');
    fs.mkdirSync(path.join(root, 'app', 'bin'), { recursive: true });
    fs.writeFileSync(path.join(root, 'app', 'readme.txt'), 'hello\n'.repeat(5000));
    fs.writeFileSync(path.join(root, 'app', 'bin', 'tool'), crypto.randomBytes(700_000), { mode: 0o755 });
    fs.symlinkSync('../readme.txt', path.join(root, 'app', 'bin', 'readme'));
    writeSiteConfig(dir, { code: 'CEN', name: 'CEN', sourceRoots: [root] });
    const store = await Store.open({ url: ':memory:', dataDir: dir, clock: () => now });
    const library = new ContentLibrary(path.join(dir, 'content'));
    await library.init();
    const key = generateSiteKey('CEN');
    ctx = {
      store,
      library,
      key,
      trusted: [{ keyId: key.keyId, publicKeyPem: publicKeyPem(key.publicKey), site: 'CEN' }],
      code: 'CEN',
      name: 'CEN',
      clock: () => now,
      log: silentLogger(),
      process: { dataDir: dir, switchRelease: null },
    };
  });
  afterAll(async () => {
    await ctx.store.close();
    await closePool();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** Waits for the reading under way to end; its source as then. */
  const settled = async (id: string) => {
    for (;;) {
      const s = await packageSource(ctx, id, 10_000);
      if (s?.ingest?.state !== 'ingesting') return s;
    }
  };

  it('reads only folders under its source roots, naming them when it refuses', () => {
    expect(() => allowedSource([], path.join(root, 'app'))).toThrow(/reads no source folders.*--source-root/);
    expect(() => allowedSource([root], '/etc')).toThrow(`source /etc is not under a source root of this site (roots: ${root})`);
    expect(() => allowedSource([root], 'app')).toThrow(/not an absolute path/);
    expect(() => allowedSource([root], path.join(root, 'nope'))).toThrow(/cannot be read on the site server: ENOENT/);
    // A root's sibling sharing its prefix is not under it; a link inside a root to outside is not either.
    fs.mkdirSync(`${root}-other`, { recursive: true });
    expect(() => allowedSource([root], `${root}-other`)).toThrow(/not under a source root/);
    fs.symlinkSync('/etc', path.join(root, 'escape'));
    expect(() => allowedSource([root], path.join(root, 'escape'))).toThrow(/not under a source root/);
    fs.rmSync(path.join(root, 'escape'));
    expect(allowedSource([root], path.join(root, 'app'))).toBe(fs.realpathSync(path.join(root, 'app')));
  });

  it('creates a package in one pass, and makes no version when nothing changed', async () => {
    const started = await createFromSource(ctx, {
      source: path.join(root, 'app'),
      name: 'App',
      programs: [{ name: 'Install', command: 'bin/tool' }],
    });
    expect(started).toMatchObject({ package: 'CEN00001', path: path.join(root, 'app') });
    const done = await settled('CEN00001');
    expect(done?.ingest).toMatchObject({ state: 'done', trigger: 'admin', files: 2, doneFiles: 2, percent: 100, error: null });
    expect(done?.ingest?.version).toMatchObject({ id: 'CEN00001', version: 1, files: 2, unchanged: false });
    const m = await readVersion(ctx, 'CEN00001', 1);
    expect(m.name).toBe('App');
    expect(m.programs).toEqual([{ name: 'Install', command: 'bin/tool' }]);
    expect(m.files.map((f) => [f.path, f.type])).toEqual([
      ['bin', 'dir'],
      ['bin/readme', 'link'],
      ['bin/tool', 'file'],
      ['readme.txt', 'file'],
    ]);
    const tool = m.files.find((f) => f.path === 'bin/tool');
    expect(tool).toMatchObject({ mode: 0o755, size: 700_000 });
    // Every chunk is in the library and recorded; no temporary file is left.
    for (const f of m.files)
      if (f.type === 'file')
        expect((await ctx.store.haveChunks(f.chunks.map(([d]) => d))).size).toBe(new Set(f.chunks.map(([d]) => d)).size);
    for (const d of fs.readdirSync(path.join(dir, 'content', 'chunks')))
      expect(fs.readdirSync(path.join(dir, 'content', 'chunks', d)).filter((f) => f.startsWith('.tmp-'))).toEqual([]);

    await refreshFromSource(ctx, 'CEN00001', {});
    expect((await settled('CEN00001'))?.ingest).toMatchObject({ state: 'unchanged', version: { version: 1, unchanged: true } });
    // A file touched but not changed is read again, and still makes no version.
    const later = new Date(Date.now() + 5000);
    fs.utimesSync(path.join(root, 'app', 'readme.txt'), later, later);
    await refreshFromSource(ctx, 'CEN00001', {});
    expect((await settled('CEN00001'))?.ingest).toMatchObject({ state: 'unchanged' });
    await refreshFromSource(ctx, 'CEN00001', { verifyContent: true });
    expect((await settled('CEN00001'))?.ingest).toMatchObject({ state: 'unchanged', doneBytes: 700_000 + 30_000 });
    expect((await ctx.store.getPackage('CEN00001'))?.latestVersion).toBe(1);
  });

  it('makes a new version of what changed, keeping the programs', async () => {
    fs.appendFileSync(path.join(root, 'app', 'readme.txt'), 'one more line\n');
    await refreshFromSource(ctx, 'CEN00001', { hold: true });
    const s = await settled('CEN00001');
    expect(s?.ingest).toMatchObject({ state: 'done', version: { version: 2, unchanged: false, flowsTo: [] } });
    // Only the changed file's last chunk is new.
    expect(s?.ingest?.version?.newBytes).toBeLessThan(40_000);
    const m = await readVersion(ctx, 'CEN00001', 2);
    expect(m.programs).toEqual([{ name: 'Install', command: 'bin/tool' }]);
    expect(m.files.find((f) => f.path === 'readme.txt')).toMatchObject({ size: 30_000 + 14 });
  });

  it('refuses a second reading while one runs, and a folder that cannot be packaged', async () => {
    await refreshFromSource(ctx, 'CEN00001', { verifyContent: true });
    await expect(refreshFromSource(ctx, 'CEN00001', {})).rejects.toThrow(/is being read from its source already/);
    await settled('CEN00001');
    fs.mkdirSync(path.join(root, 'bad'), { recursive: true });
    fs.symlinkSync('/etc/passwd', path.join(root, 'bad', 'passwd'));
    await expect(createFromSource(ctx, { source: path.join(root, 'bad'), name: 'Bad' })).rejects.toThrow(
      /is a link to \/etc\/passwd, outside the source folder/,
    );
  });

  it('refreshes on its schedule at low priority; the version is staged unless told to distribute', async () => {
    const set = await setSourceSettings(ctx, 'CEN00001', { refreshEverySeconds: 3600 });
    expect(set).toMatchObject({ refreshEverySeconds: 3600, distribute: false });
    expect(Date.parse(set.nextRefreshAt ?? '')).toBe(
      Date.parse((await getSource(ctx.store, 'CEN00001'))?.ingest?.startedAt ?? '') + 3600_000,
    );
    // Not due yet: nothing starts.
    await tickRefreshes(ctx);
    expect((await packageSource(ctx, 'CEN00001'))?.ingest?.trigger).toBe('admin');
    fs.writeFileSync(path.join(root, 'app', 'new.txt'), 'new\n');
    now = new Date(now.getTime() + 2 * 3600_000);
    await tickRefreshes(ctx);
    const s = await settled('CEN00001');
    expect(s?.ingest).toMatchObject({ state: 'done', trigger: 'schedule', version: { version: 3 } });
    expect(Date.parse(s?.nextRefreshAt ?? '')).toBe(now.getTime() + 3600_000);
    // Off again: no schedule.
    expect(await setSourceSettings(ctx, 'CEN00001', { refreshEverySeconds: null })).toMatchObject({
      refreshEverySeconds: null,
      nextRefreshAt: null,
    });
  });

  it('forgets the source when the package is deleted', async () => {
    await deletePackage(ctx, 'CEN00001', undefined);
    expect(await packageSource(ctx, 'CEN00001')).toBeNull();
    await expect(refreshFromSource(ctx, 'CEN00001', {})).rejects.toThrow(/does not exist/);
  });
});
