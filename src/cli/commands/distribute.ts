import type { Command } from 'commander';
import { fail } from '../../core/errors.js';
import { parsePackageId } from '../../core/package.js';
import { printJson } from '../../lib/output.js';
import { type AdminOpts, adminOptions, clientFrom, DEFAULT_SITE, parseIntOpt, table } from '../common.js';
import { fmtBytes } from '../progress.js';

interface Target {
  site: string;
  dp: string;
  via: string | null;
  version: number;
  state: string;
  bytesDone: number;
  bytesTotal: number;
  rate: number;
  etaSeconds: number | null;
  retries: number;
  nextRetryAt: string | null;
  lastError: string | null;
  detail: string | null;
}
interface Summary {
  targeted: number;
  installed: number;
  sending: number;
  pending: number;
  retrying: number;
  failed: number;
}

const collect = (v: string, prev: string[] = []) => [...prev, v];

const fmtEta = (s: number | null) =>
  s === null ? '-' : s < 90 ? `${s}s` : s < 5400 ? `${Math.round(s / 60)}m` : `${(s / 3600).toFixed(1)}h`;

function statusText(r: { packageId: string; summary: Summary; targets: Target[] }): string {
  const s = r.summary;
  let out = `${r.packageId}: ${s.targeted} targeted, ${s.installed} installed, ${s.sending} sending, ${s.pending} pending, ${s.retrying} retrying, ${s.failed} failed\n`;
  out += table([
    ['SITE', 'VERSION', 'STATE', 'DONE', 'RATE', 'ETA', 'RETRIES', 'NEXT RETRY', 'LAST ERROR / NOTE'],
    ...r.targets.map((t) => [
      t.site,
      String(t.version),
      t.state,
      `${fmtBytes(t.bytesDone)}/${fmtBytes(t.bytesTotal)}`,
      t.rate ? `${fmtBytes(t.rate)}/s` : '-',
      fmtEta(t.etaSeconds),
      String(t.retries),
      t.nextRetryAt ?? '-',
      t.lastError ?? t.detail ?? '',
    ]),
  ]);
  return out;
}

