import { createRoute, z } from '@hono/zod-openapi';
import { DpEntry, DpJoinRequest, Group, Members } from '../../api/dps.js';
import { JoinAnswer } from '../../api/sites.js';
import { normaliseTarget, parseDpName, parseGroupName } from '../../core/dp.js';
import { fail } from '../../core/errors.js';
import { addMembers, createGroup, deleteGroup, getGroup, listGroups, removeMembers } from '../../store/dps.js';
import { acceptDpJoin, listAllDps } from '../dps.js';
import { type App, type AppParts, errorResponses, need } from '../http.js';

export function registerDpHandlers(app: App, parts: AppParts): void {
  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/dps/join',
      summary: 'A DP joins with a join token (no bearer token: the join token authenticates)',
      security: [],
      request: { body: { content: { 'application/json': { schema: DpJoinRequest } }, required: true } },
      responses: { 200: { description: 'Joined', content: { 'application/json': { schema: JoinAnswer } } }, ...errorResponses },
    }),
    async (c) => {
      const url = (await parts.store.getMeta('site.url')) ?? null;
      return c.json(await acceptDpJoin(parts, c.req.valid('json'), url), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/dps',
      summary: 'Every DP of this site and of every site below it',
      responses: {
        200: { description: 'DPs', content: { 'application/json': { schema: z.object({ dps: z.array(DpEntry) }) } } },
        ...errorResponses,
      },
    }),
    async (c) => {
      need(c, 'read');
      const dps = (await listAllDps(parts)).map(({ held, ...d }) => ({
        ...d,
        state: d.reachable === null ? ('unknown' as const) : d.reachable ? ('online' as const) : ('unreachable' as const),
        packages: held,
      }));
      return c.json({ dps }, 200);
    },
  );

  const known = async (names: readonly string[]) => {
    const all = new Set((await listAllDps(parts)).map((d) => d.name));
    for (const n of names) {
      const name = n.length === 3 ? normaliseTarget(n) : parseDpName(n);
      if (!all.has(name)) throw fail('not_found', `DP ${n} is not at or below site ${parts.code} (see "cascade dp list")`);
    }
    return names.map(normaliseTarget);
  };
  const groupParam = z.object({ name: z.string().min(1).max(64) });

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/dp-groups',
      summary: 'DP groups',
      responses: {
        200: { description: 'Groups', content: { 'application/json': { schema: z.object({ groups: z.array(Group) }) } } },
        ...errorResponses,
      },
    }),
    async (c) => {
      need(c, 'read');
      return c.json({ groups: await listGroups(parts.store) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/dp-groups',
      summary: 'Create a DP group (operate)',
      request: {
        body: {
          content: {
            'application/json': {
              schema: z.strictObject({ name: z.string().min(1).max(64), dps: z.array(z.string().min(1).max(64)).max(10_000).default([]) }),
            },
          },
          required: true,
        },
      },
      responses: { 201: { description: 'Created', content: { 'application/json': { schema: Group } } }, ...errorResponses },
    }),
    async (c) => {
      need(c, 'operate');
      const b = c.req.valid('json');
      const name = parseGroupName(b.name);
      return c.json(await createGroup(parts.store, name, await known(b.dps ?? [])), 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/dp-groups/{name}',
      summary: 'One DP group',
      request: { params: groupParam },
      responses: { 200: { description: 'The group', content: { 'application/json': { schema: Group } } }, ...errorResponses },
    }),
    async (c) => {
      need(c, 'read');
      const { name } = c.req.valid('param');
      const g = await getGroup(parts.store, name);
      if (!g) throw fail('not_found', `DP group ${name} does not exist (see "cascade dp-group list")`);
      return c.json(g, 200);
    },
  );

  for (const [op, summary] of [
    ['add', 'Add DPs to a group (operate)'],
    ['remove', 'Take DPs out of a group (operate)'],
  ] as const) {
    app.openapi(
      createRoute({
        method: 'post',
        path: `/api/v1/dp-groups/{name}/${op}`,
        summary,
        request: { params: groupParam, body: { content: { 'application/json': { schema: Members } }, required: true } },
        responses: { 200: { description: 'The group', content: { 'application/json': { schema: Group } } }, ...errorResponses },
      }),
      async (c) => {
        need(c, 'operate');
        const { name } = c.req.valid('param');
        if (!(await getGroup(parts.store, name))) throw fail('not_found', `DP group ${name} does not exist (see "cascade dp-group list")`);
        const { dps } = c.req.valid('json');
        if (op === 'add') await addMembers(parts.store, name, await known(dps));
        else await removeMembers(parts.store, name, dps.map(normaliseTarget));
        return c.json((await getGroup(parts.store, name)) as z.infer<typeof Group>, 200);
      },
    );
  }

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/api/v1/dp-groups/{name}',
      summary: 'Delete a DP group (operate; its DPs are untouched)',
      request: { params: groupParam },
      responses: {
        200: { description: 'Deleted', content: { 'application/json': { schema: z.object({ deleted: z.string() }) } } },
        ...errorResponses,
      },
    }),
    async (c) => {
      need(c, 'operate');
      const { name } = c.req.valid('param');
      if (!(await deleteGroup(parts.store, name))) throw fail('not_found', `DP group ${name} does not exist`);
      return c.json({ deleted: name }, 200);
    },
  );
}
