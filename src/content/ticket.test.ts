import crypto from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CascadeError } from '../core/errors.js';
import { canonicalJson } from './canonical.js';
import { generateSiteKey, publicKeyPem, type SiteKey, type TrustedKey } from './signing.js';
import { issueTicket, TICKET_PREFIX, verifyTicket } from './ticket.js';

const cen = generateSiteKey('CEN');
const eur = generateSiteKey('EUR');
const trusted = (k: SiteKey): TrustedKey => ({ keyId: k.keyId, publicKeyPem: publicKeyPem(k.publicKey), site: k.keyId.slice(0, 3) });
const now = new Date('2026-11-21T12:00:00.000Z');
const at = (seconds: number) => new Date(now.getTime() + seconds * 1000);
const expect0 = { dp: 'cen-dp1', site: 'CEN', key: trusted(cen), now };

/** The error a call throws: its catalogue code and message. */
function failure(f: () => unknown): { code: string; message: string } {
  try {
    f();
  } catch (e) {
    if (e instanceof CascadeError) return { code: e.code, message: e.message };
    throw e;
  }
  throw new Error('did not throw');
}

/** Re-signs an altered body with `key`, as a forger holding that key could. */
function forge(key: SiteKey, body: Record<string, unknown>): string {
  const payload = Buffer.from(canonicalJson(body));
  return `${TICKET_PREFIX}${payload.toString('base64url')}.${crypto.sign(null, payload, key.privateKey).toString('base64url')}`;
}

describe('import tickets', () => {
  it('a ticket the site signed for its DP verifies there, until it expires', () => {
    const { ticket, body } = issueTicket(cen, 'CEN', 'cen-dp1', now);
    expect(ticket.startsWith(TICKET_PREFIX)).toBe(true);
    expect(body).toMatchObject({ purpose: 'courier-import', site: 'CEN', dp: 'cen-dp1', keyId: cen.keyId });
    expect(Date.parse(body.expiresAt) - Date.parse(body.issuedAt)).toBe(600_000);
    expect(verifyTicket(ticket, expect0)).toEqual(body);
    expect(verifyTicket(ticket, { ...expect0, now: at(599) })).toEqual(body);
    // Within the allowed clock skew (5 minutes) after expiry, then refused.
    expect(verifyTicket(ticket, { ...expect0, now: at(600 + 299) })).toEqual(body);
    const late = failure(() => verifyTicket(ticket, { ...expect0, now: at(600 + 301) }));
    expect(late).toEqual({
      code: 'unauthorized',
      message: expect.stringMatching(/^the import ticket expired at 2026-11-21T12:10:00.000Z; ask/),
    });
    // Two tickets differ (a nonce), even issued at the same moment.
    expect(issueTicket(cen, 'CEN', 'cen-dp1', now).ticket).not.toBe(ticket);
  });

  it('refuses a ticket for another DP, or from another site (403)', () => {
    const { ticket } = issueTicket(cen, 'CEN', 'cen-dp2', now);
    expect(failure(() => verifyTicket(ticket, expect0))).toEqual({
      code: 'forbidden',
      message: 'the import ticket is for DP cen-dp2, not for this DP (cen-dp1)',
    });
    const foreign = issueTicket(eur, 'EUR', 'cen-dp1', now).ticket;
    expect(failure(() => verifyTicket(foreign, expect0))).toEqual({
      code: 'forbidden',
      message: 'the import ticket was issued by site EUR, but DP cen-dp1 belongs to site CEN',
    });
  });

  it('refuses a ticket signed by another key, or altered in any byte (401)', () => {
    // Another key claiming to be CEN's: the key id does not match the pinned one.
    const other = generateSiteKey('CEN');
    expect(failure(() => verifyTicket(issueTicket(other, 'CEN', 'cen-dp1', now).ticket, expect0)).code).toBe('unauthorized');
    // The right key id, a body re-signed by another key: the signature does not match.
    const { ticket, body } = issueTicket(cen, 'CEN', 'cen-dp1', now);
    const fake = forge(other, { ...body, keyId: cen.keyId, expiresAt: at(3000).toISOString() });
    expect(failure(() => verifyTicket(fake, expect0))).toMatchObject({
      code: 'unauthorized',
      message: expect.stringMatching(/signature does not match/),
    });
    // A longer lifetime than a DP accepts, even when genuinely signed.
    const long = issueTicket(cen, 'CEN', 'cen-dp1', now, 7200).ticket;
    expect(failure(() => verifyTicket(long, expect0))).toMatchObject({ code: 'unauthorized', message: expect.stringMatching(/lifetime/) });
    // Every single-character change is refused, with one clear line and no exception of another kind.
    const alphabet = 'AQgw';
    for (let i = TICKET_PREFIX.length; i < ticket.length; i += 7) {
      const ch = ticket[i] === alphabet[0] ? alphabet[1] : alphabet[0];
      const altered = ticket.slice(0, i) + ch + ticket.slice(i + 1);
      const f = failure(() => verifyTicket(altered, expect0));
      expect(['unauthorized', 'forbidden']).toContain(f.code);
      expect(f.message).not.toContain('\n');
    }
  });

  it('refuses what is not a ticket at all', () => {
    for (const t of [
      '',
      'casdpt_',
      'cas_peer_abc',
      `${TICKET_PREFIX}abc`,
      `${TICKET_PREFIX}a.b.c`,
      `${TICKET_PREFIX}${'A'.repeat(3000)}.x`,
    ]) {
      expect(failure(() => verifyTicket(t, expect0))).toMatchObject({ code: 'unauthorized', message: expect.stringMatching(/malformed/) });
    }
    // Valid base64url of something that is not the ticket body.
    const junk = `${TICKET_PREFIX}${Buffer.from('{"purpose":"other"}').toString('base64url')}.${Buffer.alloc(64).toString('base64url')}`;
    expect(failure(() => verifyTicket(junk, expect0)).message).toMatch(/malformed/);
    // The body in a non-canonical spelling (white space), even if it were signed: refused.
    const { body } = issueTicket(cen, 'CEN', 'cen-dp1', now);
    const spaced = Buffer.from(JSON.stringify(body, null, 1));
    const t2 = `${TICKET_PREFIX}${spaced.toString('base64url')}.${Buffer.alloc(64).toString('base64url')}`;
    expect(failure(() => verifyTicket(t2, expect0)).message).toMatch(/malformed/);
  });
});
