import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ApiClient } from '../../src/api/client.js';
import { fillPath, PATHS } from '../../src/api/paths.js';
import { prng } from '../../src/lib/prng.js';
import { cascade, freePort, type SiteProcess, sleep, startSite, tmpDir } from '../e2e/helpers.js';

/**
 * The fault suite (docs/development.md#the-fault-suite): a central site, a region below it and
 * a DP of each, all real processes on loopback. Each round makes a new version of a package at
 * the central site (acknowledged: the answer names it) and distributes it to every DP; while
 * it travels, processes are killed with SIGKILL at seeded random moments and started again.
 * After each round the invariants are checked:
 *
 * - nothing acknowledged is lost: every version the central site acknowledged is still there;
 * - every distribution converges: each DP reports the version installed;
 * - nothing half-received is served: every DP re-hashes the version (`validate`) and it is whole;
 * - no verified chunk crosses a route twice: no process logs chunks it already held.
 *
 * A failure is reproduced from its seed (FAULT_SEED).
 */

export interface FaultReport {
  seed: number;
  rounds: number;
  kills: number;
  killsByRole: Record<string, number>;
  checks: number;
  violations: string[];
}

type Role = 'CEN' | 'EUR' | 'cen-dp1' | 'eur-dp1';

export async function runFaultSuite(o: { kills: number; seed: number; say?: (line: string) => void }): Promise<FaultReport> {
  const say = o.say ?? (() => {});
  const rnd = prng(o.seed);
  const box = tmpDir('cascade-faults-');
  const env = {
    CASCADE_REPORT_SECONDS: '0.5',
    CASCADE_DP_STATE_SECONDS: '1',
    CASCADE_PING_SECONDS: '1',
    CASCADE_LOG_LEVEL: 'info',
  };
  const report: FaultReport = { seed: o.seed, rounds: 0, kills: 0, killsByRole: {}, checks: 0, violations: [] };
  const procs = new Map<Role, SiteProcess>();
  const listen = new Map<Role, string>();
  const dirs = new Map<Role, string>();
  const roleOf = (r: Role) => (r.includes('-dp') ? 'dp' : 'site');
  /** Every log line of every incarnation (a killed process's log is kept). */
  const logs: string[] = [];
  const start = async (r: Role) => {
    const p = await startSite(dirs.get(r) as string, [], { listen: listen.get(r), env, role: roleOf(r) });
    procs.set(r, p);
  };
  const stopAll = async () => {
    for (const [r, p] of procs) {
      await p.stop().catch(() => undefined);
      logs.push(p.logs());
      procs.delete(r);
    }
  };
  try {
    // The hierarchy: CEN, EUR below it, a DP of each.
    for (const r of ['CEN', 'EUR', 'cen-dp1', 'eur-dp1'] as Role[]) {
      listen.set(r, `127.0.0.1:${await freePort()}`);
      dirs.set(r, path.join(box, r));
    }
    const must = async (args: string[], e?: Record<string, string>) => {
      const x = await cascade(args, { env: e ?? {} });
      if (x.code !== 0) throw new Error(`cascade ${args.join(' ')}: ${x.stderr}`);
      return x.stdout;
    };
    await must(['site', 'init', '--data', dirs.get('CEN') as string, '--code', 'CEN', '--listen', listen.get('CEN') as string]);
    await start('CEN');
    const cen = (procs.get('CEN') as SiteProcess).env;
    const cenUrl = `http://${listen.get('CEN')}`;
    const siteToken = (await must(['site', 'join-token'], cen)).trim();
    await must([
      'site',
      'init',
      '--data',
      dirs.get('EUR') as string,
      '--code',
      'EUR',
      '--listen',
      listen.get('EUR') as string,
      '--parent',
      cenUrl,
      '--join-token',
      siteToken,
    ]);
    await start('EUR');
    const eur = (procs.get('EUR') as SiteProcess).env;
    for (const [r, at, e] of [
      ['cen-dp1', cenUrl, cen],
      ['eur-dp1', `http://${listen.get('EUR')}`, eur],
    ] as const) {
      const t = (await must(['dp', 'join-token'], e)).trim();
      await must([
        'dp',
        'init',
        '--data',
        dirs.get(r) as string,
        '--site',
        at,
        '--join-token',
        t,
        '--name',
        r,
        '--listen',
        listen.get(r) as string,
      ]);
      await start(r);
    }
    // Routes slow enough that kills land mid-transfer.
    await must(['route', 'set', 'EUR', '--rate', '8MiB/s'], cen);
    await must(['route', 'set', 'cen-dp1', '--rate', '8MiB/s'], cen);
    await must(['route', 'set', 'eur-dp1', '--rate', '8MiB/s'], eur);

    const src = path.join(box, 'src');
    fs.mkdirSync(src);
    const acknowledged: number[] = [];
    let pkg = '';
    const api = new ApiClient(cenUrl, { token: (procs.get('CEN') as SiteProcess).token });
    const killsPerRound = 3;
    let seenAgain = 0;
    for (let round = 0; report.kills < o.kills; round++) {
      // A new version: 12 MiB, a third of it new each round.
      for (let f = 0; f < 3; f++) {
        const file = path.join(src, `part-${f}.bin`);
        if (f === round % 3 || !fs.existsSync(file)) fs.writeFileSync(file, crypto.randomBytes(4 << 20));
      }
      const made = JSON.parse(
        await must(pkg ? ['package', 'update', pkg, src, '--json'] : ['package', 'create', src, '--name', 'Faulty', '--json'], cen),
      ) as { id: string; version: number };
      pkg = made.id;
      acknowledged.push(made.version);
      await must(['distribute', pkg, '--to', 'dp:cen-dp1', '--to', 'site:EUR'], cen);
      // Kills at seeded moments while it travels; each victim starts again after a moment.
      for (let k = 0; k < killsPerRound && report.kills < o.kills; k++) {
        await sleep(200 + rnd() * 1800);
        const victim = (['CEN', 'EUR', 'cen-dp1', 'eur-dp1'] as Role[])[Math.floor(rnd() * 4)] as Role;
        const p = procs.get(victim) as SiteProcess;
        await p.stop('SIGKILL');
        logs.push(p.logs());
        report.kills++;
        report.killsByRole[victim] = (report.killsByRole[victim] ?? 0) + 1;
        await sleep(100 + rnd() * 700);
        await start(victim);
      }
      // Convergence: retried at once rather than after the back-off (the suite cannot wait minutes).
      const deadline = Date.now() + 180_000;
      let targets: { dp: string; version: number; state: string; lastError: string | null }[] = [];
      while (Date.now() < deadline) {
        const d = await api
          .json<{ targets: typeof targets }>('GET', fillPath(PATHS.distribution, { id: pkg }))
          .catch(() => ({ targets: [] }));
        targets = d.targets.filter((t) => t.version === made.version);
        if (targets.length === 3 && targets.every((t) => t.state === 'installed')) break;
        for (const [r, e] of [
          ['CEN', cen],
          ['EUR', eur],
        ] as const) {
          const c = new ApiClient(`http://${listen.get(r)}`, { token: e.CASCADE_TOKEN });
          const ts = await c.json<{ transfers: { id: string; state: string }[] }>('GET', PATHS.transfers).catch(() => ({ transfers: [] }));
          for (const t of ts.transfers.filter((x) => x.state !== 'done' && x.state !== 'failed'))
            await c.json('POST', fillPath(PATHS.transferRetryNow, { id: t.id })).catch(() => undefined);
        }
        await sleep(1000);
      }
      report.rounds++;
      const violation = (what: string) => {
        report.violations.push(`round ${round + 1} (seed ${o.seed}): ${what}`);
        say(`  VIOLATION: ${what}`);
      };
      // 1. Converged.
      report.checks++;
      const notThere = ['cen-dp1', 'EUR', 'eur-dp1'].filter((dp) => targets.find((t) => t.dp === dp)?.state !== 'installed');
      if (notThere.length > 0)
        violation(
          `${pkg} version ${made.version} not installed within 180 s on ${notThere
            .map(
              (dp) =>
                `${dp} (${targets.find((t) => t.dp === dp)?.state ?? 'no target'}: ${targets.find((t) => t.dp === dp)?.lastError ?? ''})`,
            )
            .join(', ')}`,
        );
      // 2. Nothing acknowledged lost.
      report.checks++;
      const show = JSON.parse(await must(['package', 'show', pkg, '--json'], cen)) as { versions: number[] };
      const lost = acknowledged.filter((v) => !show.versions.includes(v));
      if (lost.length > 0) violation(`acknowledged versions ${lost.join(', ')} of ${pkg} are gone from CEN`);
      // 3. Whole where installed: every DP re-hashes the version.
      report.checks++;
      const v = await cascade(['validate', pkg, '--version', String(made.version), '--json'], { env: cen });
      if (v.code !== 0) violation(`validate ${pkg} version ${made.version}: ${v.stdout.slice(0, 400)}${v.stderr}`);
      // 4. No chunk a receiver held came again.
      report.checks++;
      const again = [...logs, ...[...procs.values()].map((p) => p.logs())]
        .join('\n')
        .split('\n')
        .filter((l) => l.includes('chunks received that this site already held'));
      if (again.length > seenAgain)
        violation(`${again.length - seenAgain} batch(es) brought chunks the receiver held: ${again[seenAgain]?.slice(0, 300)}`);
      seenAgain = again.length;
      say(
        `round ${round + 1}: version ${made.version}, ${report.kills} kills so far (${JSON.stringify(report.killsByRole)}), ${report.violations.length} violations`,
      );
    }
  } finally {
    await stopAll();
    fs.rmSync(box, { recursive: true, force: true });
  }
  return report;
}
