import type { Command } from 'commander';
import { fillPath, PATHS } from '../../api/paths.js';
import type { RouteView } from '../../api/routes.js';
import { normaliseTarget } from '../../core/dp.js';
import { fail } from '../../core/errors.js';
import { formatRate, parseRate } from '../../core/rate.js';
import { checkTimeZone, parseSchedule, scheduleTable, scheduleWarnings } from '../../core/schedule.js';
import { printJson } from '../../lib/output.js';
import { type AdminOpts, adminOptions, clientFrom, parseIntOpt, table } from '../common.js';

const show = (r: RouteView): string =>
  `route to ${r.child}: rate ${formatRate(r.rate)}, ${r.concurrency} package(s) in flight, schedule "${r.schedule.spec}" (${r.schedule.timeZone})\n` +
  `${scheduleTable({ timeZone: r.schedule.timeZone, cells: r.schedule.cells })
    .map((l) => `  ${l}`)
    .join('\n')}\n  (A all priorities, M medium and high, H high only, . closed)\n`;

/** `cascade route set | show | list`: the links from this site to its child sites. */
export function registerRoute(program: Command): void {
  const route = program.command('route').description('the links from a site to its child sites: rate, concurrency, schedule');

  adminOptions(
    route
      .command('set')
      .description('set the route to a child site (options left out keep their value)')
      .argument('<child>', 'child site code or DP name')
      .option('--rate <rate>', 'byte rate, e.g. 2MiB/s, 10Mbit/s, unlimited')
      .option('--concurrency <n>', 'packages in flight on this route (1-64)', parseIntOpt('--concurrency'))
      .option('--schedule <spec>', 'when each priority may send, e.g. "mon-fri 08-18 high; sat-sun all" (docs/schedules.md)')
      .option('--time-zone <zone>', "IANA time zone the schedule is read in (default: the route's, else UTC)"),
  ).action(async (child: string, o: AdminOpts & { rate?: string; concurrency?: number; schedule?: string; timeZone?: string }) => {
    if (o.rate === undefined && o.concurrency === undefined && o.schedule === undefined && o.timeZone === undefined) {
      throw fail('usage', 'say what to set: --rate, --concurrency, --schedule or --time-zone');
    }
    if (o.concurrency !== undefined && (o.concurrency < 1 || o.concurrency > 64)) throw fail('usage', '--concurrency must be 1 to 64');
    // Bad SPEC text or zone is bad usage: say so here, before asking the site.
    if (o.timeZone !== undefined) checkTimeZone(o.timeZone);
    if (o.schedule !== undefined) {
      parseSchedule(o.schedule, o.timeZone ?? 'UTC');
      for (const w of scheduleWarnings(o.schedule)) process.stderr.write(`cascade: warning: ${w}\n`);
    }
    const body = {
      ...(o.rate !== undefined ? { rate: parseRate(o.rate) } : {}),
      ...(o.concurrency !== undefined ? { concurrency: o.concurrency } : {}),
      ...(o.schedule !== undefined ? { schedule: o.schedule } : {}),
      ...(o.timeZone !== undefined ? { timeZone: o.timeZone } : {}),
    };
    const r = await clientFrom(o).json<RouteView>('PUT', fillPath(PATHS.route, { child: normaliseTarget(child) }), { json: body });
    if (o.json) printJson(r);
    else process.stdout.write(show(r));
  });

  adminOptions(
    route.command('show').description('show the route to a child site').argument('<child>', 'child site code or DP name'),
  ).action(async (child: string, o: AdminOpts) => {
    const r = await clientFrom(o).json<RouteView>('GET', fillPath(PATHS.route, { child: normaliseTarget(child) }));
    if (o.json) printJson(r);
    else process.stdout.write(show(r));
  });

  adminOptions(route.command('list').description('every route from this site to its children')).action(async (o: AdminOpts) => {
    const r = await clientFrom(o).json<{ routes: RouteView[] }>('GET', PATHS.routes);
    if (o.json) printJson(r);
    else if (r.routes.length === 0)
      process.stdout.write('no child sites yet: join one with "cascade site join-token" and "cascade site init --parent"\n');
    else
      process.stdout.write(
        table([
          ['CHILD', 'RATE', 'IN FLIGHT', 'SCHEDULE'],
          ...r.routes.map((x) => [x.child, formatRate(x.rate), String(x.concurrency), `${x.schedule.spec} (${x.schedule.timeZone})`]),
        ]),
      );
  });

  const sender = program.command('sender').description("a site's sender: packages in flight across all its routes");
  adminOptions(sender.command('show').description('show the sender settings')).action(async (o: AdminOpts) => {
    const r = await clientFrom(o).json<{ concurrency: number }>('GET', PATHS.sender);
    if (o.json) printJson(r);
    else process.stdout.write(`sender: ${r.concurrency} package(s) in flight across all routes\n`);
  });
  adminOptions(
    sender
      .command('set')
      .description('set how many packages this site sends at once across all routes')
      .requiredOption('--concurrency <n>', 'packages in flight (1-256)', parseIntOpt('--concurrency')),
  ).action(async (o: AdminOpts & { concurrency: number }) => {
    if (o.concurrency < 1 || o.concurrency > 256) throw fail('usage', '--concurrency must be 1 to 256');
    const r = await clientFrom(o).json<{ concurrency: number }>('PUT', PATHS.sender, { json: { concurrency: o.concurrency } });
    if (o.json) printJson(r);
    else process.stdout.write(`sender: ${r.concurrency} package(s) in flight across all routes\n`);
  });
}
