import { z } from 'zod';
import { CLIENT_STATES, COLLECTION_NAME } from '../core/client.js';
import { PACKAGE_ID, PROGRAM_NAME } from '../core/package.js';
import { ROLLOUT_STATES } from '../core/rollout.js';
import { AdvertisementEntry, ClientStatus, WaveSpec } from './clients.js';

/**
 * Rollouts: an advertisement released to its collection in waves, advanced by its site when a
 * wave reaches its success threshold and its hold time has passed, halted when failures cross
 * the failure threshold (docs/rollouts.md).
 */

export const RolloutRequest = z.strictObject({
  packageId: z.string().regex(PACKAGE_ID),
  version: z.number().int().min(1).nullable().default(null).describe('null: the newest version, pinned at creation'),
  program: z.string().regex(PROGRAM_NAME),
  collection: z.string().regex(COLLECTION_NAME),
  waves: z.array(WaveSpec).min(1).max(20),
  successPercent: z.number().min(0).max(100).default(95),
  failurePercent: z.number().min(0).max(100).default(5),
  holdSeconds: z
    .number()
    .int()
    .min(0)
    .max(90 * 86400)
    .default(3600),
  approval: z.boolean().default(false).describe('wait for "rollout approve" before each wave after the first'),
  mandatory: z.boolean().default(true).describe('run as soon as a wave is released (else: offered, installed on request)'),
  maxRunSeconds: z
    .number()
    .int()
    .min(1)
    .max(7 * 86400)
    .default(3600),
  slowLink: z.enum(['skip', 'download']).default('download'),
  fallback: z.boolean().default(false),
});
export type RolloutRequest = z.input<typeof RolloutRequest>;

export const WaveEntry = z.object({
  index: z.number().int().describe('0 for the first wave'),
  wave: WaveSpec,
  text: z.string(),
  released: z.boolean(),
  releasedAt: z.string().nullable(),
  members: z.number().int(),
  succeeded: z.number().int().describe('reported the new version installed, after any restart'),
  failed: z.number().int(),
  active: z.number().int().describe('downloading, running, or waiting for a restart'),
});
export type WaveEntry = z.infer<typeof WaveEntry>;

export const RolloutEntry = z
  .object({
    id: z.string().describe("the rollout's advertisement"),
    packageId: z.string(),
    version: z.number().int(),
    program: z.string(),
    collection: z.string(),
    state: z.enum(ROLLOUT_STATES),
    message: z.string().nullable().describe('why it halted, what it waits for, or what happened last'),
    successPercent: z.number(),
    failurePercent: z.number(),
    holdSeconds: z.number().int(),
    approval: z.boolean(),
    waves: z.array(WaveEntry),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .meta({ id: 'Rollout' });
export type RolloutEntry = z.infer<typeof RolloutEntry>;

export const RolloutStatus = z.object({
  rollout: RolloutEntry,
  advertisement: AdvertisementEntry,
  clients: z.array(ClientStatus.extend({ wave: z.number().int(), state: z.enum(CLIENT_STATES) })),
});
export type RolloutStatus = z.infer<typeof RolloutStatus>;

export const ROLLOUT_ACTIONS = ['pause', 'resume', 'approve', 'cancel'] as const;
export type RolloutAction = (typeof ROLLOUT_ACTIONS)[number];
