import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NGINX, startNginx } from '../fixtures/nginx.mjs';
import { cascade, freePort, makeSource, newSite, type SiteProcess, startSite, tmpDir, until } from './helpers.js';

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

const haveNginx = fs.existsSync(NGINX);
const title = haveNginx
  ? 'a content folder served by Debian nginx, fetched with --from'
  : `a content folder served by nginx — SKIPPED: ${NGINX} is not installed (apt-get install nginx-light)`;

describe.skipIf(!haveNginx)(title, () => {
  let site: SiteProcess;
  let nginx: Awaited<ReturnType<typeof startNginx>>;
  let work: string;
  let src: string;
  let content: string;
  let centralPem: string;

  beforeAll(async () => {
    site = await newSite('CEN');
    work = tmpDir();
    src = path.join(work, 'src');
    makeSource(src, 7);
    const created = await cascade(['package', 'create', src, '--name', 'Tools', '--json'], { env: site.env });
    expect(created.code, created.stderr).toBe(0);
    content = path.join(site.dataDir, 'content');
    // nginx's workers drop root for an unprivileged user: let it through the private data
    // folder to content/ (traverse only), as docs/nginx.md tells operators.
    fs.chmodSync(site.dataDir, 0o711);
    const info = (await (await fetch(`${site.url}/api/v1/site`)).json()) as { publicKey: string };
    centralPem = path.join(work, 'central.pem');
    fs.writeFileSync(centralPem, info.publicKey);
    nginx = await startNginx({ prefix: path.join(work, 'nginx'), root: content, port: await freePort(), workers: 1 });
  }, 120_000);

  afterAll(async () => {
    await nginx?.stop();
    expect(await site.stop()).toBe(0);
  });

  it('downloads a package version through nginx with only the URL and the pinned central key, verified', async () => {
    const dest = path.join(work, 'out-nginx');
    const r = await cascade(
      ['package', 'fetch', 'CEN00001', dest, '--version', '1', '--from', nginx.url, '--trust-key', centralPem, '--json'],
      { env: { CASCADE_SITE: '', CASCADE_TOKEN: '' } },
    );
    expect(r.code, `${r.stderr}\n${nginx.logs()}`).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ id: 'CEN00001', version: 1, verified: true });
    expect(treeHash(dest)).toEqual(treeHash(src));
  });

  it("reads the site's own library as its local DP (--from the site, keys and latest version from --site)", async () => {
    const dest = path.join(work, 'out-site');
    const r = await cascade(['package', 'fetch', 'CEN00001', dest, '--from', site.url, '--json'], { env: site.env });
    expect(r.code, r.stderr).toBe(0);
    expect(treeHash(dest)).toEqual(treeHash(src));
  });

  it('serves only the manifests/ and chunks/ trees: .tmp-* files, tmp/ and the rest are 404', async () => {
    const digest = fs
      .readdirSync(path.join(content, 'chunks'))
      .flatMap((d) => fs.readdirSync(path.join(content, 'chunks', d)))[0] as string;
    const ab = digest.slice(0, 2);
    fs.writeFileSync(path.join(content, 'chunks', ab, `.tmp-${digest}`), 'half written');
    fs.writeFileSync(path.join(content, 'tmp', digest), 'temporary');
    const ok = await fetch(`${nginx.url}/content/chunks/${ab}/${digest}`);
    expect(ok.status).toBe(200);
    expect(ok.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect(ok.headers.get('etag')).toBeTruthy();
    const part = await fetch(`${nginx.url}/content/chunks/${ab}/${digest}`, { headers: { range: 'bytes=0-0' } });
    expect(part.status).toBe(206);
    for (const p of [
      `/content/chunks/${ab}/.tmp-${digest}`,
      `/content/tmp/${digest}`,
      `/content/chunks/${ab}/`,
      '/content/manifests/CEN00001/',
      '/content/',
      '/',
    ]) {
      expect((await fetch(nginx.url + p)).status, p).toBe(404);
    }
    fs.rmSync(path.join(content, 'chunks', ab, `.tmp-${digest}`));
    fs.rmSync(path.join(content, 'tmp', digest));
  });

  it('fails with a clear error when nginx serves an altered chunk, and writes nothing of that file', async () => {
    const m = JSON.parse(fs.readFileSync(path.join(content, 'manifests', 'CEN00001', '1.json'), 'utf8')).manifest as {
      files: { path: string; type: string; chunks?: [string, number][] }[];
    };
    const [digest] = (m.files.find((f) => f.path === 'sub/data.bin')?.chunks?.[3] ?? []) as [string, number];
    const file = path.join(content, 'chunks', digest.slice(0, 2), digest);
    const original = fs.readFileSync(file);
    const altered = Buffer.from(original);
    altered[altered.length >> 1] = (altered[altered.length >> 1] as number) ^ 0xff;
    fs.writeFileSync(file, altered);
    try {
      const dest = path.join(work, 'out-tampered');
      const r = await cascade(['package', 'fetch', 'CEN00001', dest, '--version', '1', '--from', nginx.url, '--trust-key', centralPem], {
        env: { CASCADE_SITE: '', CASCADE_TOKEN: '' },
      });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`chunk ${digest} of sub/data.bin from ${nginx.url} does not match the signed manifest`);
      expect(r.stderr).not.toMatch(/\n\s+at /); // one line, no stack trace
      expect(fs.existsSync(path.join(dest, 'sub', 'data.bin'))).toBe(false);
    } finally {
      fs.writeFileSync(file, original);
    }
  });

  it('refuses a manifest signed by a key it was not told to trust', async () => {
    const other = crypto.generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const pem = path.join(work, 'other.pem');
    fs.writeFileSync(pem, other);
    const r = await cascade(
      ['package', 'fetch', 'CEN00001', path.join(work, 'out-untrusted'), '--version', '1', '--from', nginx.url, '--trust-key', pem],
      { env: { CASCADE_SITE: '', CASCADE_TOKEN: '' } },
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/not trusted/);
  });
});

