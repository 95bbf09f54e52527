import type { Command } from 'commander';
import type { Validation } from '../../api/distributions.js';
import type { DpEntry, Group, Release, UpgradeAnswer } from '../../api/dps.js';
import { fillPath, PATHS } from '../../api/paths.js';
import type { JoinTokenAnswer, RemoveNeighbourAnswer } from '../../api/sites.js';
import { fail } from '../../core/errors.js';
import { parsePackageId } from '../../core/package.js';
import { printJson } from '../../lib/output.js';
import { type AdminOpts, adminOptions, clientFrom, collect, parseIntOpt, table } from '../common.js';
import { fmtBytes } from '../progress.js';

function validationText(r: Validation): string {
  let out = `${r.packageId} version ${r.version}:\n`;
  out += table([
    ['DP', 'SITE', 'RESULT', 'FILES', 'BYTES', 'PROBLEMS', 'REPAIR'],
    ...r.results.map((x) => [
      x.dp,
      x.site,
      x.error && x.checkedFiles === 0 ? 'not checked' : x.ok ? 'ok' : 'INVALID',
      String(x.checkedFiles),
      fmtBytes(x.checkedBytes),
      String(x.problems.length),
      x.repaired ? `${x.repaired.chunks} chunk(s) re-sent: ${x.repaired.ok ? 'valid again' : 'still invalid'}` : '-',
    ]),
  ]);
  for (const x of r.results) {
    if (x.error) out += `  ${x.dp}: ${x.error}\n`;
    for (const p of x.problems.slice(0, 20))
      out += `  ${x.dp}: ${p.kind} ${p.path}${p.chunk ? ` chunk ${p.chunk.slice(0, 16)}…` : ''}: ${p.detail}\n`;
    if (x.problems.length > 20) out += `  ${x.dp}: … and ${x.problems.length - 20} more (--json lists them all)\n`;
  }
  return out;
}

/** `cascade validate` and `cascade repair`. */
export function registerValidate(program: Command): void {
  const run = async (id: string, o: AdminOpts & { dp?: string; version?: number }, repair: boolean) => {
    const r = await clientFrom(o).json<Validation>('POST', PATHS.validations, {
      json: { packageId: parsePackageId(id), ...(o.dp ? { dp: o.dp } : {}), ...(o.version ? { version: o.version } : {}), repair },
    });
    if (o.json) printJson(r);
    else process.stdout.write(validationText(r));
    // Content that is still wrong (or could not be checked) is a failure the caller can see.
    if (r.results.some((x) => (x.repaired ? !x.repaired.ok : !x.ok))) process.exitCode = 1;
  };
  adminOptions(
    program
      .command('validate')
      .description(
        're-hash a package version on the DPs (every chunk, every file of the tree against the signed manifest); exit 1 if any is invalid',
      )
      .argument('<id>', 'package ID')
      .option('--dp <name>', 'only this DP (default: every DP at or below the site that holds the version)')
      .option('--version <n>', 'version (default latest)', parseIntOpt('--version', 1)),
  ).action((id: string, o: AdminOpts & { dp?: string; version?: number }) => run(id, o, false));
  adminOptions(
    program
      .command('repair')
      .description('validate a package version on a DP and re-send only its damaged or missing chunks from the site that feeds it')
      .argument('<id>', 'package ID')
      .requiredOption('--dp <name>', 'the DP to repair')
      .option('--version <n>', 'version (default latest)', parseIntOpt('--version', 1)),
  ).action((id: string, o: AdminOpts & { dp: string; version?: number }) => run(id, o, true));
}

/** A DP's or a site's release as `dp list` and `site list` show it: "0.1.0 → 0.2.0 draining". */
export function releaseText(r: Release | null): string {
  if (!r) return '-';
  const running = r.running ?? '?';
  const u = r.upgrade;
  if (!u || (u.state === 'upgraded' && u.target === r.running)) return running;
  if (u.state === 'offered') return u.target === r.running ? running : `${running} (${u.target} offered)`;
  return `${running} → ${u.target} ${u.state}`;
}

/** What went wrong in following a release, one line per DP or site, for under the table. */
export function releaseProblems(rows: { name: string; release: Release | null }[]): string {
  return rows
    .filter((x) => x.release?.upgrade && (x.release.upgrade.state === 'rolled-back' || x.release.upgrade.state === 'failed'))
    .map((x) => `${x.name}: ${x.release?.upgrade?.detail}\n`)
    .join('');
}

