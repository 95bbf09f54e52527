import { z } from 'zod';
import { DIGEST } from '../core/chunk.js';
import {
  ADVERTISEMENT_ID,
  AGENT_STATES,
  AGENT_VERSION,
  CLIENT_ID,
  CLIENT_STATES,
  COLLECTION_NAME,
  RERUN,
  SLOW_LINK,
} from '../core/client.js';
import { PACKAGE_ID, PROGRAM_NAME } from '../core/package.js';
import { SITE_CODE } from '../core/site.js';
import { type Endpoint, getCall } from './client.js';
import { TlsPin } from './dps.js';
import { PATHS } from './paths.js';

/**
 * Clients (machines running the agent), boundaries, collections and advertisements
 * (docs/clients.md). Collections, advertisements and boundaries are **policy records**: made at
 * one site, signed by it, and passed down the tree to every site below it and to the agents.
 */

// --- inventory and enrolment --------------------------------------------------------------

export const Inventory = z
  .strictObject({
    hostname: z.string().min(1).max(255),
    os: z.string().min(1).max(64),
    arch: z.string().min(1).max(32),
    version: z.string().min(1).max(32).describe("the agent's version"),
    addresses: z.array(z.string().min(2).max(64)).max(64),
    freeDisk: z.number().int().min(0).nullable(),
    linkSpeed: z.number().min(0).nullable().describe('measured bytes per second to its DPs, or null until measured'),
  })
  .meta({ id: 'Inventory' });
export type Inventory = z.infer<typeof Inventory>;

export const EnrolRequest = z.strictObject({ token: z.string().min(1).max(256), inventory: Inventory });
export type EnrolRequest = z.infer<typeof EnrolRequest>;

export const CentralKey = z.object({ code: z.string(), keyId: z.string(), publicKey: z.string() });

export const EnrolAnswer = z.object({
  client: z.string(),
  site: z.string(),
  credential: z.string().describe('shown once: the agent sends it as its bearer token'),
  central: CentralKey,
  cycleSeconds: z.number().int(),
});
export type EnrolAnswer = z.infer<typeof EnrolAnswer>;

export const AgentJoinTokenRequest = z.strictObject({
  uses: z.number().int().min(1).max(1_000_000).default(1),
  ttlSeconds: z
    .number()
    .int()
    .min(60)
    .max(365 * 86400)
    .default(7 * 86400),
});
export type AgentJoinTokenRequest = z.infer<typeof AgentJoinTokenRequest>;

export const AgentJoinTokenAnswer = z.object({ token: z.string(), uses: z.number(), expiresAt: z.string(), site: z.string() });
export type AgentJoinTokenAnswer = z.infer<typeof AgentJoinTokenAnswer>;

// --- policy records -------------------------------------------------------------------------

export const CollectionBody = z.strictObject({
  name: z.string().regex(COLLECTION_NAME, 'a collection name is 1-64 letters, digits, spaces, ".", "_" or "-"'),
  clients: z.array(z.string().regex(CLIENT_ID)).max(100_000),
  rule: z.string().min(1).max(4096).nullable(),
  include: z.array(z.string().regex(COLLECTION_NAME)).max(64),
  exclude: z.array(z.string().regex(COLLECTION_NAME)).max(64),
  window: z
    .strictObject({
      spec: z
        .string()
        .min(1)
        .max(1024)
        .describe('open hours in the week-grid syntax of route schedules, over a closed week (docs/rollouts.md)'),
      timeZone: z.string().min(1).max(64),
    })
    .nullable()
    .optional()
    .describe("a maintenance window: members' mandatory runs start only inside it; absent or null: none"),
});
export type CollectionBody = z.infer<typeof CollectionBody>;

/** A rollout's wave: a (pilot) collection, a share of the remainder, or the rest. */
export const WaveSpec = z.union([
  z.strictObject({ collection: z.string().regex(COLLECTION_NAME) }),
  z.strictObject({ percent: z.number().gt(0).max(100) }),
  z.strictObject({ rest: z.literal(true) }),
]);

