import { describe, expect, it } from 'vitest';
import { CascadeError } from '../core/errors.js';
import { issueCertificate, verifyCertificate } from './certificate.js';
import { generateSiteKey, publicKeyPem } from './signing.js';

const central = generateSiteKey('CEN');
const pinned = { keyId: central.keyId, publicKeyPem: publicKeyPem(central.publicKey), site: 'CEN' };
const eur = generateSiteKey('EUR');
const body = (over: Partial<Parameters<typeof issueCertificate>[1]> = {}) => ({
  code: 'EUR',
  name: 'Europe',
  parent: 'CEN',
  keyId: eur.keyId,
  publicKey: publicKeyPem(eur.publicKey),
  issuedAt: '2026-12-01T00:00:00.000Z',
  ...over,
});

describe('site certificates', () => {
  it('vouch for a key as the key of the site they name', () => {
    const v = verifyCertificate(issueCertificate(central, body()), pinned);
    expect(v.trusted).toEqual({ keyId: eur.keyId, publicKeyPem: publicKeyPem(eur.publicKey), site: 'EUR' });
  });

  it('refuse a key id that names another site or another key, even when the central site signed it', () => {
    // The key id CEN:… under code EUR would let EUR's key pass for the central site's.
    const other = generateSiteKey('CEN');
    for (const keyId of [central.keyId, other.keyId, `EUR:${'0'.repeat(16)}`]) {
      const cert = issueCertificate(central, body({ keyId }));
      expect(() => verifyCertificate(cert, pinned)).toThrow(CascadeError);
      expect(() => verifyCertificate(cert, pinned)).toThrow(/not EUR's key/);
    }
  });

  it('refuse a certificate not issued by the pinned central key', () => {
    const rogue = generateSiteKey('CEN');
    expect(() => verifyCertificate(issueCertificate(rogue, body()), pinned)).toThrow(/does not match|not the central site/);
  });
});
