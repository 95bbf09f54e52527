import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import type {
  AdvertisementEntry,
  AdvertisementStatus,
  AgentJoinTokenAnswer,
  AgentPublishAnswer,
  AgentVersions,
  BoundaryEntry,
  ClientEntry,
  ClientSettings,
  CollectionDetail,
  CollectionEntry,
  WhyAnswer,
} from '../../api/clients.js';
import { fillPath, PATHS } from '../../api/paths.js';
import { AGENT_VERSION, parseAdvertisementId, parseAgentVersion, parseClientId, RERUN, SLOW_LINK } from '../../core/client.js';
import { fail } from '../../core/errors.js';
import { parsePackageId } from '../../core/package.js';
import { formatRate, parseRate } from '../../core/rate.js';
import { parseDuration, parseWhen } from '../../core/time.js';
import { printJson } from '../../lib/output.js';
import { bundledAgentUrl } from '../../lib/version.js';
import { type AdminOpts, adminOptions, clientFrom, collect, parseIntOpt, table } from '../common.js';
import { fmtBytes } from '../progress.js';

/**
 * Clients and what they are offered: agent join tokens, clients, boundaries, collections,
 * advertisements, their status, and `why` (docs/clients.md).
 */

const duration = (what: string) => (v: string) => parseDuration(v, what);
/** A duration that may be none: `0` or `0s` (no spread, no grace). */
const durationOrNone = (what: string) => (v: string) => (/^0+\s*[smhdw]?$/i.test(v.trim()) ? 0 : parseDuration(v, what));
const oneOf =
  <T extends string>(what: string, values: readonly T[]) =>
  (v: string): T => {
    if (!(values as readonly string[]).includes(v)) throw fail('usage', `${what} must be ${values.join(', ')}; not "${v}"`);
    return v as T;
  };

const ago = (iso: string | null) => (iso ? iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '-');

