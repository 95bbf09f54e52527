import { monitorEventLoopDelay } from 'node:perf_hooks';
import { ApiClient } from '../api/client.js';
import { type AgentReport, clientCalls, type Inventory } from '../api/clients.js';
import { trustFromCertificates } from '../content/certificate.js';
import type { Manifest } from '../content/manifest.js';
import { verifyPolicy } from '../content/policy.js';
import type { TrustedKey } from '../content/signing.js';
import { fail } from '../core/errors.js';
import { percentile } from '../lib/metrics.js';
import { prng } from '../lib/prng.js';
import { pinForJoin } from '../lib/tls.js';
import { VERSION } from '../lib/version.js';
import { Downloader, VerifiedChunks } from './download.js';

/**
 * `cascade agent simulate`: many lightweight clients in one process against real sites and
 * real DPs, for tests and benchmarks. Each enrols with its own credential and inventory, checks
 * in on its site's cycle (with jitter, and when told to come back), asks for a download slot
 * when its site caps downloads, downloads every chunk of what is due over HTTP and checks each
 * against its digest — without storing it; a chunk byte for byte the same as one that already
 * checked out is compared instead — and reports the result (no program runs; a share
 * of the clients can be told to fail). It measures what it saw: check-in latency and, per site,
 * how many clients were downloading at once.
 */

export interface SimulateOptions {
  sites: { url: string; joinToken: string }[];
  clients: number;
  seed: number;
  /** Stop after this long (ms). */
  durationMs: number;
  /** First check-ins spread at random over this long (ms). */
  spreadMs: number;
  /** Stop as soon as every client has run what was due once. */
  untilDone: boolean;
  /** Share of the clients (0..1) whose runs fail (exit code 1). */
  failShare: number;
  /** Each client's own link, bytes per second (its downloads keep to it); null: loopback speed. */
  linkRate?: number | null;
  /** Clients acting (checking in, downloading) at once at most. */
  concurrency: number;
  say?: (line: string) => void;
  /** Stops the run early (SIGINT, SIGTERM): the figures so far are still answered. */
  signal?: AbortSignal;
}

interface SimClient {
  n: number;
  id: string;
  site: string;
  api: ApiClient;
  trust: TrustedKey;
  nextAt: number;
  outbox: AgentReport[];
  /** advertisement → version run */
  done: Map<string, number>;
  busy: boolean;
  fails: boolean;
  inventorySent: boolean;
  inventory: Inventory;
}

export interface SiteFigures {
  clients: number;
  downloads: number;
  bytes: number;
  peakDownloads: number;
  slotRefusals: number;
  firstDownloadAt: string | null;
  lastDownloadAt: string | null;
  /** Bytes received from each DP, as stored (compressed where it helped). */
  dps: Record<string, number>;
  checkinP50Ms: number;
  checkinP99Ms: number;
}

export interface SimulateResult {
  clients: number;
  seconds: number;
  checkins: number;
  checkinErrors: number;
  checkinP50Ms: number;
  checkinP99Ms: number;
  /**
   * How long after it fell due a client's cycle started (p50, p99): a client waits here, not in
   * a check-in's latency, while --concurrency cycles are already under way.
   */
  startLagP50Ms: number;
  startLagP99Ms: number;
  downloads: number;
  failedDownloads: number;
  bytes: number;
  done: number;
  /** Clients that upgraded the agent (and report the new version from then on). */
  upgrades: number;
  /** This process's own event-loop delay (p99, longest): what its latencies include of its own. */
  eventLoopP99Ms: number;
  eventLoopMaxMs: number;
  sites: Record<string, SiteFigures>;
}

