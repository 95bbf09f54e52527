import { createRoute, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import {
  AdvertisementEntry,
  AdvertisementStatus,
  AdvertiseRequest,
  AgentJoinTokenAnswer,
  AgentJoinTokenRequest,
  AgentPublishAnswer,
  AgentPublishRequest,
  BoundaryEntry,
  BoundaryRequest,
  ClientEntry,
  ClientSettings,
  ClientSettingsRequest,
  CollectionDetail,
  CollectionRequest,
  clientCalls,
  WhyAnswer,
} from '../../api/clients.js';
import { PATHS } from '../../api/paths.js';
import { recentTimes } from '../../lib/metrics.js';
import {
  addBoundary,
  advertise,
  advertisementEntries,
  advertisementEntry,
  advertisementStatus,
  boundaryEntries,
  collectionDetail,
  collectionEntries,
  createCollection,
  deleteAdvertisement,
  deleteCollection,
  removeBoundary,
  setAdvertisementEnabled,
  why,
} from '../advertisements.js';
import { publishAgent } from '../agent-release.js';
import {
  agentVersions,
  checkin,
  clientAddress,
  clientEntries,
  clientEntry,
  clientSettings,
  enrol,
  issueAgentJoinToken,
  revokeClient,
  setClientSettings,
} from '../clients.js';
import { type App, type AppEnv, type AppParts, answer, created, getJson, jsonBody, need } from '../http.js';
import { requestSlot, slotTable } from '../slots.js';

/** The address the caller connected from (through a trusted load balancer: the one it names). */
const peerAddress = (c: Context<AppEnv>, parts: AppParts): string | undefined =>
  clientAddress(parts, c.env?.incoming?.socket?.remoteAddress ?? undefined, c.req.header('x-forwarded-for'));

const idParam = z.object({ id: z.string().min(1).max(64) });
const nameParam = z.object({ name: z.string().min(1).max(64) });

export function registerClientHandlers(app: App, parts: AppParts): void {
  // --- the agent's calls --------------------------------------------------------------------
  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.agentEnrol,
      summary: 'An agent enrols with an agent join token (no bearer token: the join token authenticates)',
      security: [],
      request: { body: jsonBody(clientCalls.enrol.request) },
      responses: answer('Enrolled: the client ID and its credential (shown once)', clientCalls.enrol.response),
    }),
    async (c) => c.json(await enrol(parts, c.req.valid('json'), peerAddress(c, parts)), 200),
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.agentCheckin,
      summary: 'An agent checks in with its client credential: inventory and reports up, offers down',
      request: { body: jsonBody(clientCalls.checkin.request) },
      responses: answer('What the client may act on now', clientCalls.checkin.response),
    }),
    async (c) => {
      // app.ts checked the client credential before the body was read.
      const t = performance.now();
      const r = await checkin(parts, c.get('client'), c.req.valid('json'), peerAddress(c, parts));
      checkinTimes.note(performance.now() - t);
      return c.json(r, 200);
    },
  );
  // How long check-ins take in the site itself (the body read, waiting turns of the event loop excluded).
  const checkinTimes = recentTimes(10_000);
  parts.metrics.gauge('cascade_checkin_p99_seconds', 'The 99th percentile of the last 10,000 check-ins, handled.', () =>
    Number((checkinTimes.percentile(99) / 1000).toFixed(4)),
  );
  parts.metrics.gauge('cascade_checkin_max_seconds', 'The longest of the last 10,000 check-ins, handled.', () =>
    Number((checkinTimes.percentile(100) / 1000).toFixed(4)),
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.agentSlot,
      summary: 'An agent asks for a download slot before it downloads, when its site caps downloads (client credential)',
      request: { body: jsonBody(clientCalls.slot.request) },
      responses: answer('Granted (the DP to use, the rate to keep) or refused (when to ask again)', clientCalls.slot.response),
    }),
    async (c) => c.json(await requestSlot(parts, c.get('client').id, c.req.valid('json')), 200),
  );
  const slots = slotTable(parts);
  parts.metrics.gauge('cascade_client_downloads', 'Download slots held by clients of this site now.', () => slots.slots.size);
  parts.metrics.gauge('cascade_client_downloads_peak', 'The most download slots held at once since start.', () => slots.peak);
  parts.metrics.gauge(
    'cascade_client_slots_refused',
    'Slot requests refused since start (the agent was told when to ask again).',
    () => slots.refused,
  );
  parts.metrics.gauge(
    'cascade_client_slots_lapsed',
    'Slots lost by clients that reported no progress for the slot timeout.',
    () => slots.lapsed,
  );

  // --- administration -----------------------------------------------------------------------
  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.agentJoinTokens,
      summary: 'Issue an agent join token, usable N times until it expires (admin)',
      request: { body: { content: { 'application/json': { schema: AgentJoinTokenRequest } }, required: false } },
      responses: created('The token (shown once)', AgentJoinTokenAnswer),
    }),
    async (c) => {
      need(c, 'admin');
      const b = c.req.valid('json') ?? { uses: 1, ttlSeconds: 7 * 86400 };
      return c.json(await issueAgentJoinToken(parts, b.uses ?? 1, b.ttlSeconds ?? 7 * 86400), 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: PATHS.clientSettings,
      summary: "This site's settings for its clients",
      responses: answer('Settings', ClientSettings),
    }),
    async (c) => {
      need(c, 'read');
      return c.json(await clientSettings(parts), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.clientSettings,
      summary: "Change this site's settings for its clients (admin)",
      request: { body: jsonBody(ClientSettingsRequest) },
      responses: answer('Settings', ClientSettings),
    }),
    async (c) => {
      need(c, 'admin');
      return c.json(await setClientSettings(parts, c.req.valid('json')), 200);
    },
  );

  getJson(app, clientCalls.list, 'read', async () => ({ clients: await clientEntries(parts) }));
  getJson(app, clientCalls.versions, 'read', async () => agentVersions(parts));

  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.agentPublish,
      summary:
        'Publish an agent version: every client at and below this site upgrades to it, spread over a period, once a DP it may use holds it (admin)',
      request: { body: jsonBody(AgentPublishRequest) },
      responses: created('The agent package version, its DPs and the advertisement that upgrades the clients', AgentPublishAnswer),
    }),
    async (c) => {
      need(c, 'admin');
      const r = await publishAgent(parts, c.req.valid('json') as Required<AgentPublishRequest>);
      parts.kick?.();
      return c.json(r, 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: PATHS.client,
      summary: 'One client',
      request: { params: idParam },
      responses: answer('The client', ClientEntry),
    }),
    async (c) => {
      need(c, 'read');
      return c.json(await clientEntry(parts, c.req.valid('param').id.toUpperCase()), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.clientRevoke,
      summary: "Revoke a client's credential (admin): its agent is refused from then on",
      request: { params: idParam },
      responses: answer('Revoked', ClientEntry),
    }),
    async (c) => {
      need(c, 'admin');
      return c.json(await revokeClient(parts, c.req.valid('param').id.toUpperCase()), 200);
    },
  );

  getJson(app, clientCalls.boundaries, 'read', async () => ({ boundaries: await boundaryEntries(parts) }));

  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.boundaries,
      summary: 'Add a boundary: an IP range of a site, and the DPs its clients may use (operate)',
      request: { body: jsonBody(BoundaryRequest) },
      responses: created('Added', BoundaryEntry),
    }),
    async (c) => {
      need(c, 'operate');
      return c.json(await addBoundary(parts, c.req.valid('json')), 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.boundaryDelete,
      summary: 'Remove a boundary (operate)',
      request: { body: jsonBody(z.strictObject({ site: z.string().min(3).max(3), cidr: z.string().min(2).max(64) })) },
      responses: answer('Removed', z.object({ removed: z.string() })),
    }),
    async (c) => {
      need(c, 'operate');
      const b = c.req.valid('json');
      await removeBoundary(parts, b.site, b.cidr);
      return c.json({ removed: `${b.site.toUpperCase()} ${b.cidr}` }, 200);
    },
  );

  getJson(app, clientCalls.collections, 'read', async () => ({ collections: await collectionEntries(parts) }));

  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.collections,
      summary: 'Create a collection: clients by ID, a rule over inventory, included and excluded collections (operate)',
      request: { body: jsonBody(CollectionRequest) },
      responses: created('Created', CollectionDetail),
    }),
    async (c) => {
      need(c, 'operate');
      return c.json(await createCollection(parts, c.req.valid('json')), 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: PATHS.collection,
      summary: 'One collection and its members',
      request: { params: nameParam },
      responses: answer('The collection', CollectionDetail),
    }),
    async (c) => {
      need(c, 'read');
      return c.json(await collectionDetail(parts, c.req.valid('param').name), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'put',
      path: PATHS.collection,
      summary: 'Change a collection: the fields given replace the old ones (operate)',
      request: { params: nameParam, body: jsonBody(CollectionRequest.partial({ name: true })) },
      responses: answer('The collection', CollectionDetail),
    }),
    async (c) => {
      need(c, 'operate');
      return c.json(await createCollection(parts, { ...c.req.valid('json'), name: c.req.valid('param').name }, true), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: PATHS.collection,
      summary: 'Delete a collection (operate)',
      request: { params: nameParam },
      responses: answer('Deleted', z.object({ deleted: z.string() })),
    }),
    async (c) => {
      need(c, 'operate');
      await deleteCollection(parts, c.req.valid('param').name);
      return c.json({ deleted: c.req.valid('param').name }, 200);
    },
  );

  getJson(app, clientCalls.advertisements, 'read', async () => ({ advertisements: await advertisementEntries(parts) }));

  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.advertisements,
      summary: "Advertise a package's program to a collection (operate)",
      request: { body: jsonBody(AdvertiseRequest) },
      responses: created('Created', AdvertisementEntry),
    }),
    async (c) => {
      need(c, 'operate');
      return c.json(await advertise(parts, c.req.valid('json')), 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: PATHS.advertisement,
      summary: 'One advertisement',
      request: { params: idParam },
      responses: answer('The advertisement', AdvertisementEntry),
    }),
    async (c) => {
      need(c, 'read');
      return c.json(await advertisementEntry(parts, c.req.valid('param').id.toUpperCase()), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: PATHS.advertisement,
      summary: 'Delete an advertisement (operate)',
      request: { params: idParam },
      responses: answer('Deleted', z.object({ deleted: z.string() })),
    }),
    async (c) => {
      need(c, 'operate');
      const id = c.req.valid('param').id.toUpperCase();
      await deleteAdvertisement(parts, id);
      return c.json({ deleted: id }, 200);
    },
  );

  for (const [path, enabled] of [
    [PATHS.advertisementEnable, true],
    [PATHS.advertisementDisable, false],
  ] as const) {
    app.openapi(
      createRoute({
        method: 'post',
        path,
        summary: `${enabled ? 'Enable' : 'Disable'} an advertisement (operate)`,
        request: { params: idParam },
        responses: answer('The advertisement', AdvertisementEntry),
      }),
      async (c) => {
        need(c, 'operate');
        return c.json(await setAdvertisementEnabled(parts, c.req.valid('param').id.toUpperCase(), enabled), 200);
      },
    );
  }

  app.openapi(
    createRoute({
      method: 'get',
      path: PATHS.advertisementStatus,
      summary: 'Where an advertisement stands on every member client at and below this site',
      request: { params: idParam },
      responses: answer('Summary and clients', AdvertisementStatus),
    }),
    async (c) => {
      need(c, 'read');
      return c.json(await advertisementStatus(parts, c.req.valid('param').id.toUpperCase()), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: PATHS.why,
      summary: 'The chain of reasons an advertisement does or does not run on a client',
      request: { params: z.object({ client: z.string().min(1).max(64), advertisement: z.string().min(1).max(64) }) },
      responses: answer('Reasons', WhyAnswer),
    }),
    async (c) => {
      need(c, 'read');
      const p = c.req.valid('param');
      return c.json(await why(parts, p.client.toUpperCase(), p.advertisement.toUpperCase()), 200);
    },
  );
}