export function registerClientsAdmin(program: Command): void {
  const agent = program.commands.find((c) => c.name() === 'agent') ?? program.command('agent').description('the client agent');
  adminOptions(
    agent
      .command('join-token')
      .description('issue an agent join token at this site: usable N times until it expires (agents enrol with "cascade agent init")')
      .option('--uses <n>', 'how many agents may enrol with it (default 1)', parseIntOpt('--uses', 1))
      .option('--ttl <duration>', 'how long it stays valid (default 7d)', duration('--ttl')),
  ).action(async (o: AdminOpts & { uses?: number; ttl?: number }) => {
    const r = await clientFrom(o).json<AgentJoinTokenAnswer>('POST', PATHS.agentJoinTokens, {
      json: { uses: o.uses ?? 1, ttlSeconds: o.ttl ?? 7 * 86400 },
    });
    if (o.json) return printJson(r);
    process.stdout.write(`${r.token}\n`);
    process.stderr.write(`agent join token of site ${r.site}: ${r.uses} use(s), valid until ${r.expiresAt}\n`);
  });

  adminOptions(
    agent.command('versions').description('how many clients run each agent version, per site (this site and every site below it)'),
  ).action(async (o: AdminOpts) => {
    const r = await clientFrom(o).json<AgentVersions>('GET', PATHS.agentVersions);
    if (o.json) return printJson(r);
    if (r.versions.length === 0) return void process.stdout.write('no clients yet (enrol agents with "cascade agent init")\n');
    process.stdout.write(table([['SITE', 'VERSION', 'CLIENTS'], ...r.versions.map((v) => [v.site, v.version, String(v.clients)])]));
  });

  adminOptions(
    agent
      .command('publish')
      .description(
        'publish an agent version: every client at and below this site upgrades to it by itself, spread over a period, honouring maintenance windows and download caps, skipping slow links, once a DP it may use holds it',
      )
      .option('--file <path>', "the bundled agent to publish (default: this release's, dist/cascade-agent.cjs)")
      .option(
        '--version <v>',
        'the agent version: checked against what the file reports; without --file, a version published at this site before (to go back to it)',
      )
      .option(
        '--spread <duration>',
        "clients' upgrades fall at random over this long (default 24h; 0: all at once)",
        durationOrNone('--spread'),
      )
      .option(
        '--grace <duration>',
        'after upgrading, an agent starts no program (which could restart the machine) for this long (default 15m)',
        durationOrNone('--grace'),
      ),
  ).action(async (o: AdminOpts & { file?: string; version?: string; spread?: number; grace?: number }) => {
    const wanted = o.version === undefined ? undefined : parseAgentVersion(o.version);
    let file: string | null = o.file ?? null;
    if (file === null && wanted === undefined) {
      file = fileURLToPath(bundledAgentUrl());
      if (!fs.existsSync(file)) throw fail('usage', `the bundled agent ${file} is missing: run "npm run build" first, or give --file`);
    }
    let agentVersion = wanted;
    let data: string | null = null;
    if (file !== null) {
      if (!fs.existsSync(file)) throw fail('usage', `--file ${file} does not exist`);
      const r = spawnSync(process.execPath, [file, '--version'], { encoding: 'utf8', timeout: 30_000 });
      const says = (r.stdout ?? '').trim();
      if (r.status !== 0 || !AGENT_VERSION.test(says))
        throw fail(
          'usage',
          `${file} is not a Cascade agent: "node ${file} --version" ${r.status === 0 ? `printed "${says.slice(0, 80)}"` : 'failed'}`,
        );
      if (wanted !== undefined && wanted !== says) throw fail('usage', `${file} is agent ${says}, not ${wanted}`);
      agentVersion = says;
      data = fs.readFileSync(file).toString('base64');
    }
    const r = await clientFrom(o).json<AgentPublishAnswer>('POST', PATHS.agentPublish, {
      json: {
        agentVersion: agentVersion as string,
        file: data,
        spreadSeconds: o.spread ?? 86400,
        graceSeconds: o.grace ?? 900,
      },
    });
    if (o.json) return printJson(r);
    const span = (s: number) => (s >= 3600 ? `${Math.round(s / 360) / 10} h` : s >= 60 ? `${Math.round(s / 60)} min` : `${s} s`);
    process.stdout.write(
      `agent ${r.agentVersion} published as ${r.packageId} version ${r.version}${r.newVersion ? '' : ' (held already)'}\n` +
        `${r.dps.length > 0 ? `on its way to ${r.dps.length} DP(s): ${r.dps.join(', ')}` : 'no DP at or below this site: no client upgrades until one holds it'}\n` +
        `advertisement ${r.advertisement} upgrades every client at and below this site (collection "${r.collection}"), spread over ${span(r.spreadSeconds)}; each agent starts programs again ${span(r.graceSeconds)} after its upgrade\n` +
        `follow it: cascade advertisement status ${r.advertisement} · cascade agent versions\n`,
    );
  });

  // --- clients ---------------------------------------------------------------------------
  const client = program.command('client').description('client machines: list, show, revoke');
  adminOptions(client.command('list').description('clients of this site and of every site below it')).action(async (o: AdminOpts) => {
    const { clients } = await clientFrom(o).json<{ clients: ClientEntry[] }>('GET', PATHS.clients);
    if (o.json) return printJson({ clients });
    if (clients.length === 0) return void process.stdout.write('no clients yet (enrol agents with "cascade agent init")\n');
    process.stdout.write(
      table([
        ['CLIENT', 'SITE', 'HOSTNAME', 'OS/ARCH', 'BOUNDARY', 'DPS', 'LAST SEEN', 'COLLECTIONS'],
        ...clients.map((c) => [
          `${c.id}${c.revoked ? ' (revoked)' : ''}`,
          c.site,
          c.inventory.hostname,
          `${c.inventory.os}/${c.inventory.arch}`,
          c.boundary ?? 'outside every boundary',
          c.dps.join(',') || '-',
          ago(c.lastSeen),
          c.collections.join(',') || '-',
        ]),
      ]),
    );
  });
  adminOptions(
    client.command('show').description('one client: inventory, boundary, DPs, collections').argument('<id>', 'client ID'),
  ).action(async (id: string, o: AdminOpts) => {
    const c = await clientFrom(o).json<ClientEntry>('GET', fillPath(PATHS.client, { id: parseClientId(id) }));
    if (o.json) return printJson(c);
    const i = c.inventory;
    process.stdout.write(
      `${c.id}${c.revoked ? ' (REVOKED)' : ''} at site ${c.site}: ${i.hostname}, ${i.os}/${i.arch}, agent ${i.version}\n` +
        `addresses ${i.addresses.join(', ') || '-'}; free disk ${i.freeDisk === null ? '?' : fmtBytes(i.freeDisk)}; link ${i.linkSpeed === null ? 'not measured' : `${fmtBytes(i.linkSpeed)}/s`}\n` +
        `${c.boundary ? `boundary ${c.boundary}` : 'outside every boundary'}; may use ${c.dps.join(', ') || 'no DP'}\n` +
        `collections: ${c.collections.join(', ') || 'none'}; enrolled ${ago(c.enrolledAt)}, last seen ${ago(c.lastSeen)}\n`,
    );
  });
  adminOptions(
    client.command('revoke').description("refuse a client's credential from now on (at the site it polls)").argument('<id>', 'client ID'),
  ).action(async (id: string, o: AdminOpts) => {
    const c = await clientFrom(o).json<ClientEntry>('POST', fillPath(PATHS.clientRevoke, { id: parseClientId(id) }));
    if (o.json) return printJson(c);
    process.stdout.write(`client ${c.id} (${c.inventory.hostname}) revoked: its agent is refused from now on\n`);
  });

  // --- boundaries ------------------------------------------------------------------------
  const boundary = program.command('boundary').description('IP ranges that decide which DPs a client may use');
  adminOptions(
    boundary
      .command('add')
      .description('add an IP range of a site; its clients use the DPs named (default: every DP of the site), most specific range first')
      .argument('<site>', 'site code')
      .argument('<cidr>', 'IP range, e.g. 10.20.0.0/16 or fd00::/8')
      .option('--dp <name>', 'a DP its clients may use (repeatable)', collect),
  ).action(async (site: string, cidr: string, o: AdminOpts & { dp?: string[] }) => {
    const b = await clientFrom(o).json<BoundaryEntry>('POST', PATHS.boundaries, { json: { site, cidr, dps: o.dp ?? [] } });
    if (o.json) return printJson(b);
    process.stdout.write(
      `boundary ${b.cidr} of site ${b.site}: ${b.dps.length ? b.dps.join(', ') : `every DP of ${b.site}`}; ${b.clients} client(s) in it now\n`,
    );
  });
  adminOptions(boundary.command('list').description('boundaries at and above this site')).action(async (o: AdminOpts) => {
    const { boundaries } = await clientFrom(o).json<{ boundaries: BoundaryEntry[] }>('GET', PATHS.boundaries);
    if (o.json) return printJson({ boundaries });
    if (boundaries.length === 0) return void process.stdout.write('no boundaries: each site lets its clients use every DP of the site\n');
    process.stdout.write(
      table([
        ['SITE', 'RANGE', 'DPS', 'CLIENTS', 'MADE AT'],
        ...boundaries.map((b) => [b.site, b.cidr, b.dps.join(',') || `every DP of ${b.site}`, String(b.clients), b.origin]),
      ]),
    );
  });
  adminOptions(
    boundary.command('remove').description('remove a boundary').argument('<site>', 'site code').argument('<cidr>', 'IP range'),
  ).action(async (site: string, cidr: string, o: AdminOpts) => {
    const r = await clientFrom(o).json<{ removed: string }>('POST', PATHS.boundaryDelete, { json: { site, cidr } });
    if (o.json) return printJson(r);
    process.stdout.write(`boundary ${r.removed} removed\n`);
  });

  // --- collections -----------------------------------------------------------------------
  const collection = program.command('collection').description('named sets of clients: by ID, by a rule over inventory, nested');
  const collectionOptions = (c: Command) =>
    adminOptions(
      c
        .option('--client <id>', 'a member by client ID (repeatable)', collect)
        .option('--rule <expr>', 'members by inventory, e.g. \'os = "linux" and hostname like "ber-%"\' (docs/clients.md)')
        .option('--include <collection>', 'members of another collection too (repeatable)', collect)
        .option('--exclude <collection>', 'never members of this collection (repeatable)', collect)
        .option(
          '--window <spec>',
          'maintenance window: when mandatory runs may start, e.g. "sat 22-04" or "mon-fri 20-06" (route schedule syntax, over a closed week; none: no window)',
        )
        .option('--time-zone <zone>', 'IANA time zone the window is read in (default UTC)'),
    );
  type CollectionOpts = AdminOpts & {
    client?: string[];
    rule?: string;
    include?: string[];
    exclude?: string[];
    window?: string;
    timeZone?: string;
  };
  const windowOf = (o: CollectionOpts) => {
    if (o.window === undefined) {
      if (o.timeZone !== undefined) throw fail('usage', '--time-zone goes with --window');
      return {};
    }
    return { window: o.window.toLowerCase() === 'none' ? null : { spec: o.window, timeZone: o.timeZone ?? 'UTC' } };
  };
  const body = (o: CollectionOpts) => ({
    ...windowOf(o),
    ...(o.client ? { clients: o.client.map(parseClientId) } : {}),
    ...(o.rule !== undefined ? { rule: o.rule } : {}),
    ...(o.include ? { include: o.include } : {}),
    ...(o.exclude ? { exclude: o.exclude } : {}),
  });
  const showCollection = (c: CollectionDetail) =>
    `collection "${c.name}" (made at ${c.origin}): ${c.members} member(s)${c.memberIds.length ? `: ${c.memberIds.slice(0, 50).join(', ')}${c.memberIds.length > 50 ? ', …' : ''}` : ''}\n` +
    `${c.rule ? `  rule: ${c.rule}\n` : ''}${c.clients.length ? `  by ID: ${c.clients.join(', ')}\n` : ''}${c.include.length ? `  includes: ${c.include.join(', ')}\n` : ''}${c.exclude.length ? `  excludes: ${c.exclude.join(', ')}\n` : ''}` +
    `${c.window ? `  maintenance window: ${c.window.spec} (${c.window.timeZone}); mandatory runs start only inside it\n` : ''}`;
  collectionOptions(collection.command('create').description('create a collection').argument('<name>', 'collection name')).action(
    async (name: string, o: CollectionOpts) => {
      const c = await clientFrom(o).json<CollectionDetail>('POST', PATHS.collections, { json: { name, ...body(o) } });
      if (o.json) return printJson(c);
      process.stdout.write(showCollection(c));
    },
  );
  collectionOptions(
    collection
      .command('set')
      .description('change a collection: the options given replace the old ones')
      .argument('<name>', 'collection name'),
  ).action(async (name: string, o: CollectionOpts) => {
    const c = await clientFrom(o).json<CollectionDetail>('PUT', fillPath(PATHS.collection, { name }), { json: body(o) });
    if (o.json) return printJson(c);
    process.stdout.write(showCollection(c));
  });
  adminOptions(collection.command('list').description('collections at and above this site')).action(async (o: AdminOpts) => {
    const { collections } = await clientFrom(o).json<{ collections: CollectionEntry[] }>('GET', PATHS.collections);
    if (o.json) return printJson({ collections });
    if (collections.length === 0) return void process.stdout.write('no collections yet ("cascade collection create NAME --rule ...")\n');
    process.stdout.write(
      table([
        ['NAME', 'MEMBERS', 'MADE AT', 'RULE / IDS / INCLUDES'],
        ...collections.map((c) => [
          c.name,
          String(c.members),
          c.origin,
          [
            c.rule,
            c.clients.length ? `${c.clients.length} by ID` : '',
            c.include.length ? `+${c.include.join(',+')}` : '',
            c.exclude.length ? `-${c.exclude.join(',-')}` : '',
          ]
            .filter(Boolean)
            .join('; '),
        ]),
      ]),
    );
  });
  adminOptions(collection.command('show').description('a collection and its members').argument('<name>', 'collection name')).action(
    async (name: string, o: AdminOpts) => {
      const c = await clientFrom(o).json<CollectionDetail>('GET', fillPath(PATHS.collection, { name }));
      if (o.json) return printJson(c);
      process.stdout.write(showCollection(c));
    },
  );
  adminOptions(
    collection.command('delete').description('delete a collection no advertisement uses').argument('<name>', 'collection name'),
  ).action(async (name: string, o: AdminOpts) => {
    const r = await clientFrom(o).json<{ deleted: string }>('DELETE', fillPath(PATHS.collection, { name }));
    if (o.json) return printJson(r);
    process.stdout.write(`collection "${r.deleted}" deleted\n`);
  });

  // --- advertisements --------------------------------------------------------------------
  type AdvertiseOpts = AdminOpts & {
    program: string;
    collection: string;
    version?: number;
    available?: string;
    mandatory?: string[];
    expires?: string;
    slowLink?: string;
    fallback?: boolean;
    rerun?: string;
    maxRun?: number;
  };
  adminOptions(
    program
      .command('advertise')
      .description("offer a package's program to a collection; clients see it once a DP they may use holds the version")
      .argument('<id>', 'package ID')
      .requiredOption('--program <name>', 'program of the package to run')
      .requiredOption('--collection <name>', 'the clients it is for')
      .option('--version <n>', 'pin a version (default: follow the newest a usable DP holds)', parseIntOpt('--version', 1))
      .option('--available <time>', 'offered from (now, +2h, or ISO time; default now)')
      .option('--mandatory <time>', 'run without asking at or after this time (repeatable)', collect)
      .option('--expires <time>', 'no longer offered after this time')
      .option('--slow-link <policy>', 'skip (wait for a fast link) or download (default)', oneOf('--slow-link', SLOW_LINK))
      .option('--fallback', 'let clients use other DPs of their site and of the sites above when theirs lack the version')
      .option('--rerun <when>', 'never (default), always or if-failed', oneOf('--rerun', RERUN))
      .option('--max-run <duration>', 'time limit of the program (default 1h)', duration('--max-run')),
  ).action(async (id: string, o: AdvertiseOpts) => {
    const now = new Date();
    const a = await clientFrom(o).json<AdvertisementEntry>('POST', PATHS.advertisements, {
      json: {
        packageId: parsePackageId(id),
        version: o.version ?? null,
        program: o.program,
        collection: o.collection,
        available: o.available ? parseWhen(o.available, now, '--available') : null,
        mandatory: (o.mandatory ?? []).map((t) => parseWhen(t, now, '--mandatory')),
        expires: o.expires ? parseWhen(o.expires, now, '--expires') : null,
        ...(o.slowLink ? { slowLink: o.slowLink } : {}),
        fallback: o.fallback ?? false,
        ...(o.rerun ? { rerun: o.rerun } : {}),
        ...(o.maxRun ? { maxRunSeconds: o.maxRun } : {}),
      },
    });
    if (o.json) return printJson(a);
    process.stdout.write(
      `advertisement ${a.id}: "${a.program}" of ${a.packageId}${a.version ? ` version ${a.version}` : ''} to "${a.collection}"` +
        `${a.mandatory.length ? `, mandatory at ${a.mandatory.map(ago).join(', ')}` : ', optional'}\n` +
        `clients see it once a DP they may use holds it; follow with: cascade advertisement status ${a.id}\n`,
    );
  });

  const ad = program.command('advertisement').description('advertisements: list, show, status, enable, disable, delete');
  adminOptions(ad.command('list').description('advertisements at and above this site')).action(async (o: AdminOpts) => {
    const { advertisements } = await clientFrom(o).json<{ advertisements: AdvertisementEntry[] }>('GET', PATHS.advertisements);
    if (o.json) return printJson({ advertisements });
    if (advertisements.length === 0)
      return void process.stdout.write('no advertisements yet ("cascade advertise ID --program P --collection C")\n');
    process.stdout.write(
      table([
        ['ID', 'PACKAGE', 'PROGRAM', 'COLLECTION', 'ENABLED', 'MANDATORY', 'EXPIRES'],
        ...advertisements.map((a) => [
          a.id,
          `${a.packageId}${a.version ? ` v${a.version}` : ''}`,
          a.program,
          a.collection,
          a.enabled ? 'yes' : 'no',
          a.mandatory.map(ago).join(', ') || 'optional',
          ago(a.expires),
        ]),
      ]),
    );
  });
  adminOptions(ad.command('show').description('one advertisement').argument('<id>', 'advertisement ID')).action(
    async (id: string, o: AdminOpts) => {
      const a = await clientFrom(o).json<AdvertisementEntry>('GET', fillPath(PATHS.advertisement, { id: parseAdvertisementId(id) }));
      if (o.json) return printJson(a);
      process.stdout.write(
        `${a.id} (made at ${a.origin}, ${a.enabled ? 'enabled' : 'DISABLED'}): program "${a.program}" of ${a.packageId}${a.version ? ` version ${a.version}` : ' (newest held)'} to "${a.collection}"\n` +
          `available ${ago(a.available)}; mandatory ${a.mandatory.map(ago).join(', ') || 'never (optional)'}; expires ${ago(a.expires)}\n` +
          `slow link: ${a.slowLink}; fallback: ${a.fallback ? 'yes' : 'no'}; rerun: ${a.rerun}; time limit ${a.maxRunSeconds} s\n`,
      );
    },
  );
  for (const [verb, path] of [
    ['enable', PATHS.advertisementEnable],
    ['disable', PATHS.advertisementDisable],
  ] as const)
    adminOptions(ad.command(verb).description(`${verb} an advertisement`).argument('<id>', 'advertisement ID')).action(
      async (id: string, o: AdminOpts) => {
        const a = await clientFrom(o).json<AdvertisementEntry>('POST', fillPath(path, { id: parseAdvertisementId(id) }));
        if (o.json) return printJson(a);
        process.stdout.write(`advertisement ${a.id} ${a.enabled ? 'enabled' : 'disabled'}\n`);
      },
    );
  adminOptions(ad.command('delete').description('delete an advertisement').argument('<id>', 'advertisement ID')).action(
    async (id: string, o: AdminOpts) => {
      const r = await clientFrom(o).json<{ deleted: string }>('DELETE', fillPath(PATHS.advertisement, { id: parseAdvertisementId(id) }));
      if (o.json) return printJson(r);
      process.stdout.write(`advertisement ${r.deleted} deleted\n`);
    },
  );
  adminOptions(
    ad
      .command('status')
      .description('where an advertisement stands on every member client at and below this site')
      .argument('<id>', 'advertisement ID'),
  ).action(async (id: string, o: AdminOpts) => {
    const s = await clientFrom(o).json<AdvertisementStatus>('GET', fillPath(PATHS.advertisementStatus, { id: parseAdvertisementId(id) }));
    if (o.json) return printJson(s);
    const { clients: n, ...by } = s.summary;
    process.stdout.write(
      `${s.advertisement.id}: ${n} client(s)${
        Object.keys(by).length
          ? `: ${Object.entries(by)
              .map(([k, v]) => `${v} ${k}`)
              .join(', ')}`
          : ''
      }\n`,
    );
    if (s.clients.length > 0)
      process.stdout.write(
        table([
          ['CLIENT', 'SITE', 'HOSTNAME', 'STATE', 'VERSION', 'PROGRESS', 'EXIT', 'DETAIL'],
          ...s.clients.map((c) => [
            c.client,
            c.site,
            c.hostname,
            c.state,
            c.version === null ? '-' : String(c.version),
            c.bytesTotal ? `${Math.floor((c.bytesDone / c.bytesTotal) * 100)} %` : '-',
            c.exitCode === null ? '-' : String(c.exitCode),
            c.detail ?? '',
          ]),
        ]),
      );
  });

  adminOptions(
    program
      .command('why')
      .description('the chain of reasons an advertisement does or does not run on a client')
      .argument('<client>', 'client ID')
      .argument('<advertisement>', 'advertisement ID'),
  ).action(async (clientId: string, adId: string, o: AdminOpts) => {
    const w = await clientFrom(o).json<WhyAnswer>(
      'GET',
      fillPath(PATHS.why, { client: parseClientId(clientId), advertisement: parseAdvertisementId(adId) }),
    );
    if (o.json) return printJson(w);
    process.stdout.write(
      `${w.client} / ${w.advertisement}: ${w.state ?? 'does not apply'}\n${w.reasons.map((r) => `  ${r.ok ? '✓' : '✗'} ${r.text}`).join('\n')}\n`,
    );
  });
}

