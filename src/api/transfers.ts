import { z } from 'zod';
import { DIGEST } from '../core/chunk.js';
import { SEVERITIES, TARGET_STATES } from '../core/distribution.js';
import { TARGET_NAME } from '../core/dp.js';
import { PACKAGE_ID, PRIORITIES } from '../core/package.js';
import { IngestReport } from './chunks.js';
import type { Endpoint } from './client.js';
import { ClientSync, FreshnessSet, PolicySet } from './clients.js';
import { DpValidation, PlanRoute } from './distributions.js';
import { DpState, ReleaseOrder } from './dps.js';
import { PATHS } from './paths.js';

/**
 * The protocol between neighbours (site credentials): a parent previews, offers, sends and
 * commits versions, orders removals and validations; a child site or a DP reports status up.
 * Every answer here is validated by the caller (api/client.ts), never cast.
 */

export const PreviewRequest = z.strictObject({
  packageId: z.string().regex(PACKAGE_ID),
  version: z.number().int().min(1),
  priority: z.enum(PRIORITIES),
  chunks: z.array(z.tuple([z.string().regex(DIGEST), z.number().int().min(0)])).max(5_000_000),
  targets: z.array(z.string().regex(TARGET_NAME)).min(1).max(10_000),
});

export type PreviewRequest = z.infer<typeof PreviewRequest>;

export const Offer = z.strictObject({
  packageId: z.string().regex(PACKAGE_ID),
  version: z.number().int().min(1),
  priority: z.enum(PRIORITIES),
  manifest: z
    .string()
    .min(1)
    .max(700 << 20)
    .describe('the signed manifest, base64'),
  originCertificate: z.unknown().nullable(),
  targets: z.array(z.string().regex(TARGET_NAME)).min(1).max(10_000),
});

export type Offer = z.infer<typeof Offer>;

/**
 * Sent with a chunk batch that replaces copies the receiver holds but found damaged (a repair):
 * those chunks arrive again on purpose.
 */
export const REPAIR_HEADER = 'x-cascade-repair';

export const StatusReport = z.strictObject({
  targets: z
    .array(
      z.strictObject({
        packageId: z.string(),
        version: z.number().int(),
        site: z.string().max(64),
        state: z.enum(TARGET_STATES),
        bytesDone: z.number(),
        bytesTotal: z.number(),
        rate: z.number(),
        retries: z.number().int(),
        nextRetryAt: z.string().nullable(),
        lastError: z.string().nullable(),
        detail: z.string().nullable(),
      }),
    )
    .max(100_000),
  messages: z
    .array(
      z.strictObject({
        id: z.string().min(1).max(64),
        time: z.string().max(64),
        site: z.string().max(64),
        component: z.string().max(64),
        severity: z.enum(SEVERITIES),
        code: z.string().max(64),
        text: z.string().max(4096),
        packageId: z.string().max(16).nullable(),
      }),
    )
    .max(10_000),
  /** The DPs at and below the reporter, as last seen there. */
  dps: z.array(DpState).max(100_000).optional(),
  /** Sites and DPs removed at or below the reporter: forgotten above, their names freed at the central site. */
  removed: z.array(z.string().regex(TARGET_NAME)).max(10_000).optional(),
  /** Clients at and below the reporter, and their advertisement states, changed since the last report. */
  clients: ClientSync.optional(),
  /** Packages made at the reporter or below it (so the sites above list them), when they changed. */
  packages: z
    .array(
      z.strictObject({
        id: z.string().regex(PACKAGE_ID),
        name: z.string().max(256),
        priority: z.enum(PRIORITIES),
        version: z.number().int(),
        versions: z.array(z.number().int()).max(100_000),
        files: z.number().int(),
        bytes: z.number(),
        createdAt: z.string().max(64),
        updatedAt: z.string().max(64),
        held: z.boolean().optional(),
      }),
    )
    .max(100_000)
    .optional(),
  /** The digest of the policy the reporter holds: the answer carries the policy when it differs. */
  policyDigest: z.string().max(128).optional(),
});

