import type { Command } from 'commander';
import { Option } from 'commander';
import { fail } from '../core/errors.js';
import { parseSiteCode } from '../core/site.js';
import { printJson } from '../lib/output.js';

const collect = (v: string, prev: string[] = []): string[] => [...prev, v];

/** `cascade site init|start`: the site server role, loaded only when asked for. */
export function registerSite(program: Command): Command {
  const site = program.command('site').description('create and run a site server');

  site
    .command('init')
    .description('create a site: its store, Ed25519 key pair and an admin token in DIR/admin-token (mode 600)')
    .requiredOption('--data <dir>', 'data folder to create')
    .requiredOption('--code <code>', 'three-character site code, e.g. CEN')
    .option('--name <name>', 'display name (default: the code)')
    .addOption(
      new Option(
        '--db <url|file>',
        'postgres://... keeps the store in PostgreSQL; any other value is a file path: SQLite at that path ' +
          '(default: SQLite at DIR/cascade.db)',
      ).env('CASCADE_DB'),
    )
    .option(
      '--listen <host:port>',
      'address "site start" serves on unless told otherwise; kept in DIR/config.json (default 127.0.0.1:8100)',
    )
    .option('--parent <url>', 'join this parent site (its URL) as a child; needs --join-token and --listen or --url')
    .option('--join-token <token>', 'one-time token from "cascade site join-token" on the parent')
    .option('--url <url>', 'where other sites reach this one (default: https://LISTEN, or http:// without TLS)')
    .option('--tls', 'serve HTTPS (the default unless it listens on loopback only)')
    .option('--no-tls', 'serve plain HTTP even on an address other networks reach (behind a TLS proxy)')
    .option('--tls-cert <file>', 'PEM certificate to serve HTTPS with (default: a self-signed one made in DIR; callers pin it)')
    .option('--tls-key <file>', 'PEM private key of --tls-cert')
    .option('--source-root <dir>', 'a folder the site may read package sources from (repeatable; none by default)', collect)
    .option('--json', 'print JSON')
    .action(
      async (o: {
        sourceRoot?: string[];
        data: string;
        code: string;
        name?: string;
        db?: string;
        listen?: string;
        parent?: string;
        joinToken?: string;
        url?: string;
        tls?: boolean;
        tlsCert?: string;
        tlsKey?: string;
        json?: boolean;
      }) => {
        const code = parseSiteCode(o.code);
        const { initSite } = await import('./server.js');
        const r = await initSite({
          dataDir: o.data,
          code,
          name: o.name,
          db: o.db,
          listen: o.listen,
          parent: o.parent,
          joinToken: o.joinToken,
          url: o.url,
          sourceRoots: o.sourceRoot,
          tls: o.tls,
          tlsCert: o.tlsCert,
          tlsKey: o.tlsKey,
        });
        if (o.json) printJson(r);
        else
          process.stdout.write(
            `site ${r.code} (${r.name}) created in ${r.dataDir}\n` +
              `  store: ${r.db}, signing key: ${r.keyId}\n` +
              (r.listen ? `  listen: ${r.listen}\n` : '') +
              (r.tlsPin ? `  HTTPS, certificate sha256 ${r.tlsPin} (its join tokens carry it)\n` : '') +
              (r.parent ? `  joined parent ${r.parent}; pinned the key of central site ${r.central}\n` : '') +
              `  admin token: ${r.adminTokenFile}\n` +
              `next: cascade site start --data ${o.data}\n`,
          );
      },
    );

  site
    .command('start')
    .description(
      'run the site server in the foreground (logs on stdout: readable on a terminal, else JSON lines; SIGTERM stops it cleanly)',
    )
    .requiredOption('--data <dir>', 'data folder made by "site init"')
    .addOption(
      new Option('--listen <host:port>', 'address to serve on (default: from the data folder, else 127.0.0.1:8100)').env('CASCADE_LISTEN'),
    )
    .addOption(
      new Option('--db <url|file>', 'postgres://... store, or a SQLite file path (default: from the data folder)').env('CASCADE_DB'),
    )
    .addOption(new Option('--log-format <format>', 'json or text (default: text on a terminal, else JSON lines)').env('CASCADE_LOG_FORMAT'))
    .action(async (o: { data: string; listen?: string; db?: string; logFormat?: string }) => {
      const { createLogger, parseLogFormat } = await import('../lib/log.js');
      const log = createLogger({ name: 'site', format: o.logFormat === undefined ? undefined : parseLogFormat(o.logFormat) });
      const { startSite, serveUntilStopped } = await import('./server.js');
      await serveUntilStopped(() => startSite({ role: 'site', dataDir: o.data, listen: o.listen, db: o.db, log }), log);
    });

  site.action(() => {
    throw fail('usage', 'say what to do with the site: init, set, start, join-token, list or remove (see --help)');
  });
  return site;
}