/** What makes an advertisement an agent upgrade: the version its package carries, and how it spreads. */
export const AgentUpgrade = z.strictObject({
  version: z.string().regex(AGENT_VERSION).describe('the agent version the package carries'),
  spreadSeconds: z
    .number()
    .int()
    .min(0)
    .max(90 * 86400)
    .describe("each client's turn falls at random (a stable hash of its ID) within this long after the advertisement is available"),
  graceSeconds: z
    .number()
    .int()
    .min(0)
    .max(7 * 86400)
    .describe('after an upgrade the agent starts no program (which could restart the machine) for this long'),
});
export type AgentUpgrade = z.infer<typeof AgentUpgrade>;

export const AdvertisementBody = z.strictObject({
  id: z.string().regex(ADVERTISEMENT_ID),
  packageId: z.string().regex(PACKAGE_ID),
  version: z.number().int().min(1).nullable().describe('a pinned version; null follows the newest a usable DP holds'),
  program: z.string().regex(PROGRAM_NAME),
  collection: z.string().regex(COLLECTION_NAME),
  available: z.string().max(64),
  mandatory: z.array(z.string().max(64)).max(64),
  expires: z.string().max(64).nullable(),
  slowLink: z.enum(SLOW_LINK),
  fallback: z.boolean(),
  rerun: z.enum(RERUN),
  maxRunSeconds: z
    .number()
    .int()
    .min(1)
    .max(7 * 86400),
  enabled: z.boolean(),
  rollout: z
    .strictObject({
      waves: z.array(WaveSpec).min(1).max(20),
      released: z.number().int().min(0).max(20).describe('how many waves, from the first, may act on it now'),
      paused: z.boolean().describe('paused, halted or cancelled: no client is offered it'),
    })
    .optional()
    .describe('present when the advertisement is a rollout: released in waves (docs/rollouts.md)'),
  agentUpgrade: AgentUpgrade.optional().describe('present when the advertisement upgrades the agent itself (docs/agent.md#upgrades)'),
});
export type AdvertisementBody = z.infer<typeof AdvertisementBody>;

export const BoundaryBody = z.strictObject({
  site: z.string().regex(SITE_CODE),
  cidr: z.string().min(2).max(64),
  dps: z.array(z.string().min(3).max(64)).max(64),
});
export type BoundaryBody = z.infer<typeof BoundaryBody>;

/**
 * The versions of a package its origin site deleted: no site installs them again (a parcel or
 * an offer made before the deletion is refused). Made only by the package's own site.
 */
export const DeletionBody = z.strictObject({
  packageId: z.string().regex(PACKAGE_ID),
  versions: z.array(z.number().int().min(1)).max(100_000),
});
export type DeletionBody = z.infer<typeof DeletionBody>;

export const POLICY_KINDS = ['collection', 'advertisement', 'boundary', 'deletion'] as const;
export type PolicyKind = (typeof POLICY_KINDS)[number];

const recordBase = {
  id: z.string().min(1).max(128),
  origin: z.string().regex(SITE_CODE).describe('the site that made it and signed it'),
  revision: z.number().int().min(1),
  deleted: z.boolean(),
  at: z.string().max(64),
};

export const PolicyRecord = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('collection'), ...recordBase, body: CollectionBody }),
  z.strictObject({ kind: z.literal('advertisement'), ...recordBase, body: AdvertisementBody }),
  z.strictObject({ kind: z.literal('boundary'), ...recordBase, body: BoundaryBody }),
  z.strictObject({ kind: z.literal('deletion'), ...recordBase, body: DeletionBody }),
]);
export type PolicyRecord = z.infer<typeof PolicyRecord>;

/** A policy record and its origin site's signature over the record's canonical JSON. */
export const SignedPolicy = z
  .strictObject({
    record: z.unknown(),
    signature: z.strictObject({ keyId: z.string().min(1).max(128), value: z.string().min(1).max(256) }),
  })
  .meta({ id: 'SignedPolicy' });
