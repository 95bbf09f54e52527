import { z } from 'zod';
import { PRIORITIES } from '../core/package.js';
import { CELLS } from '../core/schedule.js';
import { type Endpoint, getCall } from './client.js';
import { PATHS } from './paths.js';

/** A rate: bytes per second, null for unlimited (the one shape of a rate in every answer). */
export const Rate = z.number().nullable().describe('bytes per second; null: unlimited');

/** A schedule: its time zone, the 168 cells of the week (Monday 00:00 first) and its SPEC. */
export const ScheduleView = z
  .object({
    timeZone: z.string(),
    cells: z.array(z.enum(CELLS)),
    rates: z.array(Rate).optional().describe("per hour, as cells: a rate capping the route's in that hour; null: the route's rate"),
    spec: z.string(),
  })
  .meta({ id: 'Schedule' });
export type ScheduleView = z.infer<typeof ScheduleView>;

export const RouteView = z
  .object({
    child: z.string(),
    rate: Rate,
    concurrency: z.number().describe('packages in flight on this route'),
    schedule: ScheduleView,
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
  id: z.string().describe('the transfer (cascade transfer retry-now | cancel ID)'),
  packageId: z.string(),
  version: z.number(),
  priority: z.enum(PRIORITIES),
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
    rate: Rate,
    concurrency: z.number(),
    schedule: ScheduleView,
    bytesLeft: z.number(),
    transfers: z.array(QueueEntry),
  })
  .meta({ id: 'RouteQueue' });
export type RouteQueue = z.infer<typeof RouteQueue>;

/** This site's sender: packages in flight across all routes. */
export const Sender = z
  .object({ concurrency: z.number().describe('packages in flight from this site, all routes together') })
  .meta({ id: 'Sender' });
export type Sender = z.infer<typeof Sender>;

/** Reads of this resource, as the site serves them and clients call them. */
export const routeCalls = {
  list: getCall(PATHS.routes, z.object({ routes: z.array(RouteView) }), "This site's routes to its child sites and its DPs", 'Routes'),
  sender: getCall(PATHS.sender, Sender, "This site's sender: packages in flight across all routes", 'Sender settings'),
} as const satisfies Record<string, Endpoint>;

export const RouteSet = z.strictObject({
  rate: z.number().int().min(1).nullable().optional().describe('bytes per second; null: unlimited'),
  concurrency: z.number().int().min(1).max(64).optional(),
  schedule: z.string().min(1).max(4096).optional().describe('SPEC, see docs/schedules.md'),
  timeZone: z.string().min(1).max(64).optional().describe('IANA zone the schedule is read in (default: as before, else UTC)'),
});
export type RouteSet = z.infer<typeof RouteSet>;