/** `cascade site set`: settings of a site for its clients. */
export function registerSiteSettings(site: Command): void {
  // commander turns a parser's null into '': 'none' stays a word here and becomes null below.
  const slots = (what: string) => (v: string) => (v.toLowerCase() === 'none' ? 'none' : parseIntOpt(what, 1)(v));
  const cap = (v: number | 'none' | undefined) => (v === 'none' ? null : v);
  adminOptions(
    site
      .command('set')
      .description(
        "change this site's settings for its clients (and show them all); with --data, the folders it may read package sources from",
      )
      .option(
        '--client-cycle <duration>',
        'how often its agents check in (default 60m; agents add ±10 % jitter)',
        duration('--client-cycle'),
      )
      .option('--download-slots <n>', 'at most N of its clients download at once; none: no cap (the default)', slots('--download-slots'))
      .option(
        '--dp-download-slots <n>',
        'at most N clients download from any one of its DPs at once; none: no cap',
        slots('--dp-download-slots'),
      )
      .option(
        '--client-rate <rate>',
        "bytes per second for all its clients' downloads, shared among the slots (2MiB/s, 10Mbit/s, unlimited)",
      )
      .option(
        '--slot-timeout <duration>',
        'a client that reports no progress for this long loses its download slot (default 2m)',
        duration('--slot-timeout'),
      )
      .option(
        '--stale-after <duration>',
        'show a site above as stale when its newest signed word here is older than this: a relay may be withholding newer versions (default 1h)',
        duration('--stale-after'),
      )
      .option(
        '--source-root <dir>',
        'a folder the site may read package sources from (repeatable; replaces the list; needs --data)',
        (v: string, prev: string[] = []) => [...prev, v],
      )
      .option('--no-source-root', 'the site reads no source folders (needs --data)')
      .option(
        '--trusted-proxy <cidr>',
        "a load balancer in front of the site's processes (address or CIDR, repeatable; replaces the list; needs --data): clients behind it are known by its X-Forwarded-For",
        (v: string, prev: string[] = []) => [...prev, v],
      )
      .option('--no-trusted-proxy', 'trust no X-Forwarded-For header (the default; needs --data)'),
  ).action(
    async (
      o: AdminOpts & {
        clientCycle?: number;
        downloadSlots?: number | 'none';
        dpDownloadSlots?: number | 'none';
        clientRate?: string;
        slotTimeout?: number;
        staleAfter?: number;
        sourceRoot?: string[] | false;
        trustedProxy?: string[] | false;
      },
    ) => {
      // Trusted proxies live in the data folder too: who may name a client's address is the server's to say.
      if (o.trustedProxy !== undefined) {
        if (!o.data) throw fail('usage', '--trusted-proxy is set in the data folder on the site server: give --data DIR');
        const { updateSiteConfig } = await import('../../lib/site-config.js');
        const cfg = updateSiteConfig(o.data, { trustedProxies: o.trustedProxy === false ? null : o.trustedProxy });
        if (!o.json)
          process.stdout.write(
            cfg.trustedProxies?.length
              ? `site ${cfg.code} takes the client address from X-Forwarded-For when the request comes from: ${cfg.trustedProxies.join(', ')}\n`
              : `site ${cfg.code} trusts no X-Forwarded-For header\n`,
          );
        const rest = [o.clientCycle, o.downloadSlots, o.dpDownloadSlots, o.clientRate, o.slotTimeout, o.staleAfter, o.sourceRoot];
        if (rest.every((v) => v === undefined)) {
          if (o.json) printJson({ code: cfg.code, trustedProxies: cfg.trustedProxies ?? [] });
          return;
        }
      }
      // Source roots live in the data folder: an API token is no licence to read the server's disks.
      if (o.sourceRoot !== undefined) {
        if (!o.data) throw fail('usage', '--source-root is set in the data folder on the site server: give --data DIR');
        const { updateSiteConfig } = await import('../../lib/site-config.js');
        const cfg = updateSiteConfig(o.data, { sourceRoots: o.sourceRoot === false ? null : o.sourceRoot });
        const only = [o.clientCycle, o.downloadSlots, o.dpDownloadSlots, o.clientRate, o.slotTimeout, o.staleAfter].every(
          (v) => v === undefined,
        );
        if (o.json && only) return printJson({ code: cfg.code, sourceRoots: cfg.sourceRoots ?? [] });
        if (!o.json)
          process.stdout.write(
            cfg.sourceRoots?.length
              ? `site ${cfg.code} may read package sources under: ${cfg.sourceRoots.join(', ')}\n`
              : `site ${cfg.code} reads no source folders\n`,
          );
        if (only) return;
      }
      const clientRate = o.clientRate !== undefined ? parseRate(o.clientRate, '--client-rate') : undefined;
      const json = {
        ...(o.clientCycle !== undefined ? { clientCycleSeconds: o.clientCycle } : {}),
        ...(o.downloadSlots !== undefined ? { downloadSlots: cap(o.downloadSlots) } : {}),
        ...(o.dpDownloadSlots !== undefined ? { dpDownloadSlots: cap(o.dpDownloadSlots) } : {}),
        ...(clientRate !== undefined ? { clientRate: clientRate === null ? null : Math.round(clientRate) } : {}),
        ...(o.slotTimeout !== undefined ? { slotTimeoutSeconds: o.slotTimeout } : {}),
        ...(o.staleAfter !== undefined ? { staleAfterSeconds: o.staleAfter } : {}),
      };
      const c = clientFrom(o);
      const r = Object.keys(json).length
        ? await c.json<ClientSettings>('POST', PATHS.clientSettings, { json })
        : await c.json<ClientSettings>('GET', PATHS.clientSettings);
      if (o.json) return printJson(r);
      process.stdout.write(
        `client cycle: ${r.clientCycleSeconds} s\n` +
          `download slots: ${r.downloadSlots ?? 'no cap'}; per DP: ${r.dpDownloadSlots ?? 'no cap'}; client rate: ${formatRate(r.clientRate)}; slot timeout: ${r.slotTimeoutSeconds} s\n` +
          `sites above are stale after: ${r.staleAfterSeconds} s without a newer signed word\n`,
      );
    },
  );
}
