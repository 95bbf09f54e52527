import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cascade, freePort, type SiteProcess, startSite, tmpDir, until } from './helpers.js';

/**
 * Taking a DP and a site out of the hierarchy: their targets and credentials go, and their
 * names are freed up to the central site, so they can join again.
 */
describe('dp remove and site remove', () => {
  const root = tmpDir('cascade-remove-');
  const running: SiteProcess[] = [];
  afterAll(async () => {
    for (const s of running.reverse()) await s.stop().catch(() => undefined);
  });
  const env = { CASCADE_REPORT_SECONDS: '0.5', CASCADE_DP_STATE_SECONDS: '1', CASCADE_PING_SECONDS: '1' };

  const site = async (code: string, parent?: SiteProcess, dir = code) => {
    const args = ['site', 'init', '--data', path.join(root, dir), '--code', code, '--listen', `127.0.0.1:${await freePort()}`];
    if (parent)
      args.push('--parent', parent.url, '--join-token', (await cascade(['site', 'join-token'], { env: parent.env })).stdout.trim());
    const r = await cascade(args);
    expect(r.stderr).toBe('');
    const s = await startSite(path.join(root, dir), [], { listen: null, env });
    running.push(s);
    return s;
  };
  const dp = async (name: string, at: SiteProcess, dir = name) => {
    const listen = `127.0.0.1:${await freePort()}`;
    const token = (await cascade(['dp', 'join-token'], { env: at.env })).stdout.trim();
    const r = await cascade([
      'dp',
      'init',
      '--data',
      path.join(root, dir),
      '--site',
      at.url,
      '--join-token',
      token,
      '--name',
      name,
      '--listen',
      listen,
    ]);
    return {
      r,
      start: async () => {
        const s = await startSite(path.join(root, dir), [], { role: 'dp', listen, env });
        running.push(s);
        return s;
      },
    };
  };
  const codes = async (at: SiteProcess, what: 'site' | 'dp') =>
    (
      JSON.parse((await cascade([what, 'list', '--json'], { env: at.env })).stdout)[what === 'site' ? 'sites' : 'dps'] as {
        code?: string;
        name?: string;
      }[]
    ).map((x) => x.code ?? x.name);

  it('removes a DP and a site below a child; the names can join again', async () => {
    const cen = await site('CEN');
    const eur = await site('EUR', cen);
    const ber = await site('BER', eur);
    const d = await dp('cen-dp1', cen);
    expect(d.r.code).toBe(0);
    const cenDp = await d.start();
    // A package on the DP: a target to drop.
    const src = path.join(root, 'src');
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, 'a.txt'), 'hello\n'.repeat(1000));
    const pkg = JSON.parse((await cascade(['package', 'create', src, '--name', 'A', '--json'], { env: cen.env })).stdout).id as string;
    expect((await cascade(['distribute', pkg, '--to', 'dp:cen-dp1', '--to', 'dp:BER'], { env: cen.env })).code).toBe(0);
    await until('BER shows at CEN', async () => (await codes(cen, 'site')).includes('BER'));

    // Not a DP of this site, and a site further down: one line saying where to do it.
    const nope = await cascade(['dp', 'remove', 'no-such-dp'], { env: cen.env });
    expect(nope.stderr).toBe('cascade: no-such-dp is not a DP of site CEN (see "cascade dp list")\n');
    const far = await cascade(['site', 'remove', 'BER'], { env: cen.env });
    expect(far.stderr).toBe('cascade: BER is not a child site of CEN: remove it at its own site, EUR (see "cascade site list")\n');

    const r = await cascade(['dp', 'remove', 'cen-dp1', '--json'], { env: cen.env });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toMatchObject({ removed: ['cen-dp1'], targets: 1 });
    expect(await codes(cen, 'dp')).not.toContain('cen-dp1');
    const status = JSON.parse((await cascade(['status', pkg, '--json'], { env: cen.env })).stdout) as { targets: { dp: string }[] };
    expect(status.targets.map((t) => t.dp)).not.toContain('cen-dp1');
    // The removed DP's credential is refused: its reports fail.
    await until('the removed DP is refused', async () =>
      cenDp
        .logs()
        .split('\n')
        .some((l) => l.includes('status report to the parent failed') && /not valid|unauthorized|401/.test(l)),
    );
    await cenDp.stop();
    // Its name is free: a new DP joins as cen-dp1.
    const again = await dp('cen-dp1', cen, 'cen-dp1-again');
    expect(again.r.stderr).toBe('');
    expect(again.r.code).toBe(0);

    // BER removed at EUR: gone there, then at CEN once EUR reports; the code joins again under CEN.
    const rb = await cascade(['site', 'remove', 'BER'], { env: eur.env });
    expect(rb.stdout).toMatch(/^site BER removed: 1 target\(s\) and \d+ open transfer\(s\) dropped, its credential revoked$/m);
    expect(await codes(eur, 'site')).not.toContain('BER');
    await until('CEN forgets BER', async () => !(await codes(cen, 'site')).includes('BER'));
    await ber.stop();
    const ber2 = await site('BER', cen, 'BER-again');
    expect(await codes(cen, 'site')).toContain('BER');
    void ber2;
  }, 180_000);
});
