import type { ApiClient } from '../../api/client.js';
import type { Ingest, PackageSource } from '../../api/packages.js';
import { fillPath, PATHS } from '../../api/paths.js';
import type { Program } from '../../content/manifest.js';
import { fail } from '../../core/errors.js';
import type { Priority } from '../../core/package.js';
import { printJson } from '../../lib/output.js';
import { fmtBytes, Progress } from '../progress.js';

/** How often the CLI learns how far the site's reading has come (the site answers at once when it ends). */
const POLL_MS = 250;

/**
 * `package create|update --source-on-site`: the site reads the folder itself. The CLI starts the
 * work, then follows it with a progress bar; with --detach, or if the CLI goes away, the work
 * goes on (`cascade package show ID` follows it).
 */
export async function ingestOnSite(
  client: ApiClient,
  o: {
    json?: boolean;
    detach?: boolean;
    name?: string;
    priority?: Priority;
    program?: Program[];
    hold?: boolean;
    verifyContent?: boolean;
  },
  source: string | undefined,
  id: string | null,
): Promise<void> {
  const started = id
    ? await client.json<PackageSource>('POST', fillPath(PATHS.packageRefresh, { id }), {
        json: { source, name: o.name, priority: o.priority, programs: o.program, hold: o.hold, verifyContent: o.verifyContent },
      })
    : await client.json<PackageSource>('POST', PATHS.packagesFromSource, {
        json: { source, name: o.name, priority: o.priority, programs: o.program },
      });
  const pkg = started.package;
  if (o.detach) {
    if (o.json) printJson(started);
    else process.stdout.write(`${pkg}: the site is reading ${started.path}; follow it with "cascade package show ${pkg}"\n`);
    return;
  }
  if (!o.json && process.stderr.isTTY)
    process.stderr.write(`${pkg}: the site reads ${started.path} (Ctrl-C leaves it working: "cascade package show ${pkg}")\n`);
  const progress = new Progress(id ? `update ${pkg}` : `create ${pkg}`, 0, !o.json);
  let s = started;
  try {
    while (s.ingest?.state === 'ingesting') {
      progress.setTotal(s.ingest.bytes);
      progress.update(
        s.ingest.doneBytes,
        `${s.ingest.doneFiles}/${s.ingest.files} files${s.ingest.etaSeconds !== null ? `, ${s.ingest.etaSeconds} s left` : ''}`,
      );
      s = await client.json<PackageSource>('GET', fillPath(PATHS.packageSource, { id: pkg }), { query: { waitMs: POLL_MS } });
    }
  } finally {
    progress.done();
  }
  const i = s.ingest as Ingest;
  if (i.state === 'failed') throw fail('invalid_source', `${pkg}: reading ${s.path} on the site failed: ${i.error}`);
  const v = i.version as NonNullable<Ingest['version']>;
  if (o.json) {
    printJson({ ...v, sentBytes: 0, deltaChunks: 0, source: s.path });
    return;
  }
  if (v.unchanged) {
    process.stdout.write(`${v.id}: nothing changed in ${s.path} since version ${v.version}; no new version made\n`);
    return;
  }
  const secs = (Date.parse(i.finishedAt ?? '') - Date.parse(i.startedAt)) / 1000;
  process.stdout.write(
    `${v.id} version ${v.version}: ${v.files} files, ${fmtBytes(v.bytes)}; new to the library: ${fmtBytes(v.newBytes)} (${v.newChunks} new chunks); ` +
      `read on the site from ${s.path}${secs > 0 ? ` in ${secs.toFixed(1)} s` : ''}\n` +
      (v.flowsTo?.length
        ? `version ${v.version} now flows to the ${v.flowsTo.length} DP(s) holding ${v.id}: ${v.flowsTo.join(', ')}\n`
        : id && o.hold
          ? `version ${v.version} is staged: no DP gets it until "cascade distribute ${v.id} --version ${v.version} --to ..."\n`
          : ''),
  );
}

const every = (secs: number): string =>
  secs % 86400 === 0 ? `${secs / 86400}d` : secs % 3600 === 0 ? `${secs / 3600}h` : secs % 60 === 0 ? `${secs / 60}m` : `${secs}s`;

/** Lines for `package show`: the folder on the site, its schedule, and the reading under way or last done. */
export function describeSource(s: PackageSource): string {
  let out = `  source on the site: ${s.path}`;
  out += s.refreshEverySeconds
    ? `, read again every ${every(s.refreshEverySeconds)}${s.distribute ? ' (new versions flow to its DPs)' : ' (new versions are staged)'}; next ${s.nextRefreshAt}\n`
    : ' (read again only when asked: cascade package update ID)\n';
  const i = s.ingest;
  if (!i) return out;
  const who = i.trigger === 'schedule' ? 'scheduled refresh' : 'read';
  if (i.state === 'ingesting')
    out += `  ingesting, ${i.percent} %: ${i.doneFiles}/${i.files} files, ${fmtBytes(i.doneBytes)} of ${fmtBytes(i.bytes)}, ${fmtBytes(i.bytesPerSecond)}/s${i.etaSeconds !== null ? `, ${i.etaSeconds} s left` : ''} (${who} started ${i.startedAt})\n`;
  else if (i.state === 'failed') out += `  last ${who} failed at ${i.finishedAt}: ${i.error}\n`;
  else if (i.state === 'unchanged') out += `  last ${who} ${i.finishedAt}: nothing changed since version ${i.version?.version}\n`;
  else out += `  last ${who} ${i.finishedAt}: made version ${i.version?.version}\n`;
  return out;
}