export type SignedPolicy = z.infer<typeof SignedPolicy>;

/**
 * A site's signed word on what it has published, as of a time: the newest version of every
 * package it made. It travels down with every status answer, through every relay, so a site
 * (or an agent) below sees how old its newest word from each site above is: a relay that
 * withholds newer versions (a freeze) cannot make the word look fresh, nor forge it.
 */
export const Freshness = z.strictObject({
  site: z.string().regex(SITE_CODE),
  at: z.iso.datetime().describe('when the site signed it'),
  latest: z
    .array(z.tuple([z.string().regex(PACKAGE_ID), z.number().int().min(1)]))
    .max(100_000)
    .describe('the newest version of each package the site made, that its origin has not deleted'),
});
export type Freshness = z.infer<typeof Freshness>;

export const SignedFreshness = z
  .strictObject({
    freshness: z.unknown(),
    signature: z.strictObject({ keyId: z.string().min(1).max(128), value: z.string().min(1).max(256) }),
  })
  .meta({ id: 'SignedFreshness' });
export type SignedFreshness = z.infer<typeof SignedFreshness>;

/** The words a status answer carries down: the answering site's own and those of the sites above it. */
export const FreshnessSet = z.strictObject({
  statements: z.array(SignedFreshness).max(64),
  certificates: z.array(z.unknown()).max(64).describe('certificates of the signers other than the central site'),
});
export type FreshnessSet = z.infer<typeof FreshnessSet>;

/** How old this site's newest word from a site above is, and what it says this site lacks. */
export const FreshnessView = z
  .object({
    site: z.string(),
    signedAt: z.string(),
    ageSeconds: z.number().int(),
    stale: z.boolean().describe('older than the site setting staleAfterSeconds: a relay may be withholding newer versions'),
    behind: z
      .array(z.object({ packageId: z.string(), held: z.number().int(), latest: z.number().int() }))
      .describe('packages this site holds at an older version than the newest its origin published'),
  })
  .meta({ id: 'Freshness' });
export type FreshnessView = z.infer<typeof FreshnessView>;

/** A DP of a site above, that a child's clients may fall back to. */
export const DpAbove = z.strictObject({
  name: z.string().max(64),
  site: z.string().max(8),
  url: z.string().max(512).nullable(),
  held: z.array(z.strictObject({ packageId: z.string().max(16), version: z.number().int() })).max(100_000),
  state: z.string().max(32),
  above: z.boolean(),
  tlsPin: TlsPin.nullish(),
});
export type DpAbove = z.infer<typeof DpAbove>;

/**
 * What a parent hands a child site with a status answer when the child's copy is out of date:
 * every record it holds, the certificates to check them, and the DPs above the child.
 */
export const PolicySet = z.strictObject({
  digest: z.string().max(128),
  records: z.array(SignedPolicy).max(100_000),
  certificates: z.array(z.unknown()).max(10_000),
  dpsAbove: z.array(DpAbove).max(10_000),
});
export type PolicySet = z.infer<typeof PolicySet>;

// --- the agent's check-in -------------------------------------------------------------------

export const AgentReport = z.strictObject({
  advertisement: z.string().regex(ADVERTISEMENT_ID),
  packageId: z.string().regex(PACKAGE_ID),
  version: z.number().int().min(1),
  state: z.enum(AGENT_STATES),
  bytesDone: z.number().int().min(0),
  bytesTotal: z.number().int().min(0),
  exitCode: z.number().int().nullable(),
  output: z.string().max(8192).nullable(),
  detail: z.string().max(1024).nullable(),
  at: z.string().max(64),
});
export type AgentReport = z.infer<typeof AgentReport>;

/** A DP that served something that does not match the signed manifest. */
export const ContentProblem = z.strictObject({
  dp: z.string().max(64),
  packageId: z.string().regex(PACKAGE_ID),
  version: z.number().int().min(1),
  file: z.string().max(4096),
  chunk: z.string().regex(DIGEST),
  text: z.string().max(1024),
});
export type ContentProblem = z.infer<typeof ContentProblem>;

