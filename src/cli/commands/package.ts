import crypto from 'node:crypto';
import fs from 'node:fs';
import type { Command } from 'commander';
import type { ApiClient } from '../../api/client.js';
import type { PackageSource, VersionReport } from '../../api/packages.js';
import { fillPath, PATHS } from '../../api/paths.js';
// Types only at the top: content modules (zod, piscina) load when a command needs them, so
// every other command starts without them.
import type { Manifest, Program } from '../../content/manifest.js';
import type { TrustedKey } from '../../content/signing.js';
import { fail } from '../../core/errors.js';
import { PRIORITIES, PROGRAM_NAME, type Priority, parsePackageId, programWarnings } from '../../core/package.js';
import { printJson } from '../../lib/output.js';
import { type AdminOpts, adminOptions, clientFrom, parseIntOpt, table } from '../common.js';
import type { ContentSource } from '../fetch.js';
import { fmtBytes, Progress } from '../progress.js';
import { describeSource, ingestOnSite } from './package-source.js';

function parseProgram(v: string, prev: Program[] = []): Program[] {
  const i = v.indexOf('=');
  const name = i > 0 ? v.slice(0, i).trim() : '';
  const command = i > 0 ? v.slice(i + 1).trim() : '';
  if (!PROGRAM_NAME.test(name) || !command)
    throw fail('usage', `--program "${v}" is not NAME=COMMAND (e.g. --program "Install=setup.exe /q")`);
  if (prev.some((p) => p.name === name)) throw fail('usage', `--program ${name} is given twice`);
  return [...prev, { name, command }];
}

function parsePriority(v: string): Priority {
  if (!PRIORITIES.includes(v as Priority)) throw fail('usage', `--priority must be one of ${PRIORITIES.join(', ')}, not "${v}"`);
  return v as Priority;
}

/** The keys the site accepts manifests from (its own, the central site's, vouched ones). */
export async function siteTrust(client: ApiClient): Promise<TrustedKey[]> {
  const s = await client.json<{
    code: string;
    keyId: string;
    publicKey: string;
    trusted?: { keyId: string; publicKey: string; site: string }[];
  }>('GET', PATHS.site);
  const keys: TrustedKey[] = [{ keyId: s.keyId, publicKeyPem: s.publicKey, site: s.code }];
  for (const k of s.trusted ?? [])
    if (!keys.some((x) => x.keyId === k.keyId)) keys.push({ keyId: k.keyId, publicKeyPem: k.publicKey, site: k.site });
  return keys;
}

/**
 * A pinned public key (PEM) from a file. Key ids name the signing site and the key's
 * fingerprint; the signer of a package's manifests is its origin, the first three characters
 * of its ID.
 */
