import { type ChildProcess, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ApiClient } from '../../src/api/client.js';
import { fillPath, PATHS } from '../../src/api/paths.js';
import { prng } from '../../src/lib/prng.js';
import { BIN, cascade, freePort, type SiteProcess, sleep, startSite, tmpDir } from '../e2e/helpers.js';

/**
 * The fault suite (docs/development.md#the-fault-suite): a central site, a region below it, a
 * DP of each and an agent of the region, all real processes on loopback. Each round makes a new
 * version of a package at the central site (acknowledged: the answer names it) and distributes
 * it to every DP; a mandatory advertisement follows it to the agent, whose program records the
 * SHA-256 of the files it was given. While it travels, processes are killed with SIGKILL at
 * seeded random moments and started again. After each round the invariants are checked:
 *
 * - nothing acknowledged is lost: every version the central site acknowledged is still there;
 * - every distribution converges: each DP reports the version installed, the agent ran it;
 * - nothing half-received is served or installed: every DP re-hashes the version (`validate`)
 *   and it is whole; the agent's program saw exactly the files of that version;
 * - no verified chunk crosses a route twice: no process logs chunks it already held.
 *
 * A failure is reproduced from its seed (FAULT_SEED).
 */

export interface FaultReport {
  seed: number;
  rounds: number;
  kills: number;
  killsByRole: Record<string, number>;
  /** Kills while a distribution and a client download run, during a courier import, during a repair. */
  killsByPhase: Record<string, number>;
  checks: number;
  violations: string[];
}

type Role = 'CEN' | 'EUR' | 'cen-dp1' | 'eur-dp1' | 'agent';
const ROLES: Role[] = ['CEN', 'EUR', 'cen-dp1', 'eur-dp1', 'agent'];

