import type { Entry, Manifest, Program } from '../content/manifest.js';
import { commitVersion, readVersion } from './content.js';
import type { SiteContext } from './context.js';
import { followNewVersion } from './distribution.js';

/**
 * A package a site keeps of its own making (the agent it publishes, the release it runs): its
 * ID in the meta key `metaKey`, one program naming what a version carries, and a new version
 * only when the program or the files differ from every version held.
 */
export interface OwnPackage {
  id: string | null;
  /** The versions held, newest first. */
  held: { version: number; manifest: Manifest }[];
}

export async function ownPackage(ctx: SiteContext, metaKey: string): Promise<OwnPackage> {
  let id = (await ctx.store.getMeta(metaKey)) || null;
  if (id && !(await ctx.store.getPackage(id))) id = null;
  const held: OwnPackage['held'] = [];
  if (id)
    for (const v of (await ctx.store.listVersions(id)).sort((a, b) => b.version - a.version))
      held.push({ version: v.version, manifest: await readVersion(ctx, id, v.version) });
  return { id, held };
}

/** Whether a version carries this program (by name and command). */
export const carries = (m: Manifest, program: Program): boolean =>
  m.programs.some((p) => p.name === program.name && p.command === program.command);

/**
 * The newest held version with this program and these files, or a new version of the package
 * (made if there is none yet) that follows the old ones to the DPs holding them.
 */
export async function commitOwnVersion(
  ctx: SiteContext,
  metaKey: string,
  pkg: OwnPackage,
  body: { name: string; program: Program; files: Entry[] },
): Promise<{ id: string; version: number; newVersion: boolean }> {
  const files = JSON.stringify(body.files);
  const same = pkg.held.find((h) => carries(h.manifest, body.program) && JSON.stringify(h.manifest.files) === files);
  if (same && pkg.id) return { id: pkg.id, version: same.version, newVersion: false };
  const r = await commitVersion(ctx, pkg.id, { name: body.name, priority: 'high', programs: [body.program], files: body.files });
  await ctx.store.setMeta(metaKey, r.id);
  // Like any package: the new version follows the old one to the DPs that hold it.
  await followNewVersion(ctx, r.id, r.version);
  return { id: r.id, version: r.version, newVersion: true };
}
