import { z } from 'zod';

export const ImportReport = z
  .object({
    parcel: z.string(),
    source: z.string(),
    destination: z.string().nullable(),
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

export const DpImportReport = ImportReport.extend({ dp: z.string().describe('the DP that imported the parcel') }).meta({
  id: 'CourierDpImport',
});

export const DpTicket = z
  .object({
    dp: z.string(),
    site: z.string(),
    url: z.string().describe('where this site reaches the DP'),
    ticket: z.string().describe("the bearer for the DP's POST /api/v1/courier/import"),
    expiresAt: z.string(),
  })
  .meta({ id: 'CourierDpTicket' });

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

/** Chunks a parcel's sender left out of the body (ones the receiver said it holds). */
export const OmitHeader = z.object({
  'x-cascade-omit': z
    .string()
    .max(8192)
    .optional()
    .describe('chunk numbers (0-based, in index order) left out of the body, as half-open ranges: "0-4000,4100-4200"'),
});
