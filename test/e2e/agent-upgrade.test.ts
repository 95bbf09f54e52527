import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { agentRelease, BIN, cascade, newSite, type SiteProcess, sleep, startSite, tmpDir, until } from './helpers.js';

interface Status {
  summary: Record<string, number>;
  clients: { client: string; state: string; version: number | null; detail: string | null }[];
}

/**
 * The agent upgrades itself: a site publishes a newer agent; the running agent (started as a
 * service would start it) downloads it from a DP like any package, switches to it, and holds its
 * other advertisements until the upgrade and its grace period are over. A broken newer agent is
 * rolled back, and the failure reaches the site. A site server started on a newer release
 * publishes its own agent.
 */
describe('agent upgrades', () => {
  const running: SiteProcess[] = [];
  const agents: ChildProcess[] = [];
  afterAll(async () => {
    for (const a of agents) if (a.exitCode === null) a.kill('SIGKILL');
    for (const s of running) await s.stop();
  });

  it('upgrades a running agent, holds its programs meanwhile, and rolls back one that does not start', async () => {
    const site = await newSite('CEN');
    running.push(site);
    const env = site.env;
    const box = tmpDir('cascade-upgrade-');
    expect((await cascade(['site', 'set', '--client-cycle', '10s'], { env })).code).toBe(0);

    // A program that notes when it ran, mandatory for everyone.
    const src = path.join(box, 'src');
    fs.mkdirSync(src);
    const ran = path.join(box, 'ran.txt');
    fs.writeFileSync(path.join(src, 'note.sh'), `#!/bin/sh\ndate +%s%3N > "${ran}"\n`, { mode: 0o755 });
    const pkg = JSON.parse(
      (await cascade(['package', 'create', src, '--name', 'Note', '--program', 'Note=./note.sh', '--json'], { env })).stdout,
    );
    expect((await cascade(['collection', 'create', 'Everyone', '--rule', 'os != ""'], { env })).code).toBe(0);
    const noteAd = JSON.parse(
      (await cascade(['advertise', pkg.id, '--program', 'Note', '--collection', 'Everyone', '--mandatory', 'now', '--json'], { env }))
        .stdout,
    ).id;

    // A newer release of the agent, published before the agent ever starts.
    const v2 = agentRelease('0.2.0', box);
    const pub = await cascade(['agent', 'publish', '--file', v2, '--spread', '0s', '--grace', '6s'], { env });
    expect(pub.stderr).toBe('');
    expect(pub.stdout).toMatch(/^agent 0\.2\.0 published as CEN\d{5} version 1\n/);
    const upgradeAd = /advertisement (CEN-A\d{5}) upgrades every client/.exec(pub.stdout)?.[1] as string;
    expect(upgradeAd).toBeDefined();

    const token = (await cascade(['agent', 'join-token'], { env })).stdout.trim();
    const data = path.join(box, 'agent');
    expect((await cascade(['agent', 'init', '--data', data, '--site', site.url, '--join-token', token, '--hostname', 'pc-1'])).code).toBe(
      0,
    );
    const agent = spawn(process.execPath, [BIN, 'agent', 'start', '--data', data], { env: { ...process.env } });
    agents.push(agent);
    let log = '';
    agent.stdout.on('data', (d) => {
      log += d;
    });
    agent.stderr.on('data', (d) => {
      log += d;
    });

    // It installs 0.2.0 first, holding the other advertisement, and switches to it.
    await until('the agent runs 0.2.0', async () => {
      const v = JSON.parse((await cascade(['agent', 'versions', '--json'], { env })).stdout) as { versions: { version: string }[] };
      return v.versions.some((x) => x.version === '0.2.0');
    });
    expect(log).toContain(`${upgradeAd}: agent 0.2.0 installed`);
    // The site hears of 0.2.0 at its first check-in; the launcher confirms it right after.
    await until('the launcher confirms 0.2.0', async () => log.includes('agent 0.2.0 confirmed (was the launcher)'), 10_000);
    const versions = JSON.parse(fs.readFileSync(path.join(data, 'versions.json'), 'utf8'));
    expect(versions.current).toBe('0.2.0');
    expect(versions.trying).toBeNull();
    expect(fs.existsSync(path.join(data, 'versions', '0.2.0', 'cascade-agent.cjs'))).toBe(true);
    const upgradedAt = Date.parse(versions.upgraded.at);

    // During the grace period the program is held, and says so; then it runs on its own.
    const status = await cascade(['agent', 'status', '--data', data]);
    expect(status.stdout).toContain('agent 0.2.0; upgraded from the launcher');
    // (The shell creates the file before the time is in it.)
    await until('the held program runs', async () => fs.existsSync(ran) && fs.readFileSync(ran, 'utf8').endsWith('\n'), 60_000);
    const ranAt = Number(fs.readFileSync(ran, 'utf8'));
    expect(ranAt).toBeGreaterThanOrEqual(upgradedAt + 6000);
    expect(log).toContain(`${noteAd}: held while the agent upgrades to 0.2.0`);
    expect(log).toContain(`${noteAd}: held: the agent upgraded to 0.2.0 at`);
    await until('the site sees the upgrade succeeded', async () => {
      const st = JSON.parse((await cascade(['advertisement', 'status', upgradeAd, '--json'], { env })).stdout) as Status;
      return st.clients[0]?.state === 'succeeded';
    });

    // A broken 0.3.0: it answers --version, but does not start. The agent rolls back to 0.2.0.
    const broken = path.join(box, 'broken.cjs');
    fs.writeFileSync(
      broken,
      "if (process.argv.includes('--version')) console.log('0.3.0');\nelse { console.error('boom: this agent cannot start'); process.exit(3); }\n",
    );
    const pub3 = await cascade(['agent', 'publish', '--file', broken, '--spread', '0s', '--grace', '0s', '--json'], { env });
    expect(pub3.stderr).toBe('');
    expect(JSON.parse(pub3.stdout)).toMatchObject({ agentVersion: '0.3.0', advertisement: upgradeAd, version: 2, newVersion: true });
    await until(
      'the broken agent is rolled back and reported',
      async () => {
        const st = JSON.parse((await cascade(['advertisement', 'status', upgradeAd, '--json'], { env })).stdout) as Status;
        return st.clients[0]?.state === 'failed' && st.clients[0].version === 2;
      },
      90_000,
    );
    const st = JSON.parse((await cascade(['advertisement', 'status', upgradeAd, '--json'], { env })).stdout) as Status;
    expect(st.clients[0]?.detail).toMatch(
      /agent 0\.3\.0 exited \(code 3\) before its first check-in: boom: this agent cannot start; rolled back to agent 0\.2\.0/,
    );
    const after = JSON.parse(fs.readFileSync(path.join(data, 'versions.json'), 'utf8'));
    expect(after).toMatchObject({ current: '0.2.0', trying: null, rolledBack: null });
    expect(fs.existsSync(path.join(data, 'versions', '0.3.0'))).toBe(false);
    // It does not try the broken one again: still 0.2.0 two cycles later.
    await sleep(12_000);
    expect(JSON.parse(fs.readFileSync(path.join(data, 'versions.json'), 'utf8')).current).toBe('0.2.0');
    expect(log.match(/starting agent 0\.3\.0/g)?.length).toBe(1);
    const why = await cascade(['why', 'CEN-000001', upgradeAd], { env });
    expect(why.stdout).toContain('agent upgrade from 0.2.0 to 0.3.0');

    // Going back to a version published before needs no file.
    const back = await cascade(['agent', 'publish', '--version', '0.2.0', '--json'], { env });
    expect(JSON.parse(back.stdout)).toMatchObject({ agentVersion: '0.2.0', version: 1, newVersion: false });
    const never = await cascade(['agent', 'publish', '--version', '9.9.9'], { env });
    expect(never.code).not.toBe(0);
    expect(never.stderr).toMatch(/agent 9\.9\.9 was never published at site CEN \(published here: 0\.2\.0, 0\.3\.0\)/);
    const notAgent = path.join(box, 'not-an-agent.cjs');
    fs.writeFileSync(notAgent, 'process.exit(1)\n');
    const refused = await cascade(['agent', 'publish', '--file', notAgent], { env });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('is not a Cascade agent');

    agent.kill('SIGTERM');
    await until('the agent stops', async () => agent.exitCode !== null);
    expect(agent.exitCode).toBe(0);
    expect(fs.existsSync(path.join(data, 'agent.lock'))).toBe(false);
    // With no agent running, "agent install" is carried out by the upgraded agent (0.2.0), under the launcher's lock.
    fs.rmSync(ran);
    const inst = await cascade(['agent', 'install', noteAd, '--data', data]);
    expect(inst.stderr).toBe('');
    expect(inst.stdout).toContain(`${noteAd}: succeeded (exit code 0)`);
    expect(fs.existsSync(ran)).toBe(true);
    expect(fs.existsSync(path.join(data, 'agent.lock'))).toBe(false);
  }, 240_000);

  it('a site server started on a newer release publishes the agent it carries', async () => {
    const site = await newSite('NEW');
    const dir = site.dataDir;
    const first = JSON.parse((await cascade(['advertisement', 'list', '--json'], { env: site.env })).stdout);
    expect(first.advertisements).toEqual([]);
    await site.stop();
    // As if this folder had last run an older release.
    const db = new Database(path.join(dir, 'cascade.db'));
    db.prepare("UPDATE meta SET value = '0.0.1' WHERE key = 'site.release'").run();
    db.close();
    const again = await startSite(dir);
    running.push(again);
    // The site listens first and publishes its agent right after.
    await until('the agent of this release is published', async () => again.logs().includes('its agent is published'), 30_000);
    const ads = JSON.parse((await cascade(['advertisement', 'list', '--json'], { env: again.env })).stdout) as {
      advertisements: { id: string; collection: string; agentUpgrade?: { version: string; spreadSeconds: number } }[];
    };
    expect(ads.advertisements).toHaveLength(1);
    expect(ads.advertisements[0]).toMatchObject({ collection: 'All clients', agentUpgrade: { spreadSeconds: 86400 } });
    const own = (await cascade(['--version'])).stdout.trim();
    expect(ads.advertisements[0]?.agentUpgrade?.version).toBe(own);
  }, 120_000);
});
