import crypto from 'node:crypto';
import { ApiClient } from '../api/client.js';
import type { JoinAnswer, JoinRequest, RegisterRequest, SiteEntry } from '../api/sites.js';
import { siteCalls } from '../api/sites.js';
import { type CertificateBody, issueCertificate, type SiteCertificate, verifyCertificate } from '../content/certificate.js';
import { keyIdFor, publicKeyPem, type TrustedKey } from '../content/signing.js';
import { DP_NAME } from '../core/dp.js';
import { fail } from '../core/errors.js';
import { PEER_ROLE } from '../core/roles.js';
import { SITE_CODE } from '../core/site.js';
import { listKeys, putKey } from '../store/distribution.js';
import type { SiteRow, Store } from '../store/store.js';
import type { SiteContext } from './context.js';
import { peerClient, peerName } from './peers.js';
import { ownRelease } from './release.js';
import { freeAbove } from './removals.js';

/**
 * The hierarchy: joining a child site to its parent, registering every new site with the
 * central site (which keeps codes unique and signs each site's key), and what a site knows
 * of the tree below it. See docs/hierarchy.md.
 */

/** The central site's key, as this site pinned it (its own when it is the central site). */
export async function centralTrust(ctx: SiteContext): Promise<{ code: string; key: TrustedKey }> {
  const code = await ctx.store.getMeta('central.code');
  const keyId = await ctx.store.getMeta('central.keyId');
  const pem = await ctx.store.getMeta('central.publicKey');
  if (code && keyId && pem) return { code, key: { keyId, publicKeyPem: pem, site: code } };
  return { code: ctx.code, key: { keyId: ctx.key.keyId, publicKeyPem: publicKeyPem(ctx.key.publicKey), site: ctx.code } };
}

export const parentOf = async (store: Store): Promise<SiteRow | undefined> =>
  (await store.listSites()).find((s) => s.relation === 'parent');

function checkKey(code: string, keyId: string, publicKey: string): void {
  let k: crypto.KeyObject;
  try {
    k = crypto.createPublicKey(publicKey);
  } catch {
    throw fail('bad_request', `the public key of site ${code} is not a valid key`);
  }
  if (k.asymmetricKeyType !== 'ed25519') throw fail('bad_request', `the key of site ${code} is not an Ed25519 key`);
  if (keyIdFor(code, k) !== keyId) throw fail('bad_request', `key id ${keyId} does not match the public key of site ${code}`);
}

/**
 * Has the central site vouch for a new site: the central site itself checks that the code is
 * free and signs; any other site checks its own registry, then asks its parent.
 */
export async function registerUp(ctx: SiteContext, body: RegisterRequest): Promise<SiteCertificate> {
  const pattern = body.kind === 'dp' ? DP_NAME : SITE_CODE;
  if (!pattern.test(body.code)) throw fail('bad_request', `"${body.code}" is not a valid ${body.kind === 'dp' ? 'DP name' : 'site code'}`);
  // Every site on the way checks the key id names this code and key: the certificate binds them.
  checkKey(body.code, body.keyId, body.publicKey);
  if (body.code === ctx.code || (await ctx.store.getSite(body.code))) {
    throw body.kind === 'dp'
      ? fail('conflict', `DP name ${body.code} is already taken in this hierarchy; choose another --name`)
      : fail('conflict', `site code ${body.code} is already taken in this hierarchy; choose another --code`);
  }
  const parent = await parentOf(ctx.store);
  if (!parent) {
    const { kind: _kind, ...who } = body;
    const cert: CertificateBody = { ...who, issuedAt: ctx.clock().toISOString() };
    return issueCertificate(ctx.key, cert);
  }
  const { certificate } = await peerClient(parent).call(siteCalls.register, body);
  const central = await centralTrust(ctx);
  const vouched = verifyCertificate(certificate, central.key);
  if (vouched.code !== body.code || vouched.keyId !== body.keyId)
    throw fail('bad_signature', `the certificate from ${parent.code} is not for site ${body.code}`);
  return certificate as SiteCertificate;
}

/** A child joins: one-time token, unique code, certificate from the central site, credentials both ways. */
export async function acceptJoin(ctx: SiteContext, req: JoinRequest, ownUrl: string | null): Promise<JoinAnswer> {
  return admit(ctx, 'site', req, ownUrl);
}

/**
 * A neighbour joins this site: a child site, or a DP of this site. The one-time token is spent,
 * the code or name registered up to the central site (unique in the hierarchy, its key signed),
 * and each side gets a credential for calling the other.
 */
