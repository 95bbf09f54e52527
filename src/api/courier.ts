import { z } from 'zod';
import { DP_NAME, TARGET_NAME } from '../core/dp.js';
import { PACKAGE_ID } from '../core/package.js';
import { type Endpoint, getCall } from './client.js';
import { TlsPin } from './dps.js';
import { PATHS } from './paths.js';

export const ImportReport = z
  .object({
    parcel: z.string(),
    source: z.string(),
    destination: z.string().nullable(),
    importedAt: z.string().optional().describe('the site (or DP) that imported it: the one that answered'),
    created: z.string(),
    packages: z.array(
      z.object({
        id: z.string(),
        version: z.number(),
        bytes: z.number(),
        state: z.enum(['installed', 'incomplete']),
        missingChunks: z.number(),
        missingBytes: z.number().describe('bytes of the version still missing here after the import'),
      }),
    ),
    chunks: z.object({ inParcel: z.number(), stored: z.number(), alreadyHeld: z.number() }),
    bytes: z.object({
      parcel: z.number(),
      received: z.number().describe('bytes of the parcel received: less than its size when x-cascade-omit left chunks out'),
      stored: z.number().describe('raw bytes of the chunks stored by this import'),
    }),
  })
  .meta({ id: 'CourierImport' });
export type ImportReport = z.infer<typeof ImportReport>;

export const DpImportReport = ImportReport.extend({ dp: z.string().describe('the DP that imported the parcel') }).meta({
  id: 'CourierDpImport',
});
export type DpImportReport = z.infer<typeof DpImportReport>;

export const DpTicket = z
  .object({
    dp: z.string(),
    site: z.string(),
    url: z.string().describe('where this site reaches the DP'),
    ticket: z.string().describe("the bearer for the DP's POST /api/v1/courier/import"),
    expiresAt: z.string(),
    tlsPin: TlsPin.nullish().describe('the DP serves HTTPS with this certificate: send the parcel only to it'),
  })
  .meta({ id: 'CourierDpTicket' });
export type DpTicket = z.infer<typeof DpTicket>;

export const Parcel = z
  .object({
    id: z.string(),
    direction: z.enum(['export', 'import']),
    site: z.string().describe('the destination of an export, the source of an import'),
    createdAt: z.string(),
    packages: z.array(z.object({ id: z.string(), version: z.number() })),
    chunks: z.number(),
    bytes: z.number(),
    result: z.unknown().nullable(),
  })
  .meta({ id: 'CourierParcel' });
export type Parcel = z.infer<typeof Parcel>;

/** Chunks a parcel's sender left out of the body (ones the receiver said it holds). */
export const OmitHeader = z.object({
  'x-cascade-omit': z
    .string()
    .max(8192)
    .optional()
    .describe('chunk numbers (0-based, in index order) left out of the body, as half-open ranges: "0-4000,4100-4200"'),
});
export type OmitHeader = z.infer<typeof OmitHeader>;

/** A parcel made for another site or DP is refused unless the import says `anyway`. */
export const ImportQuery = z.object({
  anyway: z.enum(['true', 'false']).optional().describe('import a parcel made for another site or DP here all the same'),
});

/** A child site or a DP says a parcel was imported there: its parent checks its courier transfers at once. */
export const ArrivedRequest = z.strictObject({
  parcel: z.string().max(64),
  packages: z.array(z.strictObject({ id: z.string().regex(PACKAGE_ID), version: z.number().int().min(1) })).max(1000),
});
export type ArrivedRequest = z.infer<typeof ArrivedRequest>;
export const ArrivedAnswer = z.object({ transfers: z.number() });
export type ArrivedAnswer = z.infer<typeof ArrivedAnswer>;

/** The parent waits for a courier parcel for a version: the child shows it in its own status. */
export const WaitingRequest = z.strictObject({
  packageId: z.string().regex(PACKAGE_ID),
  version: z.number().int().min(1),
  missingBytes: z.number().int().min(0),
  parcel: z.string().max(64).nullable(),
});
export type WaitingRequest = z.infer<typeof WaitingRequest>;
export const WaitingAnswer = z.object({ updated: z.boolean() });
export type WaitingAnswer = z.infer<typeof WaitingAnswer>;

export const ParcelList = z.object({ parcels: z.array(Parcel) });

export const courierCalls = {
  arrived: { method: 'POST', path: PATHS.courierArrived, request: ArrivedRequest, response: ArrivedAnswer },
  waiting: { method: 'POST', path: PATHS.courierWaiting, request: WaitingRequest, response: WaitingAnswer },
  parcels: getCall(PATHS.courierParcels, ParcelList, 'Courier parcels exported and imported here, newest first', 'Parcels'),
} as const satisfies Record<string, Endpoint>;

export const ExportRequest = z.strictObject({
  packages: z.array(z.string().regex(PACKAGE_ID)).min(1).max(1000),
  version: z.number().int().min(1).optional().describe("this version of every package (default: each one's latest)"),
  toSite: z
    .string()
    .regex(/^[A-Za-z0-9]{3}$/)
    .optional()
    .describe('the site the parcel is for'),
  toDp: z.string().regex(DP_NAME).optional().describe("one of this site's own DPs the parcel is for (exclusive with toSite)"),
  full: z.boolean().optional().describe('every chunk, whatever the destination holds'),
});
export type ExportRequest = z.infer<typeof ExportRequest>;

export const DpTicketRequest = z.strictObject({ dp: z.string().regex(TARGET_NAME).describe("the name of one of this site's own DPs") });
export type DpTicketRequest = z.infer<typeof DpTicketRequest>;
