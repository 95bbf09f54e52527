import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fail } from '../core/errors.js';
import { writeFileDurableSync } from './durable.js';

/**
 * The TLS certificate a site or DP serves HTTPS with: `tls-cert.pem` and `tls-key.pem` in its
 * data folder, given at init or made there. A made one is self-signed: whoever calls the
 * server trusts it by its fingerprint (the pin a join token carries), not by a CA.
 */
export const TLS_CERT_FILE = 'tls-cert.pem';
export const TLS_KEY_FILE = 'tls-key.pem';

export interface TlsFiles {
  cert: string;
  key: string;
  /** SHA-256 of the certificate's DER bytes, 64 hex digits: what callers pin. */
  pin: string;
}

/** The pin of a PEM certificate (or of its DER bytes). */
export function certificatePin(cert: string | Buffer): string {
  const der = typeof cert === 'string' ? new crypto.X509Certificate(cert).raw : cert;
  return crypto.createHash('sha256').update(der).digest('hex');
}

/** A pin as given by a person or a token: 64 hex digits, colons allowed (as openssl prints them). */
export function parsePin(text: string, what = 'TLS pin'): string {
  const hex = text.replace(/:/g, '').toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hex))
    throw fail(
      'usage',
      `${what} "${text}" is not a certificate's SHA-256 fingerprint (64 hex digits, as "site init" printed it and "site start" logs it)`,
    );
  return hex;
}

/** Reads the data folder's certificate and key, checking that they belong together. */
export function readTls(dataDir: string): TlsFiles {
  const certPath = path.join(dataDir, TLS_CERT_FILE);
  const keyPath = path.join(dataDir, TLS_KEY_FILE);
  let cert: string;
  let key: string;
  try {
    cert = fs.readFileSync(certPath, 'utf8');
    key = fs.readFileSync(keyPath, 'utf8');
  } catch (e) {
    throw fail(
      'invalid_config',
      `${dataDir} serves HTTPS but its certificate cannot be read (${(e as NodeJS.ErrnoException).code}): put ${TLS_CERT_FILE} and ${TLS_KEY_FILE} back, or init with --tls-cert/--tls-key`,
    );
  }
  return checkPair(cert, key, certPath);
}

function checkPair(cert: string, key: string, where: string): TlsFiles {
  let x: crypto.X509Certificate;
  let k: crypto.KeyObject;
  try {
    x = new crypto.X509Certificate(cert);
  } catch (e) {
    throw fail('invalid_config', `${where} is not a PEM certificate (${(e as Error).message})`);
  }
  try {
    k = crypto.createPrivateKey(key);
  } catch (e) {
    throw fail('invalid_config', `the key beside ${where} is not a PEM private key (${(e as Error).message})`);
  }
  if (!x.checkPrivateKey(k)) throw fail('invalid_config', `${where} and its key do not belong together (the key is another certificate's)`);
  return { cert, key, pin: certificatePin(x.raw) };
}

/**
 * Puts a certificate in the data folder: the given files (checked to belong together), or a new
 * self-signed one for these host names and addresses. Returns its pin.
 */
export function installTls(
  dataDir: string,
  o: { certFile?: string | undefined; keyFile?: string | undefined; names: string[]; commonName: string },
): TlsFiles {
  let files: TlsFiles;
  if (o.certFile || o.keyFile) {
    if (!o.certFile || !o.keyFile) throw fail('usage', '--tls-cert and --tls-key go together');
    const read = (f: string) => {
      try {
        return fs.readFileSync(f, 'utf8');
      } catch (e) {
        throw fail('usage', `cannot read ${f} (${(e as NodeJS.ErrnoException).code})`);
      }
    };
    files = checkPair(read(o.certFile), read(o.keyFile), o.certFile);
  } else files = selfSignedCertificate(o.commonName, o.names);
  writeFileDurableSync(path.join(dataDir, TLS_KEY_FILE), files.key, 0o600);
  writeFileDurableSync(path.join(dataDir, TLS_CERT_FILE), files.cert, 0o644);
  return files;
}

// --- a self-signed certificate, in DER written by hand ----------------------------------------
// Node can make keys and read certificates but not write one; the structure is small and fixed
// (RFC 5280: version 3, ECDSA P-256 with SHA-256, subjectAltName, 20 years), and every byte is
// checked by OpenSSL itself when a test parses it and completes a handshake with it.

const der = (tag: number, ...parts: Buffer[]): Buffer => {
  const body = Buffer.concat(parts);
  const n = body.length;
  const len =
    n < 0x80
      ? Buffer.from([n])
      : n < 0x100
        ? Buffer.from([0x81, n])
        : n < 0x10000
          ? Buffer.from([0x82, n >> 8, n & 0xff])
          : Buffer.from([0x83, n >> 16, (n >> 8) & 0xff, n & 0xff]);
  return Buffer.concat([Buffer.from([tag]), len, body]);
};
const seq = (...parts: Buffer[]) => der(0x30, ...parts);

