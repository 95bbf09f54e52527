import type { Command } from 'commander';
import { fillPath, PATHS } from '../../api/paths.js';
import type { RolloutAction, RolloutEntry, RolloutStatus } from '../../api/rollouts.js';
import { parseAdvertisementId, SLOW_LINK } from '../../core/client.js';
import { fail } from '../../core/errors.js';
import { parsePackageId } from '../../core/package.js';
import { parsePercent, parseWave } from '../../core/rollout.js';
import { parseDuration } from '../../core/time.js';
import { printJson } from '../../lib/output.js';
import { type AdminOpts, adminOptions, clientFrom, collect, parseIntOpt, table } from '../common.js';

/** `cascade rollout ...`: an advertisement released in waves (docs/rollouts.md). */

const when = (iso: string | null) => (iso ? iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '-');

function printRollout(r: RolloutEntry): void {
  process.stdout.write(
    `rollout ${r.id}: "${r.program}" of ${r.packageId} version ${r.version} to "${r.collection}" — ${r.state}\n` +
      `advances at ${r.successPercent} % succeeded after a hold of ${r.holdSeconds} s${r.approval ? ', with approval' : ''}; halts at ${r.failurePercent} % failed\n` +
      (r.message ? `${r.message}\n` : ''),
  );
  process.stdout.write(
    table([
      ['WAVE', 'WHO', 'RELEASED', 'MEMBERS', 'SUCCEEDED', 'FAILED', 'ACTIVE'],
      ...r.waves.map((w) => [
        String(w.index + 1),
        w.text,
        w.released ? when(w.releasedAt) : 'no',
        String(w.members),
        String(w.succeeded),
        String(w.failed),
        String(w.active),
      ]),
    ]),
  );
}

