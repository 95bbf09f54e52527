import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { BIN, cascade, freePort, makeSource, newSite, startSite, tmpDir } from './helpers.js';

describe('site server process', () => {
  it('init refuses a used folder and bad codes; start serves health, metrics and OpenAPI; SIGTERM exits 0', async () => {
    const dir = path.join(tmpDir(), 'nyc');
    let r = await cascade(['site', 'init', '--data', dir, '--code', 'NY']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe('cascade: "NY" is not a site code: use three letters or digits, e.g. CEN\n');
    r = await cascade(['site', 'init', '--data', dir, '--code', 'nyc', '--name', 'New York', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ code: 'NYC', name: 'New York', db: 'sqlite' });
    expect(fs.statSync(path.join(dir, 'admin-token')).mode & 0o777).toBe(0o600);
    r = await cascade(['site', 'init', '--data', dir, '--code', 'NYC']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/already holds a site/);

    const site = await startSite(dir);
    const health = await (await fetch(`${site.url}/healthz`)).json();
    expect(health).toMatchObject({ ok: true, site: 'NYC' });
    const metrics = await (await fetch(`${site.url}/metrics`)).text();
    expect(metrics).toContain('# TYPE cascade_http_requests_total counter');
    const doc = await (await fetch(`${site.url}/api/v1/openapi.json`)).json();
    for (const p of [
      '/api/v1/packages',
      '/api/v1/packages/{id}',
      '/api/v1/chunks',
      '/api/v1/chunks/missing',
      '/api/v1/tokens',
      '/api/v1/site',
    ]) {
      expect(Object.keys(doc.paths)).toContain(p);
    }
    // Bad API bodies: one clear error, right status, nothing changed.
    const auth = { authorization: `Bearer ${site.token}`, 'content-type': 'application/json' };
    let res = await fetch(`${site.url}/api/v1/packages`, { method: 'POST', headers: auth, body: '{"name":' });
    expect(res.status).toBe(400);
    expect((await res.json()).error.code).toBe('bad_request');
    res = await fetch(`${site.url}/api/v1/packages`, {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({ name: 'evil', files: [{ type: 'file', path: '../../etc/passwd', mode: 420, size: 0, chunks: [] }] }),
    });
    expect(res.status).toBe(400);
    const err = (await res.json()).error;
    expect(err.message).toContain('contains ".."');
    res = await fetch(`${site.url}/api/v1/packages`, {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({ name: 'ghost', files: [{ type: 'file', path: 'a', mode: 420, size: 5, chunks: [['a'.repeat(64), 5]] }] }),
    });
    expect(res.status).toBe(409);
    expect((await res.json()).error.code).toBe('missing_chunks');
    // A chunk whose bytes do not match its digest.
    const rec = Buffer.alloc(37 + 4);
    rec[0] = 1;
    rec.write('b'.repeat(64), 1, 32, 'hex');
    rec.writeUInt32BE(4, 33);
    rec.write('oops', 37);
    res = await fetch(`${site.url}/api/v1/chunks`, { method: 'POST', headers: { authorization: auth.authorization }, body: rec });
    expect(res.status).toBe(422);
    expect((await res.json()).error.code).toBe('chunk_mismatch');
    const chunkFiles = fs
      .readdirSync(path.join(dir, 'content', 'chunks'))
      .flatMap((d) => fs.readdirSync(path.join(dir, 'content', 'chunks', d)));
    expect(chunkFiles).toEqual([]);

    expect(await site.stop('SIGTERM')).toBe(0);
    expect(site.logs()).toContain('"msg":"site stopped"');

    // SIGTERM at its first log line, while it is still starting: it finishes starting, then stops cleanly.
    const early = spawn(process.execPath, [BIN, 'site', 'start', '--data', dir, '--listen', `127.0.0.1:${await freePort()}`], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    early.stdout.on('data', (d) => {
      if (!out) early.kill('SIGTERM');
      out += d;
    });
    early.stderr.on('data', (d) => {
      out += d;
    });
    const code = await new Promise((res) => early.once('exit', (c, sig) => res(c ?? sig)));
    expect(code, out).toBe(0);
    expect(out).toContain('"msg":"stopping"');
    expect(out).toContain('"msg":"site stopped"');
  });

  it('after SIGKILL mid-upload, restarts with nothing half-written and the upload completes', async () => {
    const site = await newSite('CEN');
    const src = path.join(tmpDir(), 'big');
    makeSource(src, 5, 48 << 20);
    const upload = cascade(['package', 'create', src, '--name', 'Big', '--json'], { env: site.env });
    // Kill the site while chunks are arriving.
    const chunksDir = path.join(site.dataDir, 'content', 'chunks');
    for (let i = 0; i < 400; i++) {
      const n = fs.readdirSync(chunksDir).length;
      if (n > 3) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    site.proc.kill('SIGKILL');
    const failed = await upload;
    expect(failed.code).toBe(1);
    expect(failed.stderr.trim().split('\n')).toHaveLength(1);

    const again = await startSite(site.dataDir);
    // Every chunk file that is visible is whole and matches its name.
    execFileSync(process.execPath, [
      '--input-type=module',
      '-e',
      `import { decodeChunk } from '${path.resolve('dist/content/codec.js')}';
       import fs from 'node:fs'; import path from 'node:path'; import crypto from 'node:crypto';
       const root = ${JSON.stringify(chunksDir)};
       for (const d of fs.readdirSync(root)) for (const f of fs.readdirSync(path.join(root, d))) {
         const raw = decodeChunk(fs.readFileSync(path.join(root, d, f)), 1 << 20);
         if (crypto.createHash('sha256').update(raw).digest('hex') !== f) { console.error('partial', f); process.exit(1); }
       }`,
    ]);
    // The killed process's temporary files are gone; only the new process's own (empty) folder is there.
    const tmp = path.join(site.dataDir, 'content', 'tmp');
    const left = fs.readdirSync(tmp);
    expect(left).toHaveLength(1);
    expect(again.logs()).toContain(`"process":"${left[0]}"`);
    expect(fs.readdirSync(path.join(tmp, left[0] as string))).toEqual([]);
    const ok = await cascade(['package', 'create', src, '--name', 'Big', '--json'], { env: again.env });
    expect(ok.stderr).toBe('');
    const r = JSON.parse(ok.stdout);
    expect(r.id).toBe('CEN00001');
    // Chunks acknowledged before the kill were not sent again.
    expect(r.sentBytes).toBeLessThan(r.bytes);
    const v = await cascade(['package', 'verify', r.id, '--json'], { env: again.env });
    expect(JSON.parse(v.stdout).ok).toBe(true);
    expect(await again.stop()).toBe(0);
  });

  it('demo --once runs the whole tour', async () => {
    const data = tmpDir('cascade-demo-test-');
    // About 80 s alone; up to twice that beside the other test files on two cores.
    const r = await cascade(['demo', '--once', '--data', data, '--listen', '127.0.0.1:0'], { timeoutMs: 220_000 });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('1. package create: CEN00001 version 1');
    expect(r.stdout).toContain('3. package verify');
    expect(r.stdout).toContain('all intact');
    expect(r.stdout).toMatch(/4\. package fetch: version 2 written/);
    expect(r.stdout).toMatch(/5\. site hierarchy/);
    expect(r.stdout).toMatch(/^ {5}EUR {2}Europe region/m);
    expect(r.stdout).toMatch(/^ {7}BER {2}Berlin branch/m);
    expect(r.stdout).toMatch(/6\. distribution points/);
    // The sites below CEN and their DPs serve HTTPS, pinned through their join tokens.
    expect(r.stdout).toMatch(/^ {5}EUR {2}Europe region \(demo\) {2}https:\/\/127\.0\.0\.1:\d+$/m);
    expect(r.stdout).toMatch(/EUR, BER and their DPs serve HTTPS with self-signed certificates/);
    expect(r.stdout).toMatch(/^ {3}ber-dp2 +BER +remote/m);
    expect(r.stdout).toMatch(/7\. distribute CEN00001 --to site:EUR --to group:berlin --dry-run/);
    expect(r.stdout).toMatch(/^ {3}CEN -> EUR +\d/m);
    expect(r.stdout).toMatch(/^ {3}ber-dp1 +BER +installed/m);
    expect(r.stdout).toMatch(/^ {3}EUR +EUR +installed/m);
    expect(r.stdout).toMatch(/^ {3}eur-dp1 +ok +19 files/m);
    expect(r.stdout).toMatch(/9\. distribute CEN00002 --to site:EUR --via courier/);
    expect(r.stdout).toMatch(/^ {3}EUR +pending +waiting for a courier parcel: \d+ bytes/m);
    expect(r.stdout).toMatch(
      /courier import at EUR: \d+ chunks verified and stored, installed; seen from CEN: EUR installed, 0 chunk bytes on the route/,
    );
    // Clients: invisible until the content is on a DP they may use, then run on all three.
    expect(r.stdout).toMatch(/^ {4}offers: 0, 0, 0 — cascade why BER-000001 CEN-A00001 at CEN:$/m);
    expect(r.stdout).toMatch(/^ {6}✗ no DP it may use holds CEN00003 yet: ber-dp1: not targeted/m);
    for (const c of ['BER-000001', 'BER-000002', 'BER-000003']) {
      expect(r.stdout).toMatch(new RegExp(`^ {6}${c} {2}succeeded {2}exit 0$`, 'm'));
      expect(r.stdout).toContain(`installed/${c}.txt: CEN00003 version 1 installed on ${c}`);
    }
    // A rollout: the pilot, then the rest, under a cap of one download at a time at BER.
    expect(r.stdout).toMatch(/11\. rollout: site set --download-slots 1/);
    expect(r.stdout).toMatch(/the pilot succeeded: wave 2 released/);
    expect(r.stdout).toMatch(/^ {4}cascade rollout show CEN-A00002: completed$/m);
    expect(r.stdout).toMatch(/^ {6}the rest: released, 2 of 2 succeeded$/m);
    // The agent upgrades itself under the same cap: every agent ends on the next version.
    expect(r.stdout).toMatch(/12\. agent upgrade: agent publish --file .* \(0\.1\.1, a stand-in for the next release\)/);
    for (const c of ['BER-000001', 'BER-000002', 'BER-000003'])
      expect(r.stdout).toMatch(
        new RegExp(`^ +[\\d.]+ s {2}${c}: runs agent 0\\.1\\.1 \\(upgraded, confirmed by its first check-in\\)$`, 'm'),
      );
    expect(r.stdout).toMatch(/^ {4}cascade agent versions at CEN: BER 0\.1\.1: 3$/m);
    // Two DP processes follow CEN to the next release, one at a time.
    expect(r.stdout).toMatch(/13\. site systems follow their site: cen-dp1 and cen-dp2/);
    const steps = [...r.stdout.matchAll(/^ +[\d.]+ s {2}(cen-dp[12]): 0\.1\.0 → 0\.1\.1 (draining|upgrading)/gm)].map(
      (m) => `${m[1]} ${m[2]}`,
    );
    const [first, second] = steps[0]?.startsWith('cen-dp1') ? ['cen-dp1', 'cen-dp2'] : ['cen-dp2', 'cen-dp1'];
    expect(steps).toEqual([`${first} draining`, `${first} upgrading`, `${second} draining`, `${second} upgrading`]);
    expect(r.stdout).toMatch(/^ {4}cascade dp list at CEN: cen-dp1 0\.1\.1, cen-dp2 0\.1\.1$/m);
    expect(r.stdout).toMatch(/^ {4}cascade site list at CEN: EUR 0\.1\.0 \(0\.1\.1 offered\)/m);
    // With --once the sites have stopped: no "try next" against them.
    expect(r.stdout).toMatch(/14\. site set --data \S+ --source-root \S+; then/);
    expect(r.stdout).toMatch(/^ {4}CEN\d{5} version 1: 19 files, [\d.]+ MiB, walked, cut, hashed once, compressed and stored in/m);
    expect(r.stdout).toMatch(
      /^ {4}package update CEN\d{5} \(no folder: the one it remembers\): nothing changed since version 1; no new version$/m,
    );
    expect(r.stdout).not.toContain('Try next');
    expect(r.stdout).toContain(`The sites have stopped; their data folders are kept in ${data}`);
  }, 240_000);
});
