import type { Command } from 'commander';
import type { DistributionStatus, DpVersions, Message, Plan, Summary, Transfer, UndistributeAnswer } from '../../api/distributions.js';
import { fillPath, PATHS } from '../../api/paths.js';
import type { RouteQueue } from '../../api/routes.js';
import { SEVERITIES, type Severity } from '../../core/distribution.js';
import { normaliseTarget, TARGET_NAME } from '../../core/dp.js';
import { fail } from '../../core/errors.js';
import { parsePackageId } from '../../core/package.js';
import { formatRate } from '../../core/rate.js';
import { printJson } from '../../lib/output.js';
import { type AdminOpts, adminOptions, clientFrom, collect, DEFAULT_SITE, parseIntOpt, table } from '../common.js';
import { fmtBytes } from '../progress.js';

/** A severity as typed: any case, and the usual short forms (`warn`, `err`). */
export function parseSeverity(v: string): Severity {
  const w = v.toLowerCase();
  const found = w.length > 0 ? SEVERITIES.find((s) => s.startsWith(w)) : undefined;
  if (!found) throw fail('usage', `--severity must be info, warning or error (or i, warn, err), not "${v}"`);
  return found;
}

/** Nothing left on its way: every target installed, failed or removed. */
const settled = (s: Summary): boolean => s.sending + s.pending + s.retrying + s.removing === 0;

export const fmtEta = (s: number | null) =>
  s === null ? 'never' : s < 90 ? `${Math.round(s)}s` : s < 5400 ? `${Math.round(s / 60)}m` : `${(s / 3600).toFixed(1)}h`;

const TARGET_SPEC = /^(site|dp|group):.+$/;
function checkSpecs(flag: string, specs: string[]): void {
  for (const t of specs)
    if (!TARGET_SPEC.test(t)) throw fail('usage', `${flag} "${t}" is not site:CODE, dp:NAME or group:NAME (e.g. ${flag} site:NYC)`);
}

const line = (s: Summary) =>
  `${s.targeted} targeted, ${s.installed} installed, ${s.sending} sending, ${s.pending} pending, ${s.retrying} retrying, ${s.failed} failed` +
  (s.removing || s.removed ? `, ${s.removing} removing, ${s.removed} removed` : '');

function statusText(r: {
  packageId: string;
  summary: Summary;
  sites: { site: string; summary: Summary }[];
  groups: { group: string; summary: Summary }[];
  dps: DpVersions[];
}): string {
  let out = `${r.packageId}: ${line(r.summary)} (DPs)\n`;
  out += table([
    ['DP', 'SITE', 'SERVES', 'ARRIVING', 'STATE', 'DONE', 'RATE', 'ETA', 'RETRIES', 'NEXT RETRY', 'LAST ERROR / NOTE'],
    ...r.dps.map((t) => [
      t.dp,
      t.site,
      t.serving === null ? '-' : `v${t.serving}`,
      t.arriving === null ? '-' : `v${t.arriving}`,
      t.state,
      `${fmtBytes(t.bytesDone)}/${fmtBytes(t.bytesTotal)}`,
      t.rate ? `${fmtBytes(t.rate)}/s` : '-',
      t.etaSeconds === null ? '-' : fmtEta(t.etaSeconds),
      String(t.retries),
      t.nextRetryAt ?? '-',
      t.note ?? '',
    ]),
  ]);
  if (r.sites.length > 1 || r.groups.length > 0) {
    out += '\n';
    out += table([
      ['ROLL-UP', 'TARGETED', 'INSTALLED', 'IN PROGRESS', 'PENDING', 'RETRYING', 'FAILED', 'REMOVED'],
      ...[
        ...r.sites.map((x) => [`site:${x.site}`, x.summary] as const),
        ...r.groups.map((x) => [`group:${x.group}`, x.summary] as const),
      ].map(([name, s]) => [
        name,
        String(s.targeted),
        String(s.installed),
        String(s.sending),
        String(s.pending),
        String(s.retrying),
        String(s.failed),
        String(s.removed),
      ]),
    ]);
  }
  return out;
}

