import { describe, expect, it } from 'vitest';
import { generateSiteKey, type SiteKey, sign, type TrustedKey, verifySignature } from './signing.js';

const trustOf = (k: SiteKey, site: string): TrustedKey => ({
  keyId: k.keyId,
  publicKeyPem: k.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  site,
});

describe('verifySignature', () => {
  it('accepts the same signed bytes again, and never other bytes, another key or another signature after them', () => {
    const a = generateSiteKey('CEN');
    const b = generateSiteKey('CEN');
    const bytes = Buffer.from('{"kind":"advertisement","id":"CEN-A00001"}');
    const sig = sign(a, bytes);
    const trusted = [trustOf(a, 'CEN')];
    verifySignature(trusted, a.keyId, bytes, sig);
    // Seen before: still accepted.
    verifySignature(trusted, a.keyId, bytes, sig);
    // One byte changed, after the same signature checked out for the original.
    const altered = Buffer.from(bytes);
    altered[5] = (altered[5] as number) ^ 1;
    expect(() => verifySignature(trusted, a.keyId, altered, sig)).toThrow(/does not match the signed content/);
    // The same key id trusted with another public key (a key that was replaced).
    expect(() => verifySignature([{ ...trustOf(b, 'CEN'), keyId: a.keyId }], a.keyId, bytes, sig)).toThrow(
      /does not match the signed content/,
    );
    // Another signature over the same bytes, by a key that did not make it.
    expect(() => verifySignature(trusted, a.keyId, bytes, sign(b, bytes))).toThrow(/does not match the signed content/);
  });

  it('keeps refusing a bad signature however often it is shown', () => {
    const a = generateSiteKey('BER');
    const bytes = Buffer.from('payload');
    const bad = sign(a, Buffer.from('other payload'));
    for (let i = 0; i < 3; i++) expect(() => verifySignature([trustOf(a, 'BER')], a.keyId, bytes, bad)).toThrow(/does not match/);
  });
});
