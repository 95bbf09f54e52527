import { z } from 'zod';
import { CHUNK_SIZES, DIGEST } from '../core/chunk.js';
import { PACKAGE_ID, PRIORITIES, PROGRAM_NAME } from '../core/package.js';

/**
 * The manifest of a package version as it travels (signed, in canonical JSON): its file tree,
 * each file a list of chunk digests, and its programs. The rules zod cannot say (sizes add up,
 * links stay inside) and the signature are checked in content/manifest.ts.
 */

/** Limits on hostile manifests; generous for real installation sources. */
export const LIMITS = {
  entries: 1_000_000,
  pathLength: 4096,
  segmentLength: 255,
  fileSize: 2 ** 40, // 1 TiB
  totalBytes: 2 ** 42, // 4 TiB
  programs: 64,
  commandLength: 8192,
  nameLength: 256,
  manifestBytes: 512 << 20,
} as const;

/** A package-relative path: forward slashes, no empty, `.` or `..` segments, nothing absolute. */
export function checkPath(p: string): string | undefined {
  if (p.length === 0) return 'is empty';
  if (p.length > LIMITS.pathLength) return `is longer than ${LIMITS.pathLength} characters`;
  if (p.startsWith('/') || /^[A-Za-z]:/.test(p)) return 'is absolute';
  if (p.includes('\\')) return 'contains a backslash';
  // biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
  if (/[\u0000-\u001f\u007f]/.test(p)) return 'contains a control character';
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.') return 'has an empty or "." segment';
    if (seg === '..') return 'contains ".."';
    if (Buffer.byteLength(seg) > LIMITS.segmentLength) return `has a name longer than ${LIMITS.segmentLength} bytes`;
  }
  return undefined;
}

const pathSchema = z.string().superRefine((p, ctx) => {
  const why = checkPath(p);
  if (why) ctx.addIssue({ code: 'custom', message: `path ${JSON.stringify(p.slice(0, 200))} ${why}` });
});
const digestSchema = z.string().regex(DIGEST, 'a chunk digest must be 64 lowercase hex characters');
const chunkRef = z.tuple([digestSchema, z.number().int().min(1).max(CHUNK_SIZES.max)]);

const fileEntry = z.strictObject({
  type: z.literal('file'),
  path: pathSchema,
  mode: z.number().int().min(0).max(0o777),
  size: z.number().int().min(0).max(LIMITS.fileSize),
  chunks: z.array(chunkRef).max(Math.ceil(LIMITS.fileSize / CHUNK_SIZES.min)),
});
const dirEntry = z.strictObject({
  type: z.literal('dir'),
  path: pathSchema,
  mode: z.number().int().min(0).max(0o777),
});
const linkEntry = z.strictObject({
  type: z.literal('link'),
  path: pathSchema,
  target: z.string().min(1).max(LIMITS.pathLength),
});
export const entrySchema = z.discriminatedUnion('type', [fileEntry, dirEntry, linkEntry]);

export const programSchema = z.strictObject({
  name: z.string().regex(PROGRAM_NAME, 'a program name is 1-64 letters, digits, spaces, dots, dashes or underscores'),
  command: z.string().min(1).max(LIMITS.commandLength),
});

export const manifestSchema = z.strictObject({
  format: z.literal(1),
  id: z.string().regex(PACKAGE_ID, 'a package id is a site code and five digits'),
  version: z.number().int().min(1),
  name: z.string().min(1).max(LIMITS.nameLength),
  priority: z.enum(PRIORITIES),
  origin: z.string().regex(/^[A-Z0-9]{3}$/),
  created: z.string().max(64),
  programs: z.array(programSchema).max(LIMITS.programs),
  files: z.array(entrySchema).max(LIMITS.entries),
  bytes: z.number().int().min(0).max(LIMITS.totalBytes),
});

export type Manifest = z.infer<typeof manifestSchema>;
export type Entry = z.infer<typeof entrySchema>;
export type FileEntry = Extract<Entry, { type: 'file' }>;
export type Program = z.infer<typeof programSchema>;
