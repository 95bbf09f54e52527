import { z } from 'zod';
import { PACKAGE_ID, PRIORITIES } from '../core/package.js';
import { type Endpoint, getCall } from './client.js';
import { entrySchema, LIMITS, programSchema } from './manifests.js';
import { PATHS } from './paths.js';

export const IdParam = z.object({ id: z.string().regex(PACKAGE_ID, 'a package ID is a site code and five digits, e.g. CEN00001') });
export type IdParam = z.infer<typeof IdParam>;

export const VersionQuery = z.object({ version: z.coerce.number().int().min(1).optional() });
export type VersionQuery = z.infer<typeof VersionQuery>;

export const VersionReport = z
  .object({
    id: z.string(),
    version: z.number(),
    files: z.number(),
    bytes: z.number(),
    newBytes: z.number().describe('Bytes the library did not hold before (new chunks, less what was rebuilt from chunks it held)'),
    newChunks: z.number(),
    newChunkBytes: z.number(),
    flowsTo: z
      .array(z.string())
      .optional()
      .describe('a new version: the DPs holding the package, to which it now flows (none when committed with hold)'),
  })
  .meta({ id: 'VersionReport' });
export type VersionReport = z.infer<typeof VersionReport>;

export const files = z.array(entrySchema).max(LIMITS.entries);

export const CreateBody = z.strictObject({
  name: z.string().min(1).max(LIMITS.nameLength),
  priority: z.enum(PRIORITIES).optional(),
  programs: z.array(programSchema).max(LIMITS.programs).optional(),
  files,
});
export type CreateBody = z.infer<typeof CreateBody>;

export const UpdateBody = CreateBody.partial({ name: true }).extend({
  hold: z.boolean().optional().describe('stage the version: it does not flow to the DPs holding the package until distributed'),
});

/** Reading a package's source folder on the site: under way, or how the last one ended. */
export const Ingest = z
  .object({
    state: z.enum(['ingesting', 'done', 'unchanged', 'failed']),
    trigger: z.enum(['admin', 'schedule']).describe('asked for by an admin, or a scheduled refresh'),
    startedAt: z.string(),
    finishedAt: z.string().nullable(),
    error: z.string().nullable(),
    files: z.number().describe('files in the folder (0 until it is walked)'),
    bytes: z.number(),
    doneFiles: z.number(),
    doneBytes: z.number().describe('bytes read and stored, or found unchanged by size and time'),
    percent: z.number(),
    bytesPerSecond: z.number(),
    etaSeconds: z.number().nullable(),
    version: VersionReport.extend({
      unchanged: z.boolean().describe('nothing changed: no new version was made; this is the latest one'),
    })
      .nullable()
      .describe('once done: the version made (or the latest, when nothing changed)'),
  })
  .meta({ id: 'Ingest' });
export type Ingest = z.infer<typeof Ingest>;

export const PackageSource = z
  .object({
    package: z.string(),
    path: z.string().describe('the folder on the site server'),
    refreshEverySeconds: z.number().nullable(),
    distribute: z.boolean().describe("a scheduled refresh's new version flows to the DPs holding the package (else it is staged)"),
    refreshedAt: z.string().nullable().describe('when the folder was last read to the end'),
    nextRefreshAt: z.string().nullable(),
    ingest: Ingest.nullable(),
  })
  .meta({ id: 'PackageSource' });
export type PackageSource = z.infer<typeof PackageSource>;

const sourcePath = z.string().min(1).max(4096).describe('an absolute folder on the site server, under one of its source roots');

export const FromSourceBody = z.strictObject({
  source: sourcePath,
  name: z.string().min(1).max(LIMITS.nameLength),
  priority: z.enum(PRIORITIES).optional(),
  programs: z.array(programSchema).max(LIMITS.programs).optional(),
});
export type FromSourceBody = z.infer<typeof FromSourceBody>;

export const RefreshBody = z.strictObject({
  source: sourcePath.optional().describe('read this folder from now on (default: the one the package remembers)'),
  name: z.string().min(1).max(LIMITS.nameLength).optional(),
  priority: z.enum(PRIORITIES).optional(),
  programs: z.array(programSchema).max(LIMITS.programs).optional(),
  hold: z.boolean().optional().describe('stage the new version: it does not flow to the DPs holding the package'),
  verifyContent: z.boolean().optional().describe('re-hash every file, not only those whose size or time changed'),
});
export type RefreshBody = z.infer<typeof RefreshBody>;

export const SourceSettingsBody = z.strictObject({
  refreshEverySeconds: z
    .number()
    .int()
    .min(60)
    .max(366 * 86400)
    .nullable()
    .optional()
    .describe('re-read the folder this often; null: only when asked'),
  distribute: z.boolean().optional(),
});
export type SourceSettingsBody = z.infer<typeof SourceSettingsBody>;

export const PackageSummary = z
  .object({
    id: z.string(),
    name: z.string(),
    priority: z.enum(PRIORITIES),
    version: z.number(),
    versions: z.array(z.number()),
    files: z.number(),
    bytes: z.number(),
    createdAt: z.string(),
    updatedAt: z.string(),
    held: z
      .boolean()
      .optional()
      .describe('false: made at a site below and not held here (its status still shows here); absent or true: held here'),
  })
  .meta({ id: 'PackageSummary' });
export type PackageSummary = z.infer<typeof PackageSummary>;

export const PackageShow = z
  .object({
    id: z.string(),
    name: z.string(),
    version: z.number(),
    priority: z.enum(PRIORITIES),
    programs: z.array(programSchema),
    files: z.array(
      z.object({ path: z.string(), type: z.string(), size: z.number(), mode: z.number().optional(), target: z.string().optional() }),
    ),
    bytes: z.number(),
    origin: z.string(),
    created: z.string(),
    manifestDigest: z.string(),
    versions: z.array(z.number()),
    source: PackageSource.nullable().optional().describe('the folder on the site the package is read from, if any'),
  })
  .meta({ id: 'PackageShow' });
export type PackageShow = z.infer<typeof PackageShow>;

export const Problem = z.object({
  path: z.string().nullable(),
  chunk: z.string().nullable(),
  kind: z.enum(['missing', 'damaged', 'size', 'manifest']),
  detail: z.string(),
});
export type Problem = z.infer<typeof Problem>;

export const VerifyReport = z
  .object({
    id: z.string(),
    ok: z.boolean(),
    versions: z.array(
      z.object({
        version: z.number(),
        ok: z.boolean(),
        checkedFiles: z.number(),
        checkedChunks: z.number(),
        checkedBytes: z.number(),
        problems: z.array(Problem),
      }),
    ),
  })
  .meta({ id: 'VerifyReport' });
export type VerifyReport = z.infer<typeof VerifyReport>;

/** Reads of this resource, as the site serves them and clients call them. */
export const packageCalls = {
  list: getCall(PATHS.packages, z.object({ packages: z.array(PackageSummary) }), 'List packages', 'Packages'),
} as const satisfies Record<string, Endpoint>;

export const GcRequest = z.strictObject({
  graceSeconds: z
    .number()
    .int()
    .min(0)
    .max(30 * 86400)
    .optional(),
});
export type GcRequest = z.infer<typeof GcRequest>;
