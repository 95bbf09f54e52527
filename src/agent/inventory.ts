import fs from 'node:fs/promises';
import os from 'node:os';
import type { Inventory } from '../api/clients.js';
import { VERSION } from '../lib/version.js';
import type { AgentConfig } from './config.js';

const OS_NAMES: Record<string, string> = { win32: 'windows', darwin: 'macos' };

/** What the agent tells its site about the machine: sent at enrolment and whenever it changes. */
export async function collectInventory(
  dir: string,
  cfg: Pick<AgentConfig, 'hostname' | 'addresses'>,
  linkSpeed: number | null,
): Promise<Inventory> {
  const addresses: string[] = [...cfg.addresses];
  for (const list of Object.values(os.networkInterfaces()))
    for (const a of list ?? []) if (!a.internal && !addresses.includes(a.address)) addresses.push(a.address);
  let freeDisk: number | null = null;
  try {
    const st = await fs.statfs(dir);
    // Rounded to 64 MiB, so the inventory does not change with every file written.
    freeDisk = Math.floor((st.bavail * st.bsize) / 2 ** 26) * 2 ** 26;
  } catch {}
  return {
    hostname: (cfg.hostname ?? os.hostname()).slice(0, 255),
    os: OS_NAMES[process.platform] ?? process.platform,
    arch: process.arch,
    version: VERSION,
    addresses: addresses.slice(0, 64),
    freeDisk,
    // Rounded to a power of two, for the same reason.
    linkSpeed: linkSpeed === null ? null : 2 ** Math.round(Math.log2(Math.max(1, linkSpeed))),
  };
}
