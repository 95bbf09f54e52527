import { type ChildProcess, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Agent, enrolAgent } from '../agent/agent.js';
import { loadState } from '../agent/config.js';
import { readVersions } from '../agent/versions.js';
import { ApiClient } from '../api/client.js';
import type { AgentPublishAnswer, AgentVersions } from '../api/clients.js';
import type { DpEntry } from '../api/dps.js';
import type { PackageSource } from '../api/packages.js';
import { fillPath, PATHS } from '../api/paths.js';
import type { SiteEntry } from '../api/sites.js';
import { releaseText } from '../cli/commands/dp.js';
import { siteTrust } from '../cli/commands/package.js';
import { fetchVersion } from '../cli/fetch.js';
import { fmtBytes } from '../cli/progress.js';
import { uploadSource } from '../cli/upload.js';
import { verifyManifest } from '../content/manifest.js';
import { closePool, walkSource } from '../content/pool.js';
import { createLogger } from '../lib/log.js';
import { updateSiteConfig } from '../lib/site-config.js';
import { bundledAgentUrl, VERSION, writeAgentRelease, writeRelease } from '../lib/version.js';
import { initSite, type RunningSite, startSite } from '../site/server.js';
import { publishRelease, tickUpgrades } from '../site/upgrades.js';

/** A small installation source: text, "binaries", a cabinet; deterministic. */
export function writeSample(dir: string, seed: number, bytes = 24 << 20): void {
  const rand = (n: number, tag: string) => {
    const key = crypto.createHash('sha256').update(`${seed}:${tag}`).digest();
    return crypto.createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(n));
  };
  const words = 'setup install server client package site distribution point driver service registry program'.split(' ');
  const text = (n: number) => {
    let s = '';
    let i = 0;
    while (s.length < n) s += `${words[(i * 7 + seed) % words.length]} ${words[(i++ * 13) % words.length]} = ${i}\n`;
    return Buffer.from(s.slice(0, n));
  };
  const put = (rel: string, data: Buffer, mode = 0o644) => {
    const p = path.join(dir, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, data, { mode });
  };
  put('setup.exe', rand(1 << 20, 'setup'), 0o755);
  put('README.txt', text(8 << 10));
  put('docs/install-guide.txt', text(256 << 10));
  for (let i = 0; i < 12; i++) put(`i386/drivers/drv${i}.sys`, rand(64 << 10, `drv${i}`));
  put('i386/core.cab', rand(Math.max(1 << 20, bytes - (4 << 20)), 'cab'));
  put('lang/en/strings.txt', text(512 << 10));
  put('lang/de/strings.txt', text(512 << 10));
}

export interface DemoOptions {
  data?: string;
  listen?: string;
  once?: boolean;
}

/** An admin client of a site the demo runs, pinned to its certificate when it serves HTTPS. */
const adminClient = (site: RunningSite, dir: string): ApiClient =>
  new ApiClient(site.url, { token: fs.readFileSync(path.join(dir, 'admin-token'), 'utf8').trim(), pin: site.ctx.tlsPin });