/**
 * A non-negative DER INTEGER from big-endian bytes: in its fewest bytes (a leading zero byte is
 * kept only before a byte whose high bit is set), as DER requires. OpenSSL refuses a padded one
 * ("illegal padding"): a random 16-byte serial starting 0x00 0x00-0x7f, one certificate in 256.
 */
export function derInteger(bytes: Buffer): Buffer {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  const b = bytes.subarray(i);
  return der(0x02, ((b[0] as number) & 0x80) !== 0 ? Buffer.concat([Buffer.from([0]), b]) : b);
}

function oid(dotted: string): Buffer {
  const [a, b, ...rest] = dotted.split('.').map(Number) as [number, number, ...number[]];
  const bytes = [40 * a + b];
  for (const v of rest) {
    const groups = [v & 0x7f];
    for (let x = v >>> 7; x > 0; x >>>= 7) groups.unshift((x & 0x7f) | 0x80);
    bytes.push(...groups);
  }
  return der(0x06, Buffer.from(bytes));
}

function time(d: Date): Buffer {
  const iso = d.toISOString().replace(/[-:T]/g, '').slice(0, 14);
  // UTCTime until 2049, GeneralizedTime from 2050 (RFC 5280 §4.1.2.5).
  return d.getUTCFullYear() < 2050 ? der(0x17, Buffer.from(`${iso.slice(2)}Z`)) : der(0x18, Buffer.from(`${iso}Z`));
}

function selfSignedCertificate(commonName: string, names: string[]): TlsFiles {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const ecdsaSha256 = seq(oid('1.2.840.10045.4.3.2'));
  const name = seq(der(0x31, seq(oid('2.5.4.3'), der(0x0c, Buffer.from(commonName)))));
  const serial = crypto.randomBytes(16);
  const now = Date.now();
  const alt = [...new Set(names)].map((n) => {
    if (net.isIPv4(n)) return der(0x87, Buffer.from(n.split('.').map(Number)));
    if (net.isIPv6(n)) return der(0x87, ipv6Bytes(n));
    return der(0x82, Buffer.from(n));
  });
  const extensions = der(
    0xa3,
    seq(
      seq(oid('2.5.29.19'), der(0x01, Buffer.from([0xff])), der(0x04, seq())),
      seq(oid('2.5.29.15'), der(0x01, Buffer.from([0xff])), der(0x04, der(0x03, Buffer.from([0x07, 0x80])))),
      seq(oid('2.5.29.37'), der(0x04, seq(oid('1.3.6.1.5.5.7.3.1')))),
      seq(oid('2.5.29.17'), der(0x04, seq(...alt))),
    ),
  );
  const tbs = seq(
    der(0xa0, derInteger(Buffer.from([2]))),
    derInteger(serial),
    ecdsaSha256,
    name,
    seq(time(new Date(now - 3600_000)), time(new Date(now + 20 * 365.25 * 86400_000))),
    name,
    publicKey.export({ type: 'spki', format: 'der' }),
    extensions,
  );
  const signature = crypto.sign('sha256', tbs, { key: privateKey, dsaEncoding: 'der' });
  const cert = seq(tbs, ecdsaSha256, der(0x03, Buffer.from([0]), signature));
  const pem = `-----BEGIN CERTIFICATE-----\n${cert.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n')}-----END CERTIFICATE-----\n`;
  return { cert: pem, key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, pin: certificatePin(cert) };
}

function ipv6Bytes(a: string): Buffer {
  const [head = '', tail = ''] = a.includes('::') ? a.split('::') : [a, ''];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = a.includes('::') ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : h;
  const out = Buffer.alloc(16);
  for (const [i, g] of groups.entries()) out.writeUInt16BE(Number.parseInt(g || '0', 16), i * 2);
  return out;
}

/** Whether a listen host is this machine's loopback (plain HTTP stays the default there). */
export const isLoopback = (host: string): boolean => host === 'localhost' || host === '::1' || /^127\./.test(host);

/** The pin a join token ends with (`….tls-<64 hex>`), when its site serves HTTPS. */
export function tokenPin(token: string): string | null {
  return /\.tls-([0-9a-f]{64})$/.exec(token)?.[1] ?? null;
}

/**
 * The pin to call a URL with, from a join token: refuses a plain http:// URL to a site that
 * serves HTTPS (the token would cross the network in clear, and the call would fail anyway).
 */
export function pinForJoin(url: string, token: string, flag: string): string | null {
  const pin = tokenPin(token);
  if (pin && url.startsWith('http://'))
    throw fail(
      'usage',
      `the join token says that site serves HTTPS (certificate ${pin.slice(0, 16)}…): give ${flag} as ${url.replace(/^http:/, 'https:')}`,
    );
  return pin;
}
