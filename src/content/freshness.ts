import { Freshness, SignedFreshness } from '../api/clients.js';
import { fail } from '../core/errors.js';
import { canonicalJson } from './canonical.js';
import { type SiteKey, sign, type TrustedKey, verifySignature } from './signing.js';

/**
 * A site's signed word on what it has published (its freshness statement): like a manifest or a
 * policy record, signed over its canonical JSON by the site's own key, and checked below with
 * the one function here, against the keys the reader trusts.
 */

export function signFreshness(key: SiteKey, f: Freshness): SignedFreshness {
  return { freshness: f, signature: { keyId: key.keyId, value: sign(key, Buffer.from(canonicalJson(f))) } };
}

/** The one check of a freshness statement: a trusted key of the site it names signed exactly these bytes. */
export function verifyFreshness(signed: unknown, trusted: readonly TrustedKey[]): Freshness {
  const s = SignedFreshness.safeParse(signed);
  if (!s.success) {
    const issue = s.error.issues[0];
    throw fail('bad_signature', `signed freshness statement is malformed: ${issue?.path.join('.') ?? ''} ${issue?.message ?? ''}`.trim());
  }
  const f = Freshness.safeParse(s.data.freshness);
  if (!f.success) {
    const issue = f.error.issues[0];
    throw fail('bad_signature', `freshness statement is malformed: ${issue?.path.join('.') ?? ''} ${issue?.message ?? ''}`.trim());
  }
  let bytes: Buffer;
  try {
    bytes = Buffer.from(canonicalJson(s.data.freshness));
  } catch (e) {
    throw fail('bad_signature', `freshness statement is not canonical: ${(e as Error).message}`);
  }
  verifySignature(trusted, s.data.signature.keyId, bytes, s.data.signature.value);
  const signer = trusted.find((k) => k.keyId === s.data.signature.keyId) as TrustedKey;
  if (signer.site !== f.data.site)
    throw fail(
      'bad_signature',
      `a freshness statement of site ${f.data.site} is signed by site ${signer.site}'s key: a site speaks only for itself`,
    );
  return f.data;
}
