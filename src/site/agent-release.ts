import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { AdvertisementBody, AgentPublishAnswer, AgentPublishRequest } from '../api/clients.js';
import type { Manifest } from '../content/manifest.js';
import {
  AGENT_FILE,
  AGENT_PACKAGE_NAME,
  AGENT_PROGRAM,
  AGENT_VERSION,
  ALL_CLIENTS,
  ALL_CLIENTS_RULE,
  agentUpgradeCommand,
  compareAgentVersions,
  formatAdvertisementId,
  upgradeCommandVersion,
} from '../core/client.js';
import { fail } from '../core/errors.js';
import { bundledAgentUrl, VERSION } from '../lib/version.js';
import { createCollection } from './advertisements.js';
import { storeBuffer } from './content.js';
import type { SiteContext } from './context.js';
import { distribute } from './distribution.js';
import { listAllDps } from './dps.js';
import { emit } from './messages.js';
import { carries, commitOwnVersion, ownPackage } from './own-package.js';
import { collectionKey, makePolicy, snapshot } from './policy.js';

/**
 * The agent as a package (docs/agent.md#upgrades): `cascade agent publish` (or a site server
 * started on a newer release) puts the bundled agent into a package of its own, sends it to
 * every DP at and below the site, and makes one advertisement, to every client, that upgrades
 * the agent: spread over a period, honouring maintenance windows and download caps, skipping
 * slow links, and only once a DP the client may use holds it (all as any advertisement).
 */

const META_PACKAGE = 'agent.package';
const META_AD = 'agent.advertisement';
/** The release of Cascade this site last started on (to notice a newer one). */
const META_RELEASE = 'site.release';
/** How long an agent upgrade may take on a client (download excluded): the swap and first check-in. */
const UPGRADE_MAX_RUN_SECONDS = 600;

/** The agent versions the held package versions carry, oldest first. */
const publishedList = (held: { manifest: Manifest }[]): string =>
  [...new Set(held.map((h) => upgradeCommandVersion(h.manifest.programs.find((p) => p.name === AGENT_PROGRAM)?.command ?? '') ?? '?'))]
    .sort(compareAgentVersions)
    .join(', ');

/**
 * Makes `agentVersion` the agent every client at and below this site runs: a new version of the
 * agent package (when the file is new), distributed to every DP at and below the site, and the
 * site's one agent-upgrade advertisement pointed at it.
 */
