import { z } from 'zod';
import { TARGET_NAME } from '../core/dp.js';
import { SITE_CODE } from '../core/site.js';
import { type Endpoint, getCall } from './client.js';
import { FreshnessView } from './clients.js';
import { DpJoinRequest, Release, TlsPin } from './dps.js';
import { PATHS } from './paths.js';

export const SiteEntry = z
  .object({
    code: z.string(),
    name: z.string(),
    parent: z.string().nullable(),
    relation: z.enum(['self', 'parent', 'child', 'descendant']),
    url: z.string().nullable(),
    reachable: z.boolean().nullable().describe('whether the last health check answered (direct parent and children only)'),
    lastContact: z.string().nullable(),
    release: Release.nullable().describe('the Cascade release it runs, as last reported, and the release offered to it'),
  })
  .meta({ id: 'SiteEntry' });
export type SiteEntry = z.infer<typeof SiteEntry>;

export const JoinRequest = z.strictObject({
  token: z.string().min(1).max(256),
  code: z.string().regex(SITE_CODE, 'a site code is three capital letters or digits'),
  name: z.string().min(1).max(128),
  url: z.url().max(512),
  keyId: z.string().min(1).max(128),
  publicKey: z.string().min(1).max(1024),
  /** The secret the parent will present when it calls the child. */
  credential: z.string().min(16).max(256),
  /** SHA-256 of the TLS certificate the joiner serves HTTPS with: the parent pins it. */
  tlsPin: TlsPin.nullish(),
});

export type JoinRequest = z.infer<typeof JoinRequest>;

export const PeerInfo = z.object({
  code: z.string(),
  name: z.string(),
  url: z.string().nullable(),
  keyId: z.string(),
  publicKey: z.string(),
});
export type PeerInfo = z.infer<typeof PeerInfo>;

export const JoinAnswer = z.object({
  parent: PeerInfo,
  central: z.object({ code: z.string(), keyId: z.string(), publicKey: z.string() }),
  certificate: z.unknown(),
  /** The secret the child presents when it calls the parent. */
  credential: z.string(),
});

export type JoinAnswer = z.infer<typeof JoinAnswer>;

export const RegisterRequest = z.strictObject({
  /** A site (code) or a DP (name): both are unique in the hierarchy. */
  kind: z.enum(['site', 'dp']).default('site'),
  code: z.string().regex(TARGET_NAME),
  name: z.string().min(1).max(128),
  parent: z.string().regex(SITE_CODE),
  keyId: z.string().min(1).max(128),
  publicKey: z.string().min(1).max(1024),
});

export type RegisterRequest = z.infer<typeof RegisterRequest>;

/** A site's certificate from the central site, for a site or DP that joined below. */
export const RegisterAnswer = z.object({ certificate: z.unknown() });
export type RegisterAnswer = z.infer<typeof RegisterAnswer>;

/** What `cascade dp remove` and `cascade site remove` took out of the hierarchy. */
export const RemoveNeighbourAnswer = z.object({
  removed: z.array(z.string()).describe('the DP or site, and every site and DP below it'),
  targets: z.number().int().describe('distribution targets dropped'),
  transfers: z.number().int().describe('open transfers cancelled or trimmed'),
});
export type RemoveNeighbourAnswer = z.infer<typeof RemoveNeighbourAnswer>;

/** One process serving this site (several share a site on PostgreSQL; docs/operations.md#several-processes). */
export const SiteProcess = z
  .object({
    id: z.string().describe('the process tag, also in its log and its temporary files'),
    host: z.string(),
    pid: z.number().int(),
    url: z.string().describe('where this process itself listens (clients use the site URL, e.g. a load balancer)'),
    release: z.string(),
    startedAt: z.string(),
    seenAt: z.string().describe('its last heartbeat'),
    state: z.enum(['running', 'silent', 'stopped']).describe("silent: no heartbeat for three leases' life (it died or lost the database)"),
    holds: z
      .array(z.string())
      .describe('the once-only work it holds a lease on: route:CODE, report, rollouts, gc, validation, sources, ingest:ID'),
  })
  .meta({ id: 'SiteProcess' });
export type SiteProcess = z.infer<typeof SiteProcess>;

/** This site, its parent and every site below it. */
export const SiteTree = z.object({
  central: z.string(),
  sites: z.array(SiteEntry),
  processes: z.array(SiteProcess).optional().describe('the processes serving this site, their health and the work each holds'),
  freshness: z
    .array(FreshnessView)
    .optional()
    .describe("how old this site's newest signed word from each site above is (freeze protection; docs/hierarchy.md#freshness)"),
});

/** Joining and registering, as a child site, a DP and each site on the way up make them. */
export const siteCalls = {
  join: { method: 'POST', path: PATHS.siteJoin, request: JoinRequest, response: JoinAnswer },
  joinDp: { method: 'POST', path: PATHS.dpJoin, request: DpJoinRequest, response: JoinAnswer },
  register: { method: 'POST', path: PATHS.siteRegister, request: RegisterRequest, response: RegisterAnswer },
  list: getCall(PATHS.sites, SiteTree, 'This site, its parent, and every site below it', 'The tree as this site knows it'),
} as const satisfies Record<string, Endpoint>;

export const JoinTokenRequest = z.strictObject({
  kind: z.enum(['site', 'dp']).default('site'),
  ttlSeconds: z
    .number()
    .int()
    .min(60)
    .max(30 * 86400)
    .default(3600),
});
export type JoinTokenRequest = z.infer<typeof JoinTokenRequest>;

/** A one-time join token, and the site that issued it. */
export const JoinTokenAnswer = z.object({ token: z.string(), kind: z.string(), expiresAt: z.string(), site: z.string() });
export type JoinTokenAnswer = z.infer<typeof JoinTokenAnswer>;
