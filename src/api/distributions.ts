import { z } from 'zod';
import { SEVERITIES, TARGET_STATES, TRANSFER_STATES } from '../core/distribution.js';
import { TARGET_NAME } from '../core/dp.js';
import { PACKAGE_ID, PRIORITIES } from '../core/package.js';
import { type Endpoint, getCall } from './client.js';
import { PATHS } from './paths.js';

export const Target = z
  .object({
    dp: z.string().describe("the DP (a site's code names its local DP)"),
    site: z.string().describe('the site the DP belongs to'),
    via: z.string().nullable(),
    version: z.number(),
    state: z.enum(TARGET_STATES),
    bytesDone: z.number(),
    bytesTotal: z.number(),
    rate: z.number().describe('bytes per second, last measured'),
    etaSeconds: z.number().nullable(),
    retries: z.number(),
    nextRetryAt: z.string().nullable(),
    lastError: z.string().nullable(),
    detail: z.string().nullable(),
    updatedAt: z.string(),
  })
  .meta({ id: 'Target' });
export type Target = z.infer<typeof Target>;

export const Transfer = z
  .object({
    id: z.string(),
    packageId: z.string(),
    version: z.number(),
    child: z.string(),
    priority: z.enum(PRIORITIES),
    targets: z.array(z.string()),
    state: z.enum(TRANSFER_STATES),
    bytesTotal: z.number(),
    bytesDone: z.number(),
    wireBytes: z.number(),
    retries: z.number(),
    nextAttemptAt: z.string().nullable(),
    lastError: z.string().nullable(),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .meta({ id: 'Transfer' });
export type Transfer = z.infer<typeof Transfer>;

export const Message = z
  .object({
    id: z.string(),
    time: z.string(),
    site: z.string(),
    component: z.string(),
    severity: z.enum(SEVERITIES),
    code: z.string(),
    text: z.string(),
    packageId: z.string().nullable(),
  })
  .meta({ id: 'StatusMessage' });
export type Message = z.infer<typeof Message>;

export const Summary = z
  .object({
    targeted: z.number().describe('targets not removed'),
    installed: z.number(),
    sending: z.number(),
    pending: z.number(),
    retrying: z.number(),
    failed: z.number(),
    removing: z.number(),
    removed: z.number(),
  })
  .meta({ id: 'StatusSummary' });
export type Summary = z.infer<typeof Summary>;

export const PlanRoute = z
  .object({
    from: z.string(),
    to: z.string(),
    bytes: z.number().describe('bytes that would cross the route, after what the receiver holds'),
    rate: z.number().nullable().describe('the route rate limit, bytes/s (null: none)'),
    etaSeconds: z.number().nullable().describe("from the route's rate and schedule (null: never)"),
    note: z.string().nullable(),
  })
  .meta({ id: 'PlanRoute' });

/** One target DP of a plan. */
export const PlanTarget = z
  .object({
    dp: z.string(),
    site: z.string(),
    path: z.array(z.string()).describe('the sites and DP the content passes, from this site to the DP'),
    state: z.string(),
    bytes: z.number().describe('bytes that would cross the last route into the DP'),
    etaSeconds: z.number().nullable().describe('with relaying, a target is complete when its slowest route is'),
    added: z.boolean(),
    warning: z
      .string()
      .nullable()
      .optional()
      .describe('what may stop it: the DP has less free space than the bytes it would receive (as it last reported)'),
  })
  .meta({ id: 'PlanTarget' });

export const Plan = z
  .object({
    packageId: z.string(),
    version: z.number(),
    dryRun: z.boolean(),
    bytes: z.number(),
    uniqueBytes: z.number().describe("the version's chunks counted once: the most any route carries"),
    routes: z.array(PlanRoute),
    targets: z.array(PlanTarget),
  })
  .meta({ id: 'DistributionPlan' });

export type PlanRoute = z.infer<typeof PlanRoute>;
export type PlanTarget = z.infer<typeof PlanTarget>;
export type Plan = z.infer<typeof Plan>;

export const Specs = z
  .array(z.string().min(1).max(80))
  .min(1)
  .max(10_000)
  .describe('site:CODE (every DP of the site), dp:NAME, group:NAME');
export type Specs = z.infer<typeof Specs>;

/** One DP's validation: what was checked, what is wrong, what repair did. */
export const DpValidation = z
  .object({
    dp: z.string(),
    site: z.string(),
    ok: z.boolean(),
    checkedFiles: z.number(),
    checkedBytes: z.number(),
    problems: z.array(
      z.object({ path: z.string(), chunk: z.string().nullable(), kind: z.enum(['missing', 'damaged', 'size']), detail: z.string() }),
    ),
    repaired: z
      .object({ chunks: z.number(), ok: z.boolean() })
      .optional()
      .describe('chunks re-sent, and whether the DP then validated clean'),
    error: z.string().optional().describe('why this DP could not be checked or repaired'),
  })
  .meta({ id: 'DpValidation' });
export type DpValidation = z.infer<typeof DpValidation>;

/** A validation's answer: per DP, what was checked, what is wrong, what repair did. */
export const Validation = z
  .object({ packageId: z.string(), version: z.number(), results: z.array(DpValidation) })
  .meta({ id: 'Validation' });
export type Validation = z.infer<typeof Validation>;

/** Where a package is: its targets, with roll-ups per site and per DP group. */
/** One DP of a package: the version it serves and the one on its way, with the newest one's progress. */
export const DpVersions = z
  .object({
    dp: z.string(),
    site: z.string(),
    serving: z.number().nullable().describe('the newest version installed there: what its clients get'),
    arriving: z.number().nullable().describe('a newer version on its way, or null'),
    state: z.enum(TARGET_STATES).describe("the newest targeted version's state"),
    bytesDone: z.number(),
    bytesTotal: z.number(),
    rate: z.number(),
    etaSeconds: z.number().nullable(),
    retries: z.number(),
    nextRetryAt: z.string().nullable(),
    note: z.string().nullable().describe('last error or detail of the newest version'),
    held: z.array(z.number()).describe('every version installed there'),
  })
  .meta({ id: 'DpVersions' });
export type DpVersions = z.infer<typeof DpVersions>;

export const DistributionStatus = z
  .object({
    packageId: z.string(),
    summary: Summary.describe('counts DPs, each by the state of the newest version targeted there'),
    sites: z.array(z.object({ site: z.string(), summary: Summary })),
    groups: z.array(z.object({ group: z.string(), summary: Summary })),
    dps: z.array(DpVersions).describe('one row per DP'),
    targets: z.array(Target).describe('every version x DP'),
  })
  .meta({ id: 'DistributionStatus' });
export type DistributionStatus = z.infer<typeof DistributionStatus>;

/** Reads of this resource, as the site serves them and clients call them. */
export const distributionCalls = {
  list: getCall(
    PATHS.distributions,
    z.object({ packages: z.array(z.object({ packageId: z.string(), summary: Summary })) }),
    'Every package with targets at or below this site, summarised',
    'Per package',
  ),
  transfers: getCall(
    PATHS.transfers,
    z.object({ transfers: z.array(Transfer) }),
    "The sender's transfers on this site's routes",
    'Transfers',
  ),
} as const satisfies Record<string, Endpoint>;

export const DistributeRequest = z.strictObject({
  packageId: z.string().regex(PACKAGE_ID),
  version: z.number().int().min(1).optional(),
  to: Specs,
  dryRun: z.boolean().optional(),
  via: z
    .enum(['network', 'courier'])
    .optional()
    .describe(
      "courier: no chunk crosses the routes to child sites or to this site's DPs; the sender waits for a courier parcel (docs/courier.md)",
    ),
});
export type DistributeRequest = z.infer<typeof DistributeRequest>;

export const UndistributeRequest = z.strictObject({
  packageId: z.string().regex(PACKAGE_ID),
  version: z.number().int().min(1).optional(),
  from: Specs,
});
export type UndistributeRequest = z.infer<typeof UndistributeRequest>;

export const ValidationRequest = z.strictObject({
  packageId: z.string().regex(PACKAGE_ID),
  version: z.number().int().min(1).optional(),
  dp: z.string().regex(TARGET_NAME).optional().describe('one DP (default: every DP holding the version)'),
  repair: z.boolean().optional(),
});
export type ValidationRequest = z.infer<typeof ValidationRequest>;

export const TransferParam = z.object({
  id: z.string().min(1).max(64).describe('a transfer id (cascade queue --json, GET /api/v1/transfers)'),
});

/** What an undistribution did: each DP's removal state. */
export const UndistributeAnswer = z
  .object({
    packageId: z.string(),
    version: z.number(),
    targets: z.array(z.object({ dp: z.string(), site: z.string(), state: z.string() })),
  })
  .meta({ id: 'Undistribution' });
export type UndistributeAnswer = z.infer<typeof UndistributeAnswer>;
