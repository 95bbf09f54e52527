import { createRoute, z } from '@hono/zod-openapi';
import { PATHS } from '../../api/paths.js';
import { ROLLOUT_ACTIONS, RolloutEntry, RolloutRequest, RolloutStatus } from '../../api/rollouts.js';
import { type App, type AppParts, answer, created, getJson, jsonBody, need } from '../http.js';
import { actOnRollout, createRollout, rolloutEntries, rolloutEntry, rolloutStatus } from '../rollouts.js';

const idParam = z.object({ id: z.string().min(1).max(64) });

/** Rollouts: create, list, show, status, and pause / resume / approve / cancel (docs/rollouts.md). */
export function registerRolloutHandlers(app: App, parts: AppParts): void {
  getJson(
    app,
    {
      method: 'GET',
      path: PATHS.rollouts,
      response: z.object({ rollouts: z.array(RolloutEntry) }),
      summary: 'Rollouts made at this site',
      answer: 'Rollouts',
    },
    'read',
    async () => ({ rollouts: await rolloutEntries(parts) }),
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.rollouts,
      summary: "Roll a package's program out to a collection in waves (operate)",
      request: { body: jsonBody(RolloutRequest) },
      responses: created('Created: the first wave is released', RolloutEntry),
    }),
    async (c) => {
      need(c, 'operate');
      return c.json(await createRollout(parts, c.req.valid('json')), 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: PATHS.rollout,
      summary: 'One rollout: its state, thresholds and waves with their counts',
      request: { params: idParam },
      responses: answer('The rollout', RolloutEntry),
    }),
    async (c) => {
      need(c, 'read');
      return c.json(await rolloutEntry(parts, c.req.valid('param').id.toUpperCase()), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: PATHS.rolloutStatus,
      summary: 'A rollout and where it stands on every member client, with each client’s wave',
      request: { params: idParam },
      responses: answer('The rollout and its clients', RolloutStatus),
    }),
    async (c) => {
      need(c, 'read');
      return c.json(await rolloutStatus(parts, c.req.valid('param').id.toUpperCase()), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.rolloutAction,
      summary: 'Pause, resume (also after a halt), approve the next wave, or cancel a rollout (operate)',
      request: { params: idParam.extend({ action: z.enum(ROLLOUT_ACTIONS) }) },
      responses: answer('The rollout', RolloutEntry),
    }),
    async (c) => {
      need(c, 'operate');
      const p = c.req.valid('param');
      return c.json(await actOnRollout(parts, p.id.toUpperCase(), p.action), 200);
    },
  );
}
