import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { type Command, Option } from 'commander';
import { AGENT_FILE } from '../core/client.js';
import { fail } from '../core/errors.js';
import { printJson } from '../lib/output.js';
import { VERSION } from '../lib/version.js';
import { launch, SUPERVISED_ENV, supervised } from './launcher.js';
import { readVersions, versionDir } from './versions.js';

/** The file of the upgraded agent versions.json names, when that is not this code; else null. */
function selectedVersion(dir: string): string | null {
  if (supervised()) return null;
  const v = readVersions(dir);
  const target = v.trying?.version ?? v.current;
  if (!target || target === VERSION) return null;
  const file = path.join(versionDir(dir, target), AGENT_FILE);
  return fs.existsSync(file) ? file : null;
}

/**
 * `cascade agent init | start | run-now | install | status`: the agent role, run on a client
 * machine. (`cascade agent join-token` is an administrator's command, in the CLI.)
 */

const LINKS = ['auto', 'slow', 'fast'] as const;

function parseSize(v: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|TiB)?$/i.exec(v.trim());
  if (!m) throw fail('usage', `--cache-size "${v}" is not a size (e.g. 2GiB, 500MiB)`);
  const unit = (m[2] ?? 'B').toLowerCase();
  const mult = { b: 1, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40 }[unit] as number;
  return Math.floor(Number(m[1]) * mult);
}

function parseLink(v: string): (typeof LINKS)[number] {
  if (!(LINKS as readonly string[]).includes(v)) throw fail('usage', `--link must be auto, slow or fast, not "${v}"`);
  return v as (typeof LINKS)[number];
}

const LOCK = 'agent.lock';

/**
 * Takes the agent's lock (one agent process per data folder); false when another one holds it.
 * An agent its launcher started runs under the launcher's lock.
 */
function lock(dir: string): boolean {
  const file = path.join(dir, LOCK);
  if (supervised()) {
    try {
      return Number(fs.readFileSync(file, 'utf8')) === process.ppid;
    } catch {
      return false;
    }
  }
  for (let i = 0; i < 2; i++) {
    try {
      fs.writeFileSync(file, String(process.pid), { flag: 'wx' });
      process.on('exit', () => fs.rmSync(file, { force: true }));
      return true;
    } catch {
      const pid = Number(fs.readFileSync(file, 'utf8'));
      let alive = false;
      try {
        process.kill(pid, 0);
        alive = pid !== process.pid;
      } catch {}
      if (alive) return false;
      fs.rmSync(file, { force: true });
    }
  }
  return false;
}

const say = (line: string) => process.stdout.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);

