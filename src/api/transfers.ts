import { z } from 'zod';
import { TARGET_STATES } from '../core/distribution.js';
import { TARGET_NAME } from '../core/dp.js';
import { DpState } from './dps.js';

export const PreviewRequest = z.strictObject({
  packageId: z.string().regex(/^[A-Z0-9]{3}\d{5}$/),
  version: z.number().int().min(1),
  priority: z.enum(['high', 'medium', 'low']),
  chunks: z.array(z.tuple([z.string().regex(/^[0-9a-f]{64}$/), z.number().int().min(0)])).max(5_000_000),
  targets: z.array(z.string().regex(TARGET_NAME)).min(1).max(10_000),
});

export type PreviewRequest = z.infer<typeof PreviewRequest>;

export const Offer = z.strictObject({
  packageId: z.string().regex(/^[A-Z0-9]{3}\d{5}$/),
  version: z.number().int().min(1),
  priority: z.enum(['high', 'medium', 'low']),
  manifest: z
    .string()
    .min(1)
    .max(700 << 20)
    .describe('the signed manifest, base64'),
  originCertificate: z.unknown().nullable(),
  targets: z.array(z.string().regex(TARGET_NAME)).min(1).max(10_000),
});

export type Offer = z.infer<typeof Offer>;

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
        severity: z.enum(['info', 'warning', 'error']),
        code: z.string().max(64),
        text: z.string().max(4096),
        packageId: z.string().max(16).nullable(),
      }),
    )
    .max(10_000),
  /** The DPs at and below the reporter, as last seen there. */
  dps: z.array(DpState).max(100_000).optional(),
});

export type StatusReport = z.infer<typeof StatusReport>;

export const RemoveRequest = z.strictObject({
  packageId: z.string().regex(/^[A-Z0-9]{3}\d{5}$/),
  version: z.number().int().min(1),
  targets: z.array(z.string().regex(TARGET_NAME)).min(1).max(10_000),
});

export type RemoveRequest = z.infer<typeof RemoveRequest>;

export const ValidateRequest = z.strictObject({
  packageId: z.string().regex(/^[A-Z0-9]{3}\d{5}$/),
  version: z.number().int().min(1),
  targets: z.array(z.string().regex(TARGET_NAME)).min(1).max(10_000),
  repair: z.boolean().default(false),
  lowPriority: z.boolean().default(false),
});

export type ValidateRequest = z.infer<typeof ValidateRequest>;