export async function admit(
  ctx: SiteContext,
  kind: 'site' | 'dp',
  req: {
    token: string;
    code: string;
    name: string;
    url: string | null;
    keyId: string;
    publicKey: string;
    credential: string;
    tlsPin?: string | null | undefined;
  },
  ownUrl: string | null,
): Promise<JoinAnswer> {
  checkKey(req.code, req.keyId, req.publicKey);
  const how = `"cascade ${kind} join-token"`;
  const used = await ctx.store.consumeJoinToken(req.token, kind, req.code);
  if (used === 'unknown') throw fail('unauthorized', `the join token is not valid at site ${ctx.code}; issue one there with ${how}`);
  if (used === 'used') throw fail('conflict', `the join token was already used; issue a new one with ${how}`);
  if (used === 'expired') throw fail('unauthorized', `the join token has expired; issue a new one with ${how}`);
  let registered = false;
  try {
    const certificate = await registerUp(ctx, {
      kind,
      code: req.code,
      name: req.name,
      parent: ctx.code,
      keyId: req.keyId,
      publicKey: req.publicKey,
    });
    registered = true;
    const credential = await ctx.store.createToken(PEER_ROLE, req.code);
    await ctx.store.insertSite({
      code: req.code,
      name: req.name,
      parent: ctx.code,
      relation: kind === 'dp' ? 'dp' : 'child',
      url: req.url,
      keyId: req.keyId,
      publicKey: req.publicKey,
      certificate: JSON.stringify(certificate),
      outboundToken: req.credential,
      tlsPin: req.tlsPin ?? null,
    });
    // It has just called: it is reachable now, not "unknown" until the next health check.
    await ctx.store.setSiteContact(req.code, true);
    const central = await centralTrust(ctx);
    ctx.log.info({ [kind === 'dp' ? 'dp' : 'child']: req.code, url: req.url }, kind === 'dp' ? 'DP joined' : 'child site joined');
    return {
      parent: { code: ctx.code, name: ctx.name, url: ownUrl, keyId: ctx.key.keyId, publicKey: publicKeyPem(ctx.key.publicKey) },
      central: { code: central.code, keyId: central.key.keyId, publicKey: central.key.publicKeyPem },
      certificate,
      credential: credential.secret,
    };
  } catch (e) {
    // Let the admin retry with the same token (say, with another code); a code registered
    // above by now is freed there again.
    await ctx.store.releaseJoinToken(req.token);
    if (registered) {
      await ctx.store.deleteSite(req.code).catch(() => undefined);
      await freeAbove(ctx.store, req.code);
    }
    throw e;
  }
}

/** A child registers a site that joined below it: recorded here, vouched for above. */
export async function acceptRegister(
  ctx: SiteContext,
  fromChild: string,
  body: RegisterRequest,
): Promise<{ certificate: SiteCertificate }> {
  checkKey(body.code, body.keyId, body.publicKey);
  // The new site's parent must be the calling child or lie below it.
  let at = await ctx.store.getSite(body.parent);
  while (at && at.code !== fromChild && at.parent && at.relation === 'descendant') at = await ctx.store.getSite(at.parent);
  if (!at || at.code !== fromChild) throw fail('forbidden', `site ${fromChild} cannot register a site under ${body.parent}`);
  const certificate = await registerUp(ctx, body);
  await ctx.store.insertSite({
    code: body.code,
    name: body.name,
    parent: body.parent,
    relation: body.kind === 'dp' ? 'dp-below' : 'descendant',
    url: null,
    keyId: body.keyId,
    publicKey: body.publicKey,
    certificate: JSON.stringify(certificate),
    outboundToken: null,
  });
  ctx.log.info({ site: body.code, parent: body.parent }, 'site registered below');
  return { certificate };
}

/** Checks every parent and child site's health and records who answered. */
export async function pingPeers(ctx: SiteContext): Promise<void> {
  for (const s of [...(await ctx.store.listSites()), ...(await ctx.store.listDps())]) {
    if (!s.url || (s.relation !== 'child' && s.relation !== 'parent' && s.relation !== 'dp')) continue;
    await ctx.store.setSiteContact(s.code, await new ApiClient(s.url, { who: peerName(s), pin: s.tlsPin }).healthy(5000));
  }
}

