import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cascade, freePort, makeSource, type SiteProcess, startSite, tmpDir, until } from './helpers.js';

interface Target {
  dp: string;
  site: string;
  version: number;
  state: string;
  bytesDone: number;
  bytesTotal: number;
  detail: string | null;
}
interface Transfer {
  packageId: string;
  version: number;
  child: string;
  state: string;
  wireBytes: number;
}

// One content process per DP: the machine is shared; these DPs serve a few requests.
const FAST = { CASCADE_PING_SECONDS: '1', CASCADE_REPORT_SECONDS: '1', CASCADE_COURIER_CHECK_SECONDS: '1', CASCADE_DP_WORKERS: '1' };

/** A site CEN with two DPs; a parcel carried from CEN straight onto cen-dp1 (courier import --dp). */
describe('courier parcels onto a DP', () => {
  const root = tmpDir('cascade-courier-dp-');
  const procs: Record<string, SiteProcess> = {};
  const cen = () => procs.CEN as SiteProcess;
  const run = (args: string[]) => cascade(args, { env: cen().env });
  const json = async (args: string[]) => {
    const r = await run([...args, '--json']);
    if (r.code !== 0) throw new Error(`cascade ${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout);
  };
  const target = async (id: string, dp: string): Promise<Target | undefined> =>
    ((await json(['status', id])).targets as Target[]).find((t) => t.dp === dp);
  const api = async (p: string) => (await fetch(`${cen().url}${p}`, { headers: { authorization: `Bearer ${cen().token}` } })).json();
  const dpImport = (dp: string, ticket: string | null, body: Uint8Array) =>
    fetch(`${(procs[dp] as SiteProcess).url}/api/v1/courier/import`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream', ...(ticket === null ? {} : { authorization: `Bearer ${ticket}` }) },
      body,
    });

  beforeAll(async () => {
    const dir = path.join(root, 'CEN');
    const port = await freePort();
    expect((await cascade(['site', 'init', '--data', dir, '--code', 'CEN', '--listen', `127.0.0.1:${port}`])).stderr).toBe('');
    procs.CEN = await startSite(dir, [], { listen: null, env: FAST });
    for (const name of ['cen-dp1', 'cen-dp2']) {
      const token = (await json(['dp', 'join-token'])).token;
      const d = path.join(root, name);
      const r = await cascade(['dp', 'init', '--data', d, '--site', cen().url, '--join-token', token, '--name', name]);
      expect(r.stderr).toBe('');
      procs[name] = await startSite(d, [], { role: 'dp', env: FAST });
    }
    await until('both DPs known with their address', async () => {
      const dps = (await json(['dp', 'list'])).dps as { name: string; url: string | null }[];
      return ['cen-dp1', 'cen-dp2'].every((n) => dps.find((d) => d.name === n)?.url);
    });
  }, 120_000);
  afterAll(async () => {
    for (const p of Object.values(procs)) await p.stop();
  });

  it('distributes to a DP by courier: no chunk on the route, the parcel straight onto the DP, installed and served', async () => {
    const src = path.join(root, 'src');
    makeSource(src, 51, 4 << 20);
    const c = await json(['package', 'create', src, '--name', 'Kiosk']);
    const d = await run(['distribute', c.id, '--to', 'dp:cen-dp1', '--via', 'courier']);
    expect(d.code).toBe(0);
    // The exact command for the DP the parcel goes to, no placeholder.
    expect(d.stdout).toContain(`cascade courier export ${c.id} --version 1 --to-dp cen-dp1 -o cen-dp1.parcel`);

    // The sender offered the manifest to the DP, learnt what it lacks, and waits: no chunk crossed.
    await until('cen-dp1 waiting for a parcel', async () =>
      /waiting for a courier parcel/.test((await target(c.id, 'cen-dp1'))?.detail ?? ''),
    );
    const waiting = (await target(c.id, 'cen-dp1')) as Target;
    expect(waiting.state).toBe('pending');
    expect(waiting.detail).toContain(`--to-dp cen-dp1`);
    const lacks = waiting.bytesTotal - waiting.bytesDone;
    expect(lacks).toBeGreaterThan(c.bytes * 0.9);

    // Export what the DP lacks (first as text, then the parcel the test carries).
    const said = await run(['courier', 'export', c.id, '--to-dp', 'cen-dp1', '-o', path.join(root, 'first.parcel')]);
    expect(said.stdout).toContain('--dp cen-dp1');
    const file = path.join(root, 'kiosk.parcel');
    const x = await json(['courier', 'export', c.id, '--to-dp', 'cen-dp1', '-o', file]);
    expect(x).toMatchObject({ destination: 'cen-dp1', bytes: fs.statSync(file).size });
    expect(x.packages).toEqual([{ id: c.id, version: 1, bytes: c.bytes, chunkBytesInParcel: lacks }]);
    await until('the parcel id in the status', async () => ((await target(c.id, 'cen-dp1'))?.detail ?? '').includes(x.parcel));

    // A tampered parcel onto the DP: the same one-line bad_parcel as at a site; nothing installed there.
    const bytes = fs.readFileSync(file);
    const bad = Buffer.from(bytes);
    bad[bad.length - 100_000] = (bad[bad.length - 100_000] as number) ^ 0xff;
    const tampered = path.join(root, 'tampered.parcel');
    fs.writeFileSync(tampered, bad);
    const t1 = await run(['courier', 'import', tampered, '--dp', 'cen-dp1']);
    expect(t1.code).toBe(1);
    expect(t1.stderr).toMatch(
      /^cascade: parcel .* is damaged or altered: chunk [0-9a-f]{64} does not match its digest; nothing was installed\n$/,
    );
    const dpUrl = (procs['cen-dp1'] as SiteProcess).url;
    expect((await fetch(`${dpUrl}/content/manifests/${c.id}/1.json`)).status).toBe(404);

    // The real parcel, straight onto the DP.
    const r = await json(['courier', 'import', file, '--dp', 'cen-dp1']);
    expect(r).toMatchObject({ dp: 'cen-dp1', parcel: x.parcel, source: 'CEN', destination: 'cen-dp1' });
    expect(r.packages).toEqual([{ id: c.id, version: 1, bytes: c.bytes, state: 'installed', missingChunks: 0, missingBytes: 0 }]);
    expect(r.chunks.stored + r.chunks.alreadyHeld).toBe(x.chunks);

    // The DP told its site; the sender offered again, found nothing missing and committed.
    await until('cen-dp1 installed at CEN', async () => (await target(c.id, 'cen-dp1'))?.state === 'installed');
    const sent = ((await api('/api/v1/transfers')).transfers as Transfer[]).find((t) => t.packageId === c.id);
    expect(sent).toMatchObject({ child: 'cen-dp1', state: 'done', wireBytes: 0 });
    // The parcel never went through the site: the site recorded its export only.
    const parcels = (await api('/api/v1/courier/parcels')).parcels as { id: string; direction: string }[];
    expect(parcels.filter((p) => p.id === x.parcel).map((p) => p.direction)).toEqual(['export']);

    // The DP serves the version.
    const m = await fetch(`${dpUrl}/content/manifests/${c.id}/1.json`);
    expect(m.status).toBe(200);
    const signed = Buffer.from(await m.arrayBuffer());
    expect(signed.equals(fs.readFileSync(path.join(root, 'CEN', 'content', 'manifests', c.id, '1.json')))).toBe(true);
    await until('the import message at CEN', async () =>
      ((await json(['messages', '--package', c.id])).messages as { site: string; code: string }[]).some(
        (z) => z.site === 'cen-dp1' && z.code === 'courier_imported',
      ),
    );

    // Again: harmless, nothing stored, and no chunk sent (the DP said it holds them); the text names the DP.
    const again = await run(['courier', 'import', file, '--dp', 'cen-dp1']);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain(`parcel ${x.parcel} from CEN onto DP cen-dp1: 0 chunks stored`);
    const again2 = await json(['courier', 'import', file, '--dp', 'cen-dp1']);
    expect(again2.chunks).toEqual({ inParcel: x.chunks, stored: 0, alreadyHeld: x.chunks });
    expect(again2.bytes.received).toBeLessThan(again2.bytes.parcel / 20);
  });

  it('a transfer queued over the network to a DP sends nothing the parcel brought (export --to-dp without --via courier)', async () => {
    // The route to cen-dp2 is closed: the transfer waits in the queue.
    expect((await run(['route', 'set', 'cen-dp2', '--schedule', 'closed'])).code).toBe(0);
    const src = path.join(root, 'src-q');
    makeSource(src, 52, 2 << 20);
    const c = await json(['package', 'create', src, '--name', 'Signage']);
    expect((await run(['distribute', c.id, '--to', 'dp:cen-dp2'])).code).toBe(0);
    await until('the transfer waiting for the schedule', async () => /schedule/.test((await target(c.id, 'cen-dp2'))?.detail ?? ''));

    // No courier route: the parcel holds every chunk the DP is not known to hold.
    const file = path.join(root, 'signage.parcel');
    const x = await json(['courier', 'export', c.id, '--to-dp', 'cen-dp2', '-o', file]);
    expect(x.packages[0]).toMatchObject({ id: c.id, version: 1, chunkBytesInParcel: expect.any(Number) });
    const r = await json(['courier', 'import', file, '--dp', 'cen-dp2']);
    expect(r).toMatchObject({ dp: 'cen-dp2', packages: [{ id: c.id, version: 1, state: 'installed' }] });

    // The route opens: the sender offers, the DP lacks nothing, the commit is all that crosses.
    expect((await run(['route', 'set', 'cen-dp2', '--schedule', 'all'])).code).toBe(0);
    await until('cen-dp2 installed at CEN', async () => (await target(c.id, 'cen-dp2'))?.state === 'installed');
    const sent = ((await api('/api/v1/transfers')).transfers as Transfer[]).find((t) => t.packageId === c.id);
    expect(sent).toMatchObject({ child: 'cen-dp2', state: 'done', wireBytes: 0 });
    expect((await fetch(`${(procs['cen-dp2'] as SiteProcess).url}/content/manifests/${c.id}/1.json`)).status).toBe(200);
  });

  it('refuses an unknown DP, the local DP, an unreachable DP, and any ticket but a fresh one of its own site for that DP', async () => {
    const file = path.join(root, 'kiosk.parcel');
    const unknown = await run(['courier', 'import', file, '--dp', 'nope-dp']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toBe('cascade: DP nope-dp is not a DP of site CEN (see "cascade dp list")\n');
    const local = await run(['courier', 'import', file, '--dp', 'cen']);
    expect(local.code).toBe(1);
    expect(local.stderr).toMatch(
      /^cascade: CEN is this site's local DP \(its own library\): import the parcel at the site, without --dp\n$/,
    );
    const port = await freePort();
    const away = await run(['courier', 'import', file, '--dp', 'cen-dp1', '--dp-url', `http://127.0.0.1:${port}`]);
    expect(away.code).toBe(1);
    expect(away.stderr).toBe(`cascade: cannot reach DP cen-dp1 at http://127.0.0.1:${port}: ECONNREFUSED\n`);

    // At the DP itself: no ticket, a malformed one, the admin token, one for another DP.
    const body = fs.readFileSync(file).subarray(0, 4096);
    const none = await dpImport('cen-dp1', null, body);
    expect(none.status).toBe(401);
    expect(((await none.json()) as { error: { code: string } }).error.code).toBe('unauthorized');
    for (const t of ['casdpt_bm9wZQ.bm9wZQ', cen().token]) {
      const res = await dpImport('cen-dp1', t, body);
      expect(res.status).toBe(401);
      expect(await res.json()).toEqual({
        error: { code: 'unauthorized', message: expect.stringMatching(/^the import ticket is malformed/) },
      });
    }
    const other = await (
      await fetch(`${cen().url}/api/v1/courier/dp-tickets`, {
        method: 'POST',
        headers: { authorization: `Bearer ${cen().token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ dp: 'cen-dp2' }),
      })
    ).json();
    expect(other).toMatchObject({ dp: 'cen-dp2', site: 'CEN', url: (procs['cen-dp2'] as SiteProcess).url });
    const wrong = await dpImport('cen-dp1', other.ticket, body);
    expect(wrong.status).toBe(403);
    expect(await wrong.json()).toEqual({
      error: { code: 'forbidden', message: 'the import ticket is for DP cen-dp2, not for this DP (cen-dp1)' },
    });
    // A ticket carries one import: the same ticket again is refused.
    const once = await (
      await fetch(`${cen().url}/api/v1/courier/dp-tickets`, {
        method: 'POST',
        headers: { authorization: `Bearer ${cen().token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ dp: 'cen-dp1' }),
      })
    ).json();
    const whole = fs.readFileSync(file);
    expect((await dpImport('cen-dp1', once.ticket, whole)).status).toBe(200);
    const replay = await dpImport('cen-dp1', once.ticket, whole);
    expect(replay.status).toBe(401);
    expect(await replay.json()).toEqual({
      error: {
        code: 'unauthorized',
        message: 'this import ticket was used already; ask site CEN for a new one (cascade courier import --dp cen-dp1 does)',
      },
    });
    // A read-only token cannot ask for a ticket.
    const ro = (await json(['token', 'create', '--role', 'read-only', '--name', 'viewer'])).token;
    const denied = await cascade(['courier', 'import', file, '--dp', 'cen-dp1'], { env: { ...cen().env, CASCADE_TOKEN: ro } });
    expect(denied.code).toBe(1);
    expect(denied.stderr).toMatch(/needs operate/);
    // The DP's API document lists the import, with its ticket.
    const doc = (await (await fetch(`${(procs['cen-dp1'] as SiteProcess).url}/api/v1/openapi.json`)).json()) as {
      paths: Record<string, unknown>;
    };
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining(['/api/v1/courier/import', '/api/v1/courier/missing', '/api/v1/courier/waiting']),
    );
    // Which chunks the DP lacks: for the holder of a ticket for it only.
    const digest = 'a'.repeat(64);
    const ask = (t: string | null) =>
      fetch(`${(procs['cen-dp1'] as SiteProcess).url}/api/v1/courier/missing`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(t ? { authorization: `Bearer ${t}` } : {}) },
        body: JSON.stringify({ digests: [digest] }),
      });
    expect((await ask(null)).status).toBe(401);
    expect((await ask(cen().token)).status).toBe(401);
    expect((await ask(other.ticket)).status).toBe(403);
  });
});
