import type { Command } from 'commander';
import type { FreshnessView } from '../../api/clients.js';
import { fillPath, PATHS } from '../../api/paths.js';
import type { JoinTokenAnswer, RemoveNeighbourAnswer, SiteEntry, SiteProcess } from '../../api/sites.js';
import { formatAge } from '../../core/time.js';
import { printJson } from '../../lib/output.js';
import { type AdminOpts, adminOptions, clientFrom, parseIntOpt, table } from '../common.js';
import { releaseProblems, releaseText } from './dp.js';

/** `cascade site join-token | list`: hierarchy commands over a site's API. */
export function registerSiteAdmin(site: Command): void {
  adminOptions(
    site
      .command('join-token')
      .description('issue a one-time, expiring token a child site joins with (admin)')
      .option('--ttl <seconds>', 'how long it stays valid (default 3600)', parseIntOpt('--ttl')),
  ).action(async (o: AdminOpts & { ttl?: number }) => {
    const r = await clientFrom(o).json<JoinTokenAnswer>('POST', PATHS.joinTokens, {
      json: { kind: 'site', ttlSeconds: o.ttl ?? 3600 },
    });
    if (o.json) printJson(r);
    else {
      process.stdout.write(`${r.token}\n`);
      // Which site answered, on stderr: the token alone stays on stdout for TOKEN=$(...).
      process.stderr.write(`join token for a child site of site ${r.site}, valid until ${r.expiresAt}\n`);
    }
  });

  adminOptions(
    site
      .command('remove')
      .description(
        'take a child site out of the hierarchy, with every site and DP below it: targets and open transfers dropped, its credential revoked, the codes freed once the sites above hear of it (admin)',
      )
      .argument('<code>', 'the child site'),
  ).action(async (code: string, o: AdminOpts) => {
    const r = await clientFrom(o).json<RemoveNeighbourAnswer>('DELETE', fillPath(PATHS.site1, { code: code.toUpperCase() }));
    if (o.json) printJson(r);
    else
      process.stdout.write(
        `site ${r.removed[0]} removed${r.removed.length > 1 ? ` with ${r.removed.slice(1).join(', ')} below it` : ''}: ${r.targets} target(s) and ${r.transfers} open transfer(s) dropped, its credential revoked\n`,
      );
  });

  adminOptions(site.command('list').description('this site, its parent and every site below it')).action(async (o: AdminOpts) => {
    const r = await clientFrom(o).json<{ central: string; sites: SiteEntry[]; freshness?: FreshnessView[]; processes?: SiteProcess[] }>(
      'GET',
      PATHS.sites,
    );
    if (o.json) {
      printJson(r);
      return;
    }
    // The tree below this site, depth first, children in code order.
    const below = r.sites.filter((s) => s.relation !== 'parent');
    const self = below.find((s) => s.relation === 'self');
    const ordered: [SiteEntry, number][] = [];
    const visit = (s: SiteEntry, depth: number) => {
      ordered.push([s, depth]);
      for (const c of below.filter((x) => x.parent === s.code && x.relation !== 'self')) visit(c, depth + 1);
    };
    if (self) visit(self, 0);
    const rows = ordered.map(([s, d]) => [
      `${'  '.repeat(d)}${s.code}`,
      s.name,
      s.parent ?? '-',
      s.url ?? '-',
      s.relation === 'self'
        ? 'this site'
        : s.reachable === null
          ? s.relation === 'descendant'
            ? 'via child'
            : 'unknown'
          : s.reachable
            ? 'yes'
            : 'NO',
      s.lastContact ?? '-',
      releaseText(s.release),
    ]);
    const parent = r.sites.find((s) => s.relation === 'parent');
    process.stdout.write(
      `central site: ${r.central}${parent ? `; parent: ${parent.code} at ${parent.url} (reachable: ${parent.reachable === null ? 'unknown' : parent.reachable ? 'yes' : 'NO'})` : ''}\n`,
    );
    process.stdout.write(
      table([['CODE', 'NAME', 'PARENT', 'URL', 'REACHABLE', 'LAST CONTACT', 'RELEASE'], ...rows]) +
        releaseProblems(ordered.map(([s]) => ({ name: s.code, release: s.release }))),
    );
    if (r.freshness?.length) process.stdout.write(freshnessText(r.freshness));
    // A site served by several processes (PostgreSQL) shows each, its health and the work it holds.
    if (r.processes && r.processes.length > 1) process.stdout.write(processesText(r.processes));
  });
}

function processesText(ps: readonly SiteProcess[]): string {
  const rows = ps.map((p) => [p.id, `${p.host}:${p.pid}`, p.url, p.state.toUpperCase(), p.seenAt, p.release, p.holds.join(', ') || '-']);
  return `processes of this site:\n${table([['PROCESS', 'HOST:PID', 'URL', 'STATE', 'LAST HEARTBEAT', 'RELEASE', 'HOLDS'], ...rows])}`;
}

/** The newest signed word from each site above, and what it says this site lacks. */
function freshnessText(views: readonly FreshnessView[]): string {
  let out = 'signed word from the sites above (what each published, as of when it signed):\n';
  for (const v of views) {
    out += `  ${v.site}  signed ${v.signedAt} (${formatAge(v.ageSeconds)} ago)  ${v.stale ? 'STALE: newer versions may be withheld on the way' : 'fresh'}\n`;
    for (const b of v.behind) out += `    ${b.packageId}: version ${b.held} here, ${b.latest} published at ${v.site}\n`;
  }
  return out;
}
