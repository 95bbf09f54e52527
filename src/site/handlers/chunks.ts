import { createRoute, z } from '@hono/zod-openapi';
import { ChunkSignatures, Digests, IngestReport, Missing } from '../../api/chunks.js';
import { PATHS } from '../../api/paths.js';
import { DIGEST } from '../../core/chunk.js';
import { chunkSignatures, ingestBatch, lackedChunks, readStoredChunk } from '../content.js';
import { type App, type AppParts, answer, bodyStream, errorResponse, errorResponses, jsonBody, need } from '../http.js';

export function registerChunkHandlers(app: App, parts: AppParts): void {
  const received = parts.metrics.counter('cascade_chunk_bytes_received_total', 'Raw bytes of chunks received and stored.');
  const literal = parts.metrics.counter(
    'cascade_chunk_literal_bytes_received_total',
    'Bytes received on the wire for chunks (deltas count only their literal bytes).',
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.chunksMissing,
      summary: 'Which of these chunks the library lacks',
      request: { body: jsonBody(Digests) },
      responses: answer('The digests not in the library', Missing),
    }),
    async (c) => {
      need(c, 'read');
      const { digests } = c.req.valid('json');
      return c.json({ missing: await lackedChunks(parts, digests) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.chunks,
      summary: 'Upload a batch of chunks (binary records; see docs/content.md)',
      description:
        'Body: records of u8 kind (1 whole, 2 delta), 32-byte SHA-256 digest, u32 big-endian length, payload. ' +
        'Each chunk is verified against its digest and on disk before the response.',
      request: { body: { content: { 'application/octet-stream': { schema: z.string().openapi({ format: 'binary' }) } }, required: true } },
      responses: {
        200: {
          description: 'Stored',
          content: {
            'application/json': {
              schema: IngestReport,
            },
          },
        },
        ...errorResponses,
        422: errorResponse('A chunk does not match its digest (chunk_mismatch)'),
      },
    }),
    async (c) => {
      need(c, 'operate');
      const report = await ingestBatch(parts, bodyStream(c));
      received(report.bytes);
      literal(report.literalBytes);
      return c.json(report, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.chunkSignatures,
      summary: 'Sub-chunk fingerprints of chunks the library holds, to send new chunks as deltas of them',
      request: {
        body: jsonBody(z.strictObject({ digests: z.array(z.string().regex(DIGEST)).max(4096) })),
      },
      responses: answer('Per chunk: [length, fingerprint] of each sub-chunk in order; unknown digests are left out', ChunkSignatures),
    }),
    async (c) => {
      need(c, 'operate');
      const { digests } = c.req.valid('json');
      return c.json({ signatures: await chunkSignatures(parts, digests) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: PATHS.chunk,
      summary: 'A stored chunk as it is on disk (codec tag byte, then payload)',
      request: { params: z.object({ digest: z.string().regex(DIGEST) }) },
      responses: {
        200: {
          description: 'The stored chunk',
          content: { 'application/octet-stream': { schema: z.string().openapi({ format: 'binary' }) } },
        },
        ...errorResponses,
      },
    }),
    async (c) => {
      need(c, 'read');
      const { digest } = c.req.valid('param');
      const stored = await readStoredChunk(parts, digest);
      return c.body(new Uint8Array(stored), 200, {
        'content-type': 'application/octet-stream',
        'cache-control': 'public, max-age=31536000, immutable',
        etag: `"${digest}"`,
      });
    },
  );
}