/** `agent start` as a service runs it; its log is kept when it is killed. */
function startAgent(dir: string, out: string): { proc: ChildProcess; logs: () => string; stop: (s?: NodeJS.Signals) => Promise<void> } {
  const proc = spawn(process.execPath, [BIN, 'agent', 'start', '--data', dir], { env: { ...process.env, CASCADE_OUT: out } });
  let log = '';
  proc.stdout.on('data', (d) => {
    log += d;
  });
  proc.stderr.on('data', (d) => {
    log += d;
  });
  const stop = (signal: NodeJS.Signals = 'SIGTERM') =>
    new Promise<void>((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
      proc.once('exit', () => resolve());
      proc.kill(signal);
    });
  return { proc, logs: () => log, stop };
}

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
  const report: FaultReport = { seed: o.seed, rounds: 0, kills: 0, killsByRole: {}, killsByPhase: {}, checks: 0, violations: [] };
  // The courier and repair phases draw from a sequence of their own: the distribution's kills
  // stay what the seed always made them.
  const rnd2 = prng(o.seed ^ 0x5eed);
  const procs = new Map<Exclude<Role, 'agent'>, SiteProcess>();
  let agent: ReturnType<typeof startAgent> | undefined;
  const agentDir = path.join(box, 'agent');
  const out = path.join(box, 'installed');
  const listen = new Map<Role, string>();
  const dirs = new Map<Role, string>();
  const roleOf = (r: Role) => (r.includes('-dp') ? 'dp' : 'site');
  /** Every log line of every incarnation (a killed process's log is kept). */
  const logs: string[] = [];
  const start = async (r: Role) => {
    if (r === 'agent') {
      agent = startAgent(agentDir, out);
      return;
    }
    const p = await startSite(dirs.get(r) as string, [], { listen: listen.get(r), env, role: roleOf(r) });
    procs.set(r, p);
  };
  const stopAll = async () => {
    if (agent) {
      await agent.stop();
      logs.push(agent.logs());
    }
    for (const [r, p] of procs) {
      await p.stop().catch(() => undefined);
      logs.push(p.logs());
      procs.delete(r);
    }
  };
  /** SIGKILL of one process, started again after a seeded moment. */
  const kill = async (victim: Role, phase: string, r: () => number) => {
    const p = victim === 'agent' ? agent : procs.get(victim);
    await p?.stop('SIGKILL');
    if (p) logs.push(p.logs());
    report.kills++;
    report.killsByRole[victim] = (report.killsByRole[victim] ?? 0) + 1;
    report.killsByPhase[phase] = (report.killsByPhase[phase] ?? 0) + 1;
    await sleep(100 + r() * 700);
    await start(victim);
  };
  try {
    // The hierarchy: CEN, EUR below it, a DP of each.
    for (const r of ['CEN', 'EUR', 'cen-dp1', 'eur-dp1'] as const) {
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
    fs.mkdirSync(out);
    // The program records what it was given, whole or not, under its version (written, then renamed).
    fs.writeFileSync(
      path.join(src, 'install.sh'),
      '#!/bin/sh\nsha256sum part-*.bin > "$CASCADE_OUT/.v$CASCADE_VERSION" && mv "$CASCADE_OUT/.v$CASCADE_VERSION" "$CASCADE_OUT/v$CASCADE_VERSION"\n',
      { mode: 0o755 },
    );
    // The agent: enrolled at EUR, checking in every 10 s; what it runs is mandatory for everyone.
    await must(['site', 'set', '--client-cycle', '10s'], eur);
    const agentToken = (await must(['agent', 'join-token'], eur)).trim();
    await must([
      'agent',
      'init',
      '--data',
      agentDir,
      '--site',
      `http://${listen.get('EUR')}`,
      '--join-token',
      agentToken,
      '--hostname',
      'faulty-pc',
    ]);
    await start('agent');
    await must(['collection', 'create', 'Everyone', '--rule', 'os != ""'], cen);
    let ad = '';
    const hashesOf = () =>
      ['part-0.bin', 'part-1.bin', 'part-2.bin']
        .map(
          (f) =>
            `${crypto
              .createHash('sha256')
              .update(fs.readFileSync(path.join(src, f)))
              .digest('hex')}  ${f}\n`,
        )
        .join('');
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
        await must(
          pkg
            ? ['package', 'update', pkg, src, '--json']
            : ['package', 'create', src, '--name', 'Faulty', '--program', 'Install=./install.sh', '--json'],
          cen,
        ),
      ) as { id: string; version: number };
      pkg = made.id;
      const expected = hashesOf();
      if (!ad)
        ad = JSON.parse(
          await must(['advertise', pkg, '--program', 'Install', '--collection', 'Everyone', '--mandatory', 'now', '--json'], cen),
        ).id as string;
      acknowledged.push(made.version);
      // Every third round the version reaches EUR by courier: a parcel, imported while EUR is killed.
      const courier = round % 3 === 2;
      await must(['distribute', pkg, '--to', 'dp:cen-dp1'], cen);
      let importing: Promise<unknown> = Promise.resolve();
      if (courier) {
        const parcel = path.join(box, `v${made.version}.parcel`);
        await must(['distribute', pkg, '--to', 'site:EUR', '--via', 'courier'], cen);
        await must(['courier', 'export', pkg, '--to-site', 'EUR', '-o', parcel], cen);
        importing = cascade(['courier', 'import', parcel], { env: eur });
        await sleep(50 + rnd2() * 450);
        if (report.kills < o.kills) await kill('EUR', 'courier import', rnd2);
        await importing;
        // Imported again until it is in: a repeated import takes what is already there as done.
        let r = await cascade(['courier', 'import', parcel], { env: eur });
        for (let i = 0; i < 15 && r.code !== 0; i++) {
          await sleep(2000);
          r = await cascade(['courier', 'import', parcel], { env: eur });
        }
        if (r.code !== 0) say(`  courier import still failing: ${r.stderr.trim()}`);
      } else await must(['distribute', pkg, '--to', 'site:EUR'], cen);
      // Kills at seeded moments while it travels; each victim starts again after a moment.
      for (let k = 0; k < killsPerRound && report.kills < o.kills; k++) {
        await sleep(200 + rnd() * 1800);
        await kill(ROLES[Math.floor(rnd() * ROLES.length)] as Role, 'distribution and download', rnd);
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
      // The agent runs the new version: it checks in every 10 s (at once after a restart).
      const ran = path.join(out, `v${made.version}`);
      const agentDeadline = Date.now() + 120_000;
      let agentState = '';
      while (Date.now() < agentDeadline) {
        const st = await cascade(['advertisement', 'status', ad, '--json'], { env: cen });
        const c =
          st.code === 0 ? (JSON.parse(st.stdout) as { clients: { state: string; version: number | null }[] }).clients[0] : undefined;
        agentState = c ? `${c.state} (version ${c.version})` : 'no report';
        if (fs.existsSync(ran) && c?.state === 'succeeded' && c.version === made.version) break;
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
      // 1b. The agent ran it, on exactly the files of that version.
      report.checks++;
      if (!fs.existsSync(ran)) violation(`the agent did not run ${pkg} version ${made.version} within 120 s (at CEN: ${agentState})`);
      else if (fs.readFileSync(ran, 'utf8') !== expected)
        violation(`the agent ran ${pkg} version ${made.version} on other files:\n${fs.readFileSync(ran, 'utf8')}expected:\n${expected}`);
      // 2. Nothing acknowledged lost.
      report.checks++;
      const show = JSON.parse(await must(['package', 'show', pkg, '--json'], cen)) as { versions: number[] };
      const lost = acknowledged.filter((v) => !show.versions.includes(v));
      if (lost.length > 0) violation(`acknowledged versions ${lost.join(', ')} of ${pkg} are gone from CEN`);
      // Every third round (another one), a chunk of the version is damaged on eur-dp1 and repaired
      // while a process on its path is killed; repaired again until it answers.
      if (round % 3 === 1 && report.kills < o.kills) {
        const manifest = fs.readFileSync(
          path.join(dirs.get('eur-dp1') as string, 'content', 'manifests', pkg, `${made.version}.json`),
          'utf8',
        );
        const chunks = [...new Set(manifest.match(/[0-9a-f]{64}/g) ?? [])]
          .map((d) => path.join(dirs.get('eur-dp1') as string, 'content', 'chunks', d.slice(0, 2), d))
          .filter((f) => fs.existsSync(f));
        const victim = chunks[Math.floor(rnd2() * chunks.length)];
        if (victim) {
          const b = fs.readFileSync(victim);
          b[Math.floor(b.length / 2)] = (b[Math.floor(b.length / 2)] as number) ^ 0xff;
          fs.writeFileSync(victim, b);
        }
        const repairing = cascade(['repair', pkg, '--dp', 'eur-dp1', '--version', String(made.version)], { env: cen });
        await sleep(50 + rnd2() * 450);
        await kill((['CEN', 'EUR', 'eur-dp1'] as const)[Math.floor(rnd2() * 3)] as Role, 'repair', rnd2);
        await repairing;
        let r = await cascade(['repair', pkg, '--dp', 'eur-dp1', '--version', String(made.version)], { env: cen });
        for (let i = 0; i < 15 && r.code !== 0; i++) {
          await sleep(2000);
          r = await cascade(['repair', pkg, '--dp', 'eur-dp1', '--version', String(made.version)], { env: cen });
        }
        if (r.code !== 0) say(`  repair still failing: ${r.stdout.slice(0, 300)}${r.stderr.trim()}`);
      }
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