/** The demo's tour: a hierarchy of three sites and three DPs on loopback, and what Cascade does with them. */
export async function runDemo(o: DemoOptions): Promise<void> {
  const dataDir = o.data ?? fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-demo-'));
  const siteDir = path.join(dataDir, 'cen');
  const out = (s: string) => process.stdout.write(`${s}\n`);
  out(`Cascade demo: data in ${dataDir}`);
  if (!fs.existsSync(path.join(siteDir, 'config.json'))) await initSite({ dataDir: siteDir, code: 'CEN', name: 'Central site (demo)' });
  const log = createLogger({ name: 'site', level: process.env.CASCADE_LOG_LEVEL ?? 'warn' });
  let site: Awaited<ReturnType<typeof startSite>>;
  try {
    site = await startSite({ dataDir: siteDir, listen: o.listen ?? '127.0.0.1:8100', log });
  } catch (e) {
    if (o.listen) throw e;
    site = await startSite({ dataDir: siteDir, listen: '127.0.0.1:0', log });
  }
  const token = fs.readFileSync(path.join(siteDir, 'admin-token'), 'utf8').trim();
  const client = new ApiClient(site.url, { token });
  out(`\nsite CEN serving at ${site.url} (SQLite store, Ed25519 key ${site.ctx.key.keyId})`);

  const v1 = path.join(dataDir, 'sample-v1');
  const v2 = path.join(dataDir, 'sample-v2');
  if (!fs.existsSync(v1)) writeSample(v1, 1);
  if (!fs.existsSync(v2)) {
    fs.cpSync(v1, v2, { recursive: true });
    // Version 2: a patched driver, an edit inside the cabinet, a new language.
    fs.writeFileSync(path.join(v2, 'i386/drivers/drv3.sys'), crypto.randomBytes(64 << 10));
    const fd = fs.openSync(path.join(v2, 'i386/core.cab'), 'r+');
    fs.writeSync(fd, crypto.randomBytes(4096), 0, 4096, 5 << 20);
    fs.closeSync(fd);
    fs.mkdirSync(path.join(v2, 'lang/fr'), { recursive: true });
    fs.writeFileSync(path.join(v2, 'lang/fr/strings.txt'), 'installer programme serveur client\n'.repeat(2000));
  }

  const t0 = Date.now();
  const up1 = await uploadSource(client, await walkSource(v1));
  const r1 = await client.json<{ id: string; version: number; files: number; bytes: number; newBytes: number }>('POST', PATHS.packages, {
    json: {
      name: 'Sample Office Suite',
      priority: 'high',
      programs: [
        { name: 'Install', command: 'setup.exe /quiet' },
        { name: 'Repair', command: 'setup.exe /repair' },
      ],
      files: up1.files,
    },
  });
  out(
    `\n1. package create: ${r1.id} version ${r1.version}, ${r1.files} files, ${fmtBytes(r1.bytes)} (${((Date.now() - t0) / 1000).toFixed(1)} s)`,
  );
  out(`   content-defined chunks (${up1.stats.chunks}), each stored once, compressed where that helps; manifest signed by CEN`);

  const prevBytes = await client.bytes(fillPath(PATHS.manifest, { id: r1.id, version: 1 }));
  const previous = verifyManifest(prevBytes, await siteTrust(client)).manifest;
  const up2 = await uploadSource(client, await walkSource(v2), { previous });
  const r2 = await client.json<{ id: string; version: number; bytes: number; newBytes: number }>(
    'POST',
    fillPath(PATHS.packageVersions, { id: r1.id }),
    {
      json: { files: up2.files },
    },
  );
  out(`\n2. package update: version ${r2.version}, ${fmtBytes(r2.bytes)} in all, but only ${fmtBytes(r2.newBytes)} new to the library`);
  out(`   (${fmtBytes(up2.stats.sentBytes)} sent: changed chunks travel as deltas of the ones the site holds)`);

  const check = await client.json<{ ok: boolean; versions: { version: number; checkedChunks: number }[] }>(
    'POST',
    fillPath(PATHS.packageVerify, { id: r1.id }),
  );
  out(`\n3. package verify: every chunk of ${check.versions.length} versions re-hashed: ${check.ok ? 'all intact' : 'DAMAGE FOUND'}`);

  const dest = path.join(dataDir, 'fetched');
  fs.rmSync(dest, { recursive: true, force: true });
  const f = await fetchVersion(client, r1.id, 2, dest, { trusted: await siteTrust(client) });
  out(`\n4. package fetch: version 2 written to ${dest}: ${f.files} files, signature and every chunk verified`);

  // 5. A hierarchy: a region joins the central site, a branch joins the region, each with a
  // one-time join token from its parent.
  const children: RunningSite[] = [];
  let parent = { url: site.url, client };
  for (const [code, name] of [
    ['EUR', 'Europe region (demo)'],
    ['BER', 'Berlin branch (demo)'],
  ] as const) {
    const dir = path.join(dataDir, code.toLowerCase());
    if (!fs.existsSync(path.join(dir, 'config.json'))) {
      const { token } = await parent.client.json<{ token: string }>('POST', PATHS.joinTokens, {
        json: { kind: 'site', ttlSeconds: 600 },
      });
      // HTTPS on loopback too, as off it: a self-signed certificate whose pin the site's join tokens carry.
      await initSite({
        dataDir: dir,
        code,
        name,
        listen: `127.0.0.1:${await freePort()}`,
        parent: parent.url,
        joinToken: token,
        tls: true,
      });
    }
    const child = await startSite({ dataDir: dir, log });
    children.push(child);
    parent = { url: child.url, client: adminClient(child, dir) };
  }
  const tree = await client.json<{ sites: { code: string; name: string; parent: string | null; url: string | null }[] }>(
    'GET',
    PATHS.sites,
  );
  out('\n5. site hierarchy: each site joined its parent with a one-time token; the central site checked codes and signed keys');
  const show = (code: string, depth: number): void => {
    const s = tree.sites.find((x) => x.code === code);
    if (!s) return;
    out(
      `   ${'  '.repeat(depth)}${s.code}  ${s.name}${depth === 0 ? `  ${site.url}` : s.url ? `  ${s.url}` : '  (known through its parent)'}`,
    );
    for (const c of tree.sites.filter((x) => x.parent === code)) show(c.code, depth + 1);
  };
  show('CEN', 0);
  out(
    '   EUR, BER and their DPs serve HTTPS with self-signed certificates: each join token carried the certificate pin of the site that made it,',
  );
  out('   and every caller (child site, DP, agent) sends nothing until the server showed that certificate; CEN serves HTTP on loopback');

  // Distribution points: two join the Berlin branch, one the Europe region, each with a
  // one-time token; a DP group names the Berlin pair.
  const dpSpecs = [
    ['eur-dp1', 0],
    ['ber-dp1', 1],
    ['ber-dp2', 1],
  ] as const;
  const siteClient = (i: number) => {
    const dir = path.join(dataDir, ['eur', 'ber'][i] as string);
    return adminClient(children[i] as RunningSite, dir);
  };
  for (const [name, at] of dpSpecs) {
    const dir = path.join(dataDir, name);
    if (!fs.existsSync(path.join(dir, 'config.json'))) {
      const { token } = await siteClient(at).json<{ token: string }>('POST', PATHS.joinTokens, {
        json: { kind: 'dp', ttlSeconds: 600 },
      });
      await initSite({
        role: 'dp',
        dataDir: dir,
        code: name,
        listen: `127.0.0.1:${await freePort()}`,
        parent: (children[at] as RunningSite).url,
        joinToken: token,
        tls: true,
      });
    }
    children.push(await startSite({ role: 'dp', dataDir: dir, log }));
  }
  await client.json('POST', PATHS.dpGroups, { json: { name: 'berlin', dps: [] } }).catch(() => undefined);
  await client
    .json('POST', fillPath(PATHS.dpGroupAdd, { name: 'berlin' }), { json: { dps: ['ber-dp1', 'ber-dp2'] } })
    .catch(() => undefined);
  type Dp = { name: string; site: string; kind: string; state: string; freeBytes: number | null; url: string | null };
  let dps: Dp[] = [];
  for (let i = 0; i < 40; i++) {
    dps = (await client.json<{ dps: Dp[] }>('GET', PATHS.dps)).dps;
    if (dps.length >= 6) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  out('\n6. distribution points: every DP of every site, as the central site sees them (cascade dp list)');
  for (const d of dps)
    out(`   ${d.name.padEnd(8)} ${d.site}  ${d.kind.padEnd(6)}  ${d.freeBytes === null ? '' : `${fmtBytes(d.freeBytes)} free`}`);

  // 7. A preview first, then the distribution: once per route, relayed, status back up.
  await client.json('PUT', fillPath(PATHS.route, { child: 'EUR' }), { json: { rate: 8 << 20, schedule: 'all' } });
  const to = ['site:EUR', 'group:berlin'];
  type Plan = {
    uniqueBytes: number;
    routes: { from: string; to: string; bytes: number; etaSeconds: number | null }[];
    targets: { dp: string; path: string[]; etaSeconds: number | null }[];
  };
  const plan = await client.json<Plan>('POST', PATHS.distributions, { json: { packageId: r1.id, to, dryRun: true } });
  out(`\n7. distribute ${r1.id} --to site:EUR --to group:berlin --dry-run: what would cross each route, and when`);
  for (const r of plan.routes)
    out(`   ${`${r.from} -> ${r.to}`.padEnd(16)} ${fmtBytes(r.bytes).padStart(9)}  ETA ${r.etaSeconds ?? 'never'} s`);
  await client.json('POST', PATHS.distributions, { json: { packageId: r1.id, to } });
  type Status = {
    summary: { targeted: number; installed: number };
    targets: { dp: string; site: string; state: string; bytesDone: number; bytesTotal: number }[];
  };
  let st: Status = { summary: { targeted: 1, installed: 0 }, targets: [] };
  const t6 = Date.now();
  while (Date.now() - t6 < 90_000) {
    st = await client.json<Status>('GET', fillPath(PATHS.distribution, { id: r1.id }));
    if (st.summary.installed === st.summary.targeted) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  out(`   ... then for real (route CEN->EUR limited to 8 MiB/s): every DP installed in ${((Date.now() - t6) / 1000).toFixed(1)} s`);
  for (const t of st.targets) out(`   ${t.dp.padEnd(8)} ${t.site}  ${t.state}  ${fmtBytes(t.bytesDone)}/${fmtBytes(t.bytesTotal)}`);
  const msgs = await client.json<{ messages: { site: string; code: string; text: string }[] }>('GET', PATHS.messages, {
    query: { package: r1.id, limit: 4 },
  });
  out('   latest status messages, as they reached the central site:');
  for (const m of msgs.messages) out(`     ${m.site} ${m.code}: ${m.text}`);

  // 8. Validation: every DP re-hashes what it holds against the signed manifest.
  const v = await client.json<{ results: { dp: string; ok: boolean; checkedFiles: number; checkedBytes: number }[] }>(
    'POST',
    PATHS.validations,
    { json: { packageId: r1.id } },
  );
  out(`\n8. cascade validate ${r1.id}: every chunk re-hashed, every file checked, on every DP`);
  for (const r of v.results) out(`   ${r.dp.padEnd(8)} ${r.ok ? 'ok' : 'INVALID'}  ${r.checkedFiles} files, ${fmtBytes(r.checkedBytes)}`);

  // 9. The courier: a package for EUR carried on "media" (a parcel file): no chunk on the WAN.
  const v3 = path.join(dataDir, 'sample-drivers');
  if (!fs.existsSync(v3)) writeSample(v3, 3, 6 << 20);
  const up3 = await uploadSource(client, await walkSource(v3));
  const r3 = await client.json<{ id: string; bytes: number }>('POST', PATHS.packages, {
    json: { name: 'Field drivers', priority: 'medium', programs: [], files: up3.files },
  });
  await client.json('POST', PATHS.distributions, { json: { packageId: r3.id, to: ['site:EUR'], via: 'courier' } });
  type Target = { dp: string; state: string; detail?: string | null };
  const eurTarget = async () =>
    (await client.json<{ targets: Target[] }>('GET', fillPath(PATHS.distribution, { id: r3.id }))).targets.find((t) => t.dp === 'EUR');
  let waiting: Target | undefined;
  for (let i = 0; i < 120 && !/courier parcel/.test(waiting?.detail ?? ''); i++) {
    await new Promise((r) => setTimeout(r, 250));
    waiting = await eurTarget();
  }
  out(`\n9. distribute ${r3.id} --to site:EUR --via courier: no chunk crosses the WAN; the sender waits for a parcel`);
  out(`   EUR  ${waiting?.state ?? '?'}  ${waiting?.detail ?? ''}`);
  const parcelFile = path.join(dataDir, 'eur.parcel');
  const res = await client.download(PATHS.courierExport, { packages: [r3.id], toSite: 'EUR' });
  await fs.promises.writeFile(parcelFile, res);
  out(`   cascade courier export ${r3.id} --to-site EUR -o ${parcelFile}: ${fmtBytes(fs.statSync(parcelFile).size)}`);
  const imported = await siteClient(0).uploadStream<{ chunks: { stored: number }; packages: { state: string }[] }>(
    PATHS.courierImport,
    fs.createReadStream(parcelFile),
    fs.statSync(parcelFile).size,
  );
  let installed: Target | undefined;
  for (let i = 0; i < 120 && installed?.state !== 'installed'; i++) {
    installed = await eurTarget();
    if (installed?.state !== 'installed') await new Promise((r) => setTimeout(r, 250));
  }
  const transfers = await client.json<{ transfers: { packageId: string; child: string; wireBytes: number }[] }>('GET', PATHS.transfers);
  const wire = transfers.transfers.find((t) => t.packageId === r3.id && t.child === 'EUR')?.wireBytes ?? 0;
  out(
    `   cascade courier import at EUR: ${imported.chunks.stored} chunks verified and stored, ${imported.packages[0]?.state}; ` +
      `seen from CEN: EUR ${installed?.state}, ${wire} chunk bytes on the route CEN -> EUR`,
  );

  const ad = await clientsTour({ dataDir, client, ber: siteClient(1), berUrl: (children[1] as RunningSite).url, out });
  const rollout = await rolloutTour({ dataDir, client, ber: siteClient(1), agents: ad.agents, out });
  await upgradeTour({ dataDir, client, ber: siteClient(1), agents: ad.agents, out });
  const dpProcesses = await releaseTour({ dataDir, client, site, out });
  await sourceTour({ dataDir, siteDir, client, out, sample: v2 });

  const env = `CASCADE_SITE=${site.url} CASCADE_TOKEN=$(cat ${path.join(siteDir, 'admin-token')})`;
  const rel = process.argv[1] ? path.relative(process.cwd(), process.argv[1]) : '';
  const me = !rel ? 'cascade' : rel.startsWith('.') || path.isAbsolute(rel) ? rel : `./${rel}`;
  const closeAll = async () => {
    await Promise.all(
      dpProcesses.map(
        (p) =>
          new Promise<void>((resolve) => {
            if (p.exitCode !== null) return resolve();
            p.once('exit', () => resolve());
            p.kill('SIGTERM');
          }),
      ),
    );
    for (const c of children) await c.close();
    await site.close();
  };
  if (o.once) {
    await closeAll();
    await closePool();
    out(`\nThe sites have stopped; their data folders are kept in ${dataDir}.`);
    return;
  }
  out('\nTry next (in another terminal):');
  out(`  export ${env}`);
  out(`  ${me} site list`);
  out(`  ${me} dp list`);
  out(`  ${me} status ${r1.id}`);
  out(`  ${me} distribute ${r1.id} --to site:BER --dry-run`);
  out(`  ${me} validate ${r1.id} --dp ber-dp2`);
  out(`  ${me} courier inspect ${path.join(dataDir, 'eur.parcel')}`);
  out(`  ${me} undistribute ${r1.id} --from dp:eur-dp1`);
  out(`  ${me} advertisement status ${ad.id}`);
  out(`  ${me} why ${ad.client} ${ad.id}`);
  out(`  ${me} rollout status ${rollout}`);
  out(`  ${me} agent versions`);
  out(`  ${me} client list`);
  out(`  ${me} agent status --data ${path.join(dataDir, 'agents', 'ber-ws-01')}`);
  out(`  ${me} messages --severity warning`);
  out(`  ${me} route show EUR`);
  out(`  ${me} package list`);
  out(`  ${me} package show ${r1.id} --json`);
  out(`  ${me} package verify ${r1.id}`);
  out(`  ${me} package create SOME/FOLDER --name "My package" --program "Install=setup.exe /q"`);
  out(`  ${me} package create --source-on-site ${path.join(dataDir, 'sources', 'office')} --name "Office again"   (under the source root)`);
  out(`  curl ${site.url}/metrics   |   ${site.url}/api/v1/openapi.json`);
  out('\nServing; press Ctrl-C to stop.');
  await new Promise<void>((resolve) => {
    const stop = () => closeAll().then(resolve, resolve);
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await closePool();
}

/**
 * 10. Clients: three agents enrol at the Berlin branch; an advertisement made at the central
 * site before its package is on any DP stays invisible (and `why` says so); once the package
 * reaches ber-dp1, each agent downloads it from there, runs its script, and the central site
 * sees every state.
 */
async function clientsTour(o: {
  dataDir: string;
  client: ApiClient;
  ber: ApiClient;
  berUrl: string;
  out: (s: string) => void;
}): Promise<{ id: string; client: string; agents: Agent[] }> {
  const { client, out } = o;
  const src = path.join(o.dataDir, 'sample-tool');
  const results = path.join(o.dataDir, 'installed');
  fs.mkdirSync(results, { recursive: true });
  if (!fs.existsSync(src)) {
    fs.mkdirSync(src, { recursive: true });
    fs.writeFileSync(
      path.join(src, 'install.sh'),
      `#!/bin/sh\nset -e\nsha256sum tool.bin > /dev/null\necho "$CASCADE_PACKAGE version $CASCADE_VERSION installed on $CASCADE_CLIENT" > "${results}/$CASCADE_CLIENT.txt"\necho installed\n`,
      { mode: 0o755 },
    );
    fs.writeFileSync(path.join(src, 'tool.bin'), crypto.createHash('sha512').update('tool').digest().toString('hex').repeat(20000));
  }
  const up = await uploadSource(client, await walkSource(src));
  const pkg = await client.json<{ id: string }>('POST', PATHS.packages, {
    json: { name: 'Sample tool', priority: 'high', programs: [{ name: 'Install', command: './install.sh' }], files: up.files },
  });
  await client
    .json('POST', PATHS.collections, { json: { name: 'Berlin workstations', rule: 'hostname like "ber-ws-%" and os = "linux"' } })
    .catch(() => undefined);
  await client.json('POST', PATHS.boundaries, { json: { site: 'BER', cidr: '127.0.0.0/8', dps: ['ber-dp1'] } }).catch(() => undefined);
  const ad = await client.json<{ id: string }>('POST', PATHS.advertisements, {
    json: { packageId: pkg.id, program: 'Install', collection: 'Berlin workstations', mandatory: [new Date().toISOString()] },
  });
  out(`\n10. clients: collection "Berlin workstations" (hostname like "ber-ws-%"), boundary BER 127.0.0.0/8 -> ber-dp1,`);
  out(`    advertise ${pkg.id} --program Install --mandatory now: ${ad.id}, made before the package is on any DP`);

  const agents: Agent[] = [];
  for (const host of ['ber-ws-01', 'ber-ws-02', 'ber-ws-03']) {
    const dir = path.join(o.dataDir, 'agents', host);
    if (!fs.existsSync(path.join(dir, 'agent.json'))) {
      const { token } = await o.ber.json<{ token: string }>('POST', PATHS.agentJoinTokens, { json: { uses: 1 } });
      await enrolAgent({ dir, site: o.berUrl, joinToken: token, hostname: host });
    }
    agents.push(new Agent(dir));
  }
  const first = (agents[0] as Agent).cfg.client;
  out(`    three agents enrolled at BER (${agents.map((a) => a.cfg.client).join(', ')}); each checks in:`);
  // The policy travels down to BER with its next status answer; the agents see nothing yet.
  const why = async () =>
    client.json<{ state: string | null; reasons: { ok: boolean; text: string }[] }>(
      'GET',
      fillPath(PATHS.why, { client: first, advertisement: ad.id }),
    );
  for (let i = 0; i < 60; i++) {
    for (const a of agents) await a.cycle();
    const w = await why().catch(() => undefined);
    // Once BER has the boundary from CEN and has reported its clients' DPs back up.
    if (w?.state === 'waiting-content' && w.reasons.some((r) => r.text.startsWith('in boundary'))) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  out(`    offers: ${agents.map((a) => a.state.offers.length).join(', ')} — cascade why ${first} ${ad.id} at CEN:`);
  for (const r of (await why()).reasons) out(`      ${r.ok ? '✓' : '✗'} ${r.text}`);

  await client.json('POST', PATHS.distributions, { json: { packageId: pkg.id, to: ['dp:ber-dp1'] } });
  const t0 = Date.now();
  type AdStatus = { summary: Record<string, number>; clients: { client: string; state: string; exitCode: number | null }[] };
  let st: AdStatus | undefined;
  while (Date.now() - t0 < 60_000) {
    for (const a of agents) await a.cycle();
    st = await client.json<AdStatus>('GET', fillPath(PATHS.advertisementStatus, { id: ad.id }));
    if ((st.summary.succeeded ?? 0) >= agents.length) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  out(
    `    distribute ${pkg.id} --to dp:ber-dp1; the agents download from ber-dp1 and run ./install.sh (${((Date.now() - t0) / 1000).toFixed(1)} s):`,
  );
  out(`    cascade advertisement status ${ad.id} at CEN:`);
  for (const c of st?.clients ?? []) out(`      ${c.client}  ${c.state}  exit ${c.exitCode ?? '-'}`);
  for (const f of fs.readdirSync(results).sort())
    out(`      ${path.join(results, f)}: ${fs.readFileSync(path.join(results, f), 'utf8').trim()}`);
  out(`    cascade why ${first} ${ad.id}, now:`);
  for (const r of (await why()).reasons.slice(-2)) out(`      ${r.ok ? '✓' : '✗'} ${r.text}`);
  return { id: ad.id, client: first, agents };
}

/**
 * 11. A rollout under a download cap: a second package goes to the Berlin workstations in two
 * waves — a pilot collection of one, then the rest — while BER lets one client download at a
 * time. The second wave waits for the pilot's success; in it, one agent downloads and the
 * other waits for the slot, told why and when to ask again.
 */
async function rolloutTour(o: {
  dataDir: string;
  client: ApiClient;
  ber: ApiClient;
  agents: Agent[];
  out: (s: string) => void;
}): Promise<string> {
  const { client, out, agents } = o;
  const src = path.join(o.dataDir, 'sample-fonts');
  if (!fs.existsSync(src)) {
    fs.mkdirSync(src, { recursive: true });
    fs.writeFileSync(path.join(src, 'install.sh'), '#!/bin/sh\nset -e\nsha256sum fonts.bin > /dev/null\necho fonts installed\n', {
      mode: 0o755,
    });
    fs.writeFileSync(path.join(src, 'fonts.bin'), crypto.randomBytes(3 << 20));
  }
  const up = await uploadSource(client, await walkSource(src));
  const pkg = await client.json<{ id: string }>('POST', PATHS.packages, {
    json: { name: 'Sample fonts', priority: 'high', programs: [{ name: 'Install', command: './install.sh' }], files: up.files },
  });
  await client.json('POST', PATHS.distributions, { json: { packageId: pkg.id, to: ['dp:ber-dp1'] } });
  const pilot = (agents[0] as Agent).cfg.client;
  await client.json('POST', PATHS.collections, { json: { name: 'Berlin pilot', clients: [pilot] } }).catch(() => undefined);
  // "A few users at a time": one download at a time at BER, at 1 MiB/s.
  await o.ber.json('POST', PATHS.clientSettings, { json: { downloadSlots: 1, clientRate: 1 << 20 } });
  const r = await client.json<{ id: string }>('POST', PATHS.rollouts, {
    json: {
      packageId: pkg.id,
      program: 'Install',
      collection: 'Berlin workstations',
      waves: [{ collection: 'Berlin pilot' }, { rest: true }],
      successPercent: 100,
      holdSeconds: 0,
    },
  });
  out(`\n11. rollout: site set --download-slots 1 --client-rate 1MiB/s at BER; collection "Berlin pilot" (${pilot});`);
  out(
    `    rollout create ${pkg.id} --program Install --collection "Berlin workstations" --wave "Berlin pilot" --wave rest --success 100% --hold 0: ${r.id}`,
  );

  // Each agent on its own clock, as `agent start` would, but looking every second (the demo
  // cannot wait for a client cycle); a refused agent waits the retry-after the site gave.
  const t0 = Date.now();
  const nextAt = agents.map(() => 0);
  const busy = agents.map(() => false);
  const seen = agents.map(() => '');
  const note = (i: number, a: Agent) => {
    const ad = a.state.advertisements[r.id];
    const line = ad ? `${ad.state}${ad.state === 'waiting-slot' && ad.detail ? ` (${ad.detail})` : ''}` : 'not offered (yet)';
    if (line.replace(/\d+ s\)$/, '') === (seen[i] as string).replace(/\d+ s\)$/, '')) return;
    seen[i] = line;
    out(`    ${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s  ${a.cfg.client}: ${line}`);
  };
  type Status = { rollout: { state: string; waves: { text: string; released: boolean; members: number; succeeded: number }[] } };
  let st: Status | undefined;
  let wavesReleased = 1;
  while (Date.now() - t0 < 120_000) {
    for (const [i, a] of agents.entries()) {
      if (busy[i] || Date.now() < (nextAt[i] as number)) continue;
      busy[i] = true;
      void a
        .cycle()
        .then(
          (wait) => {
            const waiting = a.state.advertisements[r.id]?.state === 'waiting-slot';
            nextAt[i] = Date.now() + (waiting ? wait : Math.min(wait, 1)) * 1000;
          },
          () => {
            nextAt[i] = Date.now() + 1000;
          },
        )
        .finally(() => {
          busy[i] = false;
          note(i, a);
        });
    }
    for (const [i, a] of agents.entries()) note(i, a);
    st = await client.json<Status>('GET', fillPath(PATHS.rolloutStatus, { id: r.id }));
    const released = st.rollout.waves.filter((w) => w.released).length;
    if (released > wavesReleased) {
      wavesReleased = released;
      out(`    ${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s  the pilot succeeded: wave 2 released (the rest)`);
      // The released clients look at once (as at their next cycle), so they meet at the cap.
      nextAt.fill(0);
    }
    if (st.rollout.state === 'completed' && !busy.some(Boolean)) break;
    await new Promise((res) => setTimeout(res, 200));
  }
  out(`    cascade rollout show ${r.id}: ${st?.rollout.state}`);
  for (const w of st?.rollout.waves ?? [])
    out(`      ${w.text}: ${w.released ? 'released' : 'not released'}, ${w.succeeded} of ${w.members} succeeded`);
  await o.ber.json('POST', PATHS.clientSettings, { json: { downloadSlots: null, clientRate: null } });
  return r.id;
}

/**
 * 12. The agent upgrades itself, under a cap: CEN publishes a stand-in for the next release's
 * agent (this build's bundled agent, numbered as the next patch) to every client, spread over
 * 6 s; BER lets one client download at a time. Each agent runs as a real process, as a service
 * starts it (`cascade agent run-now`, the launcher): on its turn it downloads the new agent from
 * ber-dp1, switches to it, and the new agent confirms itself by checking in.
 */
async function upgradeTour(o: {
  dataDir: string;
  client: ApiClient;
  ber: ApiClient;
  agents: Agent[];
  out: (s: string) => void;
}): Promise<void> {
  const { client, out, agents } = o;
  const bundled = fileURLToPath(bundledAgentUrl());
  if (!fs.existsSync(bundled)) {
    out(`\n12. agent upgrade: skipped, ${bundled} is missing (npm run build makes it)`);
    return;
  }
  const [major, minor, patch] = VERSION.split(/[.-]/).map(Number);
  const next = `${major}.${minor}.${(patch ?? 0) + 1}`;
  const file = writeAgentRelease(bundled, next, path.join(o.dataDir, `cascade-agent-${next}.cjs`));
  await o.ber.json('POST', PATHS.clientSettings, { json: { downloadSlots: 1, clientRate: 256 << 10 } });
  const pub = await client.json<AgentPublishAnswer>('POST', PATHS.agentPublish, {
    json: { agentVersion: next, file: fs.readFileSync(file).toString('base64'), spreadSeconds: 6, graceSeconds: 0 },
  });
  out(`\n12. agent upgrade: agent publish --file ${file} (${next}, a stand-in for the next release) --spread 6s --grace 0s at CEN;`);
  out(
    `    ${pub.packageId} version ${pub.version} goes to ${pub.dps.length} DPs; ${pub.advertisement} upgrades every client; BER allows one download at a time, at 256 KiB/s.`,
  );
  out('    Each agent runs as a process of its own (cascade agent run-now: the launcher), when its site says to come back:');
  const dirs = agents.map((a) => a.dir);
  const ids = agents.map((a) => a.cfg.client);
  const t0 = Date.now();
  const nextAt = dirs.map(() => 0);
  const busy = dirs.map(() => false);
  const seen = dirs.map(() => '');
  const runs: Promise<void>[] = [];
  const note = (i: number) => {
    const v = readVersions(dirs[i] as string);
    const st = loadState(dirs[i] as string).advertisements[pub.advertisement];
    const line =
      v.current === next
        ? `runs agent ${next} (upgraded, confirmed by its first check-in)`
        : st
          ? `${st.state}${st.detail ? ` (${st.detail.replace(/; asking again in \d+ s$/, '')})` : ''}`
          : 'not offered yet: its turn in the spread has not come';
    if (line === seen[i]) return;
    seen[i] = line;
    out(`    ${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s  ${ids[i]}: ${line}`);
  };
  const runNow = (dir: string) =>
    new Promise<number>((resolve) => {
      const p = spawn(process.execPath, [process.argv[1] as string, 'agent', 'run-now', '--data', dir], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let text = '';
      p.stdout.on('data', (d) => {
        text += d;
      });
      p.on('close', () => resolve(Number(/next check-in in (\d+) s/.exec(text)?.[1] ?? 2)));
    });
  while (Date.now() - t0 < 120_000) {
    for (const [i, dir] of dirs.entries()) {
      if (busy[i] || Date.now() < (nextAt[i] as number) || readVersions(dir).current === next) continue;
      busy[i] = true;
      runs.push(
        runNow(dir).then((wait) => {
          // As told, but looking at least every 2 s (the demo cannot wait for a client cycle).
          nextAt[i] = Date.now() + Math.min(wait, 2) * 1000;
          busy[i] = false;
          note(i);
        }),
      );
    }
    if (dirs.every((d) => readVersions(d).current === next) && !busy.some(Boolean)) break;
    await new Promise((res) => setTimeout(res, 250));
  }
  await Promise.all(runs);
  for (const i of dirs.keys()) note(i);
  // BER's clients reach CEN with BER's next status report.
  let versions = await client.json<AgentVersions>('GET', PATHS.agentVersions);
  for (let i = 0; i < 40 && versions.versions.some((v) => v.version !== next); i++) {
    await new Promise((res) => setTimeout(res, 500));
    versions = await client.json<AgentVersions>('GET', PATHS.agentVersions);
  }
  out(`    cascade agent versions at CEN: ${versions.versions.map((v) => `${v.site} ${v.version}: ${v.clients}`).join(', ')}`);
  await o.ber.json('POST', PATHS.clientSettings, { json: { downloadSlots: null, clientRate: null } });
}

/** A loopback port free a moment ago (for a child site's fixed address). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/**
 * 14. A package source on the site: CEN may read folders under a source root (set in its data
 * folder, not through the API); it reads one itself, in one pass, remembers it, and makes no new
 * version when a re-read finds nothing changed.
 */
async function sourceTour(o: { dataDir: string; siteDir: string; client: ApiClient; out: (s: string) => void; sample: string }) {
  const { client, out } = o;
  const root = path.join(o.dataDir, 'sources');
  const src = path.join(root, 'office');
  if (!fs.existsSync(src)) fs.cpSync(o.sample, src, { recursive: true });
  updateSiteConfig(o.siteDir, { sourceRoots: [root] });
  const follow = async (id: string) => {
    let s = await client.json<PackageSource>('GET', fillPath(PATHS.packageSource, { id }));
    while (s.ingest?.state === 'ingesting')
      s = await client.json<PackageSource>('GET', fillPath(PATHS.packageSource, { id }), { query: { waitMs: 5000 } });
    if (s.ingest?.state === 'failed') throw new Error(`reading ${s.path} failed: ${s.ingest.error}`);
    return s;
  };
  out(`\n14. site set --data ${o.siteDir} --source-root ${root}; then`);
  out(`    package create --source-on-site ${src} --name "Office (read on the site)": CEN reads the folder itself, no upload:`);
  const t0 = Date.now();
  const started = await client.json<PackageSource>('POST', PATHS.packagesFromSource, {
    json: { source: src, name: 'Office (read on the site)', programs: [{ name: 'Install', command: 'setup.exe /quiet' }] },
  });
  const made = await follow(started.package);
  const v = made.ingest?.version;
  out(
    `    ${started.package} version ${v?.version}: ${v?.files} files, ${fmtBytes(v?.bytes ?? 0)}, walked, cut, hashed once, compressed and stored in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
  );
  await client.json('POST', fillPath(PATHS.packageRefresh, { id: started.package }), { json: {} });
  const again = await follow(started.package);
  out(
    `    package update ${started.package} (no folder: the one it remembers): ${again.ingest?.version?.unchanged ? `nothing changed since version ${again.ingest.version.version}; no new version` : `version ${again.ingest?.version?.version}`}`,
  );
  const set = await client.json<PackageSource>('PATCH', fillPath(PATHS.packageSource, { id: started.package }), {
    json: { refreshEverySeconds: 86400, distribute: true },
  });
  out(`    package set ${started.package} --refresh-every 24h --distribute: next read at low priority ${set.nextRefreshAt}`);
}

/**
 * 13. Site systems follow their site: two DPs of CEN run as processes of their own (`cascade dp
 * start`, the launcher). CEN publishes the next release, as a site server of that release does
 * when it starts: the DPs receive it like any package, and restart on it one at a time, each
 * drained of clients first. Returns the DP processes (they serve until the demo stops).
 */
async function releaseTour(o: {
  dataDir: string;
  client: ApiClient;
  site: RunningSite;
  out: (s: string) => void;
}): Promise<ChildProcess[]> {
  const { client, out } = o;
  const [major, minor, patch] = VERSION.split(/[.-]/).map(Number);
  const next = `${major}.${minor}.${(patch ?? 0) + 1}`;
  const names = ['cen-dp1', 'cen-dp2'];
  // DPs report every second here (the default is every 30 s), and are drained for 2 s.
  // They stop with the demo, even when it is killed (CASCADE_OWNER_PID).
  const env = {
    ...process.env,
    CASCADE_DP_STATE_SECONDS: '1',
    CASCADE_REPORT_SECONDS: '0.5',
    CASCADE_LOG_LEVEL: 'warn',
    CASCADE_OWNER_PID: String(process.pid),
  };
  process.env.CASCADE_DP_DRAIN_SECONDS ??= '2';
  const procs: ChildProcess[] = [];
  for (const name of names) {
    const dir = path.join(o.dataDir, name);
    if (!fs.existsSync(path.join(dir, 'config.json'))) {
      const { token } = await client.json<{ token: string }>('POST', PATHS.joinTokens, { json: { kind: 'dp', ttlSeconds: 600 } });
      await initSite({
        role: 'dp',
        dataDir: dir,
        code: name,
        listen: `127.0.0.1:${await freePort()}`,
        parent: o.site.url,
        joinToken: token,
      });
    }
    procs.push(spawn(process.execPath, [process.argv[1] as string, 'dp', 'start', '--data', dir], { env, stdio: 'ignore' }));
  }
  const list = async () => (await client.json<{ dps: DpEntry[] }>('GET', PATHS.dps)).dps.filter((d) => names.includes(d.name));
  for (let i = 0; i < 120 && (await list()).filter((d) => d.release?.running).length < names.length; i++)
    await new Promise((r) => setTimeout(r, 250));
  out(
    `\n13. site systems follow their site: ${names.join(' and ')} join CEN and run as processes of their own (cascade dp start: the launcher);`,
  );
  out(`    CEN publishes release ${next} (a stand-in for the next release), as a site server of that release does when it starts:`);
  const root = writeRelease(next, path.join(o.dataDir, `release-${next}`));
  const pub = await publishRelease(o.site.ctx, root, next);
  if (!pub) {
    out('    skipped: the release files are missing (npm run build makes them)');
    return procs;
  }
  out(
    `    stored as ${pub.packageId} version ${pub.packageVersion}; sent to both DPs like any package; each is drained of clients, told to restart, awaited:`,
  );
  const t0 = Date.now();
  const seen = new Map<string, string>();
  while (Date.now() - t0 < 120_000) {
    await tickUpgrades(o.site.ctx);
    const dps = await list();
    for (const d of dps) {
      const line = releaseText(d.release);
      if (seen.get(d.name) === line) continue;
      seen.set(d.name, line);
      out(
        `    ${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s  ${d.name}: ${line}${d.release?.upgrade?.detail && d.release.upgrade.state !== 'upgraded' ? ` (${d.release.upgrade.detail})` : ''}`,
      );
    }
    if (dps.every((d) => d.release?.running === next)) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  out(`    cascade dp list at CEN: ${(await list()).map((d) => `${d.name} ${releaseText(d.release)}`).join(', ')}`);
  const tree = await client.json<{ sites: SiteEntry[] }>('GET', PATHS.sites);
  out(
    `    cascade site list at CEN: ${tree.sites
      .filter((x) => x.relation === 'child')
      .map((x) => `${x.code} ${releaseText(x.release)}`)
      .join(', ')} (a child site's operator starts the release there; its DPs then follow it)`,
  );
  return procs;
}
