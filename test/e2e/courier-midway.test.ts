import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cascade, freePort, type SiteProcess, startSite, tmpDir, until } from './helpers.js';

/**
 * A parcel imported while a network transfer of the same version runs: the transfer learns
 * what the parcel brought and does not send those chunks again.
 */
describe('a courier parcel during a network transfer', () => {
  const root = tmpDir('cascade-midway-');
  const running: SiteProcess[] = [];
  afterAll(async () => {
    for (const s of running.reverse()) await s.stop().catch(() => undefined);
  });

  it('sends only what the parcel did not bring', async () => {
    const env = { CASCADE_REPORT_SECONDS: '0.5' };
    const init = async (code: string, parent?: SiteProcess) => {
      const args = ['site', 'init', '--data', path.join(root, code), '--code', code, '--listen', `127.0.0.1:${await freePort()}`];
      if (parent)
        args.push('--parent', parent.url, '--join-token', (await cascade(['site', 'join-token'], { env: parent.env })).stdout.trim());
      expect((await cascade(args)).code).toBe(0);
      const s = await startSite(path.join(root, code), [], { listen: null, env });
      running.push(s);
      return s;
    };
    const cen = await init('CEN');
    const eur = await init('EUR', cen);
    const src = path.join(root, 'src');
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, 'big.bin'), crypto.randomBytes(16 << 20));
    const pkg = JSON.parse((await cascade(['package', 'create', src, '--name', 'Big', '--json'], { env: cen.env })).stdout) as {
      id: string;
      bytes: number;
    };
    // 16 MiB at 1 MiB/s: about 16 s on the network alone.
    expect((await cascade(['route', 'set', 'EUR', '--rate', '1MiB/s'], { env: cen.env })).code).toBe(0);
    expect((await cascade(['distribute', pkg.id, '--to', 'site:EUR'], { env: cen.env })).code).toBe(0);
    const transfers = async () =>
      (
        (await (await fetch(`${cen.url}/api/v1/transfers`, { headers: { authorization: `Bearer ${cen.token}` } })).json()) as {
          transfers: { child: string; state: string; wireBytes: number }[];
        }
      ).transfers.filter((t) => t.child === 'EUR');
    await until('the transfer is under way', async () => (await transfers()).some((x) => x.wireBytes > 0));
    // Meanwhile a parcel of what EUR lacks is carried and imported there.
    const file = path.join(root, 'eur.parcel');
    expect((await cascade(['courier', 'export', pkg.id, '--to-site', 'EUR', '-o', file], { env: cen.env })).code).toBe(0);
    const imp = await cascade(['courier', 'import', file], { env: eur.env });
    expect(imp.stderr).toBe('');
    await until('the network transfer is done', async () => (await transfers()).every((x) => x.state === 'done'), 60_000);
    // Far less than the package crossed the route; at most the batch on the wire when the
    // parcel came brought chunks EUR held by then.
    const wire = (await transfers()).reduce((n, t) => n + t.wireBytes, 0);
    expect(wire).toBeLessThan(pkg.bytes * 0.75);
    expect(
      eur
        .logs()
        .split('\n')
        .filter((l) => l.includes('chunks received that this site already held')).length,
    ).toBeLessThanOrEqual(1);
    expect(cen.logs()).toContain('EUR got chunks another way meanwhile: not sent');
  }, 120_000);
});
