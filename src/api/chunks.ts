import { z } from 'zod';
import { DIGEST } from '../core/chunk.js';

/** The answer of a `missing` call: the digests not held. */
export const Missing = z.object({ missing: z.array(z.string()) });
export type Missing = z.infer<typeof Missing>;

/** A list of chunk digests (up to 200,000): what `missing` calls take. */
export const Digests = z.strictObject({
  digests: z.array(z.string().regex(DIGEST, 'a digest is 64 lowercase hex characters')).max(200_000),
});
export type Digests = z.infer<typeof Digests>;

/** The answer to a chunk batch, on both routes that take one. */
export const IngestReport = z
  .object({ received: z.number(), stored: z.number(), bytes: z.number(), literalBytes: z.number() })
  .meta({ id: 'IngestReport' });
export type IngestReport = z.infer<typeof IngestReport>;

/** Per chunk held: [length, fingerprint] of each sub-chunk, the base a sender builds a delta on. */
export const ChunkSignatures = z.object({
  signatures: z.array(z.object({ digest: z.string(), subs: z.array(z.tuple([z.number(), z.string()])) })),
});
export type ChunkSignatures = z.infer<typeof ChunkSignatures>;
