/** Chunks: content-defined pieces of file data, addressed by the SHA-256 of their bytes. */

/** A chunk digest: 64 lowercase hex characters (SHA-256). */
export const DIGEST = /^[0-9a-f]{64}$/;

/** Chunk sizes in bytes: the chunker cuts between `min` and `max`, about every `avg`. */
export const CHUNK_SIZES = { min: 16 << 10, avg: 64 << 10, max: 256 << 10 } as const;
