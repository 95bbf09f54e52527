import { describe, expect, it } from 'vitest';
import { signFreshness, verifyFreshness } from './freshness.js';
import { generateSiteKey, publicKeyPem, type SiteKey, type TrustedKey } from './signing.js';

const trustedOf = (k: SiteKey, site: string): TrustedKey => ({ keyId: k.keyId, publicKeyPem: publicKeyPem(k.publicKey), site });

describe('freshness statements', () => {
  const cen = generateSiteKey('CEN');
  const eur = generateSiteKey('EUR');
  const trusted = [trustedOf(cen, 'CEN'), trustedOf(eur, 'EUR')];
  const word = { site: 'CEN', at: '2026-12-05T10:00:00.000Z', latest: [['CEN00001', 5]] as [string, number][] };

  it('verifies a word signed by its own site', () => {
    expect(verifyFreshness(signFreshness(cen, word), trusted)).toEqual(word);
  });

  it('refuses one altered after signing: a newer time, or an older version', () => {
    const fresher = signFreshness(cen, word);
    (fresher.freshness as typeof word).at = '2026-12-05T11:00:00.000Z';
    expect(() => verifyFreshness(fresher, trusted)).toThrow(/signature/);
    const older = signFreshness(cen, word);
    (older.freshness as typeof word).latest = [['CEN00001', 4]];
    expect(() => verifyFreshness(older, trusted)).toThrow(/signature/);
  });

  it("refuses a site's word signed by another site's key, and one from a key not trusted", () => {
    expect(() => verifyFreshness(signFreshness(eur, word), trusted)).toThrow(
      "a freshness statement of site CEN is signed by site EUR's key: a site speaks only for itself",
    );
    expect(() => verifyFreshness(signFreshness(generateSiteKey('CEN'), word), trusted)).toThrow(/not trusted here/);
  });

  it('refuses malformed statements with one line', () => {
    expect(() => verifyFreshness({ freshness: { ...word, at: 'yesterday' }, signature: { keyId: 'x', value: 'y' } }, trusted)).toThrow(
      /freshness statement is malformed: at/,
    );
    expect(() => verifyFreshness(null, trusted)).toThrow(/signed freshness statement is malformed/);
  });
});
