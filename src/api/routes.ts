import { z } from 'zod';
import { CELLS } from '../core/schedule.js';

export const RouteView = z
  .object({
    child: z.string(),
    rate: z.number().nullable().describe('bytes per second; null: unlimited'),
    rateText: z.string(),
    concurrency: z.number().describe('packages in flight on this route'),
    schedule: z.object({ timeZone: z.string(), cells: z.array(z.enum(CELLS)), spec: z.string() }),
    updatedAt: z.string().nullable(),
  })
  .meta({ id: 'Route' });
export type RouteView = z.infer<typeof RouteView>;

export const ChildParam = z.object({
  child: z
    .string()
    .regex(/^(?:[A-Za-z0-9]{3}|[A-Za-z0-9][A-Za-z0-9._-]{3,63})$/, 'a child site code (three letters or digits) or a DP name'),
});
export type ChildParam = z.infer<typeof ChildParam>;

export const QueueEntry = z.object({
  position: z.number().describe('1 = next to go; sending transfers come first'),
  packageId: z.string(),
  version: z.number(),
  priority: z.enum(['high', 'medium', 'low']),
  state: z.enum(['queued', 'sending', 'retrying']),
  targets: z.array(z.string()),
  bytesLeft: z.number(),
  etaSeconds: z
    .number()
    .nullable()
    .describe(
      'when it should be done at the route rate, counting the open hours of the schedule and what is ahead of it; null: unlimited rate or never open',
    ),
  nextAttemptAt: z.string().nullable(),
  lastError: z.string().nullable(),
});
export type QueueEntry = z.infer<typeof QueueEntry>;

export const RouteQueue = z
  .object({
    child: z.string(),
    rate: z.string(),
    concurrency: z.number(),
    schedule: z.string(),
    bytesLeft: z.number(),
    transfers: z.array(QueueEntry),
  })
  .meta({ id: 'RouteQueue' });
export type RouteQueue = z.infer<typeof RouteQueue>;
