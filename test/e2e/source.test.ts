import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cascade, makeSource, type SiteProcess, sleep, startSite, tmpDir } from './helpers.js';

const hashTree = (root: string): Record<string, string> => {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      const abs = path.join(root, r);
      if (e.isSymbolicLink()) out[r] = `link:${fs.readlinkSync(abs)}`;
      else if (e.isDirectory()) walk(r);
      else out[r] = crypto.createHash('sha256').update(fs.readFileSync(abs)).digest('hex');
    }
  };
  walk('');
  return out;
};

/** Sources the site reads itself: real `site start` and `bin/cascade` processes, a SIGKILL mid-read. */
describe('package sources on the site, through bin/cascade', () => {
  let work: string;
  let data: string;
  let roots: string;
  let site: SiteProcess;
  const run = (args: string[]) => cascade(args, { env: site.env });

  beforeAll(async () => {
    work = tmpDir();
    roots = path.join(work, 'sources');
    makeSource(path.join(roots, 'tools'), 3);
    data = path.join(work, 'site');
    const init = await cascade(['site', 'init', '--data', data, '--code', 'CEN']);
    expect(init.code).toBe(0);
    site = await startSite(data);
  });
  afterAll(async () => {
    await site?.stop();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('reads nothing until a source root is set in the data folder, then only below it', async () => {
    const none = await run(['package', 'create', '--source-on-site', path.join(roots, 'tools'), '--name', 'Tools']);
    expect(none.code).toBe(1);
    expect(none.stderr).toBe(
      'cascade: this site reads no source folders: none is configured ("cascade site set --data DIR --source-root DIR" on the site server)\n',
    );
    // Set where the site runs, through its data folder; the running site reads it on its next use.
    const set = await cascade(['site', 'set', '--data', data, '--source-root', roots]);
    expect(set.stdout).toBe(`site CEN may read package sources under: ${roots}\n`);
    const outside = await run(['package', 'create', '--source-on-site', work, '--name', 'Everything']);
    expect(outside.code).toBe(1);
    expect(outside.stderr).toBe(`cascade: source ${work} is not under a source root of this site (roots: ${roots})\n`);
    const relative = await run(['package', 'create', '--source-on-site', 'tools', '--name', 'Tools']);
    expect(relative.code).toBe(2);
    expect(relative.stderr).toMatch(/give the folder's absolute path on the site server/);
    const both = await run([
      'package',
      'create',
      path.join(roots, 'tools'),
      '--source-on-site',
      path.join(roots, 'tools'),
      '--name',
      'Tools',
    ]);
    expect(both.code).toBe(2);
    const missing = await cascade(['site', 'set', '--data', data, '--source-root', path.join(work, 'nope')]);
    expect(missing.stderr).toBe(`cascade: --source-root ${path.join(work, 'nope')}: no such folder\n`);
  });

  it('creates a package from a folder on the site, re-reads it, and makes a version only when it changed', async () => {
    const src = path.join(roots, 'tools');
    const created = await run([
      'package',
      'create',
      '--source-on-site',
      src,
      '--name',
      'Tools',
      '--program',
      'Install=setup.exe',
      '--json',
    ]);
    expect(created.stderr).toBe('');
    const c = JSON.parse(created.stdout);
    expect(c).toMatchObject({ id: 'CEN00001', version: 1, files: 3, unchanged: false, source: src });
    const fetched = path.join(work, 'fetched');
    expect((await run(['package', 'fetch', 'CEN00001', fetched])).code).toBe(0);
    expect(hashTree(fetched)).toEqual(hashTree(src));

    const same = await run(['package', 'update', 'CEN00001']);
    expect(same.code).toBe(0);
    expect(same.stdout).toBe(`CEN00001: nothing changed in ${src} since version 1; no new version made\n`);
    fs.appendFileSync(path.join(src, 'readme.txt'), 'changed\n');
    const changed = JSON.parse((await run(['package', 'update', 'CEN00001', '--json'])).stdout);
    expect(changed).toMatchObject({ id: 'CEN00001', version: 2, unchanged: false });
    expect(changed.newBytes).toBeLessThan(20_000);

    const show = await run(['package', 'show', 'CEN00001']);
    expect(show.stdout).toContain(`  source on the site: ${src} (read again only when asked: cascade package update ID)\n`);
    expect(show.stdout).toMatch(/ {2}last read \S+: made version 2\n/);
    const sched = await run(['package', 'set', 'CEN00001', '--refresh-every', '24h', '--distribute']);
    expect(sched.stdout).toMatch(/read again every 1d \(new versions flow to its DPs\); next \S+Z/);
    expect((await run(['package', 'set', 'CEN00001', '--refresh-every', '10s'])).stderr).toBe(
      'cascade: --refresh-every must be at least 60s\n',
    );
  });

  it('a site killed while it reads a source reads it again at start; no half version is ever visible', async () => {
    const big = path.join(roots, 'big');
    fs.mkdirSync(big, { recursive: true });
    for (let i = 0; i < 6; i++) fs.writeFileSync(path.join(big, `part-${i}.bin`), crypto.randomBytes(64 << 20));
    const started = await run(['package', 'create', '--source-on-site', big, '--name', 'Big', '--detach', '--json']);
    expect(started.code).toBe(0);
    const id = JSON.parse(started.stdout).package as string;
    expect(id).toBe('CEN00002');
    // Wait until part of it is read and stored, then kill the site outright.
    const headers = { authorization: `Bearer ${site.token}` };
    let progress: { state: string; doneBytes: number; bytes: number; percent: number } | undefined;
    for (let i = 0; i < 2000; i++) {
      progress = (await (await fetch(`${site.url}/api/v1/packages/${id}/source`, { headers })).json()).ingest;
      if (progress && progress.doneBytes > 0) break;
      await sleep(5);
    }
    expect(progress?.state).toBe('ingesting');
    expect(progress?.doneBytes).toBeLessThan(progress?.bytes ?? 0);
    expect(progress?.percent).toBeLessThan(100);
    await site.stop('SIGKILL');
    // Killed: no manifest of the package was written, so nothing of it can be served.
    expect(fs.existsSync(path.join(data, 'content', 'manifests', id))).toBe(false);

    site = await startSite(data);
    const done = await run(['package', 'show', id, '--json']);
    let show = JSON.parse(done.stdout);
    for (let i = 0; i < 600 && !show.version; i++) {
      await sleep(100);
      show = JSON.parse((await run(['package', 'show', id, '--json'])).stdout);
    }
    expect(show).toMatchObject({ id, version: 1, versions: [1], bytes: 6 * (64 << 20) });
    expect(site.logs()).toContain('reading the package source again: it was under way when the site stopped');
    const verify = JSON.parse((await run(['package', 'verify', id, '--json'])).stdout);
    expect(verify.ok).toBe(true);
    // Temporary files the killed process left are gone.
    for (const d of fs.readdirSync(path.join(data, 'content', 'chunks')))
      expect(fs.readdirSync(path.join(data, 'content', 'chunks', d)).filter((f) => f.startsWith('.tmp-'))).toEqual([]);
    fs.rmSync(big, { recursive: true, force: true });
  }, 120_000);
});
