import { fail } from './errors.js';

/** IP ranges (boundaries): IPv4 and IPv6 CIDR blocks, and whether an address falls in one. */

export interface Cidr {
  text: string;
  /** The network as a 128-bit number (IPv4 mapped into ::ffff:0:0/96). */
  network: bigint;
  /** Prefix length over 128 bits: bigger is more specific. */
  bits: number;
}

function v4(s: string): bigint | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  let n = 0n;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return undefined;
    n = (n << 8n) | BigInt(Number(p));
  }
  return 0xffff00000000n | n;
}

function v6(s: string): bigint | undefined {
  if (!/^[0-9a-fA-F:.]+$/.test(s)) return undefined;
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const groups = (h: string): number[] | undefined => {
    if (h === '') return [];
    const out: number[] = [];
    for (const g of h.split(':')) {
      if (g.includes('.')) {
        const four = v4(g);
        if (four === undefined) return undefined;
        out.push(Number((four >> 16n) & 0xffffn), Number(four & 0xffffn));
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
        out.push(Number.parseInt(g, 16));
      }
    }
    return out;
  };
  const a = groups(halves[0] as string);
  const b = halves.length === 2 ? groups(halves[1] as string) : [];
  if (!a || !b) return undefined;
  const fill = 8 - a.length - b.length;
  if ((halves.length === 1 && fill !== 0) || fill < 0) return undefined;
  let n = 0n;
  for (const g of [...a, ...new Array(halves.length === 2 ? fill : 0).fill(0), ...b]) n = (n << 16n) | BigInt(g);
  return n;
}

/** An address as a 128-bit number, or undefined when it is not an IP address. */
export function parseAddress(s: string): bigint | undefined {
  const t = s.trim().replace(/^\[|\]$/g, '');
  return t.includes(':') ? v6(t) : v4(t);
}

const mask = (bits: number): bigint => (bits === 0 ? 0n : ((1n << 128n) - 1n) ^ ((1n << BigInt(128 - bits)) - 1n));

export function parseCidr(s: string): Cidr {
  const m = /^([^/]+)(?:\/(\d{1,3}))?$/.exec(s.trim());
  const addr = m ? parseAddress(m[1] as string) : undefined;
  if (!m || addr === undefined) throw fail('usage', `"${s}" is not an IP range (e.g. 10.20.0.0/16 or fd00::/8)`);
  const isV4 = !(m[1] as string).includes(':');
  const len = m[2] === undefined ? (isV4 ? 32 : 128) : Number(m[2]);
  if (len > (isV4 ? 32 : 128)) throw fail('usage', `"${s}": the prefix length is at most ${isV4 ? 32 : 128}`);
  const bits = isV4 ? 96 + len : len;
  const network = addr & mask(bits);
  if (network !== addr) throw fail('usage', `"${s}" has host bits set; the range is written with its network address`);
  return { text: `${m[1]}/${len}`, network, bits };
}

export function cidrHolds(c: Cidr, address: string): boolean {
  const a = parseAddress(address);
  return a !== undefined && (a & mask(c.bits)) === c.network;
}
