import fs from 'node:fs';
import path from 'node:path';
import { type Command, Option } from 'commander';
import { ApiClient } from '../api/client.js';
import { fail } from '../core/errors.js';
import { certificatePin, parsePin, TLS_CERT_FILE } from '../lib/tls.js';

export const DEFAULT_SITE = 'http://127.0.0.1:8100';

export interface AdminOpts {
  site?: string;
  token?: string;
  data?: string;
  tlsPin?: string;
  json?: boolean;
}

/** Options every admin command takes: where the site is, the token, and --json. */
export function adminOptions(cmd: Command, json = true, siteHelp = `site server URL (default ${DEFAULT_SITE})`): Command {
  cmd
    .addOption(new Option('--site <url>', siteHelp).env('CASCADE_SITE'))
    .addOption(new Option('--token <token>', 'API bearer token').env('CASCADE_TOKEN'))
    .addOption(new Option('--data <dir>', "a local site's data folder: take the URL and admin token from it").env('CASCADE_DATA'))
    .addOption(
      new Option('--tls-pin <sha256>', "the site's TLS certificate fingerprint, when it is self-signed (printed by site init)").env(
        'CASCADE_TLS_PIN',
      ),
    );
  if (json) cmd.option('--json', 'print JSON instead of text');
  return cmd;
}

/**
 * Where the command goes: `--site`/`--token` flags first; then `--data DIR` given as a flag,
 * which names a site and its admin token unambiguously and so wins over CASCADE_SITE and
 * CASCADE_TOKEN; then those variables; then the data folder of CASCADE_DATA; then the default.
 * (Commander fills the options from the variables too: a value equal to its variable came from it.)
 */
export function clientFrom(o: AdminOpts): ApiClient {
  const fromEnv = (v: string | undefined, name: string) => v !== undefined && v === process.env[name];
  const dataFlag = o.data !== undefined && !fromEnv(o.data, 'CASCADE_DATA');
  let site = dataFlag && fromEnv(o.site, 'CASCADE_SITE') ? undefined : o.site;
  let token = dataFlag && fromEnv(o.token, 'CASCADE_TOKEN') ? undefined : o.token;
  let pin = o.tlsPin && !(dataFlag && fromEnv(o.tlsPin, 'CASCADE_TLS_PIN')) ? parsePin(o.tlsPin, '--tls-pin') : undefined;
  if (o.data && (!site || !token)) {
    const dir = path.resolve(o.data);
    if (!token) {
      try {
        token = fs.readFileSync(path.join(dir, 'admin-token'), 'utf8').trim();
      } catch {
        throw fail('usage', `no admin token in ${dir} (is it a site data folder?); pass --token`);
      }
    }
    if (!site) {
      try {
        const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as { listen?: string; tls?: boolean };
        if (cfg.listen || cfg.tls) site = `${cfg.tls ? 'https' : 'http'}://${cfg.listen ?? new URL(DEFAULT_SITE).host}`;
        // Its own certificate, read from its folder: the pin needs no typing.
        if (cfg.tls) pin ??= certificatePin(fs.readFileSync(path.join(dir, TLS_CERT_FILE), 'utf8'));
      } catch {}
    }
  }
  try {
    return new ApiClient(site ?? DEFAULT_SITE, { token, who: 'the site', pin });
  } catch (e) {
    throw fail('usage', `--site ${(e as Error).message}`);
  }
}

/** Left-aligned columns for human output. */
export function table(rows: string[][]): string {
  if (rows.length === 0) return '';
  const widths = (rows[0] as string[]).map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return `${rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] as number))).join('  ')).join('\n')}\n`;
}

export function parseIntOpt(name: string, min = 0) {
  return (v: string): number => {
    if (!/^\d+$/.test(v) || Number(v) < min)
      throw fail('usage', `${name} must be a whole number${min > 0 ? ` of at least ${min}` : ''}, not "${v}"`);
    return Number(v);
  };
}

/** Commander reducer for a repeatable option: every value, in order. */
export const collect = (v: string, prev: string[] = []): string[] => [...prev, v];