/** This site's own routes in a plan: the first hop of each target's path. */
const firstHops = (r: Plan): Set<string> => new Set(r.targets.map((t) => `${t.path[0]} -> ${t.path[1] ?? ''}`));

function planText(r: Plan, courier = false): string {
  let out = `${r.packageId} version ${r.version} (${fmtBytes(r.bytes)})${r.dryRun ? ': dry run, nothing was started' : ': started'}\n`;
  const first = firstHops(r);
  out += table([
    ['ROUTE', 'BYTES', 'RATE', 'ETA', ''],
    ...r.routes.map((x) =>
      // By courier, this site's own routes carry no chunk: what they lack waits for a parcel.
      courier && first.has(`${x.from} -> ${x.to}`)
        ? [`${x.from} -> ${x.to}`, fmtBytes(x.bytes), 'courier', '-', `waiting for a parcel: ${x.bytes} bytes`]
        : [
            `${x.from} -> ${x.to}`,
            fmtBytes(x.bytes),
            x.rate === null ? 'unlimited' : `${fmtBytes(x.rate)}/s`,
            fmtEta(x.etaSeconds),
            x.note ?? '',
          ],
    ),
  ]);
  out += '\n';
  out += table([
    ['DP', 'SITE', 'PATH', 'STATE', 'BYTES IN', 'ETA', ''],
    ...r.targets.map((t) => [
      t.dp,
      t.site,
      t.path.join(' > '),
      t.state,
      fmtBytes(t.bytes),
      t.state === 'installed' ? '-' : fmtEta(t.etaSeconds),
      t.added ? '' : '(already targeted)',
    ]),
  ]);
  for (const t of r.targets) if (t.warning) out += `warning: ${t.warning}\n`;
  return out;
}

