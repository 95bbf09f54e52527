import { createRoute, z } from '@hono/zod-openapi';
import { Digests, IngestReport, Missing } from '../../api/chunks.js';
import { decodeChunk } from '../../content/codec.js';
import { signature } from '../../content/delta.js';
import { DIGEST } from '../../core/chunk.js';
import { fail } from '../../core/errors.js';
import { ingestBatch, lackedChunks } from '../content.js';
import { type App, type AppParts, bodyStream, errorResponse, errorResponses, need } from '../http.js';

export function registerChunkHandlers(app: App, parts: AppParts): void {
  const received = parts.metrics.counter('cascade_chunk_bytes_received_total', 'Raw bytes of chunks received and stored.');
  const literal = parts.metrics.counter(
    'cascade_chunk_literal_bytes_received_total',
    'Bytes received on the wire for chunks (deltas count only their literal bytes).',
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/chunks/missing',
      summary: 'Which of these chunks the library lacks',
      request: { body: { content: { 'application/json': { schema: Digests } }, required: true } },
      responses: {
        200: {
          description: 'The digests not in the library',
          content: { 'application/json': { schema: Missing } },
        },
        ...errorResponses,
      },
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
      path: '/api/v1/chunks',
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
      path: '/api/v1/chunks/signatures',
      summary: 'Sub-chunk fingerprints of chunks the library holds, to send new chunks as deltas of them',
      request: {
        body: {
          content: { 'application/json': { schema: z.strictObject({ digests: z.array(z.string().regex(DIGEST)).max(4096) }) } },
          required: true,
        },
      },
      responses: {
        200: {
          description: 'Per chunk: [length, fingerprint] of each sub-chunk in order; unknown digests are left out',
          content: {
            'application/json': {
              schema: z.object({ signatures: z.array(z.object({ digest: z.string(), subs: z.array(z.tuple([z.number(), z.string()])) })) }),
            },
          },
        },
        ...errorResponses,
      },
    }),
    async (c) => {
      need(c, 'operate');
      const { digests } = c.req.valid('json');
      const rows = await parts.store.getChunks(digests);
      const signatures = [];
      for (const [digest, row] of rows) {
        const raw = decodeChunk(await parts.library.readStored(digest), row.size);
        signatures.push({ digest, subs: signature(raw) });
      }
      return c.json({ signatures }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/chunks/{digest}',
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
      const have = await parts.store.haveChunks([digest]);
      if (!have.has(digest)) throw fail('not_found', `chunk ${digest} is not in the library`);
      const stored = await parts.library.readStored(digest);
      return c.body(new Uint8Array(stored), 200, {
        'content-type': 'application/octet-stream',
        'cache-control': 'public, max-age=31536000, immutable',
        etag: `"${digest}"`,
      });
    },
  );
}