export async function simulate(o: SimulateOptions): Promise<SimulateResult> {
  if (o.sites.length === 0) throw fail('usage', 'give at least one --site URL with its --join-token');
  const say = o.say ?? (() => {});
  const random = prng(o.seed);
  const started = Date.now();
  const fleet: SimClient[] = [];
  const figures: Record<string, SiteFigures> = {};
  const active = new Map<string, number>();
  const latencies: number[] = [];
  const siteLatencies = new Map<string, number[]>();
  let checkins = 0;
  let checkinErrors = 0;
  let downloads = 0;
  let failedDownloads = 0;
  let bytes = 0;
  let upgrades = 0;

  // --- enrolment, a few at a time -------------------------------------------------------------
  let next = 0;
  const enrolOne = async () => {
    while (next < o.clients) {
      const n = next++;
      const s = o.sites[n % o.sites.length] as { url: string; joinToken: string };
      const inventory: Inventory = {
        hostname: `sim-${o.seed}-${n}`,
        os: 'linux',
        arch: 'x64',
        version: VERSION,
        addresses: [`10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`],
        freeDisk: 64 * 2 ** 30,
        linkSpeed: null,
      };
      const pin = pinForJoin(s.url, s.joinToken, 'the site URL');
      const a = await new ApiClient(s.url, { who: `site ${s.url}`, pin }).call(clientCalls.enrol, { token: s.joinToken, inventory });
      const trust = { keyId: a.central.keyId, publicKeyPem: a.central.publicKey, site: a.central.code };
      fleet.push({
        n,
        id: a.client,
        site: a.site,
        api: new ApiClient(s.url, { token: a.credential, who: `site ${a.site}`, timeoutMs: 60_000, pin }),
        trust,
        // Set once every client is enrolled (below).
        nextAt: 0,
        outbox: [],
        done: new Map(),
        busy: false,
        fails: random() < o.failShare,
        inventorySent: true,
        inventory,
      });
      figures[a.site] ??= {
        clients: 0,
        downloads: 0,
        bytes: 0,
        peakDownloads: 0,
        slotRefusals: 0,
        firstDownloadAt: null,
        lastDownloadAt: null,
        dps: {},
        checkinP50Ms: 0,
        checkinP99Ms: 0,
      };
      (figures[a.site] as SiteFigures).clients++;
    }
  };
  await Promise.all(Array.from({ length: Math.min(8, o.clients) }, enrolOne));
  say(`${fleet.length} clients enrolled in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const t0 = Date.now();
  // The first check-ins spread over --spread from now, as machines starting up: drawn from the
  // end of enrolment, not from each client's own, or every client enrolled longer ago than the
  // spread would check in at once.
  for (const c of fleet) c.nextAt = t0 + random() * Math.min(o.spreadMs, o.durationMs / 4);
  // Every client fetches and checks the same chunks: bytes that already checked out are compared, not decoded and hashed again.
  const verified = new VerifiedChunks(64 * 2 ** 20);
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();

  const checkin = async (c: SimClient) => {
    const reports = c.outbox;
    c.outbox = [];
    const t = performance.now();
    try {
      const inventory = c.inventorySent ? null : c.inventory;
      const a = await c.api.call(clientCalls.checkin, { inventory, reports, problems: [] });
      if (inventory) c.inventorySent = true;
      const ms = performance.now() - t;
      latencies.push(ms);
      const own = siteLatencies.get(c.site) ?? [];
      own.push(ms);
      siteLatencies.set(c.site, own);
      checkins++;
      return a;
    } catch (e) {
      checkinErrors++;
      c.outbox = [...reports, ...c.outbox];
      throw e;
    }
  };

  const download = async (
    c: SimClient,
    adId: string,
    packageId: string,
    version: number,
    offerDps: ConstructorParameters<typeof Downloader>[0],
    trusted: TrustedKey[],
    slots: boolean,
    /** An agent upgrade: the version the client runs once it succeeded. */
    upgradeTo: string | null,
  ): Promise<number | null> => {
    const dl = new Downloader(offerDps, {}, verified);
    if (slots) {
      const slot = await c.api.call(clientCalls.slot, { advertisement: adId, dps: dl.order });
      if (!slot.granted) {
        (figures[c.site] as SiteFigures).slotRefusals++;
        return slot.retryAfterSeconds ?? 60;
      }
      if (slot.dp) dl.prefer(slot.dp);
      dl.rate = slot.rate;
    }
    if (o.linkRate) dl.rate = Math.min(dl.rate ?? o.linkRate, o.linkRate);
    const f = figures[c.site] as SiteFigures;
    const now = active.get(c.site) ?? 0;
    active.set(c.site, now + 1);
    f.peakDownloads = Math.max(f.peakDownloads, now + 1);
    f.firstDownloadAt ??= new Date().toISOString();
    const at = () => new Date().toISOString();
    let lastReport = Date.now();
    try {
      const m: Manifest = await dl.manifest(packageId, version, trusted);
      const total = m.bytes;
      // Counted, checked, not kept.
      const sink = { has: async () => false, put: async () => {} };
      const p = await dl.fill(m, sink, (pr) => {
        if (Date.now() - lastReport > 5000) {
          lastReport = Date.now();
          c.outbox.push(report(adId, packageId, version, 'downloading', pr.bytesDone, total, null, at()));
          void checkin(c).catch(() => {});
        }
      });
      bytes += p.fetched;
      f.bytes += p.fetched;
      for (const [dp, n] of dl.bytesFrom) f.dps[dp] = (f.dps[dp] ?? 0) + n;
      downloads++;
      f.downloads++;
      c.done.set(adId, version);
      if (upgradeTo && !c.fails) {
        // An agent upgrade: the client runs the new version from now on, and says so.
        c.inventory = { ...c.inventory, version: upgradeTo };
        c.inventorySent = false;
        upgrades++;
      }
      c.outbox.push(report(adId, packageId, version, c.fails ? 'failed' : 'succeeded', total, total, c.fails ? 1 : 0, at()));
    } catch (e) {
      failedDownloads++;
      c.outbox.push(report(adId, packageId, version, 'failed', 0, 0, null, at(), (e as Error).message.slice(0, 1000)));
      c.done.set(adId, version);
    } finally {
      active.set(c.site, (active.get(c.site) ?? 1) - 1);
      f.lastDownloadAt = at();
    }
    return null;
  };

  const cycle = async (c: SimClient) => {
    let answer: Awaited<ReturnType<typeof checkin>>;
    try {
      answer = await checkin(c);
    } catch {
      c.nextAt = Date.now() + 30_000 * (0.5 + random());
      return;
    }
    const trusted = trustFromCertificates(c.trust, answer.certificates);
    let wait = answer.nextCheckinSeconds;
    let acted = false;
    for (const offer of answer.offers) {
      const rec = verifyPolicy(offer.advertisement, trusted);
      if (rec.kind !== 'advertisement') continue;
      const ad = rec.body;
      const due = ad.mandatory.some((t) => Date.parse(t) <= Date.now());
      if (!due || c.done.get(ad.id) === offer.version) continue;
      const retry = await download(
        c,
        ad.id,
        ad.packageId,
        offer.version,
        offer.dps,
        trusted,
        answer.downloadSlots === true,
        ad.agentUpgrade?.version ?? null,
      ).catch(() => 30);
      if (retry !== null) wait = Math.min(wait, retry);
      else acted = true;
    }
    if (acted) await checkin(c).catch(() => {});
    // Jitter on long waits, as the agent does.
    c.nextAt = Date.now() + (wait >= 60 ? wait * (0.9 + random() * 0.2) : wait) * 1000;
  };

  const allDone = () => fleet.every((c) => c.done.size > 0 && c.outbox.length === 0);
  let inFlight = 0;
  const lags: number[] = [];
  while (Date.now() - t0 < o.durationMs && !o.signal?.aborted) {
    if (o.untilDone && allDone()) break;
    const now = Date.now();
    for (const c of fleet) {
      if (inFlight >= o.concurrency) break;
      if (c.busy || c.nextAt > now) continue;
      c.busy = true;
      inFlight++;
      lags.push(now - c.nextAt);
      void cycle(c).finally(() => {
        c.busy = false;
        inFlight--;
      });
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  while (inFlight > 0) await new Promise((r) => setTimeout(r, 20));
  for (const [site, f] of Object.entries(figures)) {
    f.checkinP50Ms = Math.round(percentile(siteLatencies.get(site) ?? [], 50) * 10) / 10;
    f.checkinP99Ms = Math.round(percentile(siteLatencies.get(site) ?? [], 99) * 10) / 10;
  }
  return {
    clients: fleet.length,
    seconds: Math.round((Date.now() - t0) / 100) / 10,
    checkins,
    checkinErrors,
    checkinP50Ms: Math.round(percentile(latencies, 50) * 10) / 10,
    checkinP99Ms: Math.round(percentile(latencies, 99) * 10) / 10,
    startLagP50Ms: Math.round(percentile(lags, 50)),
    startLagP99Ms: Math.round(percentile(lags, 99)),
    downloads,
    failedDownloads,
    bytes,
    done: fleet.filter((c) => c.done.size > 0).length,
    upgrades,
    eventLoopP99Ms: Math.round(loop.percentile(99) / 1e6),
    eventLoopMaxMs: Math.round(loop.max / 1e6),
    sites: figures,
  };
}

function report(
  advertisement: string,
  packageId: string,
  version: number,
  state: AgentReport['state'],
  bytesDone: number,
  bytesTotal: number,
  exitCode: number | null,
  at: string,
  detail: string | null = null,
): AgentReport {
  return { advertisement, packageId, version, state, bytesDone, bytesTotal, exitCode, output: null, detail, at };
}