export const CheckinRequest = z.strictObject({
  inventory: Inventory.nullable().describe('sent at the first check-in after a start and whenever it changed; null otherwise'),
  reports: z.array(AgentReport).max(1000),
  problems: z.array(ContentProblem).max(1000),
});
export type CheckinRequest = z.infer<typeof CheckinRequest>;

/** A DP the client may use, in the order to try. */
export const AllowedDp = z.object({
  name: z.string(),
  url: z.string(),
  why: z.string(),
  rank: z
    .number()
    .int()
    .describe(
      '0 for the most specific boundary, then 1, 2...; fallback DPs after: the agent orders DPs of one rank by their measured response',
    ),
  tlsPin: TlsPin.nullish().describe('the DP serves HTTPS with this certificate: the agent trusts exactly that one'),
});
export type AllowedDp = z.infer<typeof AllowedDp>;

export const Offer = z.object({
  advertisement: SignedPolicy,
  version: z.number().int().describe('the version to install: pinned, or the newest a usable DP holds'),
  dps: z.array(AllowedDp),
});
export type Offer = z.infer<typeof Offer>;

export const CheckinAnswer = z.object({
  client: z.string(),
  site: z.string(),
  nextCheckinSeconds: z.number().int(),
  offers: z
    .array(Offer)
    .describe('advertisements this client may act on now: member, enabled, available, not expired, and held by a DP it may use'),
  certificates: z.array(z.unknown()).describe('certificates of the sites whose signatures the offers carry'),
  downloadSlots: z.boolean().optional().describe('true: the site caps downloads; ask for a slot before downloading'),
  window: z
    .object({
      open: z.boolean(),
      closesAt: z.string().nullable().describe('open: when it closes (null: not within two weeks)'),
      opensAt: z.string().nullable().describe('closed: when it opens next'),
      text: z.string().describe('the windows, for messages'),
    })
    .optional()
    .describe("the client's maintenance windows (the union of its collections'), where it has any: mandatory runs start only inside them"),
});
export type CheckinAnswer = z.infer<typeof CheckinAnswer>;

const cycle = z
  .number()
  .int()
  .min(10)
  .max(7 * 86400)
  .describe('how often agents of this site check in (they add up to ±10 % jitter)');
const slots = z.number().int().min(1).max(1_000_000);
const slotTimeout = z.number().int().min(10).max(86400);
const staleAfter = z
  .number()
  .int()
  .min(10)
  .max(30 * 86400)
  .describe('a site above whose newest signed word here is older than this is shown stale: a relay may be withholding newer versions');

export const ClientSettings = z.object({
  clientCycleSeconds: cycle,
  downloadSlots: slots.nullable().describe("at most this many of the site's clients download at once; null: no cap"),
  dpDownloadSlots: slots.nullable().describe('at most this many clients download from any one DP of the site at once; null: no cap'),
  clientRate: z
    .number()
    .int()
    .min(1024)
    .nullable()
    .describe("bytes per second for all of the site's client downloads, shared among the slots; null: unlimited"),
  slotTimeoutSeconds: slotTimeout.describe('a client holding a download slot that reports no progress for this long loses it'),
  staleAfterSeconds: staleAfter,
});
export type ClientSettings = z.infer<typeof ClientSettings>;

export const ClientSettingsRequest = z.strictObject({
  clientCycleSeconds: cycle.optional(),
  downloadSlots: slots.nullable().optional(),
  dpDownloadSlots: slots.nullable().optional(),
  clientRate: z.number().int().min(1024).nullable().optional(),
  slotTimeoutSeconds: slotTimeout.optional(),
  staleAfterSeconds: staleAfter.optional(),
});
export type ClientSettingsRequest = z.infer<typeof ClientSettingsRequest>;

/** An agent asks for a download slot before it downloads, when its site caps downloads. */
export const SlotRequest = z.strictObject({
  advertisement: z.string().regex(ADVERTISEMENT_ID),
  dps: z.array(z.string().min(1).max(64)).min(1).max(64).describe('the DPs it may use, in the order it would try them'),
});
export type SlotRequest = z.infer<typeof SlotRequest>;

