import { createRoute, z } from '@hono/zod-openapi';
import type { TypedResponse } from 'hono';
import {
  CreateBody,
  IdParam,
  PackageShow,
  PackageSummary,
  UpdateBody,
  VerifyReport,
  VersionQuery,
  VersionReport,
} from '../../api/packages.js';
import { fail } from '../../core/errors.js';
import { collectGarbage, commitVersion, deleteVersion, readSignedManifest, readVersion, verifyContent } from '../content.js';
import { type App, type AppParts, errorResponse, errorResponses, need } from '../http.js';

export function registerPackageHandlers(app: App, parts: AppParts): void {
  // What creating a package and adding a version answer. Built here, not at module load:
  // app.ts and the route modules import each other.
  const versionResponses = {
    201: { description: 'Created', content: { 'application/json': { schema: VersionReport } } },
    ...errorResponses,
    409: errorResponse('Chunks are missing from the library (missing_chunks), or another writer took this version number first (conflict)'),
  };

  const created = parts.metrics.counter('cascade_package_versions_created_total', 'Package versions committed on this site.');

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/packages',
      summary: 'List packages',
      responses: {
        200: { description: 'Packages', content: { 'application/json': { schema: z.object({ packages: z.array(PackageSummary) }) } } },
        ...errorResponses,
      },
    }),
    async (c) => {
      need(c, 'read');
      const out = [];
      for (const p of await parts.store.listPackages()) {
        const versions = await parts.store.listVersions(p.id);
        const latest = versions.find((v) => v.version === p.latestVersion);
        out.push({
          id: p.id,
          name: p.name,
          priority: p.priority,
          version: p.latestVersion,
          versions: versions.map((v) => v.version),
          files: latest?.files ?? 0,
          bytes: latest?.bytes ?? 0,
          createdAt: p.createdAt,
          updatedAt: p.updatedAt,
        });
      }
      return c.json({ packages: out }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/packages',
      summary: 'Create a package (version 1) from chunks already uploaded',
      request: { body: { content: { 'application/json': { schema: CreateBody } }, required: true } },
      responses: versionResponses,
    }),
    async (c) => {
      need(c, 'operate');
      const r = await commitVersion(parts, null, c.req.valid('json'));
      created();
      parts.log.info({ package: r.id, version: r.version, bytes: r.bytes, newBytes: r.newBytes }, 'package created');
      return c.json(r, 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/packages/{id}/versions',
      summary: 'Add the next version of a package',
      request: { params: IdParam, body: { content: { 'application/json': { schema: UpdateBody } }, required: true } },
      responses: versionResponses,
    }),
    async (c) => {
      need(c, 'operate');
      const { id } = c.req.valid('param');
      const r = await commitVersion(parts, id, c.req.valid('json'));
      created();
      parts.log.info({ package: r.id, version: r.version, bytes: r.bytes, newBytes: r.newBytes }, 'package updated');
      return c.json(r, 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/packages/{id}',
      summary: 'Show a package version (latest unless ?version=N)',
      request: { params: IdParam, query: VersionQuery },
      responses: { 200: { description: 'The version', content: { 'application/json': { schema: PackageShow } } }, ...errorResponses },
    }),
    async (c) => {
      need(c, 'read');
      const { id } = c.req.valid('param');
      const pkg = await parts.store.getPackage(id);
      if (!pkg) throw fail('not_found', `package ${id} does not exist`);
      const version = c.req.valid('query').version ?? pkg.latestVersion;
      const row = await parts.store.getVersion(id, version);
      if (!row) throw fail('not_found', `package ${id} has no version ${version}`);
      const m = await readVersion(parts, id, version);
      const versions = (await parts.store.listVersions(id)).map((v) => v.version);
      return c.json(
        {
          id,
          name: m.name,
          version,
          priority: m.priority,
          programs: m.programs,
          files: m.files.map((f) =>
            f.type === 'file'
              ? { path: f.path, type: f.type, size: f.size, mode: f.mode }
              : f.type === 'dir'
                ? { path: f.path, type: f.type, size: 0, mode: f.mode }
                : { path: f.path, type: f.type, size: 0, target: f.target },
          ),
          bytes: m.bytes,
          origin: m.origin,
          created: m.created,
          manifestDigest: row.manifestDigest,
          versions,
        },
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/api/v1/packages/{id}/versions/{version}/manifest',
      summary: 'The signed manifest of a version, byte for byte as stored',
      request: { params: IdParam.extend({ version: z.coerce.number().int().min(1) }) },
      responses: {
        200: { description: 'Signed manifest (canonical JSON)', content: { 'application/json': { schema: z.any() } } },
        ...errorResponses,
      },
    }),
    async (c) => {
      need(c, 'read');
      const { id, version } = c.req.valid('param');
      if (!(await parts.store.getVersion(id, version))) throw fail('not_found', `package ${id} has no version ${version}`);
      const bytes = await readSignedManifest(parts, id, version);
      // The stored bytes as they are (the signature covers them), not re-serialised JSON.
      return c.body(new Uint8Array(bytes), 200, { 'content-type': 'application/json' }) as unknown as TypedResponse<unknown, 200, 'json'>;
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/packages/{id}/verify',
      summary: "Re-hash a package's stored content (every version unless ?version=N)",
      request: { params: IdParam, query: VersionQuery },
      responses: {
        200: {
          description: 'What was checked and every damaged file and chunk',
          content: { 'application/json': { schema: VerifyReport } },
        },
        ...errorResponses,
      },
    }),
    async (c) => {
      need(c, 'read');
      const { id } = c.req.valid('param');
      const only = c.req.valid('query').version;
      const all = await parts.store.listVersions(id);
      if (all.length === 0) throw fail('not_found', `package ${id} does not exist`);
      const pick = only ? all.filter((v) => v.version === only) : all;
      if (pick.length === 0) throw fail('not_found', `package ${id} has no version ${only}`);
      const versions = [];
      for (const v of pick) {
        try {
          const m = await readVersion(parts, id, v.version);
          versions.push({ version: v.version, ...(await verifyContent(parts, m)) });
        } catch (e) {
          versions.push({
            version: v.version,
            ok: false,
            checkedFiles: 0,
            checkedChunks: 0,
            checkedBytes: 0,
            problems: [{ path: null, chunk: null, kind: 'manifest' as const, detail: (e as Error).message }],
          });
        }
      }
      const ok = versions.every((v) => v.ok);
      if (!ok) parts.log.warn({ package: id, problems: versions.flatMap((v) => v.problems).length }, 'package content is damaged');
      return c.json({ id, ok, versions }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/api/v1/packages/{id}',
      summary: 'Delete one version (?version=N) or the whole package; chunks are freed by garbage collection',
      request: { params: IdParam, query: VersionQuery },
      responses: {
        200: {
          description: 'Deleted',
          content: { 'application/json': { schema: z.object({ id: z.string(), deleted: z.array(z.number()) }) } },
        },
        ...errorResponses,
      },
    }),
    async (c) => {
      need(c, 'operate');
      const { id } = c.req.valid('param');
      const only = c.req.valid('query').version;
      const all = (await parts.store.listVersions(id)).map((v) => v.version);
      if (all.length === 0) throw fail('not_found', `package ${id} does not exist`);
      if (only && !all.includes(only)) throw fail('not_found', `package ${id} has no version ${only}`);
      const gone = only ? [only] : all;
      for (const v of gone) await deleteVersion(parts, id, v);
      return c.json({ id, deleted: gone }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/api/v1/gc',
      summary: 'Free chunks no version references (admin)',
      request: {
        body: {
          content: {
            'application/json': {
              schema: z.strictObject({
                graceSeconds: z
                  .number()
                  .int()
                  .min(0)
                  .max(30 * 86400)
                  .optional(),
              }),
            },
          },
          required: false,
        },
      },
      responses: {
        200: { description: 'Freed', content: { 'application/json': { schema: z.object({ chunks: z.number(), bytes: z.number() }) } } },
        ...errorResponses,
      },
    }),
    async (c) => {
      need(c, 'admin');
      const body = (await c.req.json().catch(() => ({}))) as { graceSeconds?: number };
      const grace = typeof body.graceSeconds === 'number' && body.graceSeconds >= 0 ? body.graceSeconds : 3600;
      return c.json(await collectGarbage(parts, grace), 200);
    },
  );
}
