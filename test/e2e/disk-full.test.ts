import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cascade, freePort, newSite, type SiteProcess, startSite, tmpDir, until } from './helpers.js';

/** Mounts a small tmpfs (root only); null where this machine does not allow it. */
function smallDisk(dir: string, size: string): boolean {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * A DP whose disk is too small for a version: `distribute --dry-run` warns before anything
 * moves, and the distribution then names the full disk (whose, and where), not "internal error".
 */
describe('a DP with a full disk', () => {
  const running: SiteProcess[] = [];
  const mounted: string[] = [];
  afterAll(async () => {
    for (const s of running) await s.stop();
    for (const m of mounted) execFileSync('umount', ['-l', m], { stdio: 'ignore' });
  });

  it('is warned of in the plan, and named when it fills up', async (t) => {
    const small = tmpDir('cascade-small-disk-');
    if (!smallDisk(small, '3m')) return t.skip();
    mounted.push(small);
    const site = await newSite('CEN');
    running.push(site);
    const env = site.env;
    const token = JSON.parse((await cascade(['dp', 'join-token', '--json'], { env })).stdout).token;
    const dpDir = path.join(small, 'dp');
    const init = await cascade([
      'dp',
      'init',
      '--data',
      dpDir,
      '--site',
      site.url,
      '--join-token',
      token,
      '--name',
      'small-dp',
      '--listen',
      `127.0.0.1:${await freePort()}`,
    ]);
    expect(init.stderr).toBe('');
    running.push(await startSite(dpDir, [], { role: 'dp', listen: null, env: { CASCADE_REPORT_SECONDS: '0.5' } }));
    // 6 MiB that do not compress, on a 3 MiB disk.
    const src = path.join(tmpDir(), 'src');
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, 'big.bin'), crypto.randomBytes(6 << 20));
    const pkg = JSON.parse((await cascade(['package', 'create', src, '--name', 'Big', '--json'], { env })).stdout).id;
    await until('the DP has reported its free space', async () => {
      const r = JSON.parse((await cascade(['dp', 'list', '--json'], { env })).stdout) as {
        dps: { name: string; freeBytes: number | null }[];
      };
      return (r.dps.find((d) => d.name === 'small-dp')?.freeBytes ?? null) !== null;
    });

    const dry = await cascade(['distribute', pkg, '--to', 'dp:small-dp', '--dry-run'], { env });
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(
      /^warning: small-dp reported [\d.]+ MiB free, less than the 6\.0 MiB it would receive: free space there \(cascade gc\) or it will fail with disk_full$/m,
    );

    expect((await cascade(['distribute', pkg, '--to', 'dp:small-dp'], { env })).code).toBe(0);
    let seen = '';
    await until(
      'the transfer names the full disk',
      async () => {
        const q = JSON.parse((await cascade(['queue', '--json'], { env })).stdout) as {
          routes: { transfers: { lastError: string | null }[] }[];
        };
        seen = q.routes.flatMap((r) => r.transfers.map((x) => x.lastError ?? '')).join(' | ');
        return /no space left on its disk/.test(seen);
      },
      60_000,
    );
    expect(seen).toMatch(/DP small-dp: no space left on its disk \((ENOSPC|SQLITE_FULL)/);
    expect(seen).not.toContain('internal error');
  }, 120_000);
});