export const SlotAnswer = z.object({
  granted: z.boolean(),
  dp: z.string().nullable().describe('granted: the DP whose slot it holds (to download from first)'),
  rate: z.number().nullable().describe('granted: bytes per second it may download at; null: unlimited'),
  leaseSeconds: z.number().int().describe('granted: lost after this long without a progress report'),
  retryAfterSeconds: z.number().int().nullable().describe('refused: when to ask again (with jitter)'),
  reason: z.string().nullable().describe('refused: which cap is full'),
});
export type SlotAnswer = z.infer<typeof SlotAnswer>;

// --- admin views ----------------------------------------------------------------------------

export const ClientEntry = z
  .object({
    id: z.string(),
    site: z.string(),
    inventory: Inventory,
    boundary: z.string().nullable().describe('the most specific boundary holding one of its addresses, or null: outside every boundary'),
    dps: z.array(z.string()).describe('the DPs it may use, in order'),
    enrolledAt: z.string(),
    lastSeen: z.string().nullable(),
    revoked: z.boolean(),
    collections: z.array(z.string()),
  })
  .meta({ id: 'Client' });
export type ClientEntry = z.infer<typeof ClientEntry>;

export const CollectionEntry = CollectionBody.extend({ origin: z.string(), members: z.number().int(), updatedAt: z.string() }).meta({
  id: 'Collection',
});
export type CollectionEntry = z.infer<typeof CollectionEntry>;

export const CollectionDetail = CollectionEntry.extend({ memberIds: z.array(z.string()) });
export type CollectionDetail = z.infer<typeof CollectionDetail>;

export const CollectionRequest = CollectionBody.partial({ clients: true, rule: true, include: true, exclude: true, window: true });
export type CollectionRequest = z.infer<typeof CollectionRequest>;

export const AdvertisementEntry = AdvertisementBody.extend({ origin: z.string(), updatedAt: z.string() }).meta({ id: 'Advertisement' });
export type AdvertisementEntry = z.infer<typeof AdvertisementEntry>;

export const AdvertiseRequest = z.strictObject({
  packageId: z.string().regex(PACKAGE_ID),
  version: z.number().int().min(1).nullable().default(null),
  program: z.string().regex(PROGRAM_NAME),
  collection: z.string().regex(COLLECTION_NAME),
  available: z.string().max(64).nullable().default(null),
  mandatory: z.array(z.string().max(64)).max(64).default([]),
  expires: z.string().max(64).nullable().default(null),
  slowLink: z.enum(SLOW_LINK).default('download'),
  fallback: z.boolean().default(false),
  rerun: z.enum(RERUN).default('never'),
  maxRunSeconds: z
    .number()
    .int()
    .min(1)
    .max(7 * 86400)
    .default(3600),
});
export type AdvertiseRequest = z.input<typeof AdvertiseRequest>;

export const BoundaryEntry = BoundaryBody.extend({ origin: z.string(), clients: z.number().int() }).meta({ id: 'Boundary' });
export type BoundaryEntry = z.infer<typeof BoundaryEntry>;

export const BoundaryRequest = BoundaryBody.partial({ dps: true });
export type BoundaryRequest = z.input<typeof BoundaryRequest>;

export const ClientStatus = z.object({
  client: z.string(),
  site: z.string(),
  hostname: z.string(),
  state: z.enum(CLIENT_STATES),
  version: z.number().nullable(),
  bytesDone: z.number(),
  bytesTotal: z.number(),
  exitCode: z.number().nullable(),
  detail: z.string().nullable(),
  at: z.string().nullable(),
});
export type ClientStatus = z.infer<typeof ClientStatus>;

export const AdvertisementStatus = z.object({
  advertisement: AdvertisementEntry,
  summary: z.record(z.string(), z.number()),
  clients: z.array(ClientStatus),
});
export type AdvertisementStatus = z.infer<typeof AdvertisementStatus>;

