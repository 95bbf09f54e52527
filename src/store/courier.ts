import type { Kysely } from 'kysely';
import type { Database } from './schema.js';
import type { Store } from './store.js';

/**
 * The courier repository (docs/courier.md): which package versions go to which child by
 * courier instead of over the route, what the child still lacks, and the parcels exported
 * and imported here. Its tables live beside the others; their types stay here so the
 * courier adds no lines to the shared schema.
 */

export interface CourierRouteTable {
  package_id: string;
  version: number;
  child: string;
  /** JSON array of the digests the child lacked at the last check, or null before the first. */
  missing: string | null;
  missing_bytes: number | null;
  /** JSON array of the versions of the package the child holds. */
  child_versions: string | null;
  checked_at: string | null;
  /** Checks in a row that found nothing changed (the next check waits longer). */
  quiet_checks: number;
  /** The last parcel exported for this version and child, and when. */
  parcel: string | null;
  exported_at: string | null;
  created_at: string;
}

export interface CourierParcelTable {
  id: string;
  direction: string;
  /** The destination of an export, the source of an import. */
  site: string;
  created_at: string;
  /** JSON array of {id, version}. */
  packages: string;
  chunks: number;
  bytes: number;
  /** JSON: what an import did (per package: installed or missing bytes). */
  result: string | null;
}

type Db = Kysely<Database & { courier_routes: CourierRouteTable; courier_parcels: CourierParcelTable }>;
const db = (s: Store): Db => s.db as unknown as Db;

export interface CourierRoute {
  packageId: string;
  version: number;
  child: string;
  missing: string[] | null;
  missingBytes: number | null;
  childVersions: number[] | null;
  checkedAt: string | null;
  quietChecks: number;
  parcel: string | null;
  exportedAt: string | null;
}

const toRoute = (r: CourierRouteTable): CourierRoute => ({
  packageId: r.package_id,
  version: r.version,
  child: r.child,
  missing: r.missing === null ? null : (JSON.parse(r.missing) as string[]),
  missingBytes: r.missing_bytes === null ? null : Number(r.missing_bytes),
  childVersions: r.child_versions === null ? null : (JSON.parse(r.child_versions) as number[]),
  checkedAt: r.checked_at,
  quietChecks: r.quiet_checks,
  parcel: r.parcel,
  exportedAt: r.exported_at,
});

/** The version goes to that child by courier (kept as it is when already so). */
export async function setCourierRoute(s: Store, packageId: string, version: number, child: string): Promise<void> {
  await db(s)
    .insertInto('courier_routes')
    .values({
      package_id: packageId,
      version,
      child,
      missing: null,
      missing_bytes: null,
      child_versions: null,
      checked_at: null,
      quiet_checks: 0,
      parcel: null,
      exported_at: null,
      created_at: s.clock().toISOString(),
    })
    .onConflict((oc) => oc.columns(['package_id', 'version', 'child']).doNothing())
    .execute();
}

/** The version goes to that child over the network again; true when it was by courier. */
export async function clearCourierRoute(s: Store, packageId: string, version: number, child: string): Promise<boolean> {
  const r = await db(s)
    .deleteFrom('courier_routes')
    .where('package_id', '=', packageId)
    .where('version', '=', version)
    .where('child', '=', child)
    .executeTakeFirst();
  return Number(r.numDeletedRows) > 0;
}

export async function getCourierRoute(s: Store, packageId: string, version: number, child: string): Promise<CourierRoute | undefined> {
  const r = await db(s)
    .selectFrom('courier_routes')
    .selectAll()
    .where('package_id', '=', packageId)
    .where('version', '=', version)
    .where('child', '=', child)
    .executeTakeFirst();
  return r && toRoute(r);
}

export async function listCourierRoutes(s: Store, f: { child?: string; packageId?: string } = {}): Promise<CourierRoute[]> {
  let q = db(s).selectFrom('courier_routes').selectAll();
  if (f.child) q = q.where('child', '=', f.child);
  if (f.packageId) q = q.where('package_id', '=', f.packageId);
  return (await q.orderBy('package_id').orderBy('version').execute()).map(toRoute);
}

/** What the child answered to the last offer. */
export async function recordCheck(
  s: Store,
  r: {
    packageId: string;
    version: number;
    child: string;
    missing: string[];
    missingBytes: number;
    childVersions: number[];
    quietChecks: number;
  },
): Promise<void> {
  await db(s)
    .updateTable('courier_routes')
    .set({
      missing: JSON.stringify(r.missing),
      missing_bytes: r.missingBytes,
      child_versions: JSON.stringify(r.childVersions),
      checked_at: s.clock().toISOString(),
      quiet_checks: r.quietChecks,
    })
    .where('package_id', '=', r.packageId)
    .where('version', '=', r.version)
    .where('child', '=', r.child)
    .execute();
}

export async function recordExportOn(s: Store, packageId: string, version: number, child: string, parcel: string): Promise<void> {
  await db(s)
    .updateTable('courier_routes')
    .set({ parcel, exported_at: s.clock().toISOString(), quiet_checks: 0 })
    .where('package_id', '=', packageId)
    .where('version', '=', version)
    .where('child', '=', child)
    .execute();
}

export interface ParcelRow {
  id: string;
  direction: 'export' | 'import';
  site: string;
  createdAt: string;
  packages: { id: string; version: number }[];
  chunks: number;
  bytes: number;
  result: unknown;
}

export async function recordParcel(s: Store, p: Omit<ParcelRow, 'createdAt'>): Promise<void> {
  const values = {
    id: p.id,
    direction: p.direction,
    site: p.site,
    created_at: s.clock().toISOString(),
    packages: JSON.stringify(p.packages),
    chunks: p.chunks,
    bytes: p.bytes,
    result: p.result === undefined || p.result === null ? null : JSON.stringify(p.result),
  };
  await db(s)
    .insertInto('courier_parcels')
    .values(values)
    .onConflict((oc) => oc.columns(['id', 'direction']).doUpdateSet({ created_at: values.created_at, result: values.result }))
    .execute();
}

export async function listParcels(s: Store, limit = 200): Promise<ParcelRow[]> {
  const rows = await db(s).selectFrom('courier_parcels').selectAll().orderBy('created_at', 'desc').limit(limit).execute();
  return rows.map((r) => ({
    id: r.id,
    direction: r.direction as 'export' | 'import',
    site: r.site,
    createdAt: r.created_at,
    packages: JSON.parse(r.packages),
    chunks: r.chunks,
    bytes: Number(r.bytes),
    result: r.result === null ? null : JSON.parse(r.result),
  }));
}
