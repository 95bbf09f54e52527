import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cascade, freePort, type SiteProcess, startSite, tmpDir, until } from './helpers.js';

/** A TCP relay that keeps every byte a caller sent through it: what someone on the link sees. */
async function tap(target: number): Promise<{ port: number; seen: () => Buffer; server: net.Server }> {
  const parts: Buffer[] = [];
  const server = net.createServer((c) => {
    const up = net.connect(target, '127.0.0.1');
    c.on('data', (d) => parts.push(Buffer.from(d)));
    c.pipe(up).pipe(c);
    c.on('error', () => up.destroy());
    up.on('error', () => c.destroy());
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return { port, seen: () => Buffer.concat(parts), server };
}

/**
 * HTTPS between every party: a central site, a child site joined through a relay that records
 * the link, a DP of the child and an agent, each serving or calling with a self-signed
 * certificate pinned through the join token. Nothing secret crosses the link in clear, a pin
 * that does not match stops a join before its token is sent, and content reaches the agent
 * over HTTPS end to end.
 */
describe('TLS between sites, DPs, agents and the CLI', () => {
  const root = tmpDir('cascade-tls-');
  const running: SiteProcess[] = [];
  const servers: net.Server[] = [];
  afterAll(async () => {
    for (const s of servers) s.close();
    for (const s of running) await s.stop();
  });
  const env = { CASCADE_REPORT_SECONDS: '0.5', CASCADE_PING_SECONDS: '1' };

  it('pins every certificate from the join token, and nothing secret crosses a link in clear', async () => {
    // --- a central site serving HTTPS on loopback, by choice --------------------------------
    const cenDir = path.join(root, 'CEN');
    const cenPort = await freePort();
    const init = await cascade(['site', 'init', '--data', cenDir, '--code', 'CEN', '--listen', `127.0.0.1:${cenPort}`, '--tls', '--json']);
    expect(init.stderr).toBe('');
    const cenPin = JSON.parse(init.stdout).tlsPin as string;
    expect(cenPin).toMatch(/^[0-9a-f]{64}$/);
    const cen = await startSite(cenDir, [], { listen: null, env });
    running.push(cen);
    expect(cen.url).toBe(`https://127.0.0.1:${cenPort}`);
    expect(cen.env.CASCADE_TLS_PIN).toBe(cenPin);

    // The CLI: from the data folder (the pin read from its certificate), with the pin, without it.
    const fromData = await cascade(['site', 'list', '--data', cenDir, '--json']);
    expect(fromData.stderr).toBe('');
    expect(JSON.parse(fromData.stdout).central).toBe('CEN');
    const unpinned = await cascade(['site', 'list', '--site', cen.url, '--token', cen.token]);
    expect(unpinned.code).not.toBe(0);
    expect(unpinned.stderr).toMatch(/self-signed certificate: give its pin with --tls-pin/);
    const plain = await cascade(['site', 'list', '--site', cen.url.replace('https:', 'http:'), '--token', cen.token]);
    expect(plain.code).not.toBe(0);
    expect(plain.stderr).toMatch(/if it serves HTTPS, use an https:\/\/ URL/);
    const wrongPin = await cascade(['site', 'list', '--site', cen.url, '--token', cen.token, '--tls-pin', 'ab'.repeat(32)]);
    expect(wrongPin.stderr).toMatch(/its TLS certificate is [0-9a-f]{16}…, not the pinned abababababababab…; nothing was sent/);

    // --- a child site joins through a tapped link --------------------------------------------
    const link = await tap(cenPort);
    servers.push(link.server);
    const siteToken = (await cascade(['site', 'join-token'], { env: cen.env })).stdout.trim();
    expect(siteToken.endsWith(`.tls-${cenPin}`)).toBe(true);
    const parentUrl = `https://127.0.0.1:${link.port}`;
    const berDir = path.join(root, 'BER');
    const berListen = `127.0.0.1:${await freePort()}`;
    const join = (dir: string, parent: string, token: string) =>
      cascade(['site', 'init', '--data', dir, '--code', 'BER', '--listen', berListen, '--tls', '--parent', parent, '--join-token', token]);

    // A plain URL to a site whose token says HTTPS is refused before any contact.
    const overHttp = await join(berDir, parentUrl.replace('https:', 'http:'), siteToken);
    expect(overHttp.code).toBe(2);
    expect(overHttp.stderr).toMatch(/the join token says that site serves HTTPS .*: give --parent as https:\/\/127\.0\.0\.1:/);
    // A token whose pin names another certificate (a man in the middle's): nothing is sent.
    const forged = siteToken.replace(/\.tls-[0-9a-f]{64}$/, `.tls-${'0'.repeat(64)}`);
    const mitm = await join(berDir, parentUrl, forged);
    expect(mitm.code).not.toBe(0);
    expect(mitm.stderr).toMatch(/not the pinned 0000000000000000…; nothing was sent/);
    expect(link.seen().includes(siteToken.split('.')[0] as string)).toBe(false);
    expect(fs.existsSync(berDir)).toBe(false);
    // The same token, unharmed, still joins: it was never presented.
    const joined = await join(berDir, parentUrl, siteToken);
    expect(joined.stderr).toBe('');
    expect(joined.stdout).toMatch(/HTTPS, certificate sha256 [0-9a-f]{64}/);
    const ber = await startSite(berDir, [], { listen: null, env });
    running.push(ber);
    expect(ber.url).toBe(`https://${berListen}`);

    // --- a DP of the child, serving HTTPS too --------------------------------------------------
    const dpDir = path.join(root, 'ber-dp1');
    const dpToken = (await cascade(['dp', 'join-token'], { env: ber.env })).stdout.trim();
    const dpInit = await cascade([
      'dp',
      'init',
      '--data',
      dpDir,
      '--site',
      ber.url,
      '--join-token',
      dpToken,
      '--name',
      'ber-dp1',
      '--listen',
      `127.0.0.1:${await freePort()}`,
      '--tls',
      '--json',
    ]);
    expect(dpInit.stderr).toBe('');
    const dpPin = JSON.parse(dpInit.stdout).tlsPin as string;
    expect(dpPin).toMatch(/^[0-9a-f]{64}$/);
    const dp = await startSite(dpDir, [], { role: 'dp', env, listen: null });
    running.push(dp);
    expect(dp.url).toMatch(/^https:/);
    await until('the DP reaches the central site, pinned', async () => {
      const r = JSON.parse((await cascade(['dp', 'list', '--json'], { env: cen.env })).stdout) as {
        dps: { name: string; state: string }[];
      };
      return r.dps.some((d) => d.name === 'ber-dp1' && d.state === 'online');
    });
    const berDps = JSON.parse((await cascade(['dp', 'list', '--json'], { env: ber.env })).stdout) as {
      dps: { name: string; tlsPin?: string | null }[];
    };
    expect(berDps.dps.find((d) => d.name === 'ber-dp1')?.tlsPin).toBe(dpPin);

    // --- a package travels CEN → BER (over the tapped link's other direction) → ber-dp1 ---
    const src = path.join(root, 'src');
    fs.mkdirSync(src);
    const out = path.join(root, 'ran.txt');
    fs.writeFileSync(path.join(src, 'install.sh'), `#!/bin/sh\necho installed over TLS > "${out}"\n`, { mode: 0o755 });
    fs.writeFileSync(path.join(src, 'payload.bin'), Buffer.alloc(300_000, 7));
    const pkg = JSON.parse(
      (await cascade(['package', 'create', src, '--name', 'Tls', '--program', 'Install=./install.sh', '--json'], { env: cen.env })).stdout,
    ).id as string;
    expect((await cascade(['distribute', pkg, '--to', 'dp:ber-dp1'], { env: cen.env })).code).toBe(0);
    await until(
      'the package is installed on ber-dp1',
      async () => (await cascade(['status', pkg, '--json'], { env: cen.env })).stdout.includes('"installed"'),
      60_000,
    );
    expect((await cascade(['collection', 'create', 'All', '--rule', 'os != ""'], { env: cen.env })).code).toBe(0);
    const ad = JSON.parse(
      (await cascade(['advertise', pkg, '--program', 'Install', '--collection', 'All', '--json'], { env: cen.env })).stdout,
    ).id as string;

    // --- an agent enrols at BER with a token carrying BER's pin, and installs from the DP ----
    const agentToken = (await cascade(['agent', 'join-token'], { env: ber.env })).stdout.trim();
    expect(agentToken).toMatch(/^casj_agent_.*_[0-9a-f]{16}\.tls-[0-9a-f]{64}$/);
    const agentDir = path.join(root, 'agent');
    const enrol = await cascade([
      'agent',
      'init',
      '--data',
      agentDir,
      '--site',
      ber.url,
      '--join-token',
      agentToken,
      '--hostname',
      'pc-tls',
    ]);
    expect(enrol.stderr).toBe('');
    const cfg = JSON.parse(fs.readFileSync(path.join(agentDir, 'agent.json'), 'utf8'));
    expect(cfg.site).toMatch(/^https:/);
    expect(cfg.sitePin).toBe(ber.env.CASCADE_TLS_PIN);
    await until(
      'the advertisement reaches BER and the agent installs it from the DP over HTTPS',
      async () => {
        await cascade(['agent', 'install', ad, '--data', agentDir]);
        return fs.existsSync(out);
      },
      60_000,
    );
    expect(fs.readFileSync(out, 'utf8')).toBe('installed over TLS\n');
    const st = JSON.parse((await cascade(['agent', 'status', '--data', agentDir, '--json'])).stdout);
    expect(JSON.stringify(st)).toContain('ber-dp1');

    // --- what the link carried: TLS records only, no token, no credential, no bearer --------
    const seen = link.seen();
    expect(seen.length).toBeGreaterThan(10_000);
    for (const secret of ['casj_', 'cas_peer_', 'Bearer', 'authorization', siteToken.split('.')[0] as string])
      expect(seen.includes(secret), `"${secret}" crossed the link in clear`).toBe(false);
    // Every record on it is a TLS record (content types 20–23, version 3.x).
    expect(seen[0]).toBe(0x16);
    expect(seen[1]).toBe(3);
  }, 240_000);
});
