import { createRoute, z } from '@hono/zod-openapi';
import { IngestReport } from '../../api/chunks.js';
import { PATHS } from '../../api/paths.js';
import {
  CommitAnswer,
  CommitRequest,
  Offer,
  OfferAnswer,
  PreviewAnswer,
  PreviewRequest,
  REPAIR_HEADER,
  RemoveAnswer,
  RemoveRequest,
  StatusAnswer,
  StatusReport,
  ValidateAnswer,
  ValidateRequest,
} from '../../api/transfers.js';
import { fail } from '../../core/errors.js';
import { ingestBatch } from '../content.js';
import { acceptOffer, acceptRemove, acceptStatus, commitOffer, previewBelow } from '../distribution.js';
import { neighbour } from '../hierarchy.js';
import { type App, type AppParts, answer, bodyStream, jsonBody, need } from '../http.js';
import { validateBelow } from '../validation.js';

/**
 * The calls between neighbours (site credentials): a parent offers, sends and commits
 * versions, asks for a preview and orders removals; a child site or a DP reports status.
 * Child sites and DPs answer the same protocol.
 */
export function registerTransferHandlers(app: App, parts: AppParts): void {
  // Every byte of chunk batches that arrived from the parent, stored or not (a batch cut off by
  // a failure counts too): what crossed the route, to compare with what the parent meant to send.
  const wire = parts.metrics.counter(
    'cascade_transfer_bytes_received_total',
    'Bytes of chunk batches received from the parent, as they arrived (batches cut off included).',
  );
  async function* counted(body: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
    for await (const b of body) {
      wire(b.length);
      yield b;
    }
  }
  const fromChildOrParent = (name: string) =>
    neighbour(parts, name, ['parent', 'child', 'dp'], `credential of ${name} is not a neighbouring site's or DP's`);
  const fromParent = async (name: string, what: string) => {
    const from = await fromChildOrParent(name);
    if (from.relation !== 'parent') throw fail('forbidden', `only the parent site ${what}`);
    return from;
  };

  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.offer,
      summary: 'A parent offers a package version (site credential); answers which chunks are missing',
      request: { body: jsonBody(Offer) },
      responses: answer('What this site lacks', OfferAnswer),
    }),
    async (c) => {
      const from = await fromParent(need(c, 'peer').name, 'offers packages');
      const r = await acceptOffer(parts, from.code, c.req.valid('json'));
      parts.kick?.();
      return c.json({ ...r, storedRecords: true }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.transferChunks,
      summary: 'A parent sends chunks of an offered version (site credential; batch format as POST /api/v1/chunks)',
      request: {
        headers: z.object({
          [REPAIR_HEADER]: z
            .string()
            .optional()
            .openapi({ description: 'present on a repair: the chunks replace copies found damaged here' }),
        }),
        body: { content: { 'application/octet-stream': { schema: z.string().openapi({ format: 'binary' }) } }, required: true },
      },
      responses: answer('Stored', IngestReport),
    }),
    async (c) => {
      await fromParent(need(c, 'peer').name, 'sends packages');
      return c.json(await ingestBatch(parts, counted(bodyStream(c)), { repair: c.req.header(REPAIR_HEADER) !== undefined }), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.commit,
      summary: 'A parent says an offered version is complete (site credential)',
      request: { body: jsonBody(CommitRequest) },
      responses: answer('Installed, or how many chunks are still missing', CommitAnswer),
    }),
    async (c) => {
      const from = await fromParent(need(c, 'peer').name, 'commits what it sent');
      const b = c.req.valid('json');
      const r = await commitOffer(parts, from.code, b.packageId, b.version);
      parts.kick?.();
      return c.json(r, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.status,
      summary: 'A child site or a DP reports targets, status messages and DP state (site credential)',
      request: { body: jsonBody(StatusReport) },
      responses: answer('Kept', StatusAnswer),
    }),
    async (c) => {
      const from = await fromChildOrParent(need(c, 'peer').name);
      if (from.relation === 'parent') throw fail('forbidden', 'only child sites and DPs report status');
      return c.json(await acceptStatus(parts, from.code, c.req.valid('json')), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.preview,
      summary: 'A parent asks what sending a version to targets at or below this site would cost (site credential)',
      request: { body: jsonBody(PreviewRequest) },
      responses: answer('Bytes this site lacks, and the routes and targets below it', PreviewAnswer),
    }),
    async (c) => {
      await fromParent(need(c, 'peer').name, 'asks for previews');
      return c.json(await previewBelow(parts, c.req.valid('json')), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.remove,
      summary: 'A parent removes a version from targets at or below this site (site credential)',
      request: { body: jsonBody(RemoveRequest) },
      responses: answer('Removed here, or being removed further down', RemoveAnswer),
    }),
    async (c) => {
      await fromParent(need(c, 'peer').name, 'orders removals');
      const r = await acceptRemove(parts, c.req.valid('json'));
      parts.kick?.();
      return c.json(r, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.validate,
      summary: 'A parent asks to validate (and repair) a version on targets at or below this site (site credential)',
      request: { body: jsonBody(ValidateRequest) },
      responses: answer('Per DP: what was checked and what is wrong', ValidateAnswer),
    }),
    async (c) => {
      await fromParent(need(c, 'peer').name, 'asks for validations');
      return c.json({ results: await validateBelow(parts, c.req.valid('json')) }, 200);
    },
  );
}