export type StatusReport = z.infer<typeof StatusReport>;

export const RemoveRequest = z.strictObject({
  packageId: z.string().regex(PACKAGE_ID),
  version: z.number().int().min(1),
  targets: z.array(z.string().regex(TARGET_NAME)).min(1).max(10_000),
});

export type RemoveRequest = z.infer<typeof RemoveRequest>;

export const ValidateRequest = z.strictObject({
  packageId: z.string().regex(PACKAGE_ID),
  version: z.number().int().min(1),
  targets: z.array(z.string().regex(TARGET_NAME)).min(1).max(10_000),
  repair: z.boolean().default(false),
  lowPriority: z.boolean().default(false),
});

export type ValidateRequest = z.infer<typeof ValidateRequest>;

/** What a site lacks of an offered version, and which versions of the package it holds (delta bases). */
export const OfferAnswer = z.object({
  missing: z.array(z.string().regex(DIGEST)),
  versions: z.array(z.number().int()),
  installed: z.boolean(),
  bytesTotal: z.number(),
  storedRecords: z
    .boolean()
    .optional()
    .describe('the receiver reads stored-chunk records (kind 3): send chunks compressed as stored; absent from older releases'),
});
export type OfferAnswer = z.infer<typeof OfferAnswer>;

export const CommitRequest = z.strictObject({ packageId: z.string().regex(PACKAGE_ID), version: z.number().int().min(1) });
export type CommitRequest = z.infer<typeof CommitRequest>;

export const CommitAnswer = z.object({ installed: z.boolean(), missing: z.number().int().min(0) });
export type CommitAnswer = z.infer<typeof CommitAnswer>;

export const StatusAnswer = z.object({
  targets: z.number().int(),
  messages: z.number().int(),
  policy: PolicySet.optional().describe("the parent's policy, when the reporter's digest differs"),
  release: ReleaseOrder.optional().describe('to a DP: restart on this release, which it holds'),
  freshness: FreshnessSet.optional().describe(
    "to a child site: the parent's signed word on what it published, and those of the sites above it",
  ),
});
export type StatusAnswer = z.infer<typeof StatusAnswer>;

/** What sending a version to targets at or below a site would cost from there down. */
export const PreviewAnswer = z.object({
  missingBytes: z.number().describe('bytes of the chunks the receiver lacks: what the route into it would carry'),
  routes: z.array(PlanRoute),
  targets: z.array(
    z.object({
      dp: z.string(),
      site: z.string(),
      path: z.array(z.string()),
      bytes: z.number(),
      etaSeconds: z.number().nullable(),
    }),
  ),
});
export type PreviewAnswer = z.infer<typeof PreviewAnswer>;

export const RemoveAnswer = z.object({ removed: z.array(z.string()), removing: z.array(z.string()) });
export type RemoveAnswer = z.infer<typeof RemoveAnswer>;

export const ValidateAnswer = z.object({ results: z.array(DpValidation) });
export type ValidateAnswer = z.infer<typeof ValidateAnswer>;

/** The calls between neighbours, as the sender, the relay and the reporter make them. */
export const transferCalls = {
  offer: { method: 'POST', path: PATHS.offer, request: Offer, response: OfferAnswer },
  chunks: { method: 'POST', path: PATHS.transferChunks, response: IngestReport },
  commit: { method: 'POST', path: PATHS.commit, request: CommitRequest, response: CommitAnswer },
  status: { method: 'POST', path: PATHS.status, request: StatusReport, response: StatusAnswer },
  preview: { method: 'POST', path: PATHS.preview, request: PreviewRequest, response: PreviewAnswer },
  remove: { method: 'POST', path: PATHS.remove, request: RemoveRequest, response: RemoveAnswer },
  validate: { method: 'POST', path: PATHS.validate, request: ValidateRequest, response: ValidateAnswer },
} as const satisfies Record<string, Endpoint>;