export function registerRollouts(program: Command): void {
  const rollout = program.command('rollout').description('roll a program out in waves that advance on success and halt on failures');
  type CreateOpts = AdminOpts & {
    program: string;
    collection: string;
    wave: string[];
    version?: number;
    success?: string;
    failure?: string;
    hold?: string;
    approval?: boolean;
    optional?: boolean;
    maxRun?: string;
    slowLink?: string;
    fallback?: boolean;
  };
  adminOptions(
    rollout
      .command('create')
      .description(
        "roll a package's program out to a collection in waves: the first wave is released at once, the next when the last reached --success and --hold passed",
      )
      .argument('<id>', 'package ID')
      .requiredOption('--program <name>', 'program of the package to run')
      .requiredOption('--collection <name>', 'the clients it is for')
      .requiredOption('--wave <spec>', 'a wave: a collection (a pilot), a share of the remainder (10%), or rest; repeat in order', collect)
      .option('--version <n>', 'the version to roll out (default: the newest)', parseIntOpt('--version', 1))
      .option('--success <pct>', 'share of a wave that must succeed before the next is released (default 95%)')
      .option('--failure <pct>', 'share of the released waves failing that halts the rollout (default 5%)')
      .option('--hold <duration>', 'how long a wave stays at its success threshold before the next (default 1h)')
      .option('--approval', 'wait for "cascade rollout approve" before each wave after the first')
      .option('--optional', 'offer it in each wave without running it (default: mandatory on release)')
      .option('--max-run <duration>', 'time limit of the program (default 1h)')
      .option('--slow-link <policy>', `${SLOW_LINK.join(' or ')} (default download)`)
      .option('--fallback', 'let clients use other DPs of their site and of the sites above'),
  ).action(async (id: string, o: CreateOpts) => {
    const waves = o.wave.map(parseWave);
    if (o.slowLink && !(SLOW_LINK as readonly string[]).includes(o.slowLink))
      throw fail('usage', `--slow-link must be ${SLOW_LINK.join(' or ')}; not "${o.slowLink}"`);
    const r = await clientFrom(o).json<RolloutEntry>('POST', PATHS.rollouts, {
      json: {
        packageId: parsePackageId(id),
        version: o.version ?? null,
        program: o.program,
        collection: o.collection,
        waves,
        ...(o.success !== undefined ? { successPercent: parsePercent(o.success, '--success') } : {}),
        ...(o.failure !== undefined ? { failurePercent: parsePercent(o.failure, '--failure') } : {}),
        ...(o.hold !== undefined ? { holdSeconds: o.hold === '0' ? 0 : parseDuration(o.hold, '--hold') } : {}),
        approval: o.approval ?? false,
        mandatory: !o.optional,
        ...(o.maxRun ? { maxRunSeconds: parseDuration(o.maxRun, '--max-run') } : {}),
        ...(o.slowLink ? { slowLink: o.slowLink } : {}),
        fallback: o.fallback ?? false,
      },
    });
    if (o.json) return printJson(r);
    printRollout(r);
    process.stdout.write(`follow with: cascade rollout status ${r.id}\n`);
  });

  adminOptions(rollout.command('list').description('rollouts made at this site')).action(async (o: AdminOpts) => {
    const { rollouts } = await clientFrom(o).json<{ rollouts: RolloutEntry[] }>('GET', PATHS.rollouts);
    if (o.json) return printJson({ rollouts });
    if (rollouts.length === 0)
      return void process.stdout.write('no rollouts yet ("cascade rollout create ID --program P --collection C --wave ...")\n');
    process.stdout.write(
      table([
        ['ID', 'PACKAGE', 'PROGRAM', 'COLLECTION', 'STATE', 'WAVE', 'SUCCEEDED', 'FAILED'],
        ...rollouts.map((r) => {
          const released = r.waves.filter((w) => w.released);
          const members = released.reduce((n, w) => n + w.members, 0);
          return [
            r.id,
            `${r.packageId} v${r.version}`,
            r.program,
            r.collection,
            r.state,
            `${released.length} of ${r.waves.length}`,
            `${released.reduce((n, w) => n + w.succeeded, 0)} of ${members}`,
            String(released.reduce((n, w) => n + w.failed, 0)),
          ];
        }),
      ]),
    );
  });

  adminOptions(
    rollout.command('show').description('a rollout: its state, thresholds and waves').argument('<id>', 'rollout (advertisement) ID'),
  ).action(async (id: string, o: AdminOpts) => {
    const r = await clientFrom(o).json<RolloutEntry>('GET', fillPath(PATHS.rollout, { id: parseAdvertisementId(id) }));
    if (o.json) return printJson(r);
    printRollout(r);
  });

  adminOptions(
    rollout
      .command('status')
      .description('a rollout and where it stands on every member client, by wave')
      .argument('<id>', 'rollout (advertisement) ID'),
  ).action(async (id: string, o: AdminOpts) => {
    const s = await clientFrom(o).json<RolloutStatus>('GET', fillPath(PATHS.rolloutStatus, { id: parseAdvertisementId(id) }));
    if (o.json) return printJson(s);
    printRollout(s.rollout);
    if (s.clients.length > 0)
      process.stdout.write(
        `\n${table([
          ['CLIENT', 'SITE', 'HOSTNAME', 'WAVE', 'STATE', 'EXIT', 'DETAIL'],
          ...[...s.clients]
            .sort((a, b) => a.wave - b.wave || a.client.localeCompare(b.client))
            .map((c) => [
              c.client,
              c.site,
              c.hostname,
              String(c.wave + 1),
              c.state,
              c.exitCode === null ? '-' : String(c.exitCode),
              c.detail ?? '',
            ]),
        ])}`,
      );
  });

  const verbs: [RolloutAction, string][] = [
    ['pause', 'pause: no client starts it until resumed (those running finish)'],
    ['resume', 'resume a paused or halted rollout (after a halt, the failures so far are accepted)'],
    ['approve', 'release the next wave of a rollout waiting for approval'],
    ['cancel', 'cancel: the advertisement is disabled and no wave is released again'],
  ];
  for (const [verb, text] of verbs)
    adminOptions(rollout.command(verb).description(text).argument('<id>', 'rollout (advertisement) ID')).action(
      async (id: string, o: AdminOpts) => {
        const r = await clientFrom(o).json<RolloutEntry>(
          'POST',
          fillPath(PATHS.rolloutAction, { id: parseAdvertisementId(id), action: verb }),
        );
        if (o.json) return printJson(r);
        process.stdout.write(`rollout ${r.id}: ${r.state}${r.message ? ` — ${r.message}` : ''}\n`);
      },
    );
}