/**
 * Clients through nginx: a DP whose content nginx serves (`dp init --content-url`). The DP is
 * stopped once it holds the package, so every byte the agent gets comes from nginx.
 */
describe.skipIf(!haveNginx)('an agent installing from a DP whose content nginx serves', () => {
  const running: { stop: () => Promise<unknown> }[] = [];
  afterAll(async () => {
    for (const r of running.reverse()) await r.stop();
  });

  it('downloads from the content URL and runs the program', async () => {
    const site = await newSite('CEN');
    running.push(site);
    const env = site.env;
    const work = tmpDir();
    const dpDir = path.join(work, 'dp');
    const nginxPort = await freePort();
    const token = (await cascade(['dp', 'join-token'], { env })).stdout.trim();
    const init = await cascade([
      'dp',
      'init',
      '--data',
      dpDir,
      '--site',
      site.url,
      '--join-token',
      token,
      '--name',
      'cen-dp7',
      '--listen',
      `127.0.0.1:${await freePort()}`,
      '--content-url',
      `http://127.0.0.1:${nginxPort}`,
    ]);
    expect(init.stderr).toBe('');
    const dp = await startSite(dpDir, [], { role: 'dp', listen: null });
    fs.chmodSync(dpDir, 0o711);
    const nginx = await startNginx({ prefix: path.join(work, 'nginx'), root: path.join(dpDir, 'content'), port: nginxPort, workers: 1 });
    running.push(nginx);

    const src = path.join(work, 'src');
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, 'setup.sh'), `#!/bin/sh\necho ok > "${work}/ran.txt"\n`, { mode: 0o755 });
    fs.writeFileSync(path.join(src, 'data.bin'), crypto.randomBytes(1 << 20));
    const pkg = JSON.parse(
      (await cascade(['package', 'create', src, '--name', 'Web', '--program', 'Setup=setup.sh', '--json'], { env })).stdout,
    ).id;
    expect((await cascade(['boundary', 'add', 'CEN', '127.0.0.0/8', '--dp', 'cen-dp7'], { env })).code).toBe(0);
    expect((await cascade(['distribute', pkg, '--to', 'dp:cen-dp7'], { env })).code).toBe(0);
    await until('the DP holds the package', async () => {
      const s = JSON.parse((await cascade(['status', pkg, '--json'], { env })).stdout);
      return s.dps.find((d: { dp: string }) => d.dp === 'cen-dp7')?.serving === 1;
    });
    await until('the site knows where the DP serves its content', async () => {
      const l = JSON.parse((await cascade(['dp', 'list', '--json'], { env })).stdout) as {
        dps: { name: string; contentUrl: string | null }[];
      };
      return l.dps.find((d) => d.name === 'cen-dp7')?.contentUrl === `http://127.0.0.1:${nginxPort}`;
    });
    await dp.stop();

    expect((await cascade(['collection', 'create', 'All', '--rule', 'os != ""'], { env })).code).toBe(0);
    expect((await cascade(['advertise', pkg, '--program', 'Setup', '--collection', 'All', '--mandatory', 'now'], { env })).code).toBe(0);
    const jt = (await cascade(['agent', 'join-token'], { env })).stdout.trim();
    const agentDir = path.join(work, 'agent');
    expect((await cascade(['agent', 'init', '--data', agentDir, '--site', site.url, '--join-token', jt])).code).toBe(0);
    const run = await cascade(['agent', 'run-now', '--data', agentDir]);
    expect(run.stderr).toBe('');
    expect(run.stdout).toContain(`downloading ${pkg} version 1`);
    expect(run.stdout).toContain('from cen-dp7');
    expect(run.stdout).toContain('CEN-A00001: succeeded (exit code 0)');
    expect(fs.readFileSync(path.join(work, 'ran.txt'), 'utf8')).toBe('ok\n');
  }, 120_000);
});