/** The child of this site through which `target` is reached (null: this site itself). */
export async function nextHop(ctx: SiteContext, target: string): Promise<string | null> {
  if (target === ctx.code) return null;
  let at = await ctx.store.getSite(target);
  for (let i = 0; at && i < 64; i++) {
    if (at.relation === 'child' || at.relation === 'dp') return at.code;
    if ((at.relation !== 'descendant' && at.relation !== 'dp-below') || !at.parent) break;
    if (at.parent === ctx.code) break;
    at = await ctx.store.getSite(at.parent);
  }
  throw fail('not_found', `${target} is not a DP of ${ctx.code} or of a site below it (see "cascade dp list")`);
}

/**
 * The neighbour a peer credential belongs to, if its relation to this site is one of `allowed`;
 * forbidden otherwise, saying `why`.
 */
export async function neighbour(ctx: SiteContext, name: string, allowed: readonly SiteRow['relation'][], why: string): Promise<SiteRow> {
  const s = await ctx.store.getSite(name);
  if (!s || !allowed.includes(s.relation)) throw fail('forbidden', why);
  return s;
}

/** The URL this site was told it is reached at (`site init --url`), if any. */
export async function ownUrl(ctx: SiteContext): Promise<string | null> {
  return (await ctx.store.getMeta('site.url')) ?? null;
}

/**
 * What ends a join token of a site that serves HTTPS: its certificate's pin, so the joiner
 * checks whom it talks to before it sends the token.
 */
export const tlsSuffix = (ctx: Pick<SiteContext, 'tlsPin'>): string => (ctx.tlsPin ? `.tls-${ctx.tlsPin}` : '');

/** A one-time, expiring token a child site or a DP joins this site with. */
export async function issueJoinToken(
  ctx: SiteContext,
  kind: 'site' | 'dp',
  ttlSeconds: number,
): Promise<{ token: string; kind: 'site' | 'dp'; expiresAt: string; site: string }> {
  const t = await ctx.store.createJoinToken(kind, ttlSeconds, tlsSuffix(ctx));
  return { token: t.secret, kind, expiresAt: t.expiresAt, site: ctx.code };
}

/** This site, its parent, and every site below it, as this site knows them. */
export async function siteTree(ctx: SiteContext): Promise<{ central: string; sites: SiteEntry[] }> {
  const rows = await ctx.store.listSites();
  const parent = await parentOf(ctx.store);
  const self: SiteEntry = {
    code: ctx.code,
    name: ctx.name,
    parent: parent?.code ?? null,
    relation: 'self',
    url: await ownUrl(ctx),
    reachable: true,
    lastContact: ctx.clock().toISOString(),
    release: ownRelease(ctx),
  };
  const sites = rows.map((s) => ({
    code: s.code,
    name: s.name,
    parent: s.parent,
    relation: s.relation as 'parent' | 'child' | 'descendant',
    url: s.url,
    reachable: s.reachable,
    lastContact: s.lastContact,
    release: s.release,
  }));
  return { central: (await centralTrust(ctx)).code, sites: [self, ...sites] };
}

/** The origin's key, through its certificate, or the central key when the central site is the origin. */
export async function trustOrigin(ctx: SiteContext, certificate: unknown): Promise<void> {
  if (certificate === null || certificate === undefined) return;
  const central = await centralTrust(ctx);
  const c = verifyCertificate(certificate, central.key);
  // Only sites sign manifests; a DP's certificate proves only who the DP is.
  if (!SITE_CODE.test(c.code)) throw fail('bad_signature', `${c.code} is not a site: its key cannot vouch for a manifest`);
  await putKey(ctx.store, { keyId: c.keyId, site: c.code, publicKey: c.publicKey, certificate: JSON.stringify(certificate) });
  if (!ctx.trusted.some((t) => t.keyId === c.keyId)) ctx.trusted.push(c.trusted);
  // Served beside the manifests it vouches for (content/certificates/CODE.json).
  await ctx.library.writeCertificate(c.code, certificate);
}

/** The origin site's certificate, when the origin is not the central site (as the sender sends it). */
export async function originCertificate(ctx: SiteContext, origin: string, keyId: string): Promise<unknown> {
  if (origin === ctx.code) {
    const own = await ctx.store.getMeta('site.certificate');
    return own ? JSON.parse(own) : null;
  }
  const site = await ctx.store.getSite(origin);
  if (site?.certificate) return JSON.parse(site.certificate);
  const k = (await listKeys(ctx.store)).find((x) => x.keyId === keyId);
  return k?.certificate ? JSON.parse(k.certificate) : null;
}