export async function publishAgent(ctx: SiteContext, req: Required<AgentPublishRequest>): Promise<AgentPublishAnswer> {
  if (!AGENT_VERSION.test(req.agentVersion)) throw fail('bad_request', `"${req.agentVersion}" is not an agent version`);
  const own = await ownPackage(ctx, META_PACKAGE);
  const held = own.held;
  const program = { name: AGENT_PROGRAM, command: agentUpgradeCommand(req.agentVersion) };
  let pkg: string;
  let version: number;
  let newVersion = false;
  if (req.file !== null) {
    const data = Buffer.from(req.file, 'base64');
    if (data.length < 64) throw fail('bad_request', 'the agent file is empty or truncated');
    const files = [await storeBuffer(ctx, data, AGENT_FILE, 0o755)];
    ({ id: pkg, version, newVersion } = await commitOwnVersion(ctx, META_PACKAGE, own, { name: AGENT_PACKAGE_NAME, program, files }));
  } else {
    const found = held.find((h) => carries(h.manifest, program));
    if (!own.id || !found)
      throw fail(
        'not_found',
        `agent ${req.agentVersion} was never published at site ${ctx.code}${held.length > 0 ? ` (published here: ${publishedList(held)})` : ''}; publish its file with --file`,
      );
    pkg = own.id;
    version = found.version;
  }
  const dps = (await listAllDps(ctx)).map((d) => d.name).sort();
  if (dps.length > 0)
    await distribute(
      ctx,
      pkg,
      version,
      dps.map((d) => `dp:${d}`),
    );

  // Every client: a collection of this site with a rule every client matches.
  let snap = await snapshot(ctx);
  if (!snap.collections.has(collectionKey(ALL_CLIENTS)))
    await createCollection(ctx, { name: ALL_CLIENTS, rule: ALL_CLIENTS_RULE, clients: [], include: [], exclude: [] });
  snap = await snapshot(ctx);
  const collection = snap.collections.get(collectionKey(ALL_CLIENTS))?.body.name ?? ALL_CLIENTS;

  let adId = (await ctx.store.getMeta(META_AD)) || null;
  if (adId && !snap.advertisements.has(adId)) adId = null;
  adId ??= formatAdvertisementId(ctx.code, await ctx.store.nextCounter('advertisement'));
  const now = ctx.clock().toISOString();
  const body: AdvertisementBody = {
    id: adId,
    packageId: pkg,
    version,
    program: AGENT_PROGRAM,
    collection,
    available: now,
    mandatory: [now],
    expires: null,
    // The seed's dial-up clients: an agent on a slow link waits until it is on a fast one.
    slowLink: 'skip',
    fallback: false,
    rerun: 'never',
    maxRunSeconds: UPGRADE_MAX_RUN_SECONDS,
    enabled: true,
    agentUpgrade: { version: req.agentVersion, spreadSeconds: req.spreadSeconds, graceSeconds: req.graceSeconds },
  };
  await makePolicy(ctx, 'advertisement', adId, body);
  await ctx.store.setMeta(META_AD, adId);
  await emit(ctx, {
    component: 'clients',
    severity: 'info',
    code: 'agent_published',
    text: `agent ${req.agentVersion} published as ${pkg} version ${version}: advertisement ${adId} upgrades every client at and below ${ctx.code} over ${Math.round(req.spreadSeconds / 3600)} h, once a DP it may use holds it`,
    packageId: pkg,
  });
  return {
    agentVersion: req.agentVersion,
    packageId: pkg,
    version,
    newVersion,
    advertisement: adId,
    collection,
    dps,
    spreadSeconds: req.spreadSeconds,
    graceSeconds: req.graceSeconds,
  };
}

/** The bundled agent of this release, if built. */
export function bundledAgentFile(): string | null {
  const file = fileURLToPath(bundledAgentUrl());
  return fs.existsSync(file) ? file : null;
}

/**
 * At start: notes the release this site server runs; the release it ran before when this one
 * is newer, else null (a site's first start only notes its release).
 */
export async function noteRelease(ctx: SiteContext, release = VERSION): Promise<string | null> {
  const before = await ctx.store.getMeta(META_RELEASE);
  await ctx.store.setMeta(META_RELEASE, release);
  return before && compareAgentVersions(release, before) > 0 ? before : null;
}

/**
 * A site server of a newer release than the one this site last ran publishes the agent it
 * carries (the seed: upgrading a site upgrades its clients). Returns the agent version
 * published, or null.
 */
export async function publishReleaseAgent(ctx: SiteContext, before: string, release = VERSION): Promise<string | null> {
  // An agent newer than this release's, published here by hand, stays.
  const adId = await ctx.store.getMeta(META_AD);
  const published = adId ? (await snapshot(ctx)).advertisements.get(adId)?.body.agentUpgrade?.version : undefined;
  if (published && compareAgentVersions(published, release) >= 0) return null;
  const file = bundledAgentFile();
  if (!file) {
    ctx.log.warn(
      { release, before },
      'site started on a newer release, but its bundled agent is missing (npm run build); agents not upgraded',
    );
    return null;
  }
  const r = await publishAgent(ctx, {
    agentVersion: release,
    file: fs.readFileSync(file).toString('base64'),
    spreadSeconds: 86400,
    graceSeconds: 900,
  });
  ctx.log.info({ release, before, advertisement: r.advertisement }, 'site started on a newer release: its agent is published');
  return release;
}
