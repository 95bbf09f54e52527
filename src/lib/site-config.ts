import fs from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { parseCidr } from '../core/cidr.js';
import { DP_NAME, TARGET_NAME } from '../core/dp.js';
import { fail } from '../core/errors.js';
import { SITE_CODE } from '../core/site.js';
import { writeFileDurableSync } from './durable.js';

/** DIR/config.json of a site's or DP's data folder (read by the roles and by the CLI's local settings): what `site init` decided; flags and CASCADE_* variables override it. */
export const SiteConfigSchema = z
  .strictObject({
    /** A site server (default) or a distribution point (code: the DP's name). */
    role: z.enum(['site', 'dp']).optional(),
    code: z.string().regex(TARGET_NAME),
    name: z.string().min(1).max(128),
    db: z.string().min(1).optional(),
    listen: z.string().min(1).optional(),
    /** Serve HTTPS with DIR/tls-cert.pem and DIR/tls-key.pem (absent: plain HTTP). */
    tls: z.boolean().optional(),
    /** Folders the site may read package sources from (`site set --source-root`); none by default. */
    sourceRoots: z
      .array(
        z
          .string()
          .min(1)
          .max(4096)
          .refine((p) => path.isAbsolute(p), 'a source root is an absolute path'),
      )
      .max(64)
      .optional(),
    /**
     * Load balancers in front of the site (`site set --trusted-proxy`): a request from one of
     * these addresses is taken to come from the address its X-Forwarded-For names.
     */
    trustedProxies: z
      .array(
        z
          .string()
          .min(1)
          .max(64)
          .refine((c) => isCidr(c), 'a trusted proxy is an address or a CIDR range, e.g. 10.0.0.5 or 10.0.0.0/24'),
      )
      .max(64)
      .optional(),
  })
  .refine((c) => (c.role === 'dp' ? DP_NAME.test(c.code) : SITE_CODE.test(c.code)), {
    message: 'a site code is three capital letters or digits; a DP name 4 to 64 characters',
    path: ['code'],
  });
export type SiteConfig = z.infer<typeof SiteConfigSchema>;

export const configPath = (dataDir: string): string => path.join(dataDir, 'config.json');

export function readSiteConfig(dataDir: string): SiteConfig {
  const file = configPath(dataDir);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    throw fail(
      'invalid_config',
      `${dataDir} is not a site or DP data folder (no config.json): run "cascade site init" or "cascade dp init" with --data ${dataDir} first`,
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw fail('invalid_config', `${file} is not valid JSON: ${(e as Error).message}`);
  }
  const r = SiteConfigSchema.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0];
    throw fail('invalid_config', `${file}: ${i?.path.join('.') || 'config'}: ${i?.message}`);
  }
  return r.data;
}

/** Writes config.json durably (temporary file, fsync, rename, fsync of the folder), mode 600. */
export function writeSiteConfig(dataDir: string, cfg: SiteConfig): void {
  writeFileDurableSync(configPath(dataDir), `${JSON.stringify(SiteConfigSchema.parse(cfg), null, 2)}\n`, 0o600);
}

/** Parses HOST:PORT (IPv6 as [::1]:PORT). */
export function parseListen(s: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(s);
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || port > 65535) throw fail('usage', `--listen "${s}" is not HOST:PORT (e.g. 127.0.0.1:8100)`);
  return { host: (m[1] ?? m[2]) as string, port };
}

/**
 * Source roots as given on the command line: each made absolute, and each an existing folder
 * (a typo here would otherwise surface only when a package is read).
 */
export function checkSourceRoots(roots: readonly string[]): string[] {
  const out: string[] = [];
  for (const r of roots) {
    const abs = path.resolve(r);
    let st: fs.Stats;
    try {
      st = fs.statSync(abs);
    } catch (e) {
      throw fail(
        'usage',
        `--source-root ${r}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such folder' : (e as Error).message}`,
      );
    }
    if (!st.isDirectory()) throw fail('usage', `--source-root ${r} is not a folder`);
    if (!out.includes(abs)) out.push(abs);
  }
  return out;
}

const isCidr = (c: string): boolean => {
  try {
    parseCidr(c);
    return true;
  } catch {
    return false;
  }
};

/** `site set`: changes what config.json says; a running site reads its source roots and trusted proxies on every use. */
export function updateSiteConfig(dataDir: string, change: { sourceRoots?: string[] | null; trustedProxies?: string[] | null }): SiteConfig {
  const cfg = readSiteConfig(dataDir);
  if ((cfg.role ?? 'site') !== 'site') throw fail('usage', `${dataDir} holds a DP: source roots and trusted proxies are a site server's`);
  const next: SiteConfig = { ...cfg };
  if (change.sourceRoots === null) delete next.sourceRoots;
  else if (change.sourceRoots) next.sourceRoots = checkSourceRoots(change.sourceRoots);
  if (change.trustedProxies === null) delete next.trustedProxies;
  else if (change.trustedProxies) {
    const bad = change.trustedProxies.find((c) => !isCidr(c));
    if (bad) throw fail('usage', `--trusted-proxy "${bad}" is not an address or a CIDR range (e.g. 10.0.0.5 or 10.0.0.0/24)`);
    next.trustedProxies = change.trustedProxies;
  }
  writeSiteConfig(dataDir, next);
  return next;
}
