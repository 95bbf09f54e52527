import { PolicyRecord, SignedPolicy } from '../api/clients.js';
import { fail } from '../core/errors.js';
import { canonicalJson } from './canonical.js';
import { type SiteKey, sign, type TrustedKey, verifySignature } from './signing.js';

/**
 * Policy records (collections, advertisements, boundaries) are signed by the site that made
 * them, like manifests: every site below and every agent checks them against the keys it
 * trusts (the pinned central key, and other sites' keys through their certificates).
 */

export function signPolicy(key: SiteKey, record: PolicyRecord): SignedPolicy {
  return { record, signature: { keyId: key.keyId, value: sign(key, Buffer.from(canonicalJson(record))) } };
}

/** The one check of a policy record: a trusted key of its origin site signed exactly these bytes. */
export function verifyPolicy(signed: SignedPolicy, trusted: readonly TrustedKey[]): PolicyRecord {
  const s = SignedPolicy.safeParse(signed);
  if (!s.success) {
    const issue = s.error.issues[0];
    throw fail('bad_signature', `signed policy record is malformed: ${issue?.path.join('.') ?? ''} ${issue?.message ?? ''}`.trim());
  }
  const r = PolicyRecord.safeParse(signed.record);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw fail('bad_signature', `policy record is malformed: ${issue?.path.join('.') ?? ''} ${issue?.message ?? ''}`.trim());
  }
  let bytes: Buffer;
  try {
    bytes = Buffer.from(canonicalJson(signed.record));
  } catch (e) {
    throw fail('bad_signature', `policy record is not canonical: ${(e as Error).message}`);
  }
  verifySignature(trusted, signed.signature.keyId, bytes, signed.signature.value);
  const signer = trusted.find((k) => k.keyId === signed.signature.keyId) as TrustedKey;
  if (signer.site !== r.data.origin)
    throw fail(
      'bad_signature',
      `${r.data.kind} ${r.data.id} names origin ${r.data.origin} but is signed by site ${signer.site}'s key: a site signs only its own policy`,
    );
  if (r.data.kind === 'deletion' && r.data.body.packageId.slice(0, 3) !== r.data.origin)
    throw fail(
      'bad_signature',
      `site ${r.data.origin} recorded the deletion of ${r.data.body.packageId}, a package of site ${r.data.body.packageId.slice(0, 3)}: only a package's own site deletes its versions`,
    );
  return r.data;
}
