import type { Command } from 'commander';
import { Option } from 'commander';
import { parseDpName } from '../core/dp.js';
import { fail } from '../core/errors.js';
import { printJson } from '../lib/output.js';

/**
 * `cascade dp init|start`: the distribution point role. A DP is a content store that joins one
 * site, receives packages from it by the transfer protocol (only missing chunks, each
 * verified), serves them to clients as static files, and reports its state to the site.
 */
export function registerDp(program: Command): Command {
  const dp = program.command('dp').description('distribution points: create and run one, list them, issue join tokens');

  dp.command('init')
    .description('create a DP in DIR and join it to a site with a join token from "cascade dp join-token" there')
    .requiredOption('--data <dir>', 'data folder to create')
    .requiredOption('--site <url>', 'URL of the site the DP belongs to')
    .requiredOption('--join-token <token>', 'one-time token from "cascade dp join-token" on that site')
    .requiredOption('--name <name>', 'DP name, unique in the hierarchy: 4 to 64 letters, digits, ".", "_" or "-"')
    .option('--listen <host:port>', 'address "dp start" serves on unless told otherwise (default 127.0.0.1:8200)')
    .option(
      '--url <url>',
      'where the site and clients reach this DP (default: https://LISTEN, or http:// without TLS; told to the site at every start)',
    )
    .option('--tls', 'serve HTTPS (the default unless it listens on loopback only)')
    .option('--no-tls', 'serve plain HTTP even on an address other networks reach (behind a TLS proxy)')
    .option('--tls-cert <file>', 'PEM certificate to serve HTTPS with (default: a self-signed one made in DIR; callers pin it)')
    .option('--tls-key <file>', 'PEM private key of --tls-cert')
    .option('--content-url <url>', 'where clients fetch its content instead, e.g. nginx serving its content folder (docs/nginx.md)')
    .option('--json', 'print JSON')
    .action(
      async (o: {
        data: string;
        site: string;
        joinToken: string;
        name: string;
        listen?: string;
        url?: string;
        contentUrl?: string;
        tls?: boolean;
        tlsCert?: string;
        tlsKey?: string;
        json?: boolean;
      }) => {
        const name = parseDpName(o.name);
        if (!URL.canParse(o.site)) throw fail('usage', `--site "${o.site}" is not a URL (e.g. http://10.0.0.5:8100)`);
        const { initSite } = await import('../site/server.js');
        const r = await initSite({
          role: 'dp',
          dataDir: o.data,
          code: name,
          listen: o.listen,
          parent: o.site,
          joinToken: o.joinToken,
          url: o.url,
          contentUrl: o.contentUrl,
          tls: o.tls,
          tlsCert: o.tlsCert,
          tlsKey: o.tlsKey,
        });
        const out = {
          name: r.code,
          dataDir: r.dataDir,
          keyId: r.keyId,
          site: r.parent,
          central: r.central,
          listen: r.listen ?? null,
          tlsPin: r.tlsPin ?? null,
        };
        if (o.json) printJson(out);
        else
          process.stdout.write(
            `DP ${out.name} created in ${out.dataDir} and joined site ${out.site}; pinned the key of central site ${out.central}\n` +
              (out.tlsPin ? `  HTTPS, certificate sha256 ${out.tlsPin}\n` : '') +
              `next: cascade dp start --data ${o.data}${o.listen ? '' : ' --listen HOST:PORT'}\n`,
          );
      },
    );

  dp.command('start')
    .description(
      "run the DP in the foreground: receive from its site, serve content, report state, and restart on its site's newer release when told (SIGTERM stops it)",
    )
    .requiredOption('--data <dir>', 'data folder made by "dp init"')
    .addOption(
      new Option('--listen <host:port>', 'address to serve on (default: from the data folder, else 127.0.0.1:8200)').env('CASCADE_LISTEN'),
    )
    .addOption(new Option('--log-format <format>', 'json or text (default: text on a terminal, else JSON lines)').env('CASCADE_LOG_FORMAT'))
    .action(async (o: { data: string; listen?: string; logFormat?: string }) => {
      const { createLogger, parseLogFormat } = await import('../lib/log.js');
      const log = createLogger({ name: 'dp', format: o.logFormat === undefined ? undefined : parseLogFormat(o.logFormat) });
      const { startSite } = await import('../site/server.js');
      const { launch } = await import('../lib/launcher.js');
      const { DP_SUPERVISED_ENV, releaseEntry, releaseVersions } = await import('../site/release.js');
      const stop = new AbortController();
      for (const sig of ['SIGTERM', 'SIGINT'] as const)
        process.on(sig, () => {
          log.info({ signal: sig }, 'stopping');
          stop.abort();
        });
      // Started by a process it lives for (the demo): it stops when that one is gone, even killed.
      const owner = Number(process.env.CASCADE_OWNER_PID);
      if (owner > 0)
        setInterval(() => {
          try {
            process.kill(owner, 0);
          } catch {
            if (stop.signal.aborted) return;
            log.info({ owner }, 'stopping: the process that started it is gone');
            stop.abort();
          }
        }, 1000).unref();
      // The launcher runs the release releases.json names: this one in this process, an
      // upgraded one as a child process (docs/dp.md#releases).
      await launch({
        what: 'DP',
        versions: releaseVersions(o.data),
        supervisedEnv: DP_SUPERVISED_ENV,
        child: (v) => ({
          file: releaseEntry(o.data, v),
          args: [
            'dp',
            'start',
            '--data',
            o.data,
            ...(o.listen ? ['--listen', o.listen] : []),
            ...(o.logFormat ? ['--log-format', o.logFormat] : []),
          ],
        }),
        say: (line) => log.info(line),
        signal: stop.signal,
        startSeconds: Number(process.env.CASCADE_DP_START_SECONDS) || 300,
        proof: { verb: 'report to its site', noun: 'first status report' },
        inProcess: async () => {
          let switching!: () => void;
          const switched = new Promise<'switch'>((resolve) => {
            switching = () => resolve('switch');
          });
          const running = await startSite({ role: 'dp', dataDir: o.data, listen: o.listen, log, onRelease: switching });
          const stopped = new Promise<'done'>((resolve) => {
            if (stop.signal.aborted) resolve('done');
            stop.signal.addEventListener('abort', () => resolve('done'), { once: true });
          });
          const outcome = await Promise.race([switched, stopped]);
          await running.close();
          return outcome;
        },
      });
    });
  return dp;
}