async function trustKeyFile(file: string, id: string, from?: ContentSource): Promise<TrustedKey[]> {
  const { keyIdFor, publicKeyPem } = await import('../../content/signing.js');
  let key: crypto.KeyObject;
  try {
    key = crypto.createPublicKey(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw fail('usage', `--trust-key ${file}: not a readable PEM public key (${(e as Error).message.split('\n')[0]})`);
  }
  if (key.asymmetricKeyType !== 'ed25519') throw fail('usage', `--trust-key ${file}: not an Ed25519 key`);
  const origin = id.slice(0, 3);
  // The server may hold the origin's certificate: if the pinned key is the central key that
  // signed it, the origin's key is trusted through it (as between sites).
  let cert: unknown;
  try {
    cert = from?.certificate ? JSON.parse((await from.certificate(origin)).toString('utf8')) : undefined;
  } catch {
    cert = undefined;
  }
  const issuer = (cert as { issuer?: unknown } | undefined)?.issuer;
  if (typeof issuer === 'string' && /^[A-Z0-9]{3}:/.test(issuer)) {
    const central = { keyId: keyIdFor(issuer.slice(0, 3), key), publicKeyPem: publicKeyPem(key), site: issuer.slice(0, 3) };
    if (central.keyId === issuer) {
      const { verifyCertificate } = await import('../../content/certificate.js');
      const v = verifyCertificate(cert, central);
      if (v.code === origin) return [central, v.trusted];
    }
  }
  return [{ keyId: keyIdFor(origin, key), publicKeyPem: publicKeyPem(key), site: origin }];
}

async function latestManifest(client: ApiClient, id: string): Promise<Manifest> {
  const show = await client.json<{ version: number }>('GET', fillPath(PATHS.package, { id }));
  const bytes = await client.bytes(fillPath(PATHS.manifest, { id, version: show.version }));
  const { verifyManifest } = await import('../../content/manifest.js');
  return verifyManifest(bytes, await siteTrust(client)).manifest;
}

async function sourceOnSite(
  o: AdminOpts & { priority?: Priority; program?: Program[]; name?: string; hold?: boolean; verifyContent?: boolean; detach?: boolean },
  src: string | undefined,
  id: string | null,
): Promise<void> {
  // The site resolves the path on its own file system: a relative one means nothing there.
  if (src !== undefined && !src.startsWith('/'))
    throw fail('usage', `--source-on-site ${src}: give the folder's absolute path on the site server`);
  await ingestOnSite(clientFrom(o), o, src, id);
}

async function ingest(
  o: AdminOpts & { priority?: Priority; program?: Program[]; name?: string; hold?: boolean },
  src: string,
  id: string | null,
): Promise<void> {
  const client = clientFrom(o);
  const previous = id ? await latestManifest(client, id) : undefined;
  const [{ uploadSource }, { closePool, startPool, walkSource }] = await Promise.all([
    import('../upload.js'),
    import('../../content/pool.js'),
  ]);
  // The chunking threads start (~0.1 s each) while the folder is walked.
  startPool();
  const source = await walkSource(src);
  for (const w of programWarnings(
    o.program ?? [],
    source.map((e) => e.path),
  ))
    process.stderr.write(`cascade: warning: ${w}\n`);
  const progress = new Progress(id ? `update ${id}` : 'create', 0, !o.json);
  let report: VersionReport;
  try {
    const { files, stats } = await uploadSource(client, source, {
      previous,
      onProgress: (done, total) => {
        progress.setTotal(total);
        progress.update(done);
      },
    });
    progress.done();
    const body = { name: o.name, priority: o.priority, programs: o.program, files, ...(id && o.hold ? { hold: true } : {}) };
    report = id
      ? await client.json<VersionReport>('POST', fillPath(PATHS.packageVersions, { id }), { json: body })
      : await client.json<VersionReport>('POST', PATHS.packages, { json: body });
    if (o.json) printJson({ ...report, sentBytes: stats.sentBytes, deltaChunks: stats.deltaChunks });
    else
      process.stdout.write(
        `${report.id} version ${report.version}: ${report.files} files, ${fmtBytes(report.bytes)}; ` +
          `new to the library: ${fmtBytes(report.newBytes)} (${report.newChunks} new chunks); sent ${fmtBytes(stats.sentBytes)}\n` +
          (report.flowsTo?.length
            ? `version ${report.version} now flows to the ${report.flowsTo.length} DP(s) holding ${report.id}: ${report.flowsTo.join(', ')} (each keeps it and the version before; "cascade status ${report.id}")\n`
            : id && o.hold
              ? `version ${report.version} is staged: no DP gets it until "cascade distribute ${report.id} --version ${report.version} --to ..."\n`
              : ''),
      );
  } finally {
    progress.done();
    await closePool();
  }
}

export function registerPackage(program: Command): void {
  const pkg = program.command('package').description('create, update, inspect and fetch packages');

  adminOptions(
    pkg
      .command('create')
      .description('package a folder: streams it to the site, sending only chunks the site lacks; or has the site read a folder of its own')
      .argument('[src]', 'source folder on this machine')
      .option('--source-on-site <path>', 'a folder on the site server, under one of its source roots: the site reads it itself')
      .requiredOption('--name <name>', 'package name')
      .option('--priority <priority>', `${PRIORITIES.join('|')} (default medium)`, parsePriority)
      .option('--program <name=command>', 'a program clients can run (repeatable)', parseProgram)
      .option('--detach', 'with --source-on-site: answer once the site has started (follow it with "cascade package show ID")'),
  ).action(
    (
      src: string | undefined,
      o: AdminOpts & { name: string; priority?: Priority; program?: Program[]; sourceOnSite?: string; detach?: boolean },
    ) => {
      if (o.sourceOnSite !== undefined) {
        if (src !== undefined) throw fail('usage', 'give a folder of yours (SRC) or --source-on-site PATH, not both');
        return sourceOnSite(o, o.sourceOnSite, null);
      }
      if (src === undefined) throw fail('usage', 'say what to package: a folder (SRC) or --source-on-site PATH');
      return ingest(o, src, null);
    },
  );

  adminOptions(
    pkg
      .command('update')
      .description(
        'add the next version of a package from a folder (only new content is sent), or read its folder on the site again; it flows to every DP holding the package',
      )
      .argument('<id>', 'package ID, e.g. CEN00001')
      .argument('[src]', "source folder on this machine (none: the site reads the package's source folder again)")
      .option('--source-on-site <path>', 'read this folder on the site server from now on (under one of its source roots)')
      .option('--verify-content', 'with a source on the site: re-hash every file, not only those whose size or time changed')
      .option('--name <name>', 'new package name')
      .option('--priority <priority>', `${PRIORITIES.join('|')}`, parsePriority)
      .option('--program <name=command>', 'replace the programs (repeatable; default: keep them)', parseProgram)
      .option('--hold', 'stage the new version: it does not flow to the DPs holding the package until distributed')
      .option('--detach', 'with a source on the site: answer once the site has started'),
  ).action(
    (
      id: string,
      src: string | undefined,
      o: AdminOpts & {
        name?: string;
        priority?: Priority;
        program?: Program[];
        hold?: boolean;
        sourceOnSite?: string;
        verifyContent?: boolean;
        detach?: boolean;
      },
    ) => {
      if (src !== undefined && (o.sourceOnSite !== undefined || o.verifyContent))
        throw fail('usage', 'give a folder of yours (SRC) or a source on the site (--source-on-site, --verify-content), not both');
      if (src === undefined) return sourceOnSite(o, o.sourceOnSite, parsePackageId(id));
      return ingest(o, src, parsePackageId(id));
    },
  );

  adminOptions(
    pkg
      .command('set')
      .description("schedule the reading of a package's source folder on the site")
      .argument('<id>', 'package ID')
      .requiredOption('--refresh-every <duration>', 're-read the folder this often, at low priority (e.g. 24h, 7d; "off": only when asked)')
      .option('--distribute', "a refresh's new version flows to the DPs holding the package")
      .option('--no-distribute', "a refresh's new version is staged (cascade distribute sends it)"),
  ).action(async (id: string, o: AdminOpts & { refreshEvery: string; distribute?: boolean }) => {
    const { parseDuration } = await import('../../core/time.js');
    const secs = o.refreshEvery === 'off' ? null : parseDuration(o.refreshEvery, '--refresh-every');
    if (secs !== null && secs < 60) throw fail('usage', '--refresh-every must be at least 60s');
    const s = await clientFrom(o).json<PackageSource>('PATCH', fillPath(PATHS.packageSource, { id: parsePackageId(id) }), {
      json: { refreshEverySeconds: secs, distribute: o.distribute },
    });
    if (o.json) printJson(s);
    else process.stdout.write(`${s.package}\n${describeSource(s)}`);
  });

  adminOptions(pkg.command('list').description('list packages')).action(async (o: AdminOpts) => {
    const r = await clientFrom(o).json<{
      packages: { id: string; name: string; version: number; priority: string; files: number; bytes: number; held?: boolean }[];
    }>('GET', PATHS.packages);
    if (o.json) printJson(r);
    else if (r.packages.length === 0) process.stdout.write('no packages yet: cascade package create SRC --name NAME\n');
    else
      process.stdout.write(
        table([
          ['ID', 'VERSION', 'PRIORITY', 'FILES', 'SIZE', 'NAME'],
          ...r.packages.map((p) => [
            p.id,
            String(p.version),
            p.priority,
            String(p.files),
            fmtBytes(p.bytes),
            `${p.name}${p.held === false ? ` (made at ${p.id.slice(0, 3)}, below; not held here)` : ''}`,
          ]),
        ]),
      );
  });

  adminOptions(
    pkg
      .command('show')
      .description('show a package version: programs and file tree')
      .argument('<id>', 'package ID')
      .option('--version <n>', 'version (default latest)', parseIntOpt('--version', 1)),
  ).action(async (id: string, o: AdminOpts & { version?: number }) => {
    const client = clientFrom(o);
    const pid = parsePackageId(id);
    const r = await client
      .json<{
        id: string;
        name: string;
        version: number;
        versions: number[];
        priority: string;
        programs: Program[];
        files: { path: string; type: string; size: number; mode?: number; target?: string }[];
        bytes: number;
        created: string;
        source?: PackageSource | null;
      }>('GET', fillPath(PATHS.package, { id: pid }), { query: { version: o.version } })
      .catch(async (e: unknown) => {
        // A package whose first version the site is still reading from its source has no version yet.
        const making =
          (e as { code?: string }).code === 'not_found'
            ? await client.json<PackageSource>('GET', fillPath(PATHS.packageSource, { id: pid })).catch(() => null)
            : null;
        if (!making) throw e;
        if (o.json) printJson({ id: pid, source: making });
        else process.stdout.write(`${pid} (no version yet: the site makes version 1 from its source)\n${describeSource(making)}`);
        return null;
      });
    if (!r) return;
    if (o.json) {
      printJson(r);
      return;
    }
    let out = `${r.id} ${r.name}\n  version ${r.version} of ${r.versions.join(', ')}, priority ${r.priority}, ${fmtBytes(r.bytes)}, created ${r.created}\n`;
    if (r.source) out += describeSource(r.source);
    out += r.programs.length ? `  programs:\n${r.programs.map((p) => `    ${p.name}: ${p.command}`).join('\n')}\n` : '  programs: none\n';
    out += '  files:\n';
    out += table(
      r.files.map((f) => [
        '   ',
        f.type === 'dir' ? 'd' : f.type === 'link' ? 'l' : '-',
        f.mode !== undefined ? f.mode.toString(8).padStart(3, '0') : '   ',
        f.type === 'file' ? fmtBytes(f.size) : '',
        f.type === 'link' ? `${f.path} -> ${f.target}` : f.path,
      ]),
    );
    process.stdout.write(out);
  });

  adminOptions(
    pkg
      .command('fetch')
      .description(
        "write a version's tree to DEST, verifying the signature and every chunk; from the site's API, " +
          'or with --from from a DP or any web server serving a content folder',
      )
      .argument('<id>', 'package ID')
      .argument('<dest>', 'destination folder (empty or new)')
      .option('--version <n>', 'version (default latest: asks the site)', parseIntOpt('--version', 1))
      .option('--force', 'write into a folder that is not empty')
      .option('--from <url>', 'read the manifest and chunks from this DP or web server (BASE/content/...), no token needed')
      .option(
        '--trust-key <file>',
        "trust manifests signed by this public key (PEM, e.g. the central site's); without --site no site is asked",
      ),
  ).action(async (id: string, dest: string, o: AdminOpts & { version?: number; force?: boolean; from?: string; trustKey?: string }) => {
    const pid = parsePackageId(id);
    // With --trust-key, the site is asked only when named (for its keys and the latest version).
    const askSite = !o.trustKey || Boolean(o.site) || Boolean(o.data);
    const client = askSite ? clientFrom(o) : undefined;
    if (!client && o.version === undefined)
      throw fail('usage', '--trust-key without --site needs --version N: a DP serves content, not the list of versions');
    const { fetchVersion, staticSource } = await import('../fetch.js');
    const source = o.from ? staticSource(o.from) : client;
    if (!source) throw fail('usage', '--trust-key needs --from URL (or --site URL to fetch from the site)');
    const trusted = [
      ...(client ? await siteTrust(client) : []),
      ...(o.trustKey
        ? await trustKeyFile(o.trustKey, pid, typeof source === 'object' && 'certificate' in source ? source : undefined)
        : []),
    ];
    const version =
      o.version ?? (await (client as ApiClient).json<{ version: number }>('GET', fillPath(PATHS.package, { id: pid }))).version;
    const progress = new Progress(`fetch ${pid}`, 0, !o.json);
    try {
      const r = await fetchVersion(source, pid, version, dest, {
        force: o.force ?? false,
        trusted,
        onProgress: (d, t) => {
          progress.setTotal(t);
          progress.update(d);
        },
      });
      progress.done();
      if (o.json) printJson({ id: pid, version, dest, files: r.files, bytes: r.bytes, verified: true });
      else process.stdout.write(`${pid} version ${version}: ${r.files} files, ${fmtBytes(r.bytes)} written to ${dest}, all verified\n`);
    } finally {
      progress.done();
    }
  });

  adminOptions(
    pkg
      .command('verify')
      .description("re-hash a package's stored content on the site; names each damaged file and chunk (exit 1 if any)")
      .argument('<id>', 'package ID')
      .option('--version <n>', 'only this version', parseIntOpt('--version', 1)),
  ).action(async (id: string, o: AdminOpts & { version?: number }) => {
    const client = clientFrom(o);
    const pid = parsePackageId(id);
    // A package whose first version the site is still reading from its source has no version yet.
    const making = await client.json<PackageSource>('GET', fillPath(PATHS.packageSource, { id: pid })).catch(() => null);
    if (making && making.ingest?.state !== 'done' && making.ingest?.state !== 'unchanged') {
      const exists = await client.json<unknown>('GET', fillPath(PATHS.package, { id: pid })).then(
        () => true,
        () => false,
      );
      if (!exists) {
        if (o.json) printJson({ id: pid, source: making });
        else process.stdout.write(`${pid} (no version yet: the site makes version 1 from its source)\n${describeSource(making)}`);
        return;
      }
    }
    const r = await client.json<{
      id: string;
      ok: boolean;
      versions: {
        version: number;
        ok: boolean;
        checkedFiles: number;
        checkedChunks: number;
        checkedBytes: number;
        problems: { path: string | null; chunk: string | null; kind: string; detail: string }[];
      }[];
    }>('POST', fillPath(PATHS.packageVerify, { id: parsePackageId(id) }), { query: { version: o.version } });
    if (o.json) printJson(r);
    else {
      for (const v of r.versions) {
        process.stdout.write(
          `${r.id} version ${v.version}: ${v.ok ? 'ok' : 'DAMAGED'} (${v.checkedFiles} files, ${v.checkedChunks} chunks, ${fmtBytes(v.checkedBytes)} checked)\n`,
        );
        for (const p of v.problems)
          process.stdout.write(`  ${p.kind}: ${p.path ?? '(manifest)'}${p.chunk ? ` chunk ${p.chunk}` : ''}: ${p.detail}\n`);
      }
    }
    if (!r.ok) process.exitCode = 1;
  });

  adminOptions(
    pkg
      .command('delete')
      .description('delete a version, or the whole package; chunks no version uses are freed by garbage collection')
      .argument('<id>', 'package ID')
      .option('--version <n>', 'only this version', parseIntOpt('--version', 1))
      .option('--yes', 'do not ask for confirmation (asked only on a terminal)')
      .addHelpText('after', '\nA version still distributed to DPs is refused: take it off them first (cascade undistribute).'),
  ).action(async (id: string, o: AdminOpts & { version?: number; yes?: boolean }) => {
    const pid = parsePackageId(id);
    if (!o.yes && process.stdin.isTTY && process.stdout.isTTY) {
      const { createInterface } = await import('node:readline/promises');
      const rl = createInterface({ input: process.stdin, output: process.stdout });
      const answer = await rl
        .question(`Delete ${pid}${o.version ? ` version ${o.version}` : ', every version'}? [y/N] `)
        .finally(() => rl.close());
      if (!/^y(es)?$/i.test(answer.trim())) throw fail('usage', 'nothing deleted (answer y to delete, or pass --yes)');
    }
    const r = await clientFrom(o).json<{ id: string; deleted: number[] }>('DELETE', fillPath(PATHS.package, { id: pid }), {
      query: { version: o.version },
    });
    if (o.json) printJson(r);
    else process.stdout.write(`${r.id}: deleted version ${r.deleted.join(', ')}\n`);
  });

  adminOptions(
    program
      .command('gc')
      .description('free chunks that no package version references (admin)')
      .option('--grace <seconds>', 'spare chunks stored more recently than this (default 3600)', parseIntOpt('--grace')),
  ).action(async (o: AdminOpts & { grace?: number }) => {
    const r = await clientFrom(o).json<{ chunks: number; bytes: number }>('POST', PATHS.gc, {
      json: { graceSeconds: o.grace ?? 3600 },
    });
    if (o.json) printJson(r);
    else process.stdout.write(`freed ${r.chunks} chunks, ${fmtBytes(r.bytes)}\n`);
  });
}