/** `cascade distribute`, `undistribute`, `status`, `messages`. */
export function registerDistribute(program: Command): void {
  adminOptions(
    program
      .command('distribute')
      .description(
        'send a package version to DPs at or below this site (each route carries it once); prints the plan: ' +
          'bytes per route after what each receiver holds, ETA per target from route rates and schedules',
      )
      .argument('<id>', 'package ID')
      .requiredOption('--to <target>', 'site:CODE (every DP of the site), dp:NAME or group:NAME (repeatable)', collect)
      .option('--version <n>', 'version (default latest)', parseIntOpt('--version', 1))
      .option('--dry-run', 'only show the plan; change nothing')
      .option(
        '--via <how>',
        "network (default), or courier: no chunk crosses the routes to child sites or this site's DPs; carry a parcel (cascade courier export)",
      ),
  ).action(async (id: string, o: AdminOpts & { to: string[]; version?: number; dryRun?: boolean; via?: string }) => {
    checkSpecs('--to', o.to);
    if (o.via !== undefined && o.via !== 'network' && o.via !== 'courier') throw fail('usage', '--via must be network or courier');
    const r = await clientFrom(o).json<Plan>('POST', PATHS.distributions, {
      json: {
        packageId: parsePackageId(id),
        to: o.to,
        ...(o.version ? { version: o.version } : {}),
        ...(o.dryRun ? { dryRun: true } : {}),
        ...(o.via ? { via: o.via } : {}),
      },
    });
    if (o.json) printJson(r);
    else {
      const courier = o.via === 'courier';
      process.stdout.write(planText(r, courier));
      if (courier && !o.dryRun) {
        const hops = [...new Set(r.targets.map((t) => t.path[1]).filter((h): h is string => h !== undefined))];
        process.stdout.write("by courier: no chunk crosses the routes to child sites or this site's DPs; make the parcels with:\n");
        for (const h of hops)
          process.stdout.write(
            `  cascade courier export ${r.packageId} --version ${r.version} ${h.length === 3 ? '--to-site' : '--to-dp'} ${h} -o ${h}.parcel\n`,
          );
      }
    }
  });

  adminOptions(
    program
      .command('undistribute')
      .description('remove a package version from DPs at or below this site (removal states show in "cascade status"); GC frees the chunks')
      .argument('<id>', 'package ID')
      .requiredOption('--from <target>', 'site:CODE, dp:NAME or group:NAME (repeatable)', collect)
      .option('--version <n>', 'version (default latest)', parseIntOpt('--version', 1)),
  ).action(async (id: string, o: AdminOpts & { from: string[]; version?: number }) => {
    checkSpecs('--from', o.from);
    const r = await clientFrom(o).json<UndistributeAnswer>('POST', PATHS.undistributions, {
      json: { packageId: parsePackageId(id), from: o.from, ...(o.version ? { version: o.version } : {}) },
    });
    if (o.json) printJson(r);
    else {
      process.stdout.write(`${r.packageId} version ${r.version}:\n`);
      process.stdout.write(table([['DP', 'SITE', 'STATE'], ...r.targets.map((t) => [t.dp, t.site, t.state])]));
    }
  });

  adminOptions(
    program
      .command('status')
      .description(
        'where a package is: each target DP below this site (state, bytes, rate, ETA, retries, next retry, last error), ' +
          'with roll-ups per site and DP group; without ID, every package',
      )
      .argument('[id]', 'package ID')
      .option('--watch', 'refresh every 2 seconds until Ctrl-C (without a terminal: print each change once)')
      .option('--until-done', 'with --watch: stop once every target is installed, failed or removed (exit 1 if any failed)'),
  ).action(async (id: string | undefined, o: AdminOpts & { watch?: boolean; untilDone?: boolean }) => {
    if (o.untilDone && !o.watch) throw fail('usage', '--until-done goes with --watch');
    const client = clientFrom(o);
    /** The text to show, and the roll-up it is about (to know when everything has settled). */
    const once = async (): Promise<{ text: string; summary: Summary | undefined }> => {
      if (id) {
        const r = await client.json<DistributionStatus>('GET', fillPath(PATHS.distribution, { id: parsePackageId(id) }));
        return { text: o.json ? `${JSON.stringify(r, null, 2)}\n` : statusText(r), summary: r.summary };
      }
      const r = await client.json<{ packages: { packageId: string; summary: Summary }[] }>('GET', PATHS.distributions);
      const summary = r.packages.reduce<Summary | undefined>(
        (all, p) =>
          all === undefined
            ? { ...p.summary }
            : (Object.fromEntries(Object.entries(all).map(([k, v]) => [k, v + p.summary[k as keyof Summary]])) as Summary),
        undefined,
      );
      if (o.json) return { text: `${JSON.stringify(r, null, 2)}\n`, summary };
      if (r.packages.length === 0) return { text: 'nothing distributed yet: cascade distribute ID --to site:CODE\n', summary };
      const text = table([
        ['PACKAGE', 'TARGETED', 'INSTALLED', 'IN PROGRESS', 'PENDING', 'RETRYING', 'FAILED'],
        ...r.packages.map((p) => [
          p.packageId,
          String(p.summary.targeted),
          String(p.summary.installed),
          String(p.summary.sending),
          String(p.summary.pending),
          String(p.summary.retrying),
          String(p.summary.failed),
        ]),
      ]);
      return { text, summary };
    };
    if (!o.watch) {
      process.stdout.write((await once()).text);
      return;
    }
    let last = '';
    for (;;) {
      const { text, summary } = await once();
      if (process.stdout.isTTY) process.stdout.write(`\x1b[H\x1b[2J${text}`);
      else if (text !== last) process.stdout.write(text);
      last = text;
      if (o.untilDone && summary && summary.targeted > 0 && settled(summary)) {
        if (summary.failed > 0) throw fail('conflict', `${summary.failed} of ${summary.targeted} targets failed (see "cascade messages")`);
        return;
      }
      await new Promise((r) => setTimeout(r, 2000));
    }
  });

  adminOptions(
    program
      .command('messages')
      .description('status messages of this site and the sites below it, newest first')
      .option('--package <id>', 'only about this package')
      .option('--severity <level>', 'info, warning (and worse) or error; any case, or short: i, warn, err')
      .option('--limit <n>', 'at most this many (default 200)', parseIntOpt('--limit', 1)),
    true,
    `a site CODE or a DP NAME: only messages from there; or the site server URL (default ${DEFAULT_SITE}, or CASCADE_SITE)`,
  ).action(async (opts: AdminOpts & { package?: string; severity?: string; limit?: number }) => {
    // --site is the server URL elsewhere; here a site code or a DP name (no "://") filters by where.
    const from = opts.site && !opts.site.includes('://') ? normaliseTarget(opts.site) : undefined;
    if (from !== undefined && !TARGET_NAME.test(from))
      throw fail('usage', `--site "${opts.site}" is neither a site code, a DP name nor a URL (e.g. --site NYC, --site nyc-dp1)`);
    const o = { ...opts, site: from ? process.env.CASCADE_SITE || undefined : opts.site };
    const severity = o.severity === undefined ? undefined : parseSeverity(o.severity);
    const r = await clientFrom(o).json<{ messages: Message[] }>('GET', PATHS.messages, {
      query: { site: from, package: o.package, severity, limit: o.limit },
    });
    if (o.json) printJson(r);
    else
      process.stdout.write(
        table([
          ['TIME', 'SITE', 'SEVERITY', 'COMPONENT', 'CODE', 'TEXT'],
          ...r.messages.map((m) => [m.time, m.site, m.severity, m.component, m.code, m.text]),
        ]),
      );
  });

  const transfer = program.command('transfer').description("control one of the sender's transfers (ids: cascade queue --json)");
  for (const [name, path, what] of [
    ['retry-now', PATHS.transferRetryNow, 'send a transfer waiting for its next attempt now, not after its backoff (operate)'],
    ['cancel', PATHS.transferCancel, 'stop a transfer that has not finished: it and its targets not yet installed become failed (operate)'],
  ] as const) {
    adminOptions(transfer.command(name).description(what).argument('<id>', 'transfer id')).action(async (id: string, o: AdminOpts) => {
      const t = await clientFrom(o).json<Transfer>('POST', fillPath(path, { id }));
      if (o.json) printJson(t);
      else
        process.stdout.write(
          `transfer ${t.id}: ${t.packageId} version ${t.version} to ${t.child}, ${t.state}${t.lastError ? ` (${t.lastError})` : ''}\n`,
        );
    });
  }
  transfer.action(() => {
    throw fail('usage', 'say what to do with the transfer: retry-now or cancel (see --help)');
  });

  adminOptions(
    program
      .command('queue')
      .description("each route's queue in the order the sender takes it: sending now, waiting, bytes left, ETA")
      .option('--route <code>', 'only the route to this child site'),
  ).action(async (o: AdminOpts & { route?: string }) => {
    const r = await clientFrom(o).json<{ routes: RouteQueue[] }>('GET', PATHS.queue, { query: { route: o.route } });
    if (o.json) {
      printJson(r);
      return;
    }
    if (r.routes.length === 0) {
      process.stdout.write('no child sites, so no routes\n');
      return;
    }
    for (const q of r.routes) {
      process.stdout.write(
        `route to ${q.child}: ${formatRate(q.rate)}, ${q.concurrency} in flight, schedule "${q.schedule.spec}"; ${fmtBytes(q.bytesLeft)} to send\n`,
      );
      if (q.transfers.length === 0) process.stdout.write('  (empty)\n');
      else
        process.stdout.write(
          table([
            ['  #', 'PACKAGE', 'VERSION', 'PRIORITY', 'STATE', 'LEFT', 'ETA', 'FOR', 'NOTE'],
            ...q.transfers.map((t) => [
              `  ${t.position}`,
              t.packageId,
              String(t.version),
              t.priority,
              t.state,
              fmtBytes(t.bytesLeft),
              t.etaSeconds === null ? '-' : fmtEta(t.etaSeconds),
              t.targets.join(','),
              t.state === 'retrying' ? `retry at ${t.nextAttemptAt}: ${t.lastError ?? ''}` : '',
            ]),
          ]),
        );
    }
  });
}