export const WhyAnswer = z.object({
  client: z.string(),
  advertisement: z.string(),
  state: z.enum(CLIENT_STATES).nullable().describe('null: the advertisement does not apply to this client'),
  reasons: z.array(z.object({ ok: z.boolean(), text: z.string() })),
});
export type WhyAnswer = z.infer<typeof WhyAnswer>;

/** What a site reports up about its clients: who they are, and where each advertisement stands. */
export const ClientSync = z.strictObject({
  clients: z
    .array(
      z.strictObject({
        id: z.string().regex(CLIENT_ID),
        site: z.string().regex(SITE_CODE),
        inventory: Inventory,
        boundary: z.string().max(64).nullable(),
        dps: z.array(z.string().max(64)).max(64),
        enrolledAt: z.string().max(64),
        lastSeen: z.string().max(64).nullable(),
        revoked: z.boolean(),
      }),
    )
    .max(100_000),
  states: z.array(AgentReport.extend({ client: z.string().regex(CLIENT_ID) })).max(100_000),
});
export type ClientSync = z.infer<typeof ClientSync>;

/** `cascade agent publish`: make this agent version the one every client at and below the site runs. */
export const AgentPublishRequest = z.strictObject({
  agentVersion: z.string().regex(AGENT_VERSION),
  file: z
    .string()
    .max(48 * 2 ** 20)
    .nullable()
    .default(null)
    .describe('the bundled agent, base64; null: a version published here before'),
  spreadSeconds: AgentUpgrade.shape.spreadSeconds.default(86400),
  graceSeconds: AgentUpgrade.shape.graceSeconds.default(900),
});
export type AgentPublishRequest = z.input<typeof AgentPublishRequest>;

export const AgentPublishAnswer = z.object({
  agentVersion: z.string(),
  packageId: z.string(),
  version: z.number().int(),
  newVersion: z.boolean().describe('false: the package already held this file'),
  advertisement: z.string(),
  collection: z.string(),
  dps: z.array(z.string()).describe('the DPs the version goes to: every DP at and below this site'),
  spreadSeconds: z.number().int(),
  graceSeconds: z.number().int(),
});
export type AgentPublishAnswer = z.infer<typeof AgentPublishAnswer>;

/** Reads of these resources, as the site serves them and the CLI calls them. */
export const AgentVersions = z.object({
  versions: z.array(
    z.object({
      site: z.string(),
      version: z.string(),
      clients: z.number().int().describe('clients not revoked that reported this version'),
    }),
  ),
});
export type AgentVersions = z.infer<typeof AgentVersions>;

export const clientCalls = {
  enrol: { method: 'POST', path: PATHS.agentEnrol, request: EnrolRequest, response: EnrolAnswer },
  checkin: { method: 'POST', path: PATHS.agentCheckin, request: CheckinRequest, response: CheckinAnswer },
  slot: { method: 'POST', path: PATHS.agentSlot, request: SlotRequest, response: SlotAnswer },
  publish: { method: 'POST', path: PATHS.agentPublish, request: AgentPublishRequest, response: AgentPublishAnswer },
  list: getCall(PATHS.clients, z.object({ clients: z.array(ClientEntry) }), 'Clients of this site and of every site below', 'Clients'),
  versions: getCall(
    PATHS.agentVersions,
    AgentVersions,
    'How many clients run each agent version, per site (at and below this one)',
    'Versions',
  ),
  collections: getCall(PATHS.collections, z.object({ collections: z.array(CollectionEntry) }), 'Collections', 'Collections'),
  advertisements: getCall(
    PATHS.advertisements,
    z.object({ advertisements: z.array(AdvertisementEntry) }),
    'Advertisements',
    'Advertisements',
  ),
  boundaries: getCall(PATHS.boundaries, z.object({ boundaries: z.array(BoundaryEntry) }), 'Boundaries', 'Boundaries'),
} as const satisfies Record<string, Endpoint>;