/** `cascade distribute`, `cascade status`, `cascade messages`. */
export function registerDistribute(program: Command): void {
  adminOptions(
    program
      .command('distribute')
      .description('send a package version to sites at or below this one; each route carries it once')
      .argument('<id>', 'package ID')
      .requiredOption('--to <target>', 'site:CODE (repeatable)', collect)
      .option('--version <n>', 'version (default latest)', parseIntOpt('--version', 1))
      .option('--via <how>', 'network (default), or courier: no chunk crosses the route; carry a parcel (cascade courier export)'),
  ).action(async (id: string, o: AdminOpts & { to: string[]; version?: number; via?: string }) => {
    for (const t of o.to) if (!/^site:[A-Za-z0-9]{3}$/.test(t)) throw fail('usage', `--to "${t}" is not site:CODE (e.g. --to site:NYC)`);
    if (o.via !== undefined && o.via !== 'network' && o.via !== 'courier') throw fail('usage', '--via must be network or courier');
    const r = await clientFrom(o).json<{
      packageId: string;
      version: number;
      targets: { site: string; via: string | null; state: string; added: boolean }[];
    }>('POST', '/api/v1/distributions', {
      json: { packageId: parsePackageId(id), to: o.to, ...(o.version ? { version: o.version } : {}), ...(o.via ? { via: o.via } : {}) },
    });
    if (o.json) printJson(r);
    else {
      process.stdout.write(`${r.packageId} version ${r.version}:\n`);
      process.stdout.write(
        table([
          ['TARGET', 'VIA', 'STATE', ''],
          ...r.targets.map((t) => [`site:${t.site}`, t.via ?? '(this site)', t.state, t.added ? '' : '(already targeted)']),
        ]),
      );
      if (o.via === 'courier')
        process.stdout.write(
          `by courier: no chunk crosses the route; make the parcel with: cascade courier export ${r.packageId} --version ${r.version} --to-site CODE -o FILE\n`,
        );
    }
  });

  adminOptions(
    program
      .command('status')
      .description('where a package is: each target below this site (state, bytes, rate, ETA, retries); without ID, every package')
      .argument('[id]', 'package ID')
      .option('--watch', 'refresh every 2 seconds until Ctrl-C'),
  ).action(async (id: string | undefined, o: AdminOpts & { watch?: boolean }) => {
    const client = clientFrom(o);
    const once = async () => {
      if (id) {
        const r = await client.json<{ packageId: string; summary: Summary; targets: Target[] }>(
          'GET',
          `/api/v1/distributions/${parsePackageId(id)}`,
        );
        return o.json ? `${JSON.stringify(r, null, 2)}\n` : statusText(r);
      }
      const r = await client.json<{ packages: { packageId: string; summary: Summary }[] }>('GET', '/api/v1/distributions');
      if (o.json) return `${JSON.stringify(r, null, 2)}\n`;
      if (r.packages.length === 0) return 'nothing distributed yet: cascade distribute ID --to site:CODE\n';
      return table([
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
    };
    if (!o.watch) {
      process.stdout.write(await once());
      return;
    }
    for (;;) {
      const text = await once();
      process.stdout.write(process.stdout.isTTY ? `\x1b[H\x1b[2J${text}` : text);
      await new Promise((r) => setTimeout(r, 2000));
    }
  });

  adminOptions(
    program
      .command('messages')
      .description('status messages of this site and the sites below it, newest first')
      .option('--package <id>', 'only about this package')
      .option('--severity <level>', 'info, warning (and worse) or error')
      .option('--limit <n>', 'at most this many (default 200)', parseIntOpt('--limit')),
    true,
    `a site CODE: only messages from that site; or the site server URL (default ${DEFAULT_SITE}, or CASCADE_SITE)`,
  ).action(async (opts: AdminOpts & { package?: string; severity?: string; limit?: number }) => {
    // --site is the server URL elsewhere; here a three-character code filters by site.
    const code = opts.site && /^[A-Za-z0-9]{3}$/.test(opts.site) ? opts.site.toUpperCase() : undefined;
    const o = { ...opts, site: code ? process.env.CASCADE_SITE || undefined : opts.site, from: code };
    if (o.severity && !['info', 'warning', 'error'].includes(o.severity)) throw fail('usage', '--severity must be info, warning or error');
    const r = await clientFrom(o).json<{
      messages: { time: string; site: string; component: string; severity: string; code: string; text: string; packageId: string | null }[];
    }>('GET', '/api/v1/messages', { query: { site: o.from, package: o.package, severity: o.severity, limit: o.limit } });
    if (o.json) printJson(r);
    else
      process.stdout.write(
        table([
          ['TIME', 'SITE', 'SEVERITY', 'COMPONENT', 'CODE', 'TEXT'],
          ...r.messages.map((m) => [m.time, m.site, m.severity, m.component, m.code, m.text]),
        ]),
      );
  });

  adminOptions(
    program
      .command('queue')
      .description("each route's queue in the order the sender takes it: sending now, waiting, bytes left, ETA")
      .option('--route <code>', 'only the route to this child site'),
  ).action(async (o: AdminOpts & { route?: string }) => {
    const r = await clientFrom(o).json<{
      routes: {
        child: string;
        rate: string;
        concurrency: number;
        schedule: string;
        bytesLeft: number;
        transfers: {
          position: number;
          packageId: string;
          version: number;
          priority: string;
          state: string;
          targets: string[];
          bytesLeft: number;
          etaSeconds: number | null;
          nextAttemptAt: string | null;
          lastError: string | null;
        }[];
      }[];
    }>('GET', '/api/v1/queue', { query: { route: o.route } });
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
        `route to ${q.child}: ${q.rate}, ${q.concurrency} in flight, schedule "${q.schedule}"; ${fmtBytes(q.bytesLeft)} to send\n`,
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
              fmtEta(t.etaSeconds),
              t.targets.join(','),
              t.state === 'retrying' ? `retry at ${t.nextAttemptAt}: ${t.lastError ?? ''}` : '',
            ]),
          ]),
        );
    }
  });
}
