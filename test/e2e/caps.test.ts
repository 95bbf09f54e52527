import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BIN, cascade, freePort, type SiteProcess, startSite, tmpDir, until } from './helpers.js';

const metric = async (url: string, name: string) => {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : Number.NaN;
};

/**
 * Download caps end to end: a burst of simulated clients never holds more slots than the site
 * allows (measured by the clients themselves and by the site); a real agent refused a slot is
 * told why and when to come back; a real agent killed in the middle of its download loses its
 * slot after the slot timeout, and the waiting one then gets it.
 */
describe('download caps', () => {
  const root = tmpDir('cascade-caps-');
  const running: SiteProcess[] = [];
  afterAll(async () => {
    await Promise.all(running.map((s) => s.stop()));
  });

  it('never grants more slots than the cap, tells the others when to return, and takes back a silent slot', async () => {
    const dir = path.join(root, 'CEN');
    expect((await cascade(['site', 'init', '--data', dir, '--code', 'CEN', '--listen', `127.0.0.1:${await freePort()}`])).code).toBe(0);
    const cen = await startSite(dir, [], { listen: null });
    running.push(cen);
    const env = cen.env;
    const run = async (args: string[], extra: Record<string, string> = {}) => {
      const r = await cascade(args, { env: { ...env, ...extra } });
      if (r.code !== 0) throw new Error(`cascade ${args.join(' ')}: ${r.stderr}`);
      return r.stdout;
    };
    const src = path.join(root, 'src');
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, 'install.sh'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    fs.writeFileSync(path.join(src, 'payload.bin'), crypto.randomBytes(2 << 20));
    const pkg = JSON.parse(await run(['package', 'create', src, '--name', 'Tool', '--program', 'Install=./install.sh', '--json']))
      .id as string;
    await run(['collection', 'create', 'Everyone', '--rule', 'os = "linux"']);
    await run(['advertise', pkg, '--program', 'Install', '--collection', 'Everyone', '--mandatory', 'now']);

    // Bad settings are refused with one line.
    let r = await cascade(['site', 'set', '--download-slots', '0'], { env });
    expect(r.stderr).toMatch(/^cascade: --download-slots/);
    r = await cascade(['site', 'set', '--client-rate', 'fast'], { env });
    expect(r.stderr).toBe('cascade: --client-rate "fast" is not a rate (e.g. 2MiB/s, 10Mbit/s, unlimited)\n');
    r = await cascade(['agent', 'simulate', '--site', cen.url, '--join-token', 'T', '--clients', '1', '--link-rate', 'fast'], { env });
    expect(r.stderr).toBe('cascade: --link-rate "fast" is not a rate (e.g. 2MiB/s, 10Mbit/s, unlimited)\n');

    // --- a burst of 30 simulated clients against a cap of 3 ---------------------------------------
    expect(await run(['site', 'set', '--download-slots', '3', '--client-rate', '16MiB/s', '--json'])).toMatch(/"downloadSlots": 3/);
    const token = (await run(['agent', 'join-token', '--uses', '40'])).trim();
    const sim = JSON.parse(
      await run([
        'agent',
        'simulate',
        '--site',
        cen.url,
        '--join-token',
        token,
        '--clients',
        '30',
        // Each client on a link of its own, slower than the site's 16 MiB/s share: ~0.5 s a download.
        '--link-rate',
        '4MiB/s',
        '--until-done',
        '--duration',
        '3m',
        '--json',
      ]),
    );
    expect(sim.done).toBe(30);
    expect(sim.downloads).toBe(30);
    expect(sim.sites.CEN.peakDownloads).toBeGreaterThan(1);
    expect(sim.sites.CEN.peakDownloads).toBeLessThanOrEqual(3);
    expect(sim.sites.CEN.slotRefusals).toBeGreaterThan(0);
    expect(await metric(cen.url, 'cascade_client_downloads_peak')).toBeLessThanOrEqual(3);
    expect(await metric(cen.url, 'cascade_client_downloads')).toBe(0);

    // --- two real agents, one slot: the second waits, told why ----------------------------------
    await run(['site', 'set', '--download-slots', '1', '--client-rate', '64KiB/s', '--slot-timeout', '10s']);
    const agents = [];
    for (const i of [1, 2]) {
      const d = path.join(root, `agent${i}`);
      await run(['agent', 'init', '--data', d, '--site', cen.url, '--join-token', token, '--hostname', `real-${i}`]);
      agents.push(d);
    }
    const slow = spawn(process.execPath, [BIN, 'agent', 'run-now', '--data', agents[0] as string], { stdio: 'ignore' });
    await until('the first agent holds the slot', async () => (await metric(cen.url, 'cascade_client_downloads')) === 1, 20_000);
    const out = await run(['agent', 'run-now', '--data', agents[1] as string]);
    expect(out).toMatch(/waiting for a download slot: site CEN: all 1 download slots are in use; asking again in \d+ s/);
    const st = JSON.parse(await run(['agent', 'status', '--data', agents[1] as string, '--json']));
    expect(st.advertisements[0].state).toBe('waiting-slot');
    // The site sees it waiting too.
    await until('the site shows the client waiting for a slot', async () =>
      (await run(['advertisement', 'status', 'CEN-A00001'])).includes('waiting-slot'),
    );

    // The holder dies mid-download: its slot lapses after the timeout, and the other gets it.
    slow.kill('SIGKILL');
    await until('the silent slot lapses', async () => (await metric(cen.url, 'cascade_client_slots_lapsed')) === 1, 30_000);
    await run(['site', 'set', '--client-rate', 'unlimited']);
    expect(await run(['agent', 'run-now', '--data', agents[1] as string])).toMatch(/succeeded/);
    expect(await metric(cen.url, 'cascade_client_downloads')).toBe(0);
    // Every client reported its agent's version: 30 simulated and 2 real ones, all this release.
    const { versions } = JSON.parse(await run(['agent', 'versions', '--json']));
    expect(versions).toHaveLength(1);
    expect(versions[0]).toMatchObject({ site: 'CEN', clients: 32 });
    expect(await run(['agent', 'versions'])).toMatch(/^SITE +VERSION +CLIENTS\nCEN +\S+ +32\n$/);
    // The cap lifted: no slot asked for any more.
    expect(await run(['site', 'set', '--download-slots', 'none', '--json'])).toMatch(/"downloadSlots": null/);
  });
});
