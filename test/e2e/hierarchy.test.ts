import crypto from 'node:crypto';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { cascade, freePort, type SiteProcess, startSite, tmpDir } from './helpers.js';

interface Entry {
  code: string;
  parent: string | null;
  relation: string;
  url: string | null;
  reachable: boolean | null;
}

/** Three real site processes: central → region → branch. */
describe('site hierarchy', () => {
  const root = tmpDir('cascade-tree-');
  const running: SiteProcess[] = [];
  afterAll(async () => {
    for (const s of running) await s.stop();
  });

  const init = async (code: string, parent?: SiteProcess) => {
    const port = await freePort();
    const args = ['site', 'init', '--data', path.join(root, code), '--code', code, '--listen', `127.0.0.1:${port}`, '--json'];
    if (parent) {
      const t = await cascade(['site', 'join-token', '--json'], { env: parent.env });
      expect(t.code).toBe(0);
      args.push('--parent', parent.url, '--join-token', JSON.parse(t.stdout).token);
    }
    const r = await cascade(args);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const s = await startSite(path.join(root, code), [], { listen: null, env: { CASCADE_PING_SECONDS: '1' } });
    running.push(s);
    return { site: s, init: JSON.parse(r.stdout) };
  };

  it('joins sites with one-time tokens, keeps codes unique, and shows the tree from each site', async () => {
    const cen = await init('CEN');
    const eur = await init('EUR', cen.site);
    expect(eur.init).toMatchObject({ code: 'EUR', parent: 'CEN', central: 'CEN' });
    const ber = await init('BER', eur.site);
    expect(ber.init).toMatchObject({ code: 'BER', parent: 'EUR', central: 'CEN' });

    // A used token, a code taken elsewhere in the tree, a token from nowhere: one clear line each.
    const token = JSON.parse((await cascade(['site', 'join-token', '--json'], { env: cen.site.env })).stdout).token;
    const port = await freePort();
    const attempt = (code: string, t: string, dir: string) =>
      cascade([
        'site',
        'init',
        '--data',
        path.join(root, dir),
        '--code',
        code,
        '--listen',
        `127.0.0.1:${port}`,
        '--parent',
        cen.site.url,
        '--join-token',
        t,
      ]);
    let r = await attempt('BER', token, 'dup');
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      `cascade: cannot join ${cen.site.url}: site code BER is already taken in this hierarchy; choose another --code\n`,
    );
    // The failed join gave the token back: it still works for a free code...
    r = await attempt('LON', token, 'lon');
    expect(r.code).toBe(0);
    // ...once.
    r = await attempt('PAR', token, 'par');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('the join token was already used');
    r = await attempt('MAD', 'casj_site_bogus', 'mad');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('the join token is not valid at site CEN');

    // --data DIR names a site and its admin token: it wins over CASCADE_SITE and CASCADE_TOKEN
    // (here the central site's), and the text output says which site answered.
    const eurDir = path.join(root, 'EUR');
    const viaData = await cascade(['dp', 'join-token', '--data', eurDir, '--json'], { env: cen.site.env });
    expect(viaData.stderr).toBe('');
    expect(JSON.parse(viaData.stdout).site).toBe('EUR');
    const tokenText = await cascade(['site', 'join-token', '--data', eurDir], { env: cen.site.env });
    expect(tokenText.stdout).toMatch(/^casj_site_\S+\n$/);
    expect(tokenText.stderr).toMatch(/^join token for a child site of site EUR, valid until \d{4}-/);
    // CASCADE_DATA is an environment variable like the others: CASCADE_SITE and CASCADE_TOKEN win.
    const envData = await cascade(['dp', 'join-token', '--json'], { env: { ...cen.site.env, CASCADE_DATA: eurDir } });
    expect(JSON.parse(envData.stdout).site).toBe('CEN');

    // The central site sees the whole tree; the region sees itself, its parent and below.
    const list = async (s: SiteProcess) =>
      JSON.parse((await cascade(['site', 'list', '--json'], { env: s.env })).stdout) as { central: string; sites: Entry[] };
    const atCen = await list(cen.site);
    expect(atCen.central).toBe('CEN');
    expect(atCen.sites.map((s) => [s.code, s.parent, s.relation]).sort()).toEqual([
      ['BER', 'EUR', 'descendant'],
      ['CEN', null, 'self'],
      ['EUR', 'CEN', 'child'],
      ['LON', 'CEN', 'child'],
    ]);
    const atEur = await list(eur.site);
    expect(atEur.central).toBe('CEN');
    expect(atEur.sites.map((s) => [s.code, s.relation]).sort()).toEqual([
      ['BER', 'child'],
      ['CEN', 'parent'],
      ['EUR', 'self'],
    ]);
    // Health checks run every second here: EUR answers, LON never started.
    for (let i = 0; i < 50; i++) {
      const s = (await list(cen.site)).sites;
      if (s.find((x) => x.code === 'EUR')?.reachable && s.find((x) => x.code === 'LON')?.reachable === false) break;
      await new Promise((res) => setTimeout(res, 200));
    }
    const final = (await list(cen.site)).sites;
    expect(final.find((x) => x.code === 'EUR')?.reachable).toBe(true);
    expect(final.find((x) => x.code === 'LON')?.reachable).toBe(false);
    // Routes lead from a parent to its children, and hold rate, concurrency and schedule.
    let route = await cascade(
      [
        'route',
        'set',
        'eur',
        '--rate',
        '2MiB/s',
        '--concurrency',
        '3',
        '--schedule',
        'mon-fri 08-18 high; sat-sun all',
        '--time-zone',
        'Europe/Berlin',
        '--json',
      ],
      { env: cen.site.env },
    );
    expect(route.stderr).toBe('');
    expect(JSON.parse(route.stdout)).toMatchObject({
      child: 'EUR',
      rate: 2 * 1024 * 1024,
      concurrency: 3,
      schedule: { timeZone: 'Europe/Berlin', spec: 'mon-fri 08-18 high' },
    });
    route = await cascade(['route', 'set', 'EUR', '--concurrency', '4', '--json'], { env: cen.site.env });
    expect(JSON.parse(route.stdout)).toMatchObject({ rate: 2 * 1024 * 1024, concurrency: 4, schedule: { timeZone: 'Europe/Berlin' } });
    route = await cascade(['route', 'set', 'BER', '--rate', '1MiB/s'], { env: cen.site.env });
    expect(route.code).toBe(1);
    expect(route.stderr).toContain('BER is not a child site or DP of CEN');
    route = await cascade(['route', 'set', 'EUR', '--schedule', 'mon-fry 08-18 high'], { env: cen.site.env });
    expect(route.code).toBe(2);
    expect(route.stderr).toContain('unknown day "fry"');
    route = await cascade(['route', 'show', 'EUR'], { env: cen.site.env });
    expect(route.stdout).toContain('route to EUR: rate 2 MiB/s, 4 package(s) in flight');
    expect(route.stdout).toMatch(/mon {2}A{8}H{10}A{6}/);
    const routes = JSON.parse((await cascade(['route', 'list', '--json'], { env: cen.site.env })).stdout);
    expect(routes.routes.map((r: { child: string }) => r.child)).toEqual(['EUR', 'LON']);

    const sender = await cascade(['sender', 'set', '--concurrency', '6', '--json'], { env: cen.site.env });
    expect(JSON.parse(sender.stdout)).toEqual({ concurrency: 6 });
    expect((await cascade(['sender', 'show'], { env: cen.site.env })).stdout).toBe('sender: 6 package(s) in flight across all routes\n');
    expect((await cascade(['sender', 'set', '--concurrency', '0'], { env: cen.site.env })).code).toBe(2);

    const text = await cascade(['site', 'list'], { env: cen.site.env });
    expect(text.stdout).toMatch(/^CEN .*this site/m);
    expect(text.stdout).toMatch(/^ {2}EUR .*yes/m);
    // Sites further down: contact as their own parent saw it, reported up.
    expect(text.stdout).toMatch(/^ {4}BER .*(yes|via child)/m);

    // A site whose pinned central key was altered in its store refuses to start, saying why.
    const berSite = running.find((x) => x.dataDir === path.join(root, 'BER')) as SiteProcess;
    expect(await berSite.stop()).toBe(0);
    const forged = crypto.generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const db = new Database(path.join(root, 'BER', 'cascade.db'));
    db.prepare("UPDATE meta SET value = ? WHERE key = 'central.publicKey'").run(forged);
    db.close();
    const refused = await cascade(['site', 'start', '--data', path.join(root, 'BER')]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(
      /^cascade: the central key pinned in the store \(CEN:[0-9a-f]{16}\) does not vouch for site BER: the signature by key CEN:[0-9a-f]{16} does not match the signed content; the store was altered or belongs elsewhere, so the site does not start/,
    );
  });
});
