import crypto from 'node:crypto';
import { z } from 'zod';
import { DP_NAME } from '../core/dp.js';
import { fail } from '../core/errors.js';
import { SITE_CODE } from '../core/site.js';
import { canonicalJson } from './canonical.js';
import { publicKeyFromPem, type SiteKey, type TrustedKey } from './signing.js';

/**
 * An import ticket: a site's short-lived permission for whoever holds it to import a courier
 * parcel straight onto one of its DPs (`cascade courier import FILE --dp NAME`). A DP has no
 * admin tokens; it knows its site's public key from joining, so the site signs the ticket with
 * its Ed25519 key and the DP checks it without asking anyone. The parcel then goes to the DP
 * directly, not through the site (the DP may sit behind a slow link from its site).
 *
 * Form: `casdpt_` + base64url(canonical JSON of the body) + `.` + base64url(signature).
 */

export const TICKET_PREFIX = 'casdpt_';
/** How long a ticket lasts: long enough to start an import, short enough to be useless later. */
export const TICKET_SECONDS = 600;
/** The longest lifetime a DP accepts, whatever the signer wrote. */
export const TICKET_MAX_SECONDS = 3600;
/** Clocks of a site and its DP may differ by this much. */
const SKEW_MS = 5 * 60_000;

const bodySchema = z.strictObject({
  purpose: z.literal('courier-import'),
  /** The site that issued it: the DP's own site. */
  site: z.string().regex(SITE_CODE),
  keyId: z.string().min(1).max(128),
  dp: z.string().regex(DP_NAME),
  issuedAt: z.iso.datetime(),
  expiresAt: z.iso.datetime(),
  nonce: z.string().min(16).max(64),
});
export type TicketBody = z.infer<typeof bodySchema>;

/** Signs a ticket for `dp`, valid `seconds` from `now`. */
export function issueTicket(
  key: SiteKey,
  site: string,
  dp: string,
  now: Date,
  seconds = TICKET_SECONDS,
): { ticket: string; body: TicketBody } {
  const body = bodySchema.parse({
    purpose: 'courier-import',
    site,
    keyId: key.keyId,
    dp,
    issuedAt: now.toISOString(),
    expiresAt: new Date(now.getTime() + seconds * 1000).toISOString(),
    nonce: crypto.randomBytes(16).toString('base64url'),
  });
  const payload = Buffer.from(canonicalJson(body));
  const signature = crypto.sign(null, payload, key.privateKey);
  return { ticket: `${TICKET_PREFIX}${payload.toString('base64url')}.${signature.toString('base64url')}`, body };
}

/** base64url that decodes to exactly one spelling (Node's decoder skips stray characters). */
function strictBase64url(s: string): Buffer | null {
  const b = Buffer.from(s, 'base64url');
  return b.toString('base64url') === s ? b : null;
}

/**
 * Checks a ticket at the DP: signed by its own site's key, for this DP, not expired. A ticket
 * that is malformed, badly signed or expired is `unauthorized` (401); a genuine ticket meant for
 * another DP or issued by another site is `forbidden` (403).
 */
export function verifyTicket(ticket: string, expect: { dp: string; site: string; key: TrustedKey; now: Date }): TicketBody {
  const again = 'ask the site for a new one (cascade courier import FILE --dp NAME does)';
  const malformed = () => fail('unauthorized', `the import ticket is malformed; ${again}`);
  if (!ticket.startsWith(TICKET_PREFIX) || ticket.length > 2048) throw malformed();
  const parts = ticket.slice(TICKET_PREFIX.length).split('.');
  if (parts.length !== 2) throw malformed();
  const payload = strictBase64url(parts[0] as string);
  const signature = strictBase64url(parts[1] as string);
  if (!payload || !signature || signature.length !== 64) throw malformed();
  let parsed: unknown;
  try {
    parsed = JSON.parse(payload.toString('utf8'));
  } catch {
    throw malformed();
  }
  const r = bodySchema.safeParse(parsed);
  if (!r.success || canonicalJson(r.data) !== payload.toString('utf8')) throw malformed();
  const body = r.data;
  if (body.site !== expect.site)
    throw fail('forbidden', `the import ticket was issued by site ${body.site}, but DP ${expect.dp} belongs to site ${expect.site}`);
  if (body.keyId !== expect.key.keyId)
    throw fail('unauthorized', `the import ticket is signed by key ${body.keyId}, not by site ${expect.site}'s key; ${again}`);
  let ok = false;
  try {
    ok = crypto.verify(null, payload, publicKeyFromPem(expect.key.publicKeyPem), signature);
  } catch {
    ok = false;
  }
  if (!ok) throw fail('unauthorized', `the import ticket's signature does not match site ${expect.site}'s key; ${again}`);
  if (body.dp !== expect.dp) throw fail('forbidden', `the import ticket is for DP ${body.dp}, not for this DP (${expect.dp})`);
  const issued = Date.parse(body.issuedAt);
  const expires = Date.parse(body.expiresAt);
  const now = expect.now.getTime();
  if (expires <= issued || expires - issued > TICKET_MAX_SECONDS * 1000)
    throw fail('unauthorized', `the import ticket's lifetime is not between 0 and ${TICKET_MAX_SECONDS} s; ${again}`);
  if (issued > now + SKEW_MS) throw fail('unauthorized', `the import ticket is issued in the future (${body.issuedAt}); check the clocks`);
  if (now > expires + SKEW_MS) throw fail('unauthorized', `the import ticket expired at ${body.expiresAt}; ${again}`);
  return body;
}