export function registerAgent(program: Command): Command {
  const agent =
    program.commands.find((c) => c.name() === 'agent') ??
    program.command('agent').description('the client agent: enrol, run, install, status');

  agent
    .command('init')
    .description('enrol this machine with a site, using a join token from "cascade agent join-token" there')
    .requiredOption('--data <dir>', "the agent's data folder to create")
    .requiredOption('--site <url>', 'URL of the site this client belongs to')
    .requiredOption('--join-token <token>', 'agent join token (usable N times until it expires)')
    .option('--link <kind>', 'auto (measure the link to the DPs), slow or fast', parseLink, 'auto')
    .option('--cache-size <size>', 'bound of the chunk cache (least recently used chunks go first)', parseSize, 2 * 2 ** 30)
    .option('--hostname <name>', "report this hostname instead of the machine's (several agents on one machine)")
    .option('--address <ip>', 'report this address too (repeatable)', (v: string, prev: string[] = []) => [...prev, v])
    .option('--json', 'print JSON')
    .action(
      async (o: {
        data: string;
        site: string;
        joinToken: string;
        link: (typeof LINKS)[number];
        cacheSize: number;
        hostname?: string;
        address?: string[];
        json?: boolean;
      }) => {
        const { enrolAgent } = await import('./agent.js');
        const cfg = await enrolAgent({
          dir: path.resolve(o.data),
          site: o.site,
          joinToken: o.joinToken,
          link: o.link,
          cacheBytes: o.cacheSize,
          hostname: o.hostname ?? null,
          addresses: o.address ?? [],
        });
        if (o.json) printJson({ client: cfg.client, site: cfg.site, central: cfg.central.keyId, dataDir: path.resolve(o.data) });
        else
          process.stdout.write(
            `client ${cfg.client} enrolled with ${cfg.site}; pinned central key ${cfg.central.keyId}\nnext: cascade agent start --data ${o.data}\n`,
          );
      },
    );

  agent
    .command('start')
    .description('run the agent: check in now (as at logon), then every client cycle of the site, with jitter (SIGTERM stops it)')
    .requiredOption('--data <dir>', 'the data folder made by "agent init"')
    .addOption(new Option('--link <kind>', "auto, slow or fast (overrides the folder's setting)").argParser(parseLink))
    .action(async (o: { data: string; link?: (typeof LINKS)[number] }) => {
      const dir = path.resolve(o.data);
      const { Agent } = await import('./agent.js');
      // Checks the folder holds an enrolled agent before anything else.
      new Agent(dir);
      if (!lock(dir)) throw fail('conflict', `another agent runs on ${dir}`);
      const stop = new AbortController();
      for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => stop.abort());
      const requests = path.join(dir, 'requests');
      const asked = () => fs.existsSync(requests) && fs.readdirSync(requests).length > 0;
      await launch({
        dir,
        mode: 'start',
        args: o.link ? ['--link', o.link] : [],
        say,
        signal: stop.signal,
        inProcess: async () => {
          const a = new Agent(dir, say);
          if (o.link) a.cfg.link = o.link;
          say(`agent ${VERSION} ${a.cfg.client} of ${a.cfg.site} started`);
          while (!stop.signal.aborted) {
            const seconds = await a.cycle(stop.signal);
            if (a.switchTo) return 'switch';
            if (stop.signal.aborted) break;
            // Jitter on long waits, so thousands of clients do not poll in step.
            const ms = seconds >= 60 ? seconds * 1000 * (0.9 + Math.random() * 0.2) : seconds * 1000;
            await new Promise<void>((resolve) => {
              const finish = () => {
                clearTimeout(timer);
                clearInterval(poll);
                stop.signal.removeEventListener('abort', finish);
                resolve();
              };
              const timer = setTimeout(finish, ms);
              // `cascade agent install` leaves a request file: act on it within a second.
              const poll = setInterval(() => asked() && finish(), 1000);
              stop.signal.addEventListener('abort', finish, { once: true });
            });
          }
          return 'done';
        },
      });
      say('agent stopped');
    });

  agent
    .command('run-now')
    .description('run one cycle now (check in, act on what is due, report) and exit')
    .requiredOption('--data <dir>', 'the data folder made by "agent init"')
    .action(async (o: { data: string }) => {
      const dir = path.resolve(o.data);
      const { Agent } = await import('./agent.js');
      new Agent(dir);
      if (!lock(dir)) throw fail('conflict', `an agent is running on ${dir}; it checks in on its own (or use "cascade agent install")`);
      await launch({
        dir,
        mode: 'run-now',
        args: [],
        say,
        signal: new AbortController().signal,
        inProcess: async () => {
          const a = new Agent(dir, say);
          const next = await a.cycle();
          if (a.switchTo) return 'switch';
          say(`next check-in in ${next} s`);
          return 'done';
        },
      });
    });

  agent
    .command('install')
    .description('install an available advertisement now (one that is not mandatory, or not yet)')
    .argument('<advertisement>', 'advertisement ID, e.g. CEN-A00001')
    .requiredOption('--data <dir>', 'the data folder made by "agent init"')
    .action(async (id: string, o: { data: string }) => {
      const dir = path.resolve(o.data);
      const { parseAdvertisementId } = await import('../core/client.js');
      const ad = parseAdvertisementId(id);
      const { Agent } = await import('./agent.js');
      if (!lock(dir)) {
        fs.mkdirSync(path.join(dir, 'requests'), { recursive: true });
        fs.writeFileSync(path.join(dir, 'requests', ad), '');
        process.stdout.write(`the running agent on ${dir} installs ${ad} within a second\n`);
        return;
      }
      // An upgraded agent is the one that acts: run its own install, under this lock.
      const target = selectedVersion(dir);
      if (target) {
        const r = spawnSync(process.execPath, [target, 'install', ad, '--data', dir], {
          stdio: 'inherit',
          env: { ...process.env, [SUPERVISED_ENV]: '1' },
        });
        process.exitCode = r.status ?? 1;
        return;
      }
      const a = new Agent(dir, say);
      a.request(ad);
      await a.cycle();
      if (a.switchTo)
        throw fail(
          'conflict',
          `the agent installed its own upgrade to ${a.switchTo} first, and holds programs until it runs: start the agent ("cascade agent start --data ${o.data}"), then install ${ad}`,
        );
      const s = a.state.advertisements[ad];
      if (!s || (s.state !== 'succeeded' && s.state !== 'failed' && s.state !== 'deferred-slow-link'))
        throw fail(
          'not_found',
          `advertisement ${ad} is not offered to this client now; "cascade why ${a.cfg.client} ${ad}" at the site says why`,
        );
      if (s.state === 'failed') throw fail('conflict', `${ad} failed: ${s.detail ?? `exit code ${s.exitCode}`}`);
    });

  agent
    .command('status')
    .description("the agent's own view: its site, last and next check-in, advertisements and their states, cache use")
    .requiredOption('--data <dir>', 'the data folder made by "agent init"')
    .option('--json', 'print JSON')
    .action(async (o: { data: string; json?: boolean }) => {
      const dir = path.resolve(o.data);
      const { loadConfig, loadState } = await import('./config.js');
      const { ChunkCache } = await import('./cache.js');
      const cfg = loadConfig(dir);
      const st = loadState(dir);
      const u = await new ChunkCache(path.join(dir, 'cache'), cfg.cacheBytes, true).usage();
      const v = readVersions(dir);
      const out = {
        client: cfg.client,
        agent: {
          version: v.current ?? VERSION,
          trying: v.trying?.version ?? null,
          upgraded: v.upgraded ? { from: v.upgraded.from, at: v.upgraded.at, graceUntil: v.upgraded.graceUntil } : null,
          rolledBack: v.rolledBack ? { version: v.rolledBack.version, reason: v.rolledBack.reason } : null,
        },
        site: cfg.site,
        central: cfg.central.keyId,
        link: cfg.link,
        linkSpeed: st.linkSpeed,
        lastCheckin: st.lastCheckin,
        nextCheckin: st.nextCheckin,
        lastError: st.lastError,
        cache: { bytes: u.bytes, chunks: u.chunks, maxBytes: cfg.cacheBytes },
        offers: st.offers,
        advertisements: Object.entries(st.advertisements).map(([id, a]) => ({ id, ...a })),
        undelivered: st.outbox.length,
      };
      if (o.json) return printJson(out);
      const lines = [
        `client ${out.client} of ${out.site} (central key ${out.central})`,
        `last check-in ${out.lastCheckin ?? 'never'}; next ${out.nextCheckin ?? 'at start'}${out.lastError ? `; last error: ${out.lastError}` : ''}`,
        `link ${out.link}${out.linkSpeed ? `, measured ${Math.round(out.linkSpeed / 1024)} KiB/s` : ''}; cache ${(u.bytes / 2 ** 20).toFixed(1)} MiB in ${u.chunks} chunks (bound ${(cfg.cacheBytes / 2 ** 20).toFixed(0)} MiB)`,
      ];
      const ag = out.agent;
      lines.push(
        `agent ${ag.version}${ag.trying ? `; ${ag.trying} installed, starting` : ''}${ag.upgraded ? `; upgraded from ${ag.upgraded.from ?? 'the launcher'} at ${ag.upgraded.at}${Date.parse(ag.upgraded.graceUntil) > Date.now() ? `, programs wait until ${ag.upgraded.graceUntil}` : ''}` : ''}${ag.rolledBack ? `; ${ag.rolledBack.version} rolled back: ${ag.rolledBack.reason}` : ''}`,
      );
      for (const h of out.offers) if (h.held) lines.push(`${h.advertisement}  ${h.packageId} v${h.version}  ${h.held}`);
      if (out.advertisements.length === 0) lines.push('no advertisements yet');
      for (const a of out.advertisements)
        lines.push(
          `${a.id}  ${a.packageId} v${a.version}  ${a.state}${a.state === 'downloading' ? ` ${a.bytesTotal ? Math.floor((a.bytesDone / a.bytesTotal) * 100) : 0} %` : ''}${a.exitCode !== null ? `  exit ${a.exitCode}` : ''}${a.detail ? `  ${a.detail}` : ''}`,
        );
      process.stdout.write(`${lines.join('\n')}\n`);
    });

  const repeat = (v: string, prev: string[] = []) => [...prev, v];
  agent
    .command('simulate')
    .description(
      'run many lightweight clients in this one process against real sites and DPs: each enrols, checks in on its cycle, asks for download slots, downloads and checks every chunk without storing it, and reports (for tests and benchmarks)',
    )
    .requiredOption(
      '--site <url>',
      'a site the clients enrol with (repeat with --join-token for several sites; clients are spread evenly)',
      repeat,
    )
    .requiredOption('--join-token <token>', 'an agent join token of that site with enough uses', repeat)
    .requiredOption('--clients <n>', 'how many clients', (v: string) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1 || n > 100_000) throw fail('usage', `--clients "${v}" is not a number from 1 to 100000`);
      return n;
    })
    .option('--seed <n>', 'seed of the fleet: hostnames sim-SEED-N, who fails', (v: string) => Number(v) || 1, 1)
    .option('--duration <d>', 'stop after this long (90s, 10m; default 10m; SIGINT stops it sooner, with the figures so far)', '10m')
    .option('--spread <d>', 'first check-ins spread at random over this long, as machines starting up (default 10s)', '10s')
    .option('--until-done', 'stop once every client has run what was due')
    .option('--fail <share>', 'share of the clients whose runs fail (e.g. 5%)', '0%')
    .option('--concurrency <n>', 'clients acting at once at most (default 64)', (v: string) => Math.max(1, Number(v) || 64), 64)
    .option('--link-rate <rate>', "each client's own link: its downloads keep to this rate (e.g. 1Mbit/s; default unlimited)", 'unlimited')
    .option('--json', 'print the figures as JSON')
    .action(
      async (o: {
        site: string[];
        joinToken: string[];
        clients: number;
        seed: number;
        duration: string;
        spread: string;
        untilDone?: boolean;
        fail: string;
        concurrency: number;
        linkRate: string;
        json?: boolean;
      }) => {
        if (o.site.length !== o.joinToken.length) throw fail('usage', 'give one --join-token for each --site, in the same order');
        const { parseDuration } = await import('../core/time.js');
        const { parsePercent } = await import('../core/rollout.js');
        const { simulate } = await import('./simulate.js');
        const { parseRate } = await import('../core/rate.js');
        const linkRate = parseRate(o.linkRate, '--link-rate');
        // SIGINT or SIGTERM ends the run early, with the figures so far.
        const stop = new AbortController();
        for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => stop.abort());
        const r = await simulate({
          signal: stop.signal,
          sites: o.site.map((url, i) => ({ url, joinToken: o.joinToken[i] as string })),
          clients: o.clients,
          seed: o.seed,
          durationMs: parseDuration(o.duration, '--duration') * 1000,
          spreadMs: parseDuration(o.spread, '--spread') * 1000,
          untilDone: o.untilDone ?? false,
          failShare: parsePercent(o.fail, '--fail') / 100,
          concurrency: o.concurrency,
          linkRate,
          say: o.json ? () => {} : say,
        });
        if (o.json) return printJson(r);
        say(
          `${r.clients} clients, ${r.seconds} s: ${r.checkins} check-ins (p50 ${r.checkinP50Ms} ms, p99 ${r.checkinP99Ms} ms, ${r.checkinErrors} failed), ${r.downloads} downloads, ${(r.bytes / 2 ** 20).toFixed(1)} MiB, ${r.done} clients done${r.upgrades > 0 ? `, ${r.upgrades} upgraded the agent` : ''}`,
        );
        for (const [site, f] of Object.entries(r.sites))
          say(
            `site ${site}: ${f.clients} clients, ${f.downloads} downloads, peak ${f.peakDownloads} at once, ${f.slotRefusals} slot refusals`,
          );
      },
    );
  return agent;
}
