import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cascade, newSite, ROOT, type SiteProcess, tmpDir } from './helpers.js';

/**
 * A client machine needs one file: the bundled agent, copied into an empty folder, enrols with
 * a real site and runs what is advertised to it, with Node.js alone (no node_modules there).
 */
describe('the agent as one file', () => {
  let site: SiteProcess | undefined;
  afterAll(async () => {
    await site?.stop();
  });

  it('runs from an empty folder', async () => {
    execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'bundle-agent.mjs')], { cwd: ROOT });
    const box = tmpDir('cascade-agent-box-');
    fs.copyFileSync(path.join(ROOT, 'dist', 'cascade-agent.cjs'), path.join(box, 'cascade-agent.cjs'));
    const agent = (...args: string[]) =>
      spawnSync(process.execPath, ['cascade-agent.cjs', ...args], { cwd: box, encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
    expect(agent('--version').stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);

    site = await newSite('CEN');
    const env = site.env;
    const src = path.join(tmpDir(), 'src');
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, 'setup.sh'), `#!/bin/sh\necho ok > "${box}/ran.txt"\n`, { mode: 0o755 });
    const pkg = JSON.parse(
      (await cascade(['package', 'create', src, '--name', 'One', '--program', 'Setup=./setup.sh', '--json'], { env })).stdout,
    ).id;
    expect((await cascade(['collection', 'create', 'Everyone', '--rule', 'os != ""'], { env })).code).toBe(0);
    expect((await cascade(['advertise', pkg, '--program', 'Setup', '--collection', 'Everyone', '--mandatory', 'now'], { env })).code).toBe(
      0,
    );
    const token = (await cascade(['agent', 'join-token'], { env })).stdout.trim();

    const init = agent('init', '--data', 'data', '--site', site.url, '--join-token', token);
    expect(init.stderr).toBe('');
    expect(init.stdout).toMatch(/^client CEN-000001 enrolled/);
    const run = agent('run-now', '--data', 'data');
    expect(run.stderr).toBe('');
    expect(run.stdout).toContain('CEN-A00001: succeeded (exit code 0)');
    expect(fs.readFileSync(path.join(box, 'ran.txt'), 'utf8')).toBe('ok\n');
    expect(fs.readdirSync(box).sort()).toEqual(['cascade-agent.cjs', 'data', 'ran.txt']);
    const bad = agent('install', 'nonsense', '--data', 'data');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toBe('cascade-agent: "nonsense" is not an advertisement ID (e.g. CEN-A00001)\n');
  }, 120_000);
});
