import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cascade, freePort, type SiteProcess, startSite, tmpDir } from './helpers.js';

/**
 * Maintenance windows end to end: a program longer than every stretch of its collection's
 * window is refused when advertised; a mandatory run outside the window is downloaded but does
 * not start (the agent says when the window opens); inside it, it runs.
 */
describe('maintenance windows', () => {
  const root = tmpDir('cascade-windows-');
  const running: SiteProcess[] = [];
  afterAll(async () => {
    await Promise.all(running.map((s) => s.stop()));
  });

  it('refuses a program that could never fit, and holds a mandatory run until the window opens', async () => {
    const dir = path.join(root, 'CEN');
    expect((await cascade(['site', 'init', '--data', dir, '--code', 'CEN', '--listen', `127.0.0.1:${await freePort()}`])).code).toBe(0);
    const cen = await startSite(dir, [], { listen: null });
    running.push(cen);
    const run = async (args: string[]) => {
      const r = await cascade(args, { env: cen.env });
      if (r.code !== 0) throw new Error(`cascade ${args.join(' ')}: ${r.stderr}`);
      return r.stdout;
    };
    const src = path.join(root, 'src');
    fs.mkdirSync(src);
    const marker = path.join(root, 'ran');
    fs.writeFileSync(path.join(src, 'install.sh'), `#!/bin/sh\ntouch ${marker}\n`, { mode: 0o755 });
    const pkg = JSON.parse(await run(['package', 'create', src, '--name', 'Patch', '--program', 'Install=./install.sh', '--json'])).id;

    // A one-hour window a few hours from now (UTC), every day: closed now.
    const h = new Date().getUTCHours();
    const from = (h + 3) % 24;
    const to = (h + 4) % 24 || 24;
    const spec = `daily ${String(from).padStart(2, '0')}-${String(to).padStart(2, '0')}`;
    let r = await cascade(['collection', 'create', 'Servers', '--rule', 'os = "linux"', '--window', `${spec} high`], { env: cen.env });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^cascade: maintenance window rule ".*": a window is open or closed; "high" belongs to route schedules\n$/);
    expect(await run(['collection', 'create', 'Servers', '--rule', 'os = "linux"', '--window', spec])).toContain(
      `maintenance window: ${spec} (UTC)`,
    );

    r = await cascade(['advertise', pkg, '--program', 'Install', '--collection', 'Servers', '--mandatory', 'now', '--max-run', '2h'], {
      env: cen.env,
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /program "Install" may run for up to 2 h, longer than the maintenance window of collection "Servers" .* is ever open at a stretch \(1 h\)/,
    );
    const ad = JSON.parse(
      await run(['advertise', pkg, '--program', 'Install', '--collection', 'Servers', '--mandatory', 'now', '--max-run', '30m', '--json']),
    ).id;
    // A window read in Berlin's time: six hours at a stretch, enough for 30 minutes, not for seven hours.
    r = await cascade(['collection', 'set', 'Servers', '--window', 'sat 22-04', '--time-zone', 'Europe/Berlin'], { env: cen.env });
    expect(r.code).toBe(0);
    r = await cascade(['advertise', pkg, '--program', 'Install', '--collection', 'Servers', '--mandatory', 'now', '--max-run', '7h'], {
      env: cen.env,
    });
    expect(r.stderr).toMatch(/\(6 h\)/);
    await run(['collection', 'set', 'Servers', '--window', spec]);

    const agent = path.join(root, 'agent');
    const token = (await run(['agent', 'join-token'])).trim();
    await run(['agent', 'init', '--data', agent, '--site', cen.url, '--join-token', token, '--hostname', 'srv-1']);
    const out = await run(['agent', 'run-now', '--data', agent]);
    expect(out).toMatch(/outside its maintenance window \(".*" \(UTC\) of "Servers"\); the next opens at \d{4}-/);
    expect(fs.existsSync(marker)).toBe(false);
    const st = JSON.parse(await run(['agent', 'status', '--data', agent, '--json']));
    expect(st.advertisements[0].state).toBe('waiting-window');
    expect(await run(['advertisement', 'status', ad])).toContain('waiting-window');
    expect(await run(['why', st.client, ad])).toMatch(/✗ outside its maintenance window \(".*" \(UTC\) of "Servers"\); the next opens at /);

    // The window widened to the whole week: the next cycle runs it (the content is already cached).
    await run(['collection', 'set', 'Servers', '--window', 'daily 00-24']);
    expect(await run(['agent', 'run-now', '--data', agent])).toMatch(/succeeded/);
    expect(fs.existsSync(marker)).toBe(true);
    expect(await run(['why', st.client, ad])).toMatch(/✓ inside its maintenance window \("daily 00-24" \(UTC\) of "Servers"\)\n/);
    // No window at all: shown as none.
    expect(await run(['collection', 'set', 'Servers', '--window', 'none'])).not.toContain('maintenance window');
  });
});
