import { z } from 'zod';
import { DP_NAME } from '../core/dp.js';
import { UPGRADE_STATES } from '../core/release.js';
import { type Endpoint, getCall } from './client.js';
import { PATHS } from './paths.js';

/** The Cascade release a DP or a site runs, and where it stands in following its site's (docs/dp.md#releases). */
export const Release = z
  .strictObject({
    running: z.string().max(64).nullable().describe('the Cascade release it runs (null: not reported)'),
    upgrade: z
      .strictObject({
        target: z.string().max(64).describe('the release it is to run'),
        state: z.enum(UPGRADE_STATES),
        attempt: z.number().int().min(0).describe('counts the times this site told it to restart on the target'),
        since: z.string().max(64),
        detail: z.string().max(1000).nullable(),
      })
      .nullable()
      .describe("its site's upgrade of it, if any"),
    rolledBack: z
      .strictObject({
        version: z.string().max(64),
        attempt: z.number().int().min(0).nullable(),
        reason: z.string().max(1000),
        at: z.string().max(64),
      })
      .nullable()
      .describe('the last release that did not start there, and why'),
  })
  .meta({ id: 'Release' });
export type Release = z.infer<typeof Release>;

/** SHA-256 of a server's TLS certificate (its DER bytes), 64 hex digits: what its callers pin. */
export const TlsPin = z
  .string()
  .regex(/^[0-9a-f]{64}$/, 'a TLS pin is 64 lowercase hex digits')
  .describe("SHA-256 of the server's TLS certificate: callers trust exactly that certificate");

export const DpEntry = z
  .object({
    name: z.string().describe("the DP's name (a site's code names its local DP)"),
    site: z.string(),
    kind: z.enum(['local', 'remote']),
    url: z.string().nullable(),
    state: z.enum(['online', 'unreachable', 'unknown']),
    reachable: z.boolean().nullable(),
    lastContact: z.string().nullable(),
    freeBytes: z.number().nullable(),
    totalBytes: z.number().nullable(),
    packages: z.array(z.object({ packageId: z.string(), version: z.number() })),
    at: z.string().describe('when this state was reported'),
    contentUrl: z.string().nullable().describe('where clients fetch its content, when not `url`'),
    release: Release.nullable(),
    tlsPin: TlsPin.nullish().describe('it serves HTTPS with this certificate (null: plain HTTP, or a CA-signed certificate)'),
  })
  .meta({ id: 'DistributionPoint' });
export type DpEntry = z.infer<typeof DpEntry>;

export const Group = z.object({ name: z.string(), members: z.array(z.string()), createdAt: z.string() }).meta({ id: 'DpGroup' });
export type Group = z.infer<typeof Group>;

export const Members = z.strictObject({ dps: z.array(z.string().min(1).max(64)).min(1).max(10_000) });
export type Members = z.infer<typeof Members>;

/**
 * Distribution points as a site sees them (see docs/dp.md). A remote DP joins a site with a
 * one-time token, like a child site; it is then a neighbour of that site (relation `dp`) that
 * the sender serves like a child, over a route of its own. The site's library is its local
 * DP, named after the site. Every DP name is registered up to the central site, which keeps
 * names unique; the sites above learn of each DP as `dp-below`.
 */

export const DpJoinRequest = z.strictObject({
  token: z.string().min(1).max(256),
  name: z.string().regex(DP_NAME, 'a DP name is 4 to 64 letters, digits, ".", "_" or "-"'),
  url: z.url().max(512).nullable(),
  keyId: z.string().min(1).max(128),
  publicKey: z.string().min(1).max(1024),
  /** The secret the site presents when it calls the DP. */
  credential: z.string().min(16).max(256),
  /** SHA-256 of the TLS certificate the joiner serves HTTPS with: the parent pins it. */
  tlsPin: TlsPin.nullish(),
});

export type DpJoinRequest = z.infer<typeof DpJoinRequest>;

export const HeldVersion = z.strictObject({ packageId: z.string().max(16), version: z.number().int().min(1) });
export type HeldVersion = z.infer<typeof HeldVersion>;

/** The state a DP reports: where it is, how much room it has, what it holds. */
export const DpState = z.strictObject({
  name: z.string().max(64),
  site: z.string().max(8),
  url: z.string().max(512).nullable(),
  reachable: z.boolean().nullable(),
  lastContact: z.string().max(64).nullable(),
  freeBytes: z.number().nullable(),
  totalBytes: z.number().nullable(),
  held: z.array(HeldVersion).max(100_000),
  at: z.string().max(64),
  /** Where clients fetch its content, when not `url` (nginx or a CDN in front of the DP). */
  contentUrl: z.url().max(512).nullable().optional(),
  /** The release it runs (a DP: and the last one that did not start; a site below: its DPs' upgrades too). */
  release: Release.nullable().optional(),
  /** It serves HTTPS with the certificate of this SHA-256. */
  tlsPin: TlsPin.nullish(),
});

export type DpState = z.infer<typeof DpState>;

/** A site tells its DP to restart on a release the DP holds, as the answer to its status report. */
export const ReleaseOrder = z.strictObject({
  version: z.string().max(64),
  packageId: z.string().max(16),
  packageVersion: z.number().int().min(1),
  attempt: z.number().int().min(0),
});
export type ReleaseOrder = z.infer<typeof ReleaseOrder>;

export const UpgradeRequest = z.strictObject({
  dps: z
    .array(z.string().min(1).max(64))
    .max(10_000)
    .default([])
    .describe('DPs to try again (none: every one whose upgrade rolled back or failed)'),
});
export type UpgradeRequest = z.infer<typeof UpgradeRequest>;

export const UpgradeAnswer = z.object({
  release: z.string().nullable().describe('the release this site runs and its DPs follow'),
  resumed: z.array(z.string()).describe('DPs whose halted or failed upgrade is tried again'),
});
export type UpgradeAnswer = z.infer<typeof UpgradeAnswer>;

/** Reads of this resource, as the site serves them and clients call them. */
export const dpCalls = {
  list: getCall(PATHS.dps, z.object({ dps: z.array(DpEntry) }), 'Every DP of this site and of every site below it', 'DPs'),
  groups: getCall(PATHS.dpGroups, z.object({ groups: z.array(Group) }), 'DP groups', 'Groups'),
} as const satisfies Record<string, Endpoint>;

export const GroupRequest = z.strictObject({
  name: z.string().min(1).max(64),
  dps: z.array(z.string().min(1).max(64)).max(10_000).default([]),
});
export type GroupRequest = z.infer<typeof GroupRequest>;
