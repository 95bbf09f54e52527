import { createRoute, z } from '@hono/zod-openapi';
import type { TypedResponse } from 'hono';
import {
  CreateBody,
  FromSourceBody,
  GcRequest,
  IdParam,
  PackageShow,
  PackageSource,
  packageCalls,
  RefreshBody,
  SourceSettingsBody,
  UpdateBody,
  VerifyReport,
  VersionQuery,
  VersionReport,
} from '../../api/packages.js';
import { PATHS } from '../../api/paths.js';
import { fail } from '../../core/errors.js';
import { collectGarbage, commitVersion, deletePackage, listPackages, readSignedManifest, showPackage, verifyPackage } from '../content.js';
import { followNewVersion } from '../distribution.js';
import { type App, type AppParts, answer, errorResponse, errorResponses, getJson, jsonBody, need } from '../http.js';
import { createFromSource, packageSource, refreshFromSource, setSourceSettings } from '../sources.js';

export function registerPackageHandlers(app: App, parts: AppParts): void {
  // What creating a package and adding a version answer.
  const versionResponses = {
    201: { description: 'Created', content: { 'application/json': { schema: VersionReport } } },
    ...errorResponses,
    409: errorResponse('Chunks are missing from the library (missing_chunks), or another writer took this version number first (conflict)'),
  };

  const created = parts.metrics.counter('cascade_package_versions_created_total', 'Package versions committed on this site.');
  /** Commits a new package (id null) or its next version; counts and logs it. */
  const commit = async (id: string | null, input: Parameters<typeof commitVersion>[2]) => {
    const r = await commitVersion(parts, id, input);
    created();
    parts.log.info({ package: r.id, version: r.version, bytes: r.bytes, newBytes: r.newBytes }, id ? 'package updated' : 'package created');
    return r;
  };

  getJson(app, packageCalls.list, 'read', async () => ({ packages: await listPackages(parts) }));

  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.packages,
      summary: 'Create a package (version 1) from chunks already uploaded',
      request: { body: jsonBody(CreateBody) },
      responses: versionResponses,
    }),
    async (c) => {
      need(c, 'operate');
      return c.json(await commit(null, c.req.valid('json')), 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.packageVersions,
      summary: 'Add the next version of a package',
      request: { params: IdParam, body: jsonBody(UpdateBody) },
      responses: versionResponses,
    }),
    async (c) => {
      need(c, 'operate');
      const { hold, ...body } = c.req.valid('json');
      const r = await commit(c.req.valid('param').id, body);
      // Like Configuration Manager's "update distribution points": the new version follows the package.
      const flowsTo = hold ? [] : await followNewVersion(parts, r.id, r.version);
      if (flowsTo.length > 0) parts.kick?.();
      return c.json({ ...r, flowsTo }, 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: PATHS.package,
      summary: 'Show a package version (latest unless ?version=N)',
      request: { params: IdParam, query: VersionQuery },
      responses: answer('The version', PackageShow),
    }),
    async (c) => {
      need(c, 'read');
      const { id } = c.req.valid('param');
      return c.json({ ...(await showPackage(parts, id, c.req.valid('query').version)), source: await packageSource(parts, id) }, 200);
    },
  );

  // Sources on the site: the site reads the folder itself (docs/packages.md#sources-on-the-site).
  const accepted = (description: string) => ({
    ...errorResponses,
    202: { description, content: { 'application/json': { schema: PackageSource } } },
    403: errorResponse('The folder is not under one of the source roots of this site (forbidden)'),
    409: errorResponse('The package is being read from its source already (conflict)'),
  });

  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.packagesFromSource,
      summary: 'Create a package from a folder the site reads itself (under one of its source roots); answers at once, the work goes on',
      request: { body: jsonBody(FromSourceBody) },
      responses: accepted('Reading started: the package ID is reserved; GET its source to follow the work'),
    }),
    async (c) => {
      need(c, 'operate');
      return c.json(await createFromSource(parts, c.req.valid('json')), 202);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.packageRefresh,
      summary: "Read a package's source folder again (or a new one): a new version only when something changed",
      request: { params: IdParam, body: jsonBody(RefreshBody) },
      responses: accepted('Reading started; GET the source to follow the work'),
    }),
    async (c) => {
      need(c, 'operate');
      return c.json(await refreshFromSource(parts, c.req.valid('param').id, c.req.valid('json')), 202);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: PATHS.packageSource,
      summary: "A package's source folder on the site, its refresh schedule, and the reading under way or last done",
      request: {
        params: IdParam,
        query: z.object({
          waitMs: z.coerce
            .number()
            .int()
            .min(0)
            .max(10_000)
            .optional()
            .describe('while it is being read, answer when the reading ends or after this long, whichever is first'),
        }),
      },
      responses: answer('The source', PackageSource),
    }),
    async (c) => {
      need(c, 'read');
      const { id } = c.req.valid('param');
      const s = await packageSource(parts, id, c.req.valid('query').waitMs);
      if (!s) throw fail('not_found', `package ${id} has no source on the site`);
      return c.json(s, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'patch',
      path: PATHS.packageSource,
      summary: "Set the refresh schedule of a package's source folder",
      request: { params: IdParam, body: jsonBody(SourceSettingsBody) },
      responses: answer('The source', PackageSource),
    }),
    async (c) => {
      need(c, 'operate');
      return c.json(await setSourceSettings(parts, c.req.valid('param').id, c.req.valid('json')), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: PATHS.manifest,
      summary: 'The signed manifest of a version, byte for byte as stored',
      request: { params: IdParam.extend({ version: z.coerce.number().int().min(1) }) },
      responses: answer('Signed manifest (canonical JSON)', z.any()),
    }),
    async (c) => {
      need(c, 'read');
      const { id, version } = c.req.valid('param');
      const bytes = await readSignedManifest(parts, id, version);
      // The stored bytes as they are (the signature covers them), not re-serialised JSON.
      return c.body(new Uint8Array(bytes), 200, { 'content-type': 'application/json' }) as unknown as TypedResponse<unknown, 200, 'json'>;
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.packageVerify,
      summary: "Re-hash a package's stored content (every version unless ?version=N)",
      request: { params: IdParam, query: VersionQuery },
      responses: answer('What was checked and every damaged file and chunk', VerifyReport),
    }),
    async (c) => {
      need(c, 'read');
      const { id } = c.req.valid('param');
      return c.json(await verifyPackage(parts, id, c.req.valid('query').version), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: PATHS.package,
      summary: 'Delete one version (?version=N) or the whole package; chunks are freed by garbage collection',
      request: { params: IdParam, query: VersionQuery },
      responses: answer('Deleted', z.object({ id: z.string(), deleted: z.array(z.number()) })),
    }),
    async (c) => {
      need(c, 'operate');
      const { id } = c.req.valid('param');
      return c.json({ id, deleted: await deletePackage(parts, id, c.req.valid('query').version) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: PATHS.gc,
      summary: 'Free chunks no version references (admin)',
      request: {
        body: {
          content: {
            'application/json': {
              schema: GcRequest,
            },
          },
          required: false,
        },
      },
      responses: answer('Freed', z.object({ chunks: z.number(), bytes: z.number() })),
    }),
    async (c) => {
      need(c, 'admin');
      const body = (await c.req.json().catch(() => ({}))) as { graceSeconds?: number };
      const grace = typeof body.graceSeconds === 'number' && body.graceSeconds >= 0 ? body.graceSeconds : 3600;
      return c.json(await collectGarbage(parts, grace), 200);
    },
  );
}