/** `cascade dp join-token | list | upgrade` and `cascade dp-group ...`, over a site's API. */
export function registerDpAdmin(program: Command): void {
  const dp = program.commands.find((c) => c.name() === 'dp') ?? program.command('dp').description('distribution points');
  adminOptions(
    dp
      .command('join-token')
      .description('issue a one-time, expiring token a DP joins this site with (admin)')
      .option('--ttl <seconds>', 'how long it stays valid (default 3600)', parseIntOpt('--ttl', 60)),
  ).action(async (o: AdminOpts & { ttl?: number }) => {
    const r = await clientFrom(o).json<JoinTokenAnswer>('POST', PATHS.joinTokens, {
      json: { kind: 'dp', ttlSeconds: o.ttl ?? 3600 },
    });
    if (o.json) printJson(r);
    else {
      process.stdout.write(`${r.token}\n`);
      // Which site answered, on stderr: the token alone stays on stdout for TOKEN=$(...).
      process.stderr.write(`join token for a DP of site ${r.site}, valid until ${r.expiresAt}\n`);
    }
  });

  adminOptions(dp.command('list').description('every DP of this site and of every site below it: state, free space, packages held')).action(
    async (o: AdminOpts) => {
      const r = await clientFrom(o).json<{ dps: DpEntry[] }>('GET', PATHS.dps);
      if (o.json) {
        printJson(r);
        return;
      }
      process.stdout.write(
        table([
          ['DP', 'SITE', 'KIND', 'STATE', 'RELEASE', 'FREE', 'PACKAGES', 'URL'],
          ...r.dps.map((d) => [
            d.name,
            d.site,
            d.kind,
            d.state,
            releaseText(d.release),
            d.freeBytes === null ? '-' : `${fmtBytes(d.freeBytes)} of ${fmtBytes(d.totalBytes ?? 0)}`,
            d.packages.length === 0 ? '-' : d.packages.map((p) => `${p.packageId}:${p.version}`).join(','),
            d.url ?? '-',
          ]),
        ]) + releaseProblems(r.dps),
      );
    },
  );

  adminOptions(
    dp
      .command('remove')
      .description(
        'take a DP of this site out of the hierarchy: its targets and open transfers dropped, its groups and credential gone, its name freed once the sites above hear of it (admin)',
      )
      .argument('<name>', 'the DP'),
  ).action(async (name: string, o: AdminOpts) => {
    const r = await clientFrom(o).json<RemoveNeighbourAnswer>('DELETE', fillPath(PATHS.dp, { name }));
    if (o.json) printJson(r);
    else
      process.stdout.write(
        `DP ${name} removed: ${r.targets} target(s) and ${r.transfers} open transfer(s) dropped, its credential revoked; its content folder can be deleted on its machine\n`,
      );
  });

  adminOptions(
    dp
      .command('upgrade')
      .description(
        "resume the upgrade of this site's DPs to the release it runs: DPs that rolled back or did not come back are tried again, one at a time (operate)",
      )
      .argument('[names...]', 'only these DPs (default: every one that rolled back or failed)'),
  ).action(async (names: string[], o: AdminOpts) => {
    const r = await clientFrom(o).json<UpgradeAnswer>('POST', PATHS.dpUpgrade, { json: { dps: names } });
    if (o.json) printJson(r);
    else
      process.stdout.write(
        `${r.resumed.length === 0 ? 'no DP to try again' : `trying again: ${r.resumed.join(', ')}`}; the DPs follow release ${r.release} one at a time ("cascade dp list" shows each)\n`,
      );
  });

  const group = program.command('dp-group').description('named sets of DPs (possibly across sites), usable as --to group:NAME');
  const show = (o: AdminOpts, g: Group) => {
    if (o.json) printJson(g);
    else process.stdout.write(`${g.name}: ${g.members.length === 0 ? '(no DPs)' : g.members.join(', ')}\n`);
  };
  adminOptions(
    group
      .command('create')
      .description('create a DP group (operate)')
      .argument('<name>', 'group name')
      .option('--dp <name>', 'a DP to put in it (repeatable)', collect),
  ).action(async (name: string, o: AdminOpts & { dp?: string[] }) => {
    show(o, await clientFrom(o).json<Group>('POST', PATHS.dpGroups, { json: { name, dps: o.dp ?? [] } }));
  });
  for (const op of ['add', 'remove'] as const) {
    adminOptions(
      group
        .command(op)
        .description(op === 'add' ? 'add DPs to a group (operate)' : 'take DPs out of a group (operate)')
        .argument('<name>', 'group name')
        .requiredOption('--dp <name>', 'a DP (repeatable)', collect),
    ).action(async (name: string, o: AdminOpts & { dp: string[] }) => {
      show(
        o,
        await clientFrom(o).json<Group>('POST', fillPath(op === 'add' ? PATHS.dpGroupAdd : PATHS.dpGroupRemove, { name }), {
          json: { dps: o.dp },
        }),
      );
    });
  }
  adminOptions(group.command('list').description('every DP group')).action(async (o: AdminOpts) => {
    const r = await clientFrom(o).json<{ groups: Group[] }>('GET', PATHS.dpGroups);
    if (o.json) printJson(r);
    else if (r.groups.length === 0) process.stdout.write('no DP groups yet: cascade dp-group create NAME --dp A --dp B\n');
    else
      process.stdout.write(
        table([['GROUP', 'DPS', 'MEMBERS'], ...r.groups.map((g) => [g.name, String(g.members.length), g.members.join(',')])]),
      );
  });
  adminOptions(group.command('show').description('one DP group').argument('<name>', 'group name')).action(
    async (name: string, o: AdminOpts) => {
      show(o, await clientFrom(o).json<Group>('GET', fillPath(PATHS.dpGroup, { name })));
    },
  );
  adminOptions(
    group.command('delete').description('delete a DP group; its DPs are untouched (operate)').argument('<name>', 'group name'),
  ).action(async (name: string, o: AdminOpts) => {
    const r = await clientFrom(o).json<{ deleted: string }>('DELETE', fillPath(PATHS.dpGroup, { name }));
    if (o.json) printJson(r);
    else process.stdout.write(`deleted DP group ${r.deleted}\n`);
  });
  group.action(() => {
    throw fail('usage', 'say what to do with DP groups: create, add, remove, list, show or delete (see --help)');
  });
}
