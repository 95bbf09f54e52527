import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cascade, freePort, makeSource, type SiteProcess, startSite, tmpDir, until } from './helpers.js';

type Mode = 'pass' | 'replay' | 'forge';

/**
 * A relay on the link from a child to its parent that can rewrite the parent's status answers:
 * pass them, replay the first signed words it saw (a freeze), or alter them (a forgery).
 */
async function relay(target: string): Promise<{ url: string; server: http.Server; mode: (m: Mode) => void }> {
  let mode: Mode = 'pass';
  let first: unknown;
  const server = http.createServer((req, res) => {
    const headers = { ...req.headers };
    delete headers['accept-encoding'];
    const up = http.request(`${target}${req.url}`, { method: req.method, headers }, (r) => {
      if (req.url !== '/api/v1/status' || r.statusCode !== 200) {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
        return;
      }
      const parts: Buffer[] = [];
      r.on('data', (d) => parts.push(d));
      r.on('end', () => {
        const a = JSON.parse(Buffer.concat(parts).toString('utf8'));
        first ??= a.freshness;
        if (mode === 'replay') a.freshness = first;
        if (mode === 'forge' && a.freshness)
          for (const s of a.freshness.statements) {
            // Fresh-looking, and saying nothing newer was published.
            s.freshness.at = new Date().toISOString();
            s.freshness.latest = s.freshness.latest.map(([id]: [string, number]) => [id, 1]);
          }
        const body = JSON.stringify(a);
        const h = { ...r.headers, 'content-length': String(Buffer.byteLength(body)) };
        delete h['transfer-encoding'];
        res.writeHead(200, h);
        res.end(body);
      });
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${port}`, server, mode: (m) => (mode = m) };
}

interface Tree {
  freshness?: {
    site: string;
    signedAt: string;
    ageSeconds: number;
    stale: boolean;
    behind: { packageId: string; held: number; latest: number }[];
  }[];
}

/**
 * Freeze protection: every site signs its word on what it published with each status answer,
 * and a child keeps the newest word of each site above. A relay that replays old words (to hide
 * newer versions) makes them age until the child says they are stale; forged words are refused;
 * a version published at the origin but not here shows as behind.
 */
describe('a relay that withholds newer versions', () => {
  const root = tmpDir('cascade-freeze-');
  const running: SiteProcess[] = [];
  const servers: http.Server[] = [];
  afterAll(async () => {
    for (const s of servers) s.close();
    for (const s of running) await s.stop();
  });
  const env = { CASCADE_REPORT_SECONDS: '0.5', CASCADE_PING_SECONDS: '1' };

  it('cannot hide it: its words go stale, forged ones are refused, and the lag is shown', async () => {
    const start = async (code: string, parent?: { url: string; env: Record<string, string> }, via?: string) => {
      const dir = path.join(root, code);
      const args = ['site', 'init', '--data', dir, '--code', code, '--listen', `127.0.0.1:${await freePort()}`];
      if (parent)
        args.push(
          '--parent',
          via ?? parent.url,
          '--join-token',
          (await cascade(['site', 'join-token'], { env: parent.env })).stdout.trim(),
        );
      const r = await cascade(args);
      expect(r.stderr).toBe('');
      const s = await startSite(dir, [], { listen: null, env });
      running.push(s);
      return s;
    };
    const cen = await start('CEN');
    const eur = await start('EUR', cen);
    const link = await relay(eur.url);
    servers.push(link.server);
    const ber = await start('BER', eur, link.url);
    expect((await cascade(['site', 'set', '--stale-after', '10s'], { env: ber.env })).code).toBe(0);

    const src = path.join(root, 'src');
    makeSource(src, 1, 200_000);
    const pkg = JSON.parse((await cascade(['package', 'create', src, '--name', 'Fix', '--json'], { env: cen.env })).stdout).id as string;
    expect((await cascade(['distribute', pkg, '--to', 'site:BER'], { env: cen.env })).code).toBe(0);
    const tree = async () => JSON.parse((await cascade(['site', 'list', '--json'], { env: ber.env })).stdout) as Tree;
    await until(
      'BER holds version 1 and has fresh words from EUR and CEN',
      async () => {
        const f = (await tree()).freshness ?? [];
        return f.length === 2 && f.every((v) => !v.stale && v.behind.length === 0);
      },
      60_000,
    );

    // Version 2 at CEN, held there (not sent on): BER shows it is behind, by CEN's signed word.
    fs.writeFileSync(path.join(src, 'readme.txt'), 'a security fix\n');
    expect((await cascade(['package', 'update', pkg, src, '--hold'], { env: cen.env })).code).toBe(0);
    await until('BER sees version 2 published at CEN', async () => {
      const cenWord = (await tree()).freshness?.find((v) => v.site === 'CEN');
      return cenWord?.behind.some((b) => b.packageId === pkg && b.held === 1 && b.latest === 2) === true;
    });
    const text = (await cascade(['site', 'list'], { env: ber.env })).stdout;
    expect(text).toMatch(/^ {2}CEN {2}signed \S+ \(\d+ s ago\) {2}fresh$/m);
    expect(text).toContain(`    ${pkg}: version 1 here, 2 published at CEN`);

    // The relay freezes BER: it replays the first words it passed. They are not newer, so they
    // are not taken; what BER holds ages until it is stale, and BER says so once.
    link.mode('replay');
    await until("BER shows CEN's and EUR's words stale", async () => ((await tree()).freshness ?? []).every((v) => v.stale), 40_000);
    await until('BER records the staleness as a status message', async () =>
      (await cascade(['messages', '--severity', 'warning'], { env: ber.env })).stdout.includes('freshness_stale'),
    );
    const msgs = (await cascade(['messages', '--json'], { env: ber.env })).stdout;
    expect(msgs).toMatch(
      /the newest signed word from site CEN here is \d+ s old \(signed [^)]+\), past the 10 s this site allows: newer versions may be withheld on the way \(through EUR\)/,
    );
    expect((await cascade(['site', 'list'], { env: ber.env })).stdout).toMatch(
      /^ {2}CEN {2}signed .* STALE: newer versions may be withheld on the way$/m,
    );

    // Forged words, made to look fresh: refused, and still stale.
    link.mode('forge');
    await until('BER refuses the forged words', async () =>
      (await cascade(['messages', '--json'], { env: ber.env })).stdout.includes('freshness_refused'),
    );
    expect((await cascade(['messages', '--json'], { env: ber.env })).stdout).toMatch(
      /a freshness statement sent down by EUR was refused: .*signature/,
    );
    expect(((await tree()).freshness ?? []).every((v) => v.stale)).toBe(true);

    // The relay lets the words through again: fresh, and said.
    link.mode('pass');
    await until('BER has fresh words again', async () => ((await tree()).freshness ?? []).every((v) => !v.stale));
    await until('BER says so', async () => (await cascade(['messages', '--json'], { env: ber.env })).stdout.includes('freshness_restored'));
  }, 180_000);
});
