import { createRoute, z } from '@hono/zod-openapi';
import { Digests, Missing } from '../../api/chunks.js';
import {
  ArrivedAnswer,
  ArrivedRequest,
  courierCalls,
  DpImportReport,
  DpTicket,
  DpTicketRequest,
  ExportRequest,
  ImportQuery,
  ImportReport,
  OmitHeader,
  WaitingAnswer,
  WaitingRequest,
} from '../../api/courier.js';
import { PATHS } from '../../api/paths.js';
import { parseOmitHeader } from '../../content/parcel.js';
import { fail } from '../../core/errors.js';
import {
  checkDpTicket,
  courierArrived,
  courierWaiting,
  exportParcel,
  importAtDp,
  importAtSite,
  issueDpTicket,
  missingAtDp,
  parcels,
  planExport,
} from '../courier.js';
import { neighbour } from '../hierarchy.js';
import { type App, type AppParts, answer, bodyStream, errorResponse, errorResponses, getJson, jsonBody, need } from '../http.js';

/** Courier parcels: export (streamed), import (streamed), the parcels seen here, and the child's note. */
export function registerCourierHandlers(app: App, parts: AppParts): void {
  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.courierExport,
      summary: 'Write a courier parcel for a site: signed manifests and the chunks it lacks (operate; streamed)',
      description:
        'The answer streams the parcel (format in docs/courier.md); its length is in content-length and its id in x-cascade-parcel. ' +
        'Without full, the parcel holds the chunks the destination lacks as far as this site knows. ' +
        "The destination is toSite (a site) or toDp (a DP of this site, imported there with POST /api/v1/courier/dp-tickets and the DP's own import); exactly one.",
      request: { body: jsonBody(ExportRequest) },
      responses: {
        200: {
          description: 'The parcel',
          content: { 'application/octet-stream': { schema: z.string().openapi({ format: 'binary' }) } },
        },
        ...errorResponses,
      },
    }),
    async (c) => {
      need(c, 'operate');
      const b = c.req.valid('json');
      const { plan, header } = await planExport(parts, b);
      const it = exportParcel(parts, plan);
      // Pieces of about 1 MiB: one pull, one socket write per MiB rather than per chunk.
      const stream = new ReadableStream<Uint8Array>(
        {
          async pull(controller) {
            try {
              const pieces: Uint8Array[] = [];
              let n = 0;
              while (n < 1 << 20) {
                const r = await it.next();
                if (r.done) break;
                pieces.push(r.value);
                n += r.value.length;
              }
              if (n > 0) controller.enqueue(pieces.length === 1 ? (pieces[0] as Uint8Array) : Buffer.concat(pieces, n));
              if (n < 1 << 20) controller.close();
            } catch (err) {
              parts.log.error({ err }, 'courier export failed while streaming');
              controller.error(err);
            }
          },
          async cancel() {
            await it.return(undefined);
          },
        },
        { highWaterMark: 1 },
      );
      return c.body(stream, 200, {
        'content-type': 'application/octet-stream',
        'content-length': String(header.totalBytes),
        'x-cascade-parcel': plan.parcel,
        'content-disposition': `attachment; filename="${plan.parcel}.parcel"`,
      });
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.courierImport,
      summary: 'Import a courier parcel (operate; the body streams)',
      description:
        'Signatures are checked before any chunk is read, every chunk before it is stored; versions become visible only ' +
        'once the trailing checksum matched and all their chunks are here. Importing twice is harmless; a cut import resumes. ' +
        'With x-cascade-omit the body leaves out those chunks (ones this site said it holds, POST /api/v1/chunks/missing): ' +
        'the table of contents and trailer are whole, only those chunks are skipped; one not held after all is missing.',
      request: {
        headers: OmitHeader,
        query: ImportQuery,
        body: { content: { 'application/octet-stream': { schema: z.string().openapi({ format: 'binary' }) } }, required: true },
      },
      responses: {
        200: { description: 'What the import did', content: { 'application/json': { schema: ImportReport } } },
        ...errorResponses,
        422: errorResponse(
          'The parcel is malformed, truncated or altered (bad_parcel), or signed by a key not trusted here (bad_signature)',
        ),
      },
    }),
    async (c) => {
      need(c, 'operate');
      const omit = parseOmitHeader(c.req.header('x-cascade-omit'));
      const anyway = c.req.valid('query').anyway === 'true';
      return c.json(await importAtSite(parts, bodyStream(c), { kick: parts.kick, omit, anyway }), 200);
    },
  );

  getJson(app, courierCalls.parcels, 'read', async () => ({ parcels: await parcels(parts) }));

  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.courierArrived,
      summary:
        'A child site or a DP of this site says a courier parcel was imported there (site credential): its courier transfers are checked at once',
      request: { body: jsonBody(ArrivedRequest) },
      responses: answer('Checked', ArrivedAnswer),
    }),
    async (c) => {
      const t = need(c, 'peer');
      // A DP of this site too: a parcel can be imported straight onto it (courier import --dp).
      const from = await neighbour(parts, t.name, ['child', 'dp'], 'only a child site or a DP of this site reports a parcel it imported');
      const n = await courierArrived(parts, from.code, c.req.valid('json').packages);
      parts.kick?.();
      return c.json({ transfers: n }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.dpTickets,
      summary: "An import ticket for one of this site's DPs (operate): the parcel then goes straight to the DP",
      description:
        "Answers where the DP is and a ticket signed with this site's key, valid for 10 minutes; send the parcel to the DP's " +
        'POST /api/v1/courier/import with "authorization: Bearer TICKET". The parcel never passes through this site.',
      request: { body: jsonBody(DpTicketRequest) },
      responses: {
        200: { description: 'The ticket', content: { 'application/json': { schema: DpTicket } } },
        ...errorResponses,
        400: errorResponse("The name is this site's local DP, a site, or a DP of another site (bad_request)"),
        404: errorResponse('No DP of this site has that name (not_found)'),
        503: errorResponse('The DP has not reported its address yet (unavailable)'),
      },
    }),
    async (c) => {
      need(c, 'operate');
      return c.json(await issueDpTicket(parts, c.req.valid('json').dp), 200);
    },
  );

  registerWaitingRoute(app, parts);
}

