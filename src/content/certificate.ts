import type crypto from 'node:crypto';
import { z } from 'zod';
import { TARGET_NAME } from '../core/dp.js';
import { fail } from '../core/errors.js';
import { SITE_CODE } from '../core/site.js';
import { canonicalJson } from './canonical.js';
import { keyIdFor, publicKeyFromPem, type SiteKey, sign, type TrustedKey, verifySignature } from './signing.js';

/**
 * A site certificate: the central site's signature over a site's code and public key. Every
 * party pins only the central key; a manifest signed by any site of the hierarchy is trusted
 * through that site's certificate.
 */
const bodySchema = z.strictObject({
  /** A site's code, or a DP's name (a DP's certificate proves who it is; it never vouches for manifests). */
  code: z.string().regex(TARGET_NAME),
  name: z.string().min(1).max(128),
  parent: z.string().regex(SITE_CODE).nullable(),
  keyId: z.string().min(1).max(128),
  publicKey: z.string().min(1).max(1024),
  issuedAt: z.string().max(64),
});
const certificateSchema = z.strictObject({
  body: bodySchema,
  issuer: z.string().min(1).max(128),
  signature: z.string().min(1).max(256),
});

export type CertificateBody = z.infer<typeof bodySchema>;
export type SiteCertificate = z.infer<typeof certificateSchema>;

export function issueCertificate(central: SiteKey, body: CertificateBody): SiteCertificate {
  const b = bodySchema.parse(body);
  return { body: b, issuer: central.keyId, signature: sign(central, Buffer.from(canonicalJson(b))) };
}

/** Checks a certificate against the pinned central key; returns the key it vouches for. */
export function verifyCertificate(cert: unknown, central: TrustedKey): CertificateBody & { trusted: TrustedKey } {
  const r = certificateSchema.safeParse(cert);
  if (!r.success) throw fail('bad_signature', `site certificate is malformed: ${r.error.issues[0]?.message ?? 'invalid'}`);
  if (r.data.issuer !== central.keyId)
    throw fail('bad_signature', `site certificate of ${r.data.body.code} is issued by ${r.data.issuer}, not the central site`);
  verifySignature([central], r.data.issuer, Buffer.from(canonicalJson(r.data.body)), r.data.signature);
  const b = r.data.body;
  // The key id names the site and the key's fingerprint: a certificate whose key id names
  // another site (or another key) vouches for nothing.
  let publicKey: crypto.KeyObject;
  try {
    publicKey = publicKeyFromPem(b.publicKey);
  } catch {
    throw fail('bad_signature', `the certificate of ${b.code} carries a public key that is not a valid key`);
  }
  if (keyIdFor(b.code, publicKey) !== b.keyId)
    throw fail('bad_signature', `the certificate of ${b.code} names key ${b.keyId}, which is not ${b.code}'s key`);
  return { ...b, trusted: { keyId: b.keyId, publicKeyPem: b.publicKey, site: b.code } };
}

/**
 * The keys a party trusts from the pinned central key and the certificates it was handed: the
 * central key itself, and each key a certificate vouches for. A certificate that does not check
 * out is left out (anything it signed then fails verification, naming its key).
 */
export function trustFromCertificates(central: TrustedKey, certificates: readonly unknown[]): TrustedKey[] {
  const out: TrustedKey[] = [central];
  for (const c of certificates) {
    try {
      const v = verifyCertificate(c, central);
      if (!out.some((k) => k.keyId === v.keyId)) out.push(v.trusted);
    } catch {
      // left out: see above
    }
  }
  return out;
}
