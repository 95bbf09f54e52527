import { type Freshness, type FreshnessSet, FreshnessView, type SignedFreshness } from '../api/clients.js';
import { signFreshness, verifyFreshness } from '../content/freshness.js';
import { formatAge } from '../core/time.js';
import type { SiteContext } from './context.js';
import { parentOf, trustOrigin } from './hierarchy.js';
import { emit } from './messages.js';
import { certificatesOf, snapshot } from './policy.js';

/**
 * Freeze protection (TUF's timestamp role, per site): every site signs, on every status answer
 * to a child, its word on what it has published — the newest version of each package it made —
 * and hands down the words of the sites above it as it last verified them. A site keeps the
 * newest word of each site above; `site list` shows how old it is and which packages this site
 * holds at an older version than their origin published. A relay that withholds newer versions
 * cannot hide it: it can drop the words (they age, and turn stale after `staleAfterSeconds`), not
 * forge or refresh them.
 */

const META_ABOVE = 'freshness.above';
const META_STALE = 'freshness.staleNoted';
/** A word signed further ahead than this is refused (clocks differ, but not by this much). */
const MAX_SKEW_MS = 5 * 60_000;

const own = new WeakMap<SiteContext, { at: number; signed: SignedFreshness }>();

/** This site's own word, signed now (re-signed at most once a second). */
export async function ownFreshness(ctx: SiteContext): Promise<SignedFreshness> {
  const cached = own.get(ctx);
  if (cached && Date.now() - cached.at < 1000) return cached.signed;
  const latest: Freshness['latest'] = [];
  for (const p of await ctx.store.listPackages())
    if (p.id.startsWith(ctx.code) && p.latestVersion > 0) latest.push([p.id, p.latestVersion]);
  latest.sort((a, b) => (a[0] < b[0] ? -1 : 1));
  const signed = signFreshness(ctx.key, { site: ctx.code, at: ctx.clock().toISOString(), latest });
  own.set(ctx, { at: Date.now(), signed });
  return signed;
}

/** The words of the sites above, as this site verified them: site code → signed statement. */
async function stored(ctx: SiteContext): Promise<Record<string, SignedFreshness>> {
  const v = await ctx.store.getMeta(META_ABOVE);
  return v ? (JSON.parse(v) as Record<string, SignedFreshness>) : {};
}

/** What a status answer carries down to a child: this site's word and those of the sites above it. */
export async function freshnessForChild(ctx: SiteContext): Promise<FreshnessSet> {
  const above = Object.values(await stored(ctx));
  const statements = [await ownFreshness(ctx), ...above];
  const sites = above.map((s) => (s.freshness as Freshness).site);
  return { statements, certificates: await certificatesOf(ctx, [ctx.code, ...sites]) };
}

/**
 * Keeps, for each site above, the newest word its signature proves; a malformed, unsigned or
 * wrongly signed statement, or one from the future, is refused with a status message.
 */
export async function acceptFreshness(ctx: SiteContext, set: FreshnessSet, via: string): Promise<void> {
  const refuse = (text: string) => emit(ctx, { component: 'freshness', severity: 'error', code: 'freshness_refused', text });
  for (const c of set.certificates) {
    try {
      await trustOrigin(ctx, c);
    } catch (e) {
      await refuse(`a certificate sent down by ${via} with freshness statements was refused: ${(e as Error).message}`);
    }
  }
  const words = await stored(ctx);
  let changed = false;
  for (const s of set.statements) {
    let f: Freshness;
    try {
      f = verifyFreshness(s, ctx.trusted);
    } catch (e) {
      await refuse(`a freshness statement sent down by ${via} was refused: ${(e as Error).message}`);
      continue;
    }
    if (f.site === ctx.code) continue;
    if (Date.parse(f.at) > ctx.clock().getTime() + MAX_SKEW_MS) {
      await refuse(`site ${f.site}'s freshness statement sent down by ${via} is signed ${f.at}, in the future: refused`);
      continue;
    }
    const prev = words[f.site]?.freshness as Freshness | undefined;
    if (prev && prev.at >= f.at) continue;
    words[f.site] = s;
    changed = true;
  }
  if (changed) await ctx.store.setMeta(META_ABOVE, JSON.stringify(words));
}

/** Each stored word with its age and whether it is stale, in site order. */
async function aged(ctx: SiteContext): Promise<{ word: Freshness; ageSeconds: number; stale: boolean }[]> {
  const words = Object.values(await stored(ctx)).map((s) => s.freshness as Freshness);
  if (words.length === 0) return [];
  const { staleAfterSeconds } = (await snapshot(ctx)).settings;
  const now = ctx.clock().getTime();
  return words
    .map((word) => {
      const ageSeconds = Math.max(0, Math.floor((now - Date.parse(word.at)) / 1000));
      return { word, ageSeconds, stale: ageSeconds > staleAfterSeconds };
    })
    .sort((a, b) => (a.word.site < b.word.site ? -1 : 1));
}

/** How old this site's newest word from each site above is, and what it says this site lacks. */
export async function freshnessView(ctx: SiteContext): Promise<FreshnessView[]> {
  const words = await aged(ctx);
  if (words.length === 0) return [];
  const held = new Map((await ctx.store.listPackages()).map((p) => [p.id, p.latestVersion]));
  return words.map(({ word: f, ageSeconds, stale }) => {
    const behind = f.latest
      .filter(([id, v]) => (held.get(id) ?? v) < v)
      .map(([packageId, latest]) => ({ packageId, held: held.get(packageId) as number, latest }));
    return FreshnessView.parse({ site: f.site, signedAt: f.at, ageSeconds, stale, behind });
  });
}

/**
 * Says once, as a status message, when the word of a site above turns stale, and once when it is
 * fresh again. Runs on the report timer, whether or not the parent answers.
 */
export async function noteStaleness(ctx: SiteContext): Promise<void> {
  // On the report timer: ages only, without listing the packages held here.
  const views = (await aged(ctx)).map(({ word, ageSeconds, stale }) => ({ site: word.site, signedAt: word.at, ageSeconds, stale }));
  if (views.length === 0) return;
  const noted = new Set<string>(JSON.parse((await ctx.store.getMeta(META_STALE)) ?? '[]') as string[]);
  const parent = (await parentOf(ctx.store))?.code ?? '?';
  let changed = false;
  for (const v of views) {
    if (v.stale && !noted.has(v.site)) {
      noted.add(v.site);
      changed = true;
      await emit(ctx, {
        component: 'freshness',
        severity: 'warning',
        code: 'freshness_stale',
        text:
          `the newest signed word from site ${v.site} here is ${formatAge(v.ageSeconds)} old (signed ${v.signedAt}), ` +
          `past the ${formatAge((await snapshot(ctx)).settings.staleAfterSeconds)} this site allows: newer versions may be withheld on the way (through ${parent})`,
      });
    } else if (!v.stale && noted.has(v.site)) {
      noted.delete(v.site);
      changed = true;
      await emit(ctx, {
        component: 'freshness',
        severity: 'info',
        code: 'freshness_restored',
        text: `site ${v.site}'s signed word reaches this site again (signed ${v.signedAt})`,
      });
    }
  }
  if (changed) await ctx.store.setMeta(META_STALE, JSON.stringify([...noted]));
}
