import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cascade, freePort, makeSource, newSite, type SiteProcess, tmpDir } from './helpers.js';

const treeHash = (root: string): Record<string, string> => {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    for (const e of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      const abs = path.join(root, r);
      if (e.isSymbolicLink()) out[r] = `link:${fs.readlinkSync(abs)}`;
      else if (e.isDirectory()) walk(r);
      else
        out[r] = `${(fs.statSync(abs).mode & 0o777).toString(8)}:${crypto.createHash('sha256').update(fs.readFileSync(abs)).digest('hex')}`;
    }
  };
  walk('');
  return out;
};

describe('packages through bin/cascade', () => {
  let site: SiteProcess;
  let work: string;

  beforeAll(async () => {
    site = await newSite('CEN');
    work = tmpDir();
  });
  afterAll(async () => {
    expect(await site.stop()).toBe(0);
  });

  it('creates, lists, shows, fetches, verifies and updates a package', async () => {
    const src = path.join(work, 'v1');
    makeSource(src, 1);
    const created = await cascade(
      ['package', 'create', src, '--name', 'Tools', '--priority', 'high', '--program', 'Install=setup.exe /q', '--json'],
      { env: site.env },
    );
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);
    const c = JSON.parse(created.stdout);
    expect(c).toMatchObject({ id: 'CEN00001', version: 1, files: 3 });
    const total = fs.statSync(path.join(src, 'sub/data.bin')).size + fs.statSync(path.join(src, 'readme.txt')).size + 100_000;
    expect(c.bytes).toBe(total);
    // setup.exe repeats the start of data.bin: the first chunk is stored once.
    expect(c.newBytes).toBeLessThanOrEqual(total);

    const list = JSON.parse((await cascade(['package', 'list', '--json'], { env: site.env })).stdout);
    expect(list.packages).toHaveLength(1);
    expect(list.packages[0]).toMatchObject({ id: 'CEN00001', name: 'Tools', version: 1, priority: 'high' });

    const show = JSON.parse((await cascade(['package', 'show', 'CEN00001', '--json'], { env: site.env })).stdout);
    expect(show).toMatchObject({ id: 'CEN00001', name: 'Tools', version: 1, priority: 'high', bytes: total });
    expect(show.programs).toEqual([{ name: 'Install', command: 'setup.exe /q' }]);
    expect(show.files.map((f: { path: string }) => f.path)).toEqual(['readme.txt', 'setup.exe', 'sub', 'sub/data.bin', 'sub/readme-link']);
    expect(show.files.find((f: { path: string }) => f.path === 'setup.exe')).toMatchObject({ size: 100_000, mode: 0o755 });

    const dest = path.join(work, 'out1');
    const fetched = await cascade(['package', 'fetch', 'CEN00001', dest, '--json'], { env: site.env });
    expect(fetched.code).toBe(0);
    expect(JSON.parse(fetched.stdout)).toMatchObject({ id: 'CEN00001', version: 1, verified: true });
    expect(treeHash(dest)).toEqual(treeHash(src));

    const verify = await cascade(['package', 'verify', 'CEN00001', '--json'], { env: site.env });
    expect(verify.code).toBe(0);
    expect(JSON.parse(verify.stdout)).toMatchObject({ id: 'CEN00001', ok: true });

    // Version 2: a 3 KiB edit in the middle of the big file and one new small file.
    const src2 = path.join(work, 'v2');
    fs.cpSync(src, src2, { recursive: true, verbatimSymlinks: true });
    const fd = fs.openSync(path.join(src2, 'sub/data.bin'), 'r+');
    fs.writeSync(fd, crypto.randomBytes(3000), 0, 3000, 1_500_000);
    fs.closeSync(fd);
    fs.writeFileSync(path.join(src2, 'new.txt'), 'new file\n');
    const updated = await cascade(['package', 'update', 'CEN00001', src2, '--json'], { env: site.env });
    expect(updated.code).toBe(0);
    const u = JSON.parse(updated.stdout);
    expect(u).toMatchObject({ id: 'CEN00001', version: 2, files: 4 });
    // Only about the edit is new: far less than the 64 KiB chunk around it.
    expect(u.newBytes).toBeGreaterThanOrEqual(3000);
    expect(u.newBytes).toBeLessThan(12_000);

    const show2 = JSON.parse((await cascade(['package', 'show', 'CEN00001', '--json'], { env: site.env })).stdout);
    expect(show2.version).toBe(2);
    expect(show2.programs).toEqual([{ name: 'Install', command: 'setup.exe /q' }]);
    const dest2 = path.join(work, 'out2');
    expect((await cascade(['package', 'fetch', 'CEN00001', dest2], { env: site.env })).code).toBe(0);
    expect(treeHash(dest2)).toEqual(treeHash(src2));
    const old = path.join(work, 'out1b');
    expect((await cascade(['package', 'fetch', 'CEN00001', old, '--version', '1'], { env: site.env })).code).toBe(0);
    expect(treeHash(old)).toEqual(treeHash(src));
  });

  it('names each damaged file and chunk, and fetch refuses damaged content', async () => {
    const src = path.join(work, 'dmg');
    makeSource(src, 7, 600_000);
    const c = JSON.parse((await cascade(['package', 'create', src, '--name', 'Damaged', '--json'], { env: site.env })).stdout);
    const show = JSON.parse((await cascade(['package', 'show', c.id, '--json'], { env: site.env })).stdout);
    expect(show.files.length).toBeGreaterThan(0);
    const manifest = JSON.parse(fs.readFileSync(path.join(site.dataDir, 'content', 'manifests', c.id, '1.json'), 'utf8')).manifest;
    const file = manifest.files.find((f: { path: string }) => f.path === 'sub/data.bin');
    const digest = file.chunks[1][0] as string;
    const chunkFile = path.join(site.dataDir, 'content', 'chunks', digest.slice(0, 2), digest);
    const stored = fs.readFileSync(chunkFile);
    stored[stored.length - 10] ^= 0xff;
    fs.writeFileSync(chunkFile, stored);

    const v = await cascade(['package', 'verify', c.id], { env: site.env });
    expect(v.code).toBe(1);
    expect(v.stdout).toContain('DAMAGED');
    expect(v.stdout).toContain(`sub/data.bin chunk ${digest}`);
    const vj = JSON.parse((await cascade(['package', 'verify', c.id, '--json'], { env: site.env })).stdout);
    expect(vj.ok).toBe(false);
    expect(vj.versions[0].problems).toEqual([expect.objectContaining({ path: 'sub/data.bin', chunk: digest, kind: 'damaged' })]);

    const f = await cascade(['package', 'fetch', c.id, path.join(work, 'dmg-out')], { env: site.env });
    expect(f.code).toBe(1);
    expect(f.stderr.trim().split('\n')).toHaveLength(1);
    expect(f.stderr).toContain(digest);
  });

  it('refuses hostile sources with one clear line naming the file', async () => {
    const outside = path.join(work, 'hostile-link');
    fs.mkdirSync(outside, { recursive: true });
    fs.writeFileSync(path.join(outside, 'ok.txt'), 'ok');
    fs.symlinkSync('/etc/passwd', path.join(outside, 'passwd'));
    let r = await cascade(['package', 'create', outside, '--name', 'x'], { env: site.env });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^cascade: .*passwd is a link to \/etc\/passwd, outside the source folder\n$/);

    const up = path.join(work, 'hostile-up');
    fs.mkdirSync(path.join(up, 'a'), { recursive: true });
    fs.symlinkSync('../../..', path.join(up, 'a', 'escape'));
    r = await cascade(['package', 'create', up, '--name', 'x'], { env: site.env });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('escape is a link to ../../.., outside the source folder');

    const fifo = path.join(work, 'hostile-fifo');
    fs.mkdirSync(fifo, { recursive: true });
    const { execFileSync } = await import('node:child_process');
    execFileSync('mkfifo', [path.join(fifo, 'pipe')]);
    r = await cascade(['package', 'create', fifo, '--name', 'x'], { env: site.env });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/pipe is a named pipe/);

    const dev = path.join(work, 'hostile-dev');
    fs.mkdirSync(dev, { recursive: true });
    let haveDev = true;
    try {
      execFileSync('mknod', [path.join(dev, 'null'), 'c', '1', '3']);
    } catch {
      haveDev = false;
    }
    if (haveDev) {
      r = await cascade(['package', 'create', dev, '--name', 'x'], { env: site.env });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/null is a character device/);
    }

    const unreadable = path.join(work, 'hostile-unreadable');
    fs.mkdirSync(unreadable, { recursive: true });
    fs.writeFileSync(path.join(unreadable, 'secret.bin'), 'secret');
    fs.chmodSync(path.join(unreadable, 'secret.bin'), 0o000);
    // root reads anything: run the CLI as nobody so the permission is real.
    const asNobody = process.getuid?.() === 0 ? { uid: 65534 } : {};
    r = await cascade(['package', 'create', unreadable, '--name', 'x'], { env: site.env, ...asNobody });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/secret\.bin cannot be read \(EACCES\)/);

    // Nothing was created by any of them.
    const list = JSON.parse((await cascade(['package', 'list', '--json'], { env: site.env })).stdout);
    expect(list.packages.map((p: { name: string }) => p.name)).not.toContain('x');
  });

  it('gives usage errors exit 2 and one line; API errors exit 1', async () => {
    let r = await cascade(['package', 'show', 'NOTANID'], { env: site.env });
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('cascade: "NOTANID" is not a package ID (three-character site code and five digits, e.g. CEN00001)\n');
    r = await cascade(['package', 'create', work, '--name', 'x', '--priority', 'urgent'], { env: site.env });
    expect(r.code).toBe(2);
    r = await cascade(['package', 'show', 'CEN09999'], { env: site.env });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('cascade: package CEN09999 does not exist\n');
    r = await cascade(['package', 'list'], { env: { CASCADE_SITE: site.url } });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/needs a bearer token/);
    const closed = await freePort();
    r = await cascade(['package', 'list'], { env: { CASCADE_SITE: `http://127.0.0.1:${closed}` } });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`cascade: cannot reach the site at http://127.0.0.1:${closed}: ECONNREFUSED\n`);
    r = await cascade(['bogus-command']);
    expect(r.code).toBe(2);
  });

  it('honours token roles', async () => {
    const ro = await cascade(['token', 'create', '--role', 'read-only', '--name', 'auditor'], { env: site.env });
    expect(ro.code).toBe(0);
    const roEnv = { CASCADE_SITE: site.url, CASCADE_TOKEN: ro.stdout.trim() };
    expect((await cascade(['package', 'list'], { env: roEnv })).code).toBe(0);
    const src = path.join(work, 'ro');
    makeSource(src, 3, 10_000);
    const r = await cascade(['package', 'create', src, '--name', 'nope'], { env: roEnv });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('a read-only token cannot do this');
  });
});