/**
 * A DP's courier routes: the import (its site's import ticket, checked before the body is read)
 * and the site's note that it waits for a parcel.
 */
export function registerDpCourierHandlers(app: App, parts: AppParts): void {
  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.courierImport,
      summary: "Import a courier parcel onto this DP (an import ticket from the DP's site; the body streams)",
      description:
        'The bearer is an import ticket from the site (POST /api/v1/courier/dp-tickets there), checked before any byte of the ' +
        'parcel is read. Then as at a site: signatures checked first, every chunk before it is stored, versions visible only ' +
        'when complete; the DP tells its site, whose sender then finds nothing missing and commits.',
      security: [{ ticket: [] }],
      request: {
        headers: OmitHeader,
        query: ImportQuery,
        body: { content: { 'application/octet-stream': { schema: z.string().openapi({ format: 'binary' }) } }, required: true },
      },
      responses: {
        200: { description: 'What the import did', content: { 'application/json': { schema: DpImportReport } } },
        ...errorResponses,
        401: errorResponse("No import ticket, or one that is malformed, expired or not signed by this DP's site (unauthorized)"),
        403: errorResponse('An import ticket for another DP, or issued by another site (forbidden)'),
        422: errorResponse(
          'The parcel is malformed, truncated or altered (bad_parcel), or signed by a key not trusted here (bad_signature)',
        ),
      },
    }),
    async (c) => {
      const omit = parseOmitHeader(c.req.header('x-cascade-omit'));
      const anyway = c.req.valid('query').anyway === 'true';
      return c.json(await importAtDp(parts, ticketOf(c.req.header('authorization')), bodyStream(c), { omit, anyway }), 200);
    },
  );

  // The ticket before the body is parsed: only its holder makes this DP read a list of digests.
  app.use(PATHS.courierMissing, async (c, next) => {
    await checkDpTicket(parts, ticketOf(c.req.header('authorization')));
    return next();
  });
  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.courierMissing,
      summary: 'Which of these chunks this DP lacks (an import ticket from its site)',
      description:
        'Asked by "cascade courier import FILE --dp NAME" before it streams, so that a repeated or resumed import leaves ' +
        'out (x-cascade-omit) the chunks this DP holds.',
      security: [{ ticket: [] }],
      request: { body: jsonBody(Digests) },
      responses: {
        200: {
          description: 'The digests not held here',
          content: { 'application/json': { schema: Missing } },
        },
        ...errorResponses,
        401: errorResponse("No import ticket, or one that is malformed, expired or not signed by this DP's site (unauthorized)"),
        403: errorResponse('An import ticket for another DP, or issued by another site (forbidden)'),
      },
    }),
    async (c) => {
      const { digests } = c.req.valid('json');
      return c.json({ missing: await missingAtDp(parts, ticketOf(c.req.header('authorization')), digests) }, 200);
    },
  );

  registerWaitingRoute(app, parts);
}

/** The import ticket in an authorization header, or 401. */
function ticketOf(header: string | undefined): string {
  const m = /^Bearer\s+(\S+)$/i.exec(header ?? '');
  if (!m) throw fail('unauthorized', "this call needs an import ticket from the DP's site (cascade courier import FILE --dp NAME)");
  return m[1] as string;
}

/** The parent's (or, at a DP, its site's) note that it waits for a parcel: shown in this site's or DP's own status. */
function registerWaitingRoute(app: App, parts: AppParts): void {
  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.courierWaiting,
      summary: 'The parent waits for a courier parcel for a version (site credential): this site shows it in its own status',
      request: { body: jsonBody(WaitingRequest) },
      responses: answer('Noted', WaitingAnswer),
    }),
    async (c) => {
      const t = need(c, 'peer');
      const from = await neighbour(parts, t.name, ['parent'], 'only the parent site says it waits for a courier parcel');
      return c.json({ updated: await courierWaiting(parts, from.code, c.req.valid('json')) }, 200);
    },
  );
}
