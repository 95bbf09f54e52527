import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fail } from '../core/errors.js';

/** A site's Ed25519 key pair; the private half never leaves the data folder. */
export interface SiteKey {
  keyId: string;
  publicKey: crypto.KeyObject;
  privateKey: crypto.KeyObject;
}

/**
 * A public key someone trusts, as it travels: key id and SPKI PEM, and the site it belongs to
 * (pinned at join, or vouched for by the central site's certificate). A site's key signs only
 * that site's packages: see `verifyManifest`.
 */
export interface TrustedKey {
  keyId: string;
  publicKeyPem: string;
  site: string;
}

/** Key ids name the site and a fingerprint: `CEN:1f2e3d4c5b6a7988`. */
export function keyIdFor(siteCode: string, publicKey: crypto.KeyObject): string {
  const der = publicKey.export({ type: 'spki', format: 'der' });
  return `${siteCode}:${crypto.createHash('sha256').update(der).digest('hex').slice(0, 16)}`;
}

export function generateSiteKey(siteCode: string): SiteKey {
  const { publicKey, privateKey } = crypto.generateKeyPairSync('ed25519');
  return { keyId: keyIdFor(siteCode, publicKey), publicKey, privateKey };
}

/** The private key's file in the site's data folder. */
export const SITE_KEY_FILE = 'site-key.pem';

/** Writes the private key (mode 600) atomically; the public key derives from it. */
export function saveSiteKey(dataDir: string, key: SiteKey): void {
  const file = path.join(dataDir, SITE_KEY_FILE);
  const tmp = `${file}.tmp`;
  fs.writeFileSync(tmp, key.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  const fd = fs.openSync(tmp, 'r');
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
}

export function loadSiteKey(dataDir: string, siteCode: string): SiteKey {
  const file = path.join(dataDir, SITE_KEY_FILE);
  let pem: string;
  try {
    pem = fs.readFileSync(file, 'utf8');
  } catch {
    throw fail('invalid_config', `${file} is missing: run "cascade site init" for this data folder first`);
  }
  let privateKey: crypto.KeyObject;
  try {
    privateKey = crypto.createPrivateKey(pem);
  } catch (e) {
    throw fail('invalid_config', `${file} is not a PEM private key: ${(e as Error).message}`);
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') throw fail('invalid_config', `${file} is not an Ed25519 key`);
  const publicKey = crypto.createPublicKey(privateKey);
  return { keyId: keyIdFor(siteCode, publicKey), publicKey, privateKey };
}

export const publicKeyPem = (k: crypto.KeyObject): string => k.export({ type: 'spki', format: 'pem' }).toString();

/**
 * A trusted key's PEM parsed once: every check of a manifest, policy record, certificate or
 * ticket would otherwise parse the same few PEMs again (a busy site or a simulator with 10,000
 * clients verifies thousands a second). Bounded: the oldest parse is dropped past 256 keys.
 * Throws as `crypto.createPublicKey` does on a PEM that is not a key.
 */
const parsedKeys = new Map<string, crypto.KeyObject>();
export function publicKeyFromPem(pem: string): crypto.KeyObject {
  let k = parsedKeys.get(pem);
  if (!k) {
    k = crypto.createPublicKey(pem);
    if (parsedKeys.size >= 256) parsedKeys.delete(parsedKeys.keys().next().value as string);
    parsedKeys.set(pem, k);
  }
  return k;
}

export function sign(key: SiteKey, bytes: Uint8Array): string {
  return crypto.sign(null, bytes, key.privateKey).toString('base64');
}

/** Checks an Ed25519 signature by one of the trusted keys; throws `bad_signature` otherwise. */
export function verifySignature(trusted: readonly TrustedKey[], keyId: string, bytes: Uint8Array, signature: string): void {
  const k = trusted.find((t) => t.keyId === keyId);
  if (!k) throw fail('bad_signature', `signed by key ${keyId}, which is not trusted here`);
  // Node's base64 decoder skips stray characters and ignores spare low bits, so several strings
  // decode to the same signature: accept only the one canonical spelling, so an altered byte of a
  // signed envelope can never verify.
  const sig = Buffer.from(signature, 'base64');
  if (sig.toString('base64') !== signature) throw fail('bad_signature', `the signature by key ${keyId} is not canonical base64`);
  // Large signed bytes (manifests) are not remembered here: verifyManifest keeps its own verdicts,
  // and hashing megabytes for a key would double the cost of a miss.
  const seen =
    bytes.length <= VERIFIED_SIGNATURE_BYTES
      ? `${k.publicKeyPem}\n${signature}\n${crypto.createHash('sha256').update(bytes).digest('base64')}`
      : null;
  if (seen && verifiedSignatures.has(seen)) return;
  let ok = false;
  try {
    ok = crypto.verify(null, bytes, publicKeyFromPem(k.publicKeyPem), sig);
  } catch {
    ok = false;
  }
  if (!ok) throw fail('bad_signature', `the signature by key ${keyId} does not match the signed content`);
  if (!seen) return;
  if (verifiedSignatures.size >= VERIFIED_SIGNATURES) verifiedSignatures.delete(verifiedSignatures.keys().next().value as string);
  verifiedSignatures.set(seen, true);
}

/**
 * Signatures that checked out: the key, the signature and the SHA-256 of what it signs, which
 * decide the verdict alone. The same record seen again (an advertisement in every check-in
 * answer, the same certificate to 10,000 simulated clients) costs a hash of its bytes instead
 * of an Ed25519 verification. Only successes are kept, of signed bytes up to 64 KiB; the oldest
 * goes past 4,096.
 */
const VERIFIED_SIGNATURES = 4096;
const VERIFIED_SIGNATURE_BYTES = 64 << 10;
const verifiedSignatures = new Map<string, true>();

/**
 * The key a site seals the credentials it keeps for its neighbours with (in its store), derived
 * from its private key: whoever holds only the database cannot use them.
 */
export function sealingKey(key: SiteKey): Buffer {
  const der = key.privateKey.export({ type: 'pkcs8', format: 'der' });
  return Buffer.from(crypto.hkdfSync('sha256', der, Buffer.alloc(0), 'cascade: credentials for calling neighbours', 32));
}
