import type { Store } from './store.js';

/** Rows of the packages this site reads from a folder itself (docs/content.md#sources-on-the-site). */

export interface SourceSettings {
  /** Re-read the folder this often (seconds); null: only when asked. */
  refreshSeconds: number | null;
  /** A scheduled refresh's new version flows to the DPs holding the package (else it is staged). */
  distribute: boolean;
}

export type IngestState = 'ingesting' | 'done' | 'unchanged' | 'failed';

/** One run of reading the folder: asked for by an admin or by the schedule. */
export interface IngestRecord {
  state: IngestState;
  trigger: 'admin' | 'schedule';
  startedAt: string;
  finishedAt: string | null;
  error: string | null;
  verifyContent: boolean;
  /** The new version does not flow to the DPs holding the package. */
  hold: boolean;
  /** What the version is made with: a new package's name, priority and programs; an update's changes. */
  name: string | null;
  priority: string | null;
  programs: { name: string; command: string }[] | null;
  /** What was read, once the folder was walked. */
  files: number;
  bytes: number;
  /** The version made, or the latest one when nothing changed. */
  result: Record<string, unknown> | null;
}

/** Each file's size and modification time (ms) when version `version` was made from it. */
export interface SourceSnapshot {
  version: number;
  files: Record<string, [number, number]>;
}

export interface SourceRow {
  packageId: string;
  path: string;
  settings: SourceSettings;
  ingest: IngestRecord | null;
  snapshot: SourceSnapshot | null;
  refreshedAt: string | null;
  updatedAt: string;
}

type Raw = {
  package_id: string;
  path: string;
  settings: string;
  ingest: string | null;
  snapshot: string | null;
  refreshed_at: string | null;
  updated_at: string;
};

const toRow = (r: Raw): SourceRow => ({
  packageId: r.package_id,
  path: r.path,
  settings: JSON.parse(r.settings) as SourceSettings,
  ingest: r.ingest ? (JSON.parse(r.ingest) as IngestRecord) : null,
  snapshot: r.snapshot ? (JSON.parse(r.snapshot) as SourceSnapshot) : null,
  refreshedAt: r.refreshed_at,
  updatedAt: r.updated_at,
});

export async function getSource(s: Store, packageId: string): Promise<SourceRow | undefined> {
  const r = await s.db.selectFrom('package_sources').selectAll().where('package_id', '=', packageId).executeTakeFirst();
  return r ? toRow(r) : undefined;
}

export async function listSources(s: Store): Promise<SourceRow[]> {
  return (await s.db.selectFrom('package_sources').selectAll().orderBy('package_id').execute()).map(toRow);
}

/** Creates or replaces the row's fields given. */
export async function putSource(
  s: Store,
  packageId: string,
  fields: Partial<Pick<SourceRow, 'path' | 'settings' | 'ingest' | 'snapshot' | 'refreshedAt'>>,
): Promise<void> {
  const now = s.clock().toISOString();
  const set: Partial<Raw> = { updated_at: now };
  if (fields.path !== undefined) set.path = fields.path;
  if (fields.settings !== undefined) set.settings = JSON.stringify(fields.settings);
  if (fields.ingest !== undefined) set.ingest = fields.ingest && JSON.stringify(fields.ingest);
  if (fields.snapshot !== undefined) set.snapshot = fields.snapshot && JSON.stringify(fields.snapshot);
  if (fields.refreshedAt !== undefined) set.refreshed_at = fields.refreshedAt;
  const existing = await s.db.selectFrom('package_sources').select('package_id').where('package_id', '=', packageId).executeTakeFirst();
  if (existing) {
    await s.db.updateTable('package_sources').set(set).where('package_id', '=', packageId).execute();
    return;
  }
  await s.db
    .insertInto('package_sources')
    .values({
      package_id: packageId,
      path: set.path ?? '',
      settings: set.settings ?? JSON.stringify({ refreshSeconds: null, distribute: false } satisfies SourceSettings),
      ingest: set.ingest ?? null,
      snapshot: set.snapshot ?? null,
      refreshed_at: set.refreshed_at ?? null,
      updated_at: now,
    })
    .execute();
}

export async function deleteSource(s: Store, packageId: string): Promise<void> {
  await s.db.deleteFrom('package_sources').where('package_id', '=', packageId).execute();
}
