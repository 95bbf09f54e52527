import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { cascade, freePort, startSite, tmpDir } from './helpers.js';

describe('site init and start', () => {
  it('--db FILE keeps the store in SQLite at that path and says so', async () => {
    const base = tmpDir();
    const dir = path.join(base, 'site');
    const r = await cascade(['site', 'init', '--data', dir, '--code', 'SQL', '--db', 'elsewhere/store.db', '--json'], {
      env: { CASCADE_DB: '' },
      cwd: base,
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ code: 'SQL', db: 'sqlite' });
    const file = path.join(base, 'elsewhere', 'store.db');
    expect(fs.existsSync(file)).toBe(true);
    expect(fs.existsSync(path.join(dir, 'cascade.db'))).toBe(false);
    // Kept as an absolute path, so "site start" finds it from any working directory.
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')).db).toBe(file);
    const text = await cascade(['site', 'init', '--help']);
    expect(text.stdout.replace(/\s+/g, ' ')).toMatch(/any other value is a file path: SQLite at that path/);
  });

  it('--listen is kept in config.json; start serves there and --data finds the URL', async () => {
    const dir = path.join(tmpDir(), 'site');
    let r = await cascade(['site', 'init', '--data', dir, '--code', 'LIS', '--listen', 'nowhere']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('cascade: --listen "nowhere" is not HOST:PORT (e.g. 127.0.0.1:8100)\n');
    expect(fs.existsSync(dir)).toBe(false);
    r = await cascade(['site', 'init', '--data', dir, '--code', 'LIS', '--listen', '127.0.0.1:0']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/port 0/);

    const port = await freePort();
    r = await cascade(['site', 'init', '--data', dir, '--code', 'LIS', '--listen', `127.0.0.1:${port}`, '--json']);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toMatchObject({ code: 'LIS', listen: `127.0.0.1:${port}` });
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')).listen).toBe(`127.0.0.1:${port}`);

    const site = await startSite(dir, [], { listen: null });
    try {
      expect(site.url).toBe(`http://127.0.0.1:${port}`);
      // No --site and no --token: both come from the data folder.
      const list = await cascade(['package', 'list', '--data', dir, '--json']);
      expect(list.stderr).toBe('');
      expect(JSON.parse(list.stdout)).toEqual({ packages: [] });
      const tokens = await cascade(['token', 'list', '--data', dir, '--json']);
      expect(tokens.code).toBe(0);
    } finally {
      expect(await site.stop()).toBe(0);
    }
  });

  it('chooses HTTPS off loopback, and refuses TLS options that contradict each other in one line', async () => {
    const base = tmpDir();
    const dir = path.join(base, 'site');
    const refused = async (args: string[], msg: RegExp) => {
      const r = await cascade(['site', 'init', '--data', dir, '--code', 'TLS', ...args]);
      expect(r.code).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(msg);
      expect(fs.existsSync(dir)).toBe(false);
    };
    await refused(
      ['--tls', '--listen', '127.0.0.1:8443', '--url', 'http://site.example:8443'],
      /--url "http:\/\/site\.example:8443" is plain HTTP, but this site will serve HTTPS: give https:\/\/, or --no-tls/,
    );
    await refused(['--no-tls', '--tls-cert', 'c.pem', '--tls-key', 'k.pem'], /--no-tls and --tls-cert\/--tls-key contradict each other/);
    await refused(['--tls-cert', path.join(base, 'none.pem')], /--tls-cert and --tls-key go together/);
    await refused(
      ['--tls-cert', path.join(base, 'none.pem'), '--tls-key', path.join(base, 'none.pem')],
      /cannot read .*none\.pem \(ENOENT\)/,
    );
    // An address other networks reach: HTTPS by default, with a certificate made in the folder.
    const r = await cascade(['site', 'init', '--data', dir, '--code', 'TLS', '--listen', '0.0.0.0:8443', '--json']);
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout);
    expect(out.tlsPin).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')).tls).toBe(true);
    expect(fs.statSync(path.join(dir, 'tls-key.pem')).mode & 0o777).toBe(0o600);
    const pin = crypto
      .createHash('sha256')
      .update(new crypto.X509Certificate(fs.readFileSync(path.join(dir, 'tls-cert.pem'))).raw)
      .digest('hex');
    expect(pin).toBe(out.tlsPin);
  });

  it('a failed init removes the folder it created, and only what it created', async () => {
    const base = tmpDir();
    const port = await freePort();
    const nowhere = `postgres://cascade:x@127.0.0.1:${port}/none`;
    // A new folder (and its new parent) goes away again.
    let r = await cascade(['site', 'init', '--data', path.join(base, 'new', 'site'), '--code', 'BAD', '--db', nowhere]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^cascade: cannot connect to PostgreSQL at postgres:\/\/cascade:\*\*\*@/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(fs.existsSync(path.join(base, 'new'))).toBe(false);
    // A folder that was there stays, with what it held and nothing more.
    const kept = path.join(base, 'kept');
    fs.mkdirSync(kept);
    fs.writeFileSync(path.join(kept, 'notes.txt'), 'mine');
    r = await cascade(['site', 'init', '--data', kept, '--code', 'BAD', '--db', nowhere]);
    expect(r.code).toBe(1);
    expect(fs.readdirSync(kept)).toEqual(['notes.txt']);
    // And init then succeeds there.
    r = await cascade(['site', 'init', '--data', kept, '--code', 'BAD', '--json']);
    expect(r.code).toBe(0);
    expect(fs.readdirSync(kept).sort()).toEqual(['admin-token', 'cascade.db', 'config.json', 'content', 'notes.txt', 'site-key.pem']);
    expect(fs.readdirSync(kept).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('start refuses a site-key.pem that is not the key the store was created with', async () => {
    const dir = path.join(tmpDir(), 'site');
    let r = await cascade(['site', 'init', '--data', dir, '--code', 'KEY']);
    expect(r.code).toBe(0);
    const other = crypto.generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' });
    fs.writeFileSync(path.join(dir, 'site-key.pem'), other, { mode: 0o600 });
    r = await cascade(['site', 'start', '--data', dir, '--listen', '127.0.0.1:0'], { timeoutMs: 20_000 });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^cascade: .*site-key\.pem.* not the key/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stdout).not.toContain('site listening');
  });
});
