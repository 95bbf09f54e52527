import { describe, expect, it } from 'vitest';
import type { PolicyRecord } from '../api/clients.js';
import { issueCertificate, trustFromCertificates } from './certificate.js';
import { signPolicy, verifyPolicy } from './policy.js';
import { generateSiteKey, publicKeyPem, type SiteKey, type TrustedKey } from './signing.js';

const trustedOf = (k: SiteKey, site: string): TrustedKey => ({ keyId: k.keyId, publicKeyPem: publicKeyPem(k.publicKey), site });

const ad = (origin: string): PolicyRecord => ({
  kind: 'advertisement',
  id: `${origin}-A00001`,
  origin,
  revision: 1,
  deleted: false,
  at: '2026-12-03T10:00:00.000Z',
  body: {
    id: `${origin}-A00001`,
    packageId: 'CEN00001',
    version: null,
    program: 'Install',
    collection: 'All',
    available: '2026-12-03T10:00:00.000Z',
    mandatory: [],
    expires: null,
    slowLink: 'download',
    fallback: false,
    rerun: 'never',
    maxRunSeconds: 3600,
    enabled: true,
  },
});

describe('signed policy records', () => {
  const cen = generateSiteKey('CEN');
  const eur = generateSiteKey('EUR');
  const central = trustedOf(cen, 'CEN');
  const eurCert = issueCertificate(cen, {
    code: 'EUR',
    name: 'Europe',
    parent: 'CEN',
    keyId: eur.keyId,
    publicKey: publicKeyPem(eur.publicKey),
    issuedAt: '2026-12-03T10:00:00.000Z',
  });

  it('verifies a record by its origin, directly or through its certificate', () => {
    expect(verifyPolicy(signPolicy(cen, ad('CEN')), [central]).id).toBe('CEN-A00001');
    const trusted = trustFromCertificates(central, [eurCert]);
    expect(verifyPolicy(signPolicy(eur, ad('EUR')), trusted).origin).toBe('EUR');
  });

  it('refuses a tampered record, an unknown key, and a site signing for another', () => {
    const signed = signPolicy(cen, ad('CEN'));
    const tampered = structuredClone(signed);
    (tampered.record as { body: { program: string } }).body.program = 'Evil';
    expect(() => verifyPolicy(tampered, [central])).toThrow(/does not match the signed content/);
    expect(() => verifyPolicy(signPolicy(eur, ad('EUR')), [central])).toThrow(/not trusted here/);
    const trusted = trustFromCertificates(central, [eurCert]);
    expect(() => verifyPolicy(signPolicy(eur, ad('CEN')), trusted)).toThrow(/names origin CEN but is signed by site EUR's key/);
    expect(() => verifyPolicy({ record: { kind: 'advertisement' }, signature: signed.signature }, [central])).toThrow(
      /policy record is malformed/,
    );
  });

  it("refuses a deletion of another site's package, even signed by its own origin", () => {
    const trusted = trustFromCertificates(central, [eurCert]);
    const deletion = (origin: string, packageId: string): PolicyRecord => ({
      kind: 'deletion',
      id: packageId,
      origin,
      revision: 1,
      deleted: false,
      at: '2026-12-03T10:00:00.000Z',
      body: { packageId, versions: [2] },
    });
    expect(verifyPolicy(signPolicy(eur, deletion('EUR', 'EUR00001')), trusted).kind).toBe('deletion');
    expect(() => verifyPolicy(signPolicy(eur, deletion('EUR', 'CEN00001')), trusted)).toThrow(
      /site EUR recorded the deletion of CEN00001, a package of site CEN: only a package's own site deletes its versions/,
    );
  });

  it('leaves out a certificate the central key did not sign', () => {
    const rogue = generateSiteKey('XXX');
    const forged = issueCertificate(rogue, {
      code: 'EUR',
      name: 'E',
      parent: 'CEN',
      keyId: eur.keyId,
      publicKey: publicKeyPem(eur.publicKey),
      issuedAt: 'x',
    });
    expect(trustFromCertificates(central, [forged]).map((k) => k.site)).toEqual(['CEN']);
  });
});
