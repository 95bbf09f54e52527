import { createRoute, z } from '@hono/zod-openapi';
import { DpJoinRequest, dpCalls, Group, GroupRequest, Members, UpgradeAnswer, UpgradeRequest } from '../../api/dps.js';
import { PATHS } from '../../api/paths.js';
import { JoinAnswer, RemoveNeighbourAnswer } from '../../api/sites.js';
import { removeNeighbour } from '../decommission.js';
import { acceptDpJoin, changeDpGroup, createDpGroup, deleteDpGroup, dpEntries, dpGroup, groups } from '../dps.js';
import { ownUrl } from '../hierarchy.js';
import { type App, type AppParts, answer, created, getJson, jsonBody, need } from '../http.js';
import { resumeUpgrades } from '../upgrades.js';

export function registerDpHandlers(app: App, parts: AppParts): void {
  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.dpJoin,
      summary: 'A DP joins with a join token (no bearer token: the join token authenticates)',
      security: [],
      request: { body: jsonBody(DpJoinRequest) },
      responses: answer('Joined', JoinAnswer),
    }),
    async (c) => {
      return c.json(await acceptDpJoin(parts, c.req.valid('json'), await ownUrl(parts)), 200);
    },
  );

  getJson(app, dpCalls.list, 'read', async () => ({ dps: await dpEntries(parts) }));

  app.openapi(
    createRoute({
      method: 'delete',
      path: PATHS.dp,
      summary: 'Take a DP of this site out of the hierarchy: its targets, transfers, group memberships and credential (admin)',
      request: { params: z.object({ name: z.string().min(1).max(64) }) },
      responses: answer('Removed', RemoveNeighbourAnswer),
    }),
    async (c) => {
      need(c, 'admin');
      return c.json(await removeNeighbour(parts, 'dp', c.req.valid('param').name), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.dpUpgrade,
      summary: "Resume the upgrade of this site's DPs to its release: try again those that rolled back or failed (operate)",
      request: { body: jsonBody(UpgradeRequest) },
      responses: answer('Resumed', UpgradeAnswer),
    }),
    async (c) => {
      need(c, 'operate');
      return c.json(await resumeUpgrades(parts, c.req.valid('json').dps), 200);
    },
  );

  const groupParam = z.object({ name: z.string().min(1).max(64) });

  getJson(app, dpCalls.groups, 'read', async () => ({ groups: await groups(parts) }));

  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.dpGroups,
      summary: 'Create a DP group (operate)',
      request: { body: jsonBody(GroupRequest) },
      responses: created('Created', Group),
    }),
    async (c) => {
      need(c, 'operate');
      const b = c.req.valid('json');
      return c.json(await createDpGroup(parts, b.name, b.dps ?? []), 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: PATHS.dpGroup,
      summary: 'One DP group',
      request: { params: groupParam },
      responses: answer('The group', Group),
    }),
    async (c) => {
      need(c, 'read');
      const { name } = c.req.valid('param');
      return c.json(await dpGroup(parts, name), 200);
    },
  );

  for (const [op, summary] of [
    ['add', 'Add DPs to a group (operate)'],
    ['remove', 'Take DPs out of a group (operate)'],
  ] as const) {
    app.openapi(
      createRoute({
        method: 'post',
        path: op === 'add' ? PATHS.dpGroupAdd : PATHS.dpGroupRemove,
        summary,
        request: { params: groupParam, body: jsonBody(Members) },
        responses: answer('The group', Group),
      }),
      async (c) => {
        need(c, 'operate');
        const { name } = c.req.valid('param');
        return c.json(await changeDpGroup(parts, name, op, c.req.valid('json').dps), 200);
      },
    );
  }

  app.openapi(
    createRoute({
      method: 'delete',
      path: PATHS.dpGroup,
      summary: 'Delete a DP group (operate; its DPs are untouched)',
      request: { params: groupParam },
      responses: answer('Deleted', z.object({ deleted: z.string() })),
    }),
    async (c) => {
      need(c, 'operate');
      const { name } = c.req.valid('param');
      await deleteDpGroup(parts, name);
      return c.json({ deleted: name }, 200);
    },
  );
}
