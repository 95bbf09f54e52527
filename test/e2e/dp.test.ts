import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cascade, freePort, makeSource, type SiteProcess, startSite, tmpDir, until } from './helpers.js';

interface Target {
  dp: string;
  site: string;
  state: string;
  version: number;
  detail: string | null;
}
interface Status {
  summary: Record<string, number>;
  sites: { site: string; summary: Record<string, number> }[];
  groups: { group: string; summary: Record<string, number> }[];
  targets: Target[];
}
interface Plan {
  dryRun: boolean;
  bytes: number;
  uniqueBytes: number;
  routes: { from: string; to: string; bytes: number; rate: number | null; etaSeconds: number | null }[];
  targets: { dp: string; site: string; path: string[]; state: string; bytes: number; etaSeconds: number | null }[];
}

const FAST = { CASCADE_PING_SECONDS: '1', CASCADE_REPORT_SECONDS: '1' };

/** A central site with a DP, a child site with two DPs: real processes on loopback. */
describe('distribution points', () => {
  const root = tmpDir('cascade-dp-');
  const procs: Record<string, SiteProcess> = {};
  const dirs: Record<string, string> = {};
  const env = () => (procs.CEN as SiteProcess).env;

  const initSite = async (code: string, parent?: string) => {
    const port = await freePort();
    dirs[code] = path.join(root, code);
    const args = ['site', 'init', '--data', dirs[code] as string, '--code', code, '--listen', `127.0.0.1:${port}`];
    if (parent) {
      const t = JSON.parse((await cascade(['site', 'join-token', '--json'], { env: (procs[parent] as SiteProcess).env })).stdout).token;
      args.push('--parent', (procs[parent] as SiteProcess).url, '--join-token', t);
    }
    expect((await cascade(args)).stderr).toBe('');
    procs[code] = await startSite(dirs[code] as string, [], { listen: null, env: FAST });
  };
  const initDp = async (name: string, site: string) => {
    const t = JSON.parse((await cascade(['dp', 'join-token', '--json'], { env: (procs[site] as SiteProcess).env })).stdout).token;
    dirs[name] = path.join(root, name);
    const r = await cascade([
      'dp',
      'init',
      '--data',
      dirs[name] as string,
      '--site',
      (procs[site] as SiteProcess).url,
      '--join-token',
      t,
      '--name',
      name,
      '--json',
    ]);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toMatchObject({ name, site });
    procs[name] = await startSite(dirs[name] as string, [], { role: 'dp', env: FAST });
  };
  const status = async (id: string): Promise<Status> => JSON.parse((await cascade(['status', id, '--json'], { env: env() })).stdout);
  const stateOf = async (id: string, dp: string) => (await status(id)).targets.find((t) => t.dp === dp)?.state;

  let pkg = '';
  beforeAll(async () => {
    await initSite('CEN');
    await initSite('EUR', 'CEN');
    await initDp('cen-dp1', 'CEN');
    await initDp('eur-dp1', 'EUR');
    await initDp('eur-dp2', 'EUR');
    const src = path.join(root, 'src');
    makeSource(src, 7);
    const r = await cascade(['package', 'create', src, '--name', 'Tools', '--json'], { env: env() });
    expect(r.stderr).toBe('');
    pkg = JSON.parse(r.stdout).id;
  }, 120_000);
  afterAll(async () => {
    for (const p of Object.values(procs)) await p.stop();
  });

  it('lists every DP of every site below, with state; names are unique in the hierarchy', async () => {
    await until('every DP online at the central site', async () => {
      const r = JSON.parse((await cascade(['dp', 'list', '--json'], { env: env() })).stdout) as {
        dps: { name: string; state: string; site: string; kind: string; freeBytes: number | null }[];
      };
      const names = r.dps.map((d) => `${d.name}@${d.site}:${d.kind}`).sort();
      return (
        JSON.stringify(names) ===
          JSON.stringify(['CEN@CEN:local', 'EUR@EUR:local', 'cen-dp1@CEN:remote', 'eur-dp1@EUR:remote', 'eur-dp2@EUR:remote']) &&
        r.dps.every((d) => d.state === 'online' && d.freeBytes !== null)
      );
    });
    const text = (await cascade(['dp', 'list'], { env: env() })).stdout;
    expect(text).toMatch(/eur-dp2\s+EUR\s+remote\s+online/);
    // The same name again, even at another site: refused by the central site.
    const t = JSON.parse((await cascade(['dp', 'join-token', '--json'], { env: env() })).stdout).token;
    const dup = await cascade([
      'dp',
      'init',
      '--data',
      path.join(root, 'dup'),
      '--site',
      (procs.CEN as SiteProcess).url,
      '--join-token',
      t,
      '--name',
      'eur-dp1',
    ]);
    expect(dup.code).toBe(1);
    expect(dup.stderr).toMatch(/DP name eur-dp1 is already taken/);
    expect(fs.existsSync(path.join(root, 'dup'))).toBe(false);
  });

  it('previews a distribution without changing anything: routes, bytes, ETA', async () => {
    await cascade(['route', 'set', 'EUR', '--rate', '1MB/s'], { env: env() });
    // A DP of this site has a route of its own.
    const dpRoute = await cascade(['route', 'set', 'cen-dp1', '--rate', '100MB/s', '--json'], { env: env() });
    expect(dpRoute.stderr).toBe('');
    const r = await cascade(['distribute', pkg, '--to', 'dp:eur-dp1', '--to', 'dp:cen-dp1', '--dry-run', '--json'], { env: env() });
    expect(r.stderr).toBe('');
    const plan = JSON.parse(r.stdout) as Plan;
    expect(plan.dryRun).toBe(true);
    const route = (from: string, to: string) => plan.routes.find((x) => x.from === from && x.to === to);
    expect(route('CEN', 'EUR')?.bytes).toBe(plan.uniqueBytes);
    expect(route('CEN', 'EUR')?.rate).toBe(1_000_000);
    expect(route('CEN', 'EUR')?.etaSeconds).toBe(Math.ceil(plan.uniqueBytes / 1_000_000));
    expect(route('EUR', 'eur-dp1')?.bytes).toBe(plan.uniqueBytes);
    expect(route('CEN', 'cen-dp1')?.bytes).toBe(plan.uniqueBytes);
    const eur = plan.targets.find((t) => t.dp === 'eur-dp1');
    expect(eur?.path).toEqual(['CEN', 'EUR', 'eur-dp1']);
    expect(eur?.site).toBe('EUR');
    expect(route('CEN', 'cen-dp1')?.rate).toBe(100_000_000);
    expect(eur?.etaSeconds).toBe(Math.ceil(plan.uniqueBytes / 1_000_000));
    expect((await status(pkg)).targets).toEqual([]);
    const text = (await cascade(['distribute', pkg, '--to', 'dp:eur-dp1', '--dry-run'], { env: env() })).stdout;
    expect(text).toMatch(/dry run, nothing was started/);
    expect(text).toMatch(/CEN > EUR > eur-dp1/);
    await cascade(['route', 'set', 'EUR', '--rate', 'unlimited'], { env: env() });
    await cascade(['route', 'set', 'cen-dp1', '--rate', 'unlimited'], { env: env() });
  });

  it('distributes to a DP group, then expands to a whole site: only the new targets get content', async () => {
    const g = await cascade(['dp-group', 'create', 'pilot', '--dp', 'cen-dp1', '--dp', 'eur-dp1', '--json'], { env: env() });
    expect(JSON.parse(g.stdout)).toMatchObject({ name: 'pilot', members: ['cen-dp1', 'eur-dp1'] });
    const r = await cascade(['distribute', pkg, '--to', 'group:pilot', '--json'], { env: env() });
    expect(r.stderr).toBe('');
    await until(
      'the pilot DPs installed',
      async () => (await stateOf(pkg, 'cen-dp1')) === 'installed' && (await stateOf(pkg, 'eur-dp1')) === 'installed',
    );
    // The content is on the DP's disk, in the static layout.
    expect(fs.existsSync(path.join(dirs['eur-dp1'] as string, 'content', 'manifests', pkg, '1.json'))).toBe(true);
    expect(fs.existsSync(path.join(dirs['eur-dp2'] as string, 'content', 'manifests', pkg, '1.json'))).toBe(false);
    // A client downloads it from the DP over HTTP, every byte verified against the signed manifest.
    const dest = path.join(root, 'from-dp');
    const f = await cascade(['package', 'fetch', pkg, dest, '--version', '1', '--from', (procs['eur-dp1'] as SiteProcess).url], {
      env: env(),
    });
    expect(f.stderr).toBe('');
    expect(fs.readFileSync(path.join(dest, 'sub', 'data.bin')).equals(fs.readFileSync(path.join(root, 'src', 'sub', 'data.bin')))).toBe(
      true,
    );

    const plan = JSON.parse((await cascade(['distribute', pkg, '--to', 'site:EUR', '--dry-run', '--json'], { env: env() })).stdout) as Plan;
    // EUR holds it already (it relayed to eur-dp1): nothing crosses CEN -> EUR again.
    expect(plan.routes.find((x) => x.to === 'EUR')?.bytes).toBe(0);
    expect(plan.routes.find((x) => x.to === 'eur-dp2')?.bytes).toBe(plan.uniqueBytes);
    expect(plan.routes.find((x) => x.to === 'eur-dp1')?.bytes).toBe(0);
    await cascade(['distribute', pkg, '--to', 'site:EUR'], { env: env() });
    await until('all of EUR installed', async () => {
      const s = await status(pkg);
      return ['EUR', 'eur-dp1', 'eur-dp2'].every((d) => s.targets.find((t) => t.dp === d)?.state === 'installed');
    });
    const s = await status(pkg);
    expect(s.summary).toMatchObject({ targeted: 4, installed: 4 });
    expect(s.sites.find((x) => x.site === 'EUR')?.summary).toMatchObject({ targeted: 3, installed: 3 });
    expect(s.groups.find((x) => x.group === 'pilot')?.summary).toMatchObject({ targeted: 2, installed: 2 });
    const text = (await cascade(['status', pkg], { env: env() })).stdout;
    expect(text).toMatch(/group:pilot\s+2\s+2/);
    // What each DP holds goes up to the central site.
    await until('dp list shows the package held', async () => {
      const r = JSON.parse((await cascade(['dp', 'list', '--json'], { env: env() })).stdout) as {
        dps: { name: string; packages: { packageId: string }[] }[];
      };
      return r.dps.find((d) => d.name === 'eur-dp2')?.packages.some((p) => p.packageId === pkg) ?? false;
    });
  });

  it('validates every DP, names the damaged file and chunk, and repairs only what is damaged', async () => {
    const ok = await cascade(['validate', pkg, '--json'], { env: env() });
    expect(ok.stderr).toBe('');
    const clean = JSON.parse(ok.stdout) as { results: { dp: string; ok: boolean; checkedFiles: number; problems: unknown[] }[] };
    expect(clean.results.map((r) => r.dp).sort()).toEqual(['CEN', 'EUR', 'cen-dp1', 'eur-dp1', 'eur-dp2']);
    expect(clean.results.every((r) => r.ok && r.checkedFiles > 0)).toBe(true);
    // Damage one stored chunk on eur-dp2 (a flipped byte) and delete another.
    const chunksDir = path.join(dirs['eur-dp2'] as string, 'content', 'chunks');
    const files = fs
      .readdirSync(chunksDir)
      .flatMap((d) => fs.readdirSync(path.join(chunksDir, d)).map((f) => path.join(chunksDir, d, f)))
      .sort((a, b) => fs.statSync(b).size - fs.statSync(a).size);
    const [big, other] = files as [string, string];
    const bytes = fs.readFileSync(big);
    bytes[bytes.length >> 1] = (bytes[bytes.length >> 1] as number) ^ 0xff;
    fs.writeFileSync(big, bytes);
    fs.rmSync(other);
    const bad = await cascade(['validate', pkg, '--dp', 'eur-dp2', '--json'], { env: env() });
    expect(bad.code).toBe(1);
    const r = (
      JSON.parse(bad.stdout) as { results: { dp: string; ok: boolean; problems: { path: string; chunk: string; kind: string }[] }[] }
    ).results;
    expect(r).toHaveLength(1);
    expect(r[0]?.ok).toBe(false);
    const kinds = new Map(r[0]?.problems.map((p) => [p.chunk, p.kind]));
    expect(kinds.get(path.basename(big))).toBe('damaged');
    expect(kinds.get(path.basename(other))).toBe('missing');
    expect(r[0]?.problems.every((p) => p.path.length > 0)).toBe(true);
    const text = (await cascade(['validate', pkg, '--dp', 'eur-dp2'], { env: env() })).stdout;
    expect(text, text).toMatch(/eur-dp2\s+EUR\s+INVALID/);
    // The damage is reported up as a status message naming package, DP, file and chunk.
    await until('the validation message at the central site', async () => {
      const m = JSON.parse((await cascade(['messages', '--package', pkg, '--json'], { env: env() })).stdout) as {
        messages: { code: string; text: string }[];
      };
      return m.messages.some((x) => x.code === 'content_damaged' && x.text.includes('eur-dp2') && x.text.includes(path.basename(big)));
    });
    // Messages filtered by a DP's name (the SITE column shows it), severities in any case or short.
    const fromDp = await cascade(['messages', '--site', 'eur-dp2', '--json'], { env: env() });
    expect(fromDp.stderr).toBe('');
    const dm = (JSON.parse(fromDp.stdout) as { messages: { site: string }[] }).messages;
    expect(dm.length).toBeGreaterThan(0);
    expect(dm.every((x) => x.site === 'eur-dp2')).toBe(true);
    const warn = await cascade(['messages', '--site', 'EUR', '--severity', 'WARN', '--json'], { env: env() });
    expect(warn.stderr).toBe('');
    const wm = (JSON.parse(warn.stdout) as { messages: { site: string; severity: string }[] }).messages;
    expect(wm.length).toBeGreaterThan(0);
    expect(wm.every((x) => x.site === 'EUR' && x.severity !== 'info')).toBe(true);
    const loud = await cascade(['messages', '--severity', 'loud'], { env: env() });
    expect([loud.code, loud.stderr]).toEqual([2, 'cascade: --severity must be info, warning or error (or i, warn, err), not "loud"\n']);
    const fixed = await cascade(['repair', pkg, '--dp', 'eur-dp2', '--json'], { env: env() });
    expect(fixed.stderr).toBe('');
    const rep = (JSON.parse(fixed.stdout) as { results: { repaired: { chunks: number; ok: boolean } }[] }).results[0];
    expect(rep?.repaired).toEqual({ chunks: 2, ok: true });
    const again = await cascade(['validate', pkg, '--dp', 'eur-dp2', '--json'], { env: env() });
    expect(again.code).toBe(0);
    // The story in order (newest first): the repair after the damage it repaired.
    await until('the repair is reported up', async () =>
      (await cascade(['messages', '--package', pkg, '--json'], { env: env() })).stdout.includes('package_repaired'),
    );
    const story = (
      JSON.parse((await cascade(['messages', '--package', pkg, '--json'], { env: env() })).stdout) as { messages: { code: string }[] }
    ).messages.map((m) => m.code);
    expect(story.indexOf('package_repaired')).toBeLessThan(story.indexOf('content_damaged'));
  });

  it('removes a version from a DP; removal states show in status', async () => {
    const r = await cascade(['undistribute', pkg, '--from', 'dp:eur-dp1', '--json'], { env: env() });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout).targets[0]).toMatchObject({ dp: 'eur-dp1', site: 'EUR', state: 'removing' });
    await until('eur-dp1 removed', async () => (await stateOf(pkg, 'eur-dp1')) === 'removed');
    expect(fs.existsSync(path.join(dirs['eur-dp1'] as string, 'content', 'manifests', pkg, '1.json'))).toBe(false);
    const s = await status(pkg);
    expect(s.summary).toMatchObject({ targeted: 3, removed: 1 });
    const again = await cascade(['undistribute', pkg, '--from', 'dp:eur-dp1'], { env: env() });
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/is not distributed to dp:eur-dp1/);
  });

  it('refuses unknown targets and groups with one clear line', async () => {
    const bad = await cascade(['distribute', pkg, '--to', 'dp:nowhere'], { env: env() });
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/DP nowhere is not at or below site CEN/);
    const g = await cascade(['distribute', pkg, '--to', 'group:none'], { env: env() });
    expect(g.stderr).toMatch(/DP group none does not exist/);
    const u = await cascade(['distribute', pkg, '--to', 'EUR'], { env: env() });
    expect(u.code).toBe(2);
    expect(u.stderr).toMatch(/not site:CODE, dp:NAME or group:NAME/);
  });

  it('refuses to delete a version still on DPs, naming them and the undistribute command', async () => {
    const del = await cascade(['package', 'delete', pkg], { env: env() });
    expect(del.code).toBe(1);
    expect(del.stderr).toMatch(
      new RegExp(
        `^cascade: ${pkg} version 1 is still distributed to .*cen-dp1.*: remove it from them first \\(cascade undistribute ${pkg} --version 1 --from dp:`,
      ),
    );
    expect(del.stderr.trim().split('\n')).toHaveLength(1);
    // Nothing was deleted.
    const list = JSON.parse((await cascade(['package', 'list', '--json'], { env: env() })).stdout) as { packages: { id: string }[] };
    expect(list.packages.map((p) => p.id)).toContain(pkg);
  });
});
