import { type ChildProcess, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { verifiedChunks } from '../../src/agent/cache.js';
import { BIN, cascade, freePort, type SiteProcess, sleep, startSite, tmpDir, until } from './helpers.js';

interface Status {
  summary: Record<string, number>;
  clients: { client: string; site: string; state: string; exitCode: number | null }[];
}

/**
 * A DP's content behind a proxy that delays every chunk it serves (so an agent can be killed
 * in the middle of a download) and logs what was asked for.
 */
function slowProxy(target: string, delayMs: number) {
  const log: { digest: string; at: number }[] = [];
  const server = http.createServer((req, res) => {
    const m = /^\/content\/chunks\/[0-9a-f]{2}\/([0-9a-f]{64})$/.exec(req.url ?? '');
    if (m) log.push({ digest: m[1] as string, at: Date.now() });
    const go = () => {
      const up = http.request(`${target}${req.url}`, { method: req.method, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      up.on('error', () => res.destroy());
      req.pipe(up);
    };
    if (m) setTimeout(go, delayMs);
    else go();
  });
  return { server, log };
}

/**
 * Clients end to end: a central site and a child site with two DPs, four agents in
 * temporary folders. An advertisement made before the content reaches any DP stays invisible
 * and `why` says so; once there, a real script runs on three agents and the central site sees
 * every state; a DP serving a tampered chunk is skipped and named; an agent killed in the middle
 * of a download resumes without fetching a verified chunk again; bad input is refused.
 */
describe('clients, collections and advertisements', () => {
  const root = tmpDir('cascade-clients-');
  const running: SiteProcess[] = [];
  const agents: ChildProcess[] = [];
  const servers: http.Server[] = [];
  afterAll(async () => {
    for (const a of agents) if (a.exitCode === null) a.kill('SIGKILL');
    for (const s of servers) s.close();
    for (const s of running) await s.stop();
  });

  const env = { CASCADE_REPORT_SECONDS: '0.5', CASCADE_PING_SECONDS: '1' };

  const startAgent = (dir: string, out: string) => {
    const p = spawn(process.execPath, [BIN, 'agent', 'start', '--data', dir], { env: { ...process.env, CASCADE_OUT: out } });
    let log = '';
    p.stdout.on('data', (d) => {
      log += d;
    });
    p.stderr.on('data', (d) => {
      log += d;
    });
    agents.push(p);
    return { proc: p, log: () => log };
  };

  it('offers a program only once a usable DP holds it, runs it on every member, and reports up the tree', async () => {
    // --- sites and DPs --------------------------------------------------------------------
    const cenDir = path.join(root, 'CEN');
    expect((await cascade(['site', 'init', '--data', cenDir, '--code', 'CEN', '--listen', `127.0.0.1:${await freePort()}`])).code).toBe(0);
    const cen = await startSite(cenDir, [], { listen: null, env });
    running.push(cen);
    const berDir = path.join(root, 'BER');
    const siteToken = JSON.parse((await cascade(['site', 'join-token', '--json'], { env: cen.env })).stdout).token;
    const berInit = await cascade([
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
      siteToken,
    ]);
    expect(berInit.stderr).toBe('');
    const ber = await startSite(berDir, [], { listen: null, env });
    running.push(ber);

    // ber-dp1 is reached through a proxy that delays each chunk by 40 ms; ber-dp2 directly.
    const dps: Record<string, { dir: string; url: string }> = {};
    let proxy: ReturnType<typeof slowProxy> | undefined;
    for (const name of ['ber-dp1', 'ber-dp2']) {
      const dir = path.join(root, name);
      const listen = `127.0.0.1:${await freePort()}`;
      let url = `http://${listen}`;
      if (name === 'ber-dp1') {
        proxy = slowProxy(url, 40);
        const port = await freePort();
        await new Promise<void>((r) => proxy?.server.listen(port, '127.0.0.1', r));
        servers.push(proxy.server);
        url = `http://127.0.0.1:${port}`;
      }
      const t = JSON.parse((await cascade(['dp', 'join-token', '--json'], { env: ber.env })).stdout).token;
      const r = await cascade([
        'dp',
        'init',
        '--data',
        dir,
        '--site',
        ber.url,
        '--join-token',
        t,
        '--name',
        name,
        '--listen',
        listen,
        '--url',
        url,
      ]);
      expect(r.stderr).toBe('');
      // On the address given at init: the proxy forwards there.
      running.push(await startSite(dir, [], { role: 'dp', env, listen: null }));
      dps[name] = { dir, url };
    }
    await until('the DPs reach the central site', async () => {
      const r = JSON.parse((await cascade(['dp', 'list', '--json'], { env: cen.env })).stdout) as { dps: { name: string }[] };
      return ['ber-dp1', 'ber-dp2'].every((n) => r.dps.some((d) => d.name === n));
    });

    // --- the package: a real script that writes a file --------------------------------------
    const src = path.join(root, 'src');
    fs.mkdirSync(src);
    fs.writeFileSync(
      path.join(src, 'install.sh'),
      '#!/bin/sh\nset -e\ntest "$(head -c 5 payload.bin | wc -c)" = 5\necho "installed $CASCADE_PACKAGE v$CASCADE_VERSION" > "$CASCADE_OUT/$CASCADE_CLIENT.txt"\necho "all done"\n',
      { mode: 0o755 },
    );
    fs.writeFileSync(path.join(src, 'payload.bin'), crypto.randomBytes(12 << 20));
    const created = await cascade(['package', 'create', src, '--name', 'Tool', '--program', 'Install=./install.sh', '--json'], {
      env: cen.env,
    });
    expect(created.stderr).toBe('');
    const pkg = JSON.parse(created.stdout).id as string;

    // --- policy at the central site: a collection, boundaries, an advertisement --------------
    let r = await cascade(['collection', 'create', 'Workstations', '--rule', 'hostname like "ws-%" and os = "linux"'], { env: cen.env });
    expect(r.stderr).toBe('');
    // Clients with an address in 10.1.0.0/16 try the tampered DP first; every client is in 127.0.0.0/8.
    r = await cascade(['boundary', 'add', 'BER', '10.1.0.0/16', '--dp', 'ber-dp2', '--dp', 'ber-dp1'], { env: cen.env });
    expect(r.stderr).toBe('');
    r = await cascade(['boundary', 'add', 'BER', '127.0.0.0/8', '--dp', 'ber-dp1'], { env: cen.env });
    expect(r.stderr).toBe('');
    r = await cascade(['advertise', pkg, '--program', 'Install', '--collection', 'workstations', '--mandatory', 'now', '--json'], {
      env: cen.env,
    });
    expect(r.stderr).toBe('');
    const ad = JSON.parse(r.stdout).id as string;
    expect(ad).toBe('CEN-A00001');
    r = await cascade(['advertise', pkg, '--program', 'Uninstall', '--collection', 'Workstations'], { env: cen.env });
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`cascade: ${pkg} version 1 has no program "Uninstall" (its programs: "Install")\n`);
    expect((await cascade(['site', 'set', '--client-cycle', '10s'], { env: ber.env })).code).toBe(0);

    // The policy travels down to BER, checked there against CEN's key.
    await until('the advertisement reaches BER', async () => {
      const l = JSON.parse((await cascade(['advertisement', 'list', '--json'], { env: ber.env })).stdout) as {
        advertisements: { id: string }[];
      };
      return l.advertisements.some((a) => a.id === ad);
    });

    // --- agents enrol at BER ------------------------------------------------------------------
    const jt = JSON.parse((await cascade(['agent', 'join-token', '--uses', '4', '--json'], { env: ber.env })).stdout).token as string;
    const out = path.join(root, 'out');
    fs.mkdirSync(out);
    const agentDirs: string[] = [];
    for (const [i, extra] of [
      [1, ['--address', '10.1.0.5']],
      [2, []],
      [3, []],
      [4, []],
    ] as const) {
      const dir = path.join(root, `agent${i}`);
      const e = await cascade(['agent', 'init', '--data', dir, '--site', ber.url, '--join-token', jt, '--hostname', `ws-0${i}`, ...extra]);
      expect(e.stderr).toBe('');
      expect(e.stdout).toMatch(new RegExp(`^client BER-00000${i} enrolled with`));
      agentDirs.push(dir);
    }
    // A fifth use of a four-use token is refused.
    r = await cascade(['agent', 'init', '--data', path.join(root, 'agent5'), '--site', ber.url, '--join-token', jt]);
    expect(r.stderr).toBe(
      'cascade: the join token has been used as many times as it allows; make another with "cascade agent join-token --uses N"\n',
    );

    // Before the content reaches any DP: nothing offered, and `why` at the central site says so.
    r = await cascade(['agent', 'run-now', '--data', agentDirs[1] as string], { env: { CASCADE_OUT: out } });
    expect(r.code).toBe(0);
    const before = JSON.parse((await cascade(['agent', 'status', '--data', agentDirs[1] as string, '--json'])).stdout);
    expect(before.offers).toEqual([]);
    await until(
      'BER-000002 reaches the central site',
      async () => (await cascade(['client', 'show', 'BER-000002'], { env: cen.env })).code === 0,
    );
    const waiting = await cascade(['why', 'BER-000002', ad, '--json'], { env: cen.env });
    const w1 = JSON.parse(waiting.stdout);
    expect(w1.state).toBe('waiting-content');
    expect(w1.reasons.at(-1).text).toBe(
      `no DP it may use holds ${pkg} yet: ber-dp1: not targeted (cascade distribute ${pkg} --to dp:ber-dp1)`,
    );

    // --- distribute; tamper with one chunk on ber-dp2 ---------------------------------------
    expect((await cascade(['distribute', pkg, '--to', 'dp:ber-dp1', '--to', 'dp:ber-dp2'], { env: cen.env })).code).toBe(0);
    await until(
      'both DPs hold the package',
      async () => {
        const st = JSON.parse((await cascade(['status', pkg, '--json'], { env: cen.env })).stdout);
        return st.summary.installed === 2;
      },
      60_000,
    );
    const manifest = JSON.parse(fs.readFileSync(path.join(dps['ber-dp2']?.dir as string, 'content', 'manifests', pkg, '1.json'), 'utf8'));
    const payload = manifest.manifest.files.find((f: { path: string }) => f.path === 'payload.bin');
    const bad = payload.chunks[3][0] as string;
    fs.writeFileSync(
      path.join(dps['ber-dp2']?.dir as string, 'content', 'chunks', bad.slice(0, 2), bad),
      Buffer.concat([Buffer.from([0]), crypto.randomBytes(payload.chunks[3][1])]),
    );

    // --- agent 2 alone, killed in the middle of its download and started again ------------------
    const a2 = startAgent(agentDirs[1] as string, out);
    const cache2 = path.join(agentDirs[1] as string, 'cache');
    // Chunks in the cache whole (a write the kill cut short is not a verified chunk).
    const cached = () => verifiedChunks(cache2);
    await until('agent 2 has part of the package', async () => cached().length >= 20, 60_000);
    a2.proc.kill('SIGKILL');
    await new Promise((res) => a2.proc.once('exit', res));
    const verified = new Set(cached());
    expect(verified.size).toBeLessThan(payload.chunks.length);
    const restartedAt = Date.now();
    await sleep(50);
    const a2b = startAgent(agentDirs[1] as string, out);
    await until('agent 2 succeeded', async () => a2b.log().includes('CEN-A00001: succeeded (exit code 0)'), 90_000);
    // Resumed: no chunk verified before the kill was fetched again (agent 2 is the only downloader so far).
    const refetched = (proxy?.log ?? []).filter((x) => x.at >= restartedAt && verified.has(x.digest));
    expect(refetched).toEqual([]);
    // It fetched only what it lacked: less than the package.
    expect(Number(/fetched (\d+) bytes in \d+ ms/.exec(a2b.log())?.[1])).toBeLessThan(12 << 20);

    // --- then agents 1 and 3 ------------------------------------------------------------------
    const a1 = startAgent(agentDirs[0] as string, out);
    const a3 = startAgent(agentDirs[2] as string, out);

    const status = async (env: Record<string, string>) =>
      JSON.parse((await cascade(['advertisement', 'status', ad, '--json'], { env })).stdout) as Status;
    await until(
      'three clients succeeded, as the central site sees it',
      async () => (await status(cen.env)).summary.succeeded === 3,
      90_000,
    );
    for (const i of [1, 2, 3]) expect(fs.readFileSync(path.join(out, `BER-00000${i}.txt`), 'utf8')).toBe(`installed ${pkg} v1\n`);
    const atCen = await status(cen.env);
    expect(atCen.clients.map((c) => [c.client, c.site, c.state, c.exitCode])).toEqual([
      ['BER-000001', 'BER', 'succeeded', 0],
      ['BER-000002', 'BER', 'succeeded', 0],
      ['BER-000003', 'BER', 'succeeded', 0],
      ['BER-000004', 'BER', 'available', null],
    ]);

    // The tampered chunk: agent 1 fell back to ber-dp1, and the central site hears which DP, package, file and chunk.
    expect(a1.log()).toContain('CEN-A00001: succeeded');
    await until('the bad chunk is reported at the central site', async () =>
      (await cascade(['messages', '--json'], { env: cen.env })).stdout.includes(
        `DP ber-dp2 served chunk ${bad} of payload.bin in ${pkg} version 1`,
      ),
    );

    // why, after: succeeded, with the DPs it may use.
    const after = JSON.parse((await cascade(['why', 'BER-000001', ad, '--json'], { env: cen.env })).stdout);
    expect(after.state).toBe('succeeded');
    expect(after.reasons.map((x: { ok: boolean }) => x.ok)).toEqual([true, true, true, true, true, true]);
    const text = (await cascade(['why', 'BER-000001', ad], { env: cen.env })).stdout;
    expect(text).toContain('✓ in boundary 10.1.0.0/16 of site BER: may use ber-dp2, ber-dp1');

    // --- the central site sees what was made below it ---------------------------------------------
    const berSrc = path.join(root, 'ber-src');
    fs.mkdirSync(berSrc);
    fs.writeFileSync(path.join(berSrc, 'local.txt'), 'made at BER\n');
    const berPkg = JSON.parse((await cascade(['package', 'create', berSrc, '--name', 'Local', '--json'], { env: ber.env })).stdout)
      .id as string;
    expect(berPkg).toBe('BER00001');
    expect((await cascade(['distribute', berPkg, '--to', 'dp:ber-dp2'], { env: ber.env })).code).toBe(0);
    await until('the central site shows the distribution made at BER', async () => {
      const s = await cascade(['status', berPkg, '--json'], { env: cen.env });
      return (
        s.code === 0 && JSON.parse(s.stdout).dps.some((d: { dp: string; serving: number | null }) => d.dp === 'ber-dp2' && d.serving === 1)
      );
    });
    await until('the central site lists the package made at BER', async () => {
      const l = JSON.parse((await cascade(['package', 'list', '--json'], { env: cen.env })).stdout) as {
        packages: { id: string; held?: boolean }[];
      };
      return l.packages.some((p) => p.id === berPkg && p.held === false);
    });
    // Fetched from BER's DP with only the central key: BER's certificate, served beside the
    // manifests, carries the trust.
    const centralPem = path.join(root, 'central.pem');
    fs.writeFileSync(centralPem, ((await (await fetch(`${cen.url}/api/v1/site`)).json()) as { publicKey: string }).publicKey);
    const fetched = await cascade([
      'package',
      'fetch',
      berPkg,
      path.join(root, 'fetched'),
      '--version',
      '1',
      '--from',
      dps['ber-dp2']?.url as string,
      '--trust-key',
      centralPem,
    ]);
    expect(fetched.stderr).toBe('');
    expect(fs.readFileSync(path.join(root, 'fetched', 'local.txt'), 'utf8')).toBe('made at BER\n');
    const dpsAtCen = JSON.parse((await cascade(['dp', 'list', '--json'], { env: cen.env })).stdout).dps as {
      name: string;
      url: string | null;
    }[];
    expect(dpsAtCen.find((d) => d.name === 'ber-dp1')?.url).toBe(dps['ber-dp1']?.url);

    // --- bad input ------------------------------------------------------------------------------
    // A revoked client is refused from then on, with one line.
    expect((await cascade(['client', 'revoke', 'BER-000004'], { env: ber.env })).code).toBe(0);
    r = await cascade(['agent', 'run-now', '--data', agentDirs[3] as string]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/client BER-000004 has been revoked at site BER; enrol again with a new join token\n$/);
    // Malformed inventory, an unknown credential: refused, nothing stored.
    const post = (p: string, body: unknown, token?: string) =>
      fetch(`${ber.url}${p}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body: JSON.stringify(body),
      });
    const jt2 = JSON.parse((await cascade(['agent', 'join-token', '--json'], { env: ber.env })).stdout).token as string;
    let res = await post('/api/v1/agent/enrol', {
      token: jt2,
      inventory: { hostname: 'x'.repeat(300), os: 'linux', arch: 'x64', version: '1', addresses: [], freeDisk: 1, linkSpeed: null },
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(/^invalid request: inventory\.hostname: /);
    res = await post('/api/v1/agent/checkin', { inventory: null, reports: [], problems: [] }, 'casc_BER-000001_forged');
    expect(res.status).toBe(401);
    const clients = JSON.parse((await cascade(['client', 'list', '--json'], { env: ber.env })).stdout).clients as unknown[];
    expect(clients).toHaveLength(4);
    // The token was not spent by the refused enrolment.
    expect(
      (
        await cascade([
          'agent',
          'init',
          '--data',
          path.join(root, 'agent6'),
          '--site',
          ber.url,
          '--join-token',
          jt2,
          '--hostname',
          'srv-01',
        ])
      ).code,
    ).toBe(0);
    void a3;
  }, 240_000);
});
