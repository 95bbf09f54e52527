import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ApiClient } from '../api/client.js';
import { type AgentReport, type AgentUpgrade, type CheckinAnswer, clientCalls, type Offer } from '../api/clients.js';
import { trustFromCertificates } from '../content/certificate.js';
import type { Manifest } from '../content/manifest.js';
import { verifyPolicy } from '../content/policy.js';
import type { TrustedKey } from '../content/signing.js';
import {
  AGENT_FILE,
  AGENT_VERSION,
  exitSucceeded,
  REBOOT_EXIT_CODES,
  SLOW_LINK_BYTES_PER_SECOND,
  shouldRun,
  upgradeCommandVersion,
} from '../core/client.js';
import { CascadeError, fail } from '../core/errors.js';
import { pinForJoin } from '../lib/tls.js';
import { VERSION } from '../lib/version.js';
import { ChunkCache } from './cache.js';
import { type AdvertisementState, type AgentConfig, type AgentState, loadConfig, loadState, saveConfig, saveState } from './config.js';
import { assemble, Downloader } from './download.js';
import { collectInventory } from './inventory.js';
import { runProgram } from './run.js';
import { readVersions, versionDir, writeVersions } from './versions.js';

/**
 * The agent: checks in with its site (inventory and reports up, offers down), and acts on each
 * offer it may: verifies the advertisement and the manifest against the pinned central key,
 * downloads what its cache lacks from the DPs it may use, assembles the package in a staging
 * folder and runs the program there with a time limit. See docs/agent.md.
 */

export type Say = (line: string) => void;

/**
 * Which boot of the machine this is: Linux's boot_id, else the boot time to the minute.
 * CASCADE_BOOT_ID overrides it (containers that share the host's boot, tests).
 */
export function bootId(): string {
  if (process.env.CASCADE_BOOT_ID) return process.env.CASCADE_BOOT_ID;
  try {
    return fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return String(Math.round((Date.now() / 1000 - os.uptime()) / 60));
  }
}

/** Reports older than this many per advertisement are folded: only the newest state matters. */
const OUTBOX_MAX = 1000;
const PROGRESS_MS = 5000;

export interface EnrolOptions {
  dir: string;
  site: string;
  joinToken: string;
  link?: AgentConfig['link'];
  cacheBytes?: number;
  hostname?: string | null;
  addresses?: string[];
}

/** Enrols a new agent: one use of the join token; the credential it gets is its own from then on. */
export async function enrolAgent(o: EnrolOptions): Promise<AgentConfig> {
  fs.mkdirSync(o.dir, { recursive: true });
  if (fs.existsSync(path.join(o.dir, 'agent.json'))) throw fail('conflict', `${o.dir} already holds an enrolled agent; use another folder`);
  const m = /_([0-9a-f]{16})(?:\.tls-[0-9a-f]{64})?$/.exec(o.joinToken);
  if (!o.joinToken.startsWith('casj_agent_') || !m)
    throw fail('usage', 'that is not an agent join token (make one with "cascade agent join-token" on the site)');
  // A site serving HTTPS puts its certificate's pin in the token: nothing goes to another server.
  const sitePin = pinForJoin(o.site, o.joinToken, '--site');
  const partial = { hostname: o.hostname ?? null, addresses: o.addresses ?? [] };
  const inventory = await collectInventory(o.dir, partial, null);
  const site = new ApiClient(o.site, { who: `site ${o.site}`, pin: sitePin });
  const a = await site.call(clientCalls.enrol, { token: o.joinToken, inventory });
  // The join token carries the central key's fingerprint: the key the site hands over must match.
  if (a.central.keyId.split(':')[1] !== m[1])
    throw fail(
      'bad_signature',
      `the site handed over central key ${a.central.keyId}, which is not the key the join token names (…${m[1]}); enrolment stopped`,
    );
  const cfg: AgentConfig = {
    site: site.base,
    sitePin,
    client: a.client,
    credential: a.credential,
    central: a.central,
    link: o.link ?? 'auto',
    cacheBytes: o.cacheBytes ?? 2 * 2 ** 30,
    ...partial,
  };
  saveConfig(o.dir, cfg);
  const state = loadState(o.dir);
  state.inventorySent = JSON.stringify(inventory);
  saveState(o.dir, state);
  return cfg;
}

export class Agent {
  readonly cfg: AgentConfig;
  state: AgentState;
  private readonly site: ApiClient;
  readonly cache: ChunkCache;
  private readonly central: TrustedKey;
  /** Advertisements someone asked to install now (`cascade agent install`). */
  private readonly requested = new Set<string>();
  /** The site caps downloads: ask it for a slot first (from the last check-in). */
  private slotsRequired = false;
  /** A slot was refused this cycle: seconds until the site said to ask again. */
  private retryAfter: number | null = null;
  /** The client's maintenance windows from the last check-in; undefined: none. */
  private window: CheckinAnswer['window'];
  /** An upgraded agent is installed: this one stops, the launcher starts that one. */
  switchTo: string | null = null;

  constructor(
    readonly dir: string,
    private readonly say: Say = () => {},
  ) {
    this.cfg = loadConfig(dir);
    this.state = loadState(dir);
    this.site = new ApiClient(this.cfg.site, {
      token: this.cfg.credential,
      who: `site ${this.cfg.site}`,
      timeoutMs: 30_000,
      pin: this.cfg.sitePin,
    });
    this.cache = new ChunkCache(path.join(dir, 'cache'), this.cfg.cacheBytes);
    this.central = { keyId: this.cfg.central.keyId, publicKeyPem: this.cfg.central.publicKey, site: this.cfg.central.code };
  }

  private save(): void {
    saveState(this.dir, this.state);
  }

  request(adId: string): void {
    this.requested.add(adId.toUpperCase());
  }

  /** Install requests left as files by `cascade agent install` while this agent ran. */
  takeRequestFiles(): boolean {
    const dir = path.join(this.dir, 'requests');
    let names: string[] = [];
    try {
      names = fs.readdirSync(dir);
    } catch {
      return false;
    }
    for (const n of names) {
      this.request(n);
      fs.rmSync(path.join(dir, n), { force: true });
    }
    return names.length > 0;
  }

  private report(adId: string, a: AdvertisementState): void {
    if (a.state === 'available') return;
    const r: AgentReport = {
      advertisement: adId,
      packageId: a.packageId,
      version: a.version,
      state: a.state,
      bytesDone: a.bytesDone,
      bytesTotal: a.bytesTotal,
      exitCode: a.exitCode,
      output: a.output,
      detail: a.detail,
      at: a.at,
    };
    // Only the newest report of each advertisement needs to reach the site.
    this.state.outbox = [...this.state.outbox.filter((x) => x.advertisement !== adId), r].slice(-OUTBOX_MAX);
  }

  private setAd(
    adId: string,
    patch: Partial<AdvertisementState> & Pick<AdvertisementState, 'packageId' | 'version' | 'state'>,
  ): AdvertisementState {
    const held = this.state.advertisements[adId];
    const a: AdvertisementState = {
      bytesDone: 0,
      bytesTotal: 0,
      exitCode: null,
      output: null,
      detail: null,
      runs: held?.runs ?? {},
      ...patch,
      at: new Date().toISOString(),
    };
    this.state.advertisements[adId] = a;
    this.report(adId, a);
    this.save();
    return a;
  }

  /** One check-in: inventory if changed, every undelivered report; the answer's offers. */
  async checkin(): Promise<CheckinAnswer> {
    const inventory = await collectInventory(this.dir, this.cfg, this.state.linkSpeed);
    const inv = JSON.stringify(inventory);
    const reports = [...this.state.outbox];
    const problems = [...this.state.problems];
    const answer = await this.site.call(clientCalls.checkin, {
      inventory: inv === this.state.inventorySent ? null : inventory,
      reports,
      problems,
    });
    // Delivered: drop what was sent (newer reports made meanwhile stay).
    this.state.outbox = this.state.outbox.filter((r) => !reports.includes(r));
    this.state.problems = this.state.problems.filter((p) => !problems.includes(p));
    this.state.inventorySent = inv;
    this.state.lastCheckin = new Date().toISOString();
    this.state.nextCheckin = new Date(Date.now() + answer.nextCheckinSeconds * 1000).toISOString();
    this.save();
    return answer;
  }

  /**
   * A whole cycle: check in, act on every offer that is due (mandatory and not done, or asked
   * for), then check in again to deliver what happened. Returns seconds until the next one.
   */
  async cycle(signal?: AbortSignal): Promise<number> {
    this.takeRequestFiles();
    this.settleRestarts();
    let answer: CheckinAnswer;
    try {
      answer = await this.checkin();
      this.state.lastError = null;
    } catch (e) {
      this.state.lastError = (e as Error).message;
      this.save();
      if (e instanceof CascadeError && e.code === 'unauthorized') throw e;
      this.say(`check-in failed: ${(e as Error).message}; trying again later`);
      return 60;
    }
    let acted = this.settleUpgrade();
    const trusted = trustFromCertificates(this.central, answer.certificates);
    this.slotsRequired = answer.downloadSlots === true;
    this.window = answer.window;
    this.retryAfter = null;
    this.state.offers = [];
    // An agent upgrade goes first; while it runs, and for its grace period after, programs wait.
    const isUpgrade = (o: Offer) =>
      (o.advertisement.record as { body?: { agentUpgrade?: unknown } } | null)?.body?.agentUpgrade !== undefined;
    const offers = [...answer.offers.filter(isUpgrade), ...answer.offers.filter((o) => !isUpgrade(o))];
    for (const offer of offers) {
      if (signal?.aborted) break;
      const held = isUpgrade(offer) ? null : this.holdReason();
      if (held) {
        this.noteHeld(offer, held.text);
        this.retryAfter = held.after === null ? this.retryAfter : Math.min(this.retryAfter ?? held.after, held.after);
        continue;
      }
      acted = (await this.consider(offer, trusted, signal)) || acted;
    }
    this.save();
    for (const id of this.requested) {
      if (!answer.offers.some((o) => (o.advertisement.record as { id?: string }).id === id))
        this.say(`advertisement ${id} is not offered to this client now; "cascade why ${this.cfg.client} ${id}" at the site says why`);
    }
    // An install asked for that waits for a download slot stays asked for.
    for (const id of this.requested) if (this.state.advertisements[id]?.state !== 'waiting-slot') this.requested.delete(id);
    // Refused a download slot: back when the site said (it adds jitter), not sooner.
    const soonest = (n: number) => (this.retryAfter === null ? n : Math.min(n, this.retryAfter));
    if (acted || this.state.outbox.length > 0 || this.state.problems.length > 0) {
      try {
        const again = await this.checkin();
        return soonest(again.nextCheckinSeconds);
      } catch (e) {
        this.say(`could not deliver the reports: ${(e as Error).message}; they are kept for the next check-in`);
      }
    }
    return soonest(answer.nextCheckinSeconds);
  }

  /**
   * After a check-in: an agent being tried has now checked in, so it is confirmed (and the
   * upgrade reported); an agent that took over after a failed one reports the failure. True
   * when there is something to report.
   */
  settleUpgrade(): boolean {
    const v = readVersions(this.dir);
    let changed = false;
    const t = v.trying;
    if (t && t.version === VERSION) {
      const at = new Date();
      const graceUntil = new Date(at.getTime() + t.graceSeconds * 1000).toISOString();
      writeVersions(this.dir, {
        ...v,
        current: VERSION,
        previous: t.from,
        trying: null,
        upgraded: { ...t, at: at.toISOString(), graceUntil },
      });
      const held = this.state.advertisements[t.advertisement];
      this.setAd(t.advertisement, {
        packageId: t.packageId,
        version: t.packageVersion,
        state: 'succeeded',
        detail: `agent ${VERSION} runs (upgraded from ${t.from ?? 'the launcher'}); programs wait until ${graceUntil}`,
        runs: { ...(held?.runs ?? {}), [String(t.packageVersion)]: { result: 'succeeded', at: at.toISOString() } },
      });
      this.say(`agent ${VERSION} confirmed (was ${t.from ?? 'the launcher'}); programs wait for the grace period, until ${graceUntil}`);
      changed = true;
    }
    const r = readVersions(this.dir).rolledBack;
    if (r) {
      const held = this.state.advertisements[r.advertisement];
      this.setAd(r.advertisement, {
        packageId: r.packageId,
        version: r.packageVersion,
        state: 'failed',
        detail: `${r.reason}; rolled back to agent ${VERSION}`,
        runs: { ...(held?.runs ?? {}), [String(r.packageVersion)]: { result: 'failed', at: r.at } },
      });
      writeVersions(this.dir, { ...readVersions(this.dir), rolledBack: null });
      this.say(`agent ${r.version} failed to start (${r.reason}); rolled back to ${VERSION}, reported`);
      changed = true;
    }
    return changed;
  }

  /** Why programs may not start now: the agent is upgrading, or upgraded within the grace period. */
  holdReason(): { text: string; after: number | null } | null {
    if (this.switchTo) return { text: `held while the agent upgrades to ${this.switchTo}`, after: null };
    const u = readVersions(this.dir).upgraded;
    if (u && Date.parse(u.graceUntil) > Date.now())
      return {
        text: `held: the agent upgraded to ${u.version} at ${u.at}; programs (which could restart the machine) start after ${u.graceUntil}`,
        after: Math.max(1, Math.ceil((Date.parse(u.graceUntil) - Date.now()) / 1000)),
      };
    return null;
  }

  /** An offer held back (not acted on): shown in `agent status` with the reason. */
  private noteHeld(offer: Offer, text: string): void {
    const rec = offer.advertisement.record as {
      body?: { id?: string; packageId?: string; program?: string; mandatory?: string[] };
    } | null;
    const b = rec?.body;
    if (!b?.id || !b.packageId) return;
    this.say(`${b.id}: ${text}`);
    this.state.offers.push({
      advertisement: b.id,
      packageId: b.packageId,
      version: offer.version,
      program: b.program ?? '?',
      mandatory: b.mandatory ?? [],
      dps: offer.dps.map((d) => d.name),
      held: text,
    });
  }

  /** Programs that waited for a restart: installed once the machine has restarted since. */
  settleRestarts(): void {
    const now = bootId();
    for (const [id, a] of Object.entries(this.state.advertisements)) {
      if (a.state !== 'restart-pending' || a.bootId === now) continue;
      const { bootId: _b, ...rest } = a;
      this.state.advertisements[id] = rest;
      this.setAd(id, { ...rest, state: 'succeeded', detail: 'succeeded; the machine has restarted since the install' });
      this.say(`${id}: the machine restarted; ${a.packageId} version ${a.version} counts as installed`);
    }
  }

  /** Acts on one offer if it is due; true when it ran (or tried to). */
  private async consider(offer: Offer, trusted: TrustedKey[], signal?: AbortSignal): Promise<boolean> {
    // Known once the advertisement's signature checked out; a failure before that records nothing.
    let adId = '?';
    let packageId = '';
    try {
      const rec = verifyPolicy(offer.advertisement, trusted);
      if (rec.kind !== 'advertisement') throw fail('bad_signature', `the site offered a ${rec.kind} record as an advertisement`);
      const ad = rec.body;
      adId = ad.id;
      packageId = ad.packageId;
      this.state.offers.push({
        advertisement: ad.id,
        packageId: ad.packageId,
        version: offer.version,
        program: ad.program,
        mandatory: ad.mandatory,
        dps: offer.dps.map((d) => d.name),
      });
      // An upgrade to the agent that runs already: nothing to do (the site does not offer it so).
      if (ad.agentUpgrade?.version === VERSION) return false;
      const held = this.state.advertisements[ad.id];
      const last = held?.runs[String(offer.version)];
      const now = Date.now();
      const dueTimes = ad.mandatory.filter((t) => Date.parse(t) <= now);
      const asked = this.requested.has(ad.id);
      // Mandatory: due once a mandatory time has passed that no run of this version has followed.
      const unhonoured = dueTimes.some((t) => !last || Date.parse(last.at) < Date.parse(t));
      const due = asked || (unhonoured && shouldRun(ad.rerun, last?.result ?? null));
      if (!due) {
        // Offered, waiting for its mandatory time or for someone to install it.
        if (!held || (held.version !== offer.version && !last))
          this.state.advertisements[ad.id] = {
            runs: held?.runs ?? {},
            packageId: ad.packageId,
            version: offer.version,
            state: 'available',
            bytesDone: 0,
            bytesTotal: 0,
            exitCode: null,
            output: null,
            detail: null,
            at: new Date().toISOString(),
          };
        return false;
      }
      if (ad.slowLink === 'skip' && this.onSlowLink()) {
        this.setAd(ad.id, {
          packageId: ad.packageId,
          version: offer.version,
          state: 'deferred-slow-link',
          detail: `on a slow link (${this.linkText()}); the advertisement skips slow links, so it waits for a fast one`,
        });
        return true;
      }
      await this.install(ad, offer, trusted, !asked, signal);
      return true;
    } catch (e) {
      this.say(`advertisement ${adId}: ${(e as Error).message}`);
      if (adId !== '?') {
        this.setAd(adId, {
          packageId,
          version: offer.version,
          state: 'failed',
          detail: (e as Error).message.slice(0, 1000),
        });
      }
      return true;
    }
  }

  private onSlowLink(): boolean {
    if (this.cfg.link === 'slow') return true;
    if (this.cfg.link === 'fast') return false;
    return this.state.linkSpeed !== null && this.state.linkSpeed < SLOW_LINK_BYTES_PER_SECOND;
  }

  private linkText(): string {
    if (this.cfg.link === 'slow') return 'told so with --link slow';
    return `measured ${Math.round((this.state.linkSpeed ?? 0) / 1024)} KiB/s, under ${SLOW_LINK_BYTES_PER_SECOND / 1024} KiB/s`;
  }

  /**
   * Why a mandatory run may not start now: outside every maintenance window of the client, or
   * too close to the window's end for the program's time limit. Null: it may start.
   */
  private outsideWindow(maxRunSeconds: number): { detail: string; after: number | null } | null {
    const w = this.window;
    if (!w) return null;
    const now = Date.now();
    const secondsTo = (iso: string) => Math.max(1, Math.ceil((Date.parse(iso) - now) / 1000));
    if (!w.open)
      return {
        detail: `outside its maintenance window (${w.text})${w.opensAt ? `; the next opens at ${w.opensAt}` : ''}`,
        after: w.opensAt ? secondsTo(w.opensAt) : null,
      };
    if (w.closesAt && now + maxRunSeconds * 1000 > Date.parse(w.closesAt))
      return {
        detail: `its maintenance window (${w.text}) closes at ${w.closesAt}, before the program's time limit of ${maxRunSeconds} s would end; it waits for the next`,
        after: secondsTo(w.closesAt),
      };
    return null;
  }

  private async install(
    ad: {
      id: string;
      packageId: string;
      program: string;
      maxRunSeconds: number;
      slowLink: string;
      agentUpgrade?: AgentUpgrade | undefined;
    },
    offer: Offer,
    trusted: TrustedKey[],
    /** A mandatory run (not asked for with `agent install`): it starts only inside a maintenance window. */
    mandatoryRun: boolean,
    signal?: AbortSignal,
  ): Promise<void> {
    const version = offer.version;
    const dl = new Downloader(offer.dps, this.state.responseMs);
    if (this.slotsRequired) {
      const slot = await this.site.call(clientCalls.slot, { advertisement: ad.id, dps: dl.order });
      if (!slot.granted) {
        const after = slot.retryAfterSeconds ?? 60;
        this.retryAfter = Math.min(this.retryAfter ?? after, after);
        this.setAd(ad.id, {
          packageId: ad.packageId,
          version,
          state: 'waiting-slot',
          detail: `${slot.reason ?? 'no download slot free'}; asking again in ${after} s`,
        });
        this.say(`${ad.id}: waiting for a download slot: ${slot.reason}; asking again in ${after} s`);
        return;
      }
      if (slot.dp) dl.prefer(slot.dp);
      dl.rate = slot.rate;
    }
    let manifest: Manifest;
    try {
      manifest = await dl.manifest(ad.packageId, version, trusted);
    } finally {
      this.state.problems.push(...dl.problems.splice(0));
      for (const [dp, ms] of dl.responseMs) {
        const held = this.state.responseMs[dp];
        this.state.responseMs[dp] = held === undefined ? ms : held * 0.7 + ms * 0.3;
      }
    }
    const program = manifest.programs.find((p) => p.name === ad.program);
    if (!program)
      throw fail(
        'bad_request',
        `the signed manifest of ${ad.packageId} version ${version} has no program "${ad.program}"; nothing was run`,
      );
    this.say(`${ad.id}: downloading ${ad.packageId} version ${version} (${manifest.bytes} bytes) from ${dl.order.join(', ')}`);
    let a = this.setAd(ad.id, { packageId: ad.packageId, version, state: 'downloading', bytesTotal: manifest.bytes });
    let lastSent = Date.now();
    let progress: Awaited<ReturnType<Downloader['fill']>>;
    // The CPU the download takes, every thread of the agent (what a client pays besides the link).
    const cpu0 = process.cpuUsage();
    try {
      progress = await dl.fill(
        manifest,
        this.cache,
        (p) => {
          a.bytesDone = p.bytesDone;
          if (p.fetched >= 256 * 1024 && p.ms > 0) this.state.linkSpeed = (p.fetched / p.ms) * 1000;
          if (ad.slowLink === 'skip' && this.onSlowLink()) throw fail('unavailable', 'slow link');
          if (Date.now() - lastSent > PROGRESS_MS) {
            lastSent = Date.now();
            a = this.setAd(ad.id, { ...a, state: 'downloading' });
            void this.checkin().catch(() => {});
          }
        },
        signal,
      );
    } catch (e) {
      // What was verified stays (sealed); the download's own error is the one reported.
      await this.cache.seal().catch(() => {});
      this.state.problems.push(...dl.problems.splice(0));
      if ((e as Error).message === 'slow link') {
        this.setAd(ad.id, {
          ...a,
          state: 'deferred-slow-link',
          detail: `on a slow link (${this.linkText()}); the advertisement skips slow links`,
        });
        return;
      }
      throw e;
    }
    await this.cache.seal();
    const cpu = process.cpuUsage(cpu0);
    this.state.problems.push(...dl.problems.splice(0));
    if (progress.fetched >= 256 * 1024 && progress.ms > 0) this.state.linkSpeed = (progress.fetched / progress.ms) * 1000;
    this.say(
      `${ad.id}: fetched ${progress.fetched} bytes in ${Math.round(progress.ms)} ms` +
        `${progress.ms > 0 ? ` (${(((progress.fetched / progress.ms) * 1000) / 2 ** 20).toFixed(1)} MiB/s)` : ''}; ${manifest.bytes - progress.fetched} bytes were already in the cache or repeated; ` +
        `${((cpu.user + cpu.system) / 1e6).toFixed(2)} CPU-s`,
    );
    const shut = mandatoryRun ? this.outsideWindow(ad.maxRunSeconds) : null;
    if (shut) {
      this.setAd(ad.id, {
        packageId: ad.packageId,
        version,
        state: 'waiting-window',
        detail: shut.detail,
        bytesDone: manifest.bytes,
        bytesTotal: manifest.bytes,
      });
      if (shut.after !== null) this.retryAfter = Math.min(this.retryAfter ?? shut.after, shut.after);
      this.say(`${ad.id}: downloaded; ${shut.detail}`);
      return;
    }
    if (ad.agentUpgrade) return this.installAgent(ad.id, ad.packageId, version, ad.agentUpgrade, manifest, program.command);
    const staging = path.join(this.dir, 'staging', `${ad.id}-v${version}`);
    const assembling = performance.now();
    await assemble(manifest, this.cache, staging);
    this.say(
      `${ad.id}: assembled in ${Math.round(performance.now() - assembling)} ms; running "${program.command}" in ${staging} (limit ${ad.maxRunSeconds} s)`,
    );
    this.setAd(ad.id, { packageId: ad.packageId, version, state: 'running', bytesDone: manifest.bytes, bytesTotal: manifest.bytes });
    void this.checkin().catch(() => {});
    // Exit codes above 255 do not exist outside Windows: there a program asks for a restart by
    // creating this file (as Debian's packages create /var/run/reboot-required).
    const restartFlag = path.join(this.dir, 'staging', `${ad.id}-v${version}.restart-required`);
    fs.rmSync(restartFlag, { force: true });
    const r = await runProgram(program.command, staging, ad.maxRunSeconds, {
      CASCADE_ADVERTISEMENT: ad.id,
      CASCADE_PACKAGE: ad.packageId,
      CASCADE_VERSION: String(version),
      CASCADE_CLIENT: this.cfg.client,
      CASCADE_RESTART_FILE: restartFlag,
    });
    const ok = exitSucceeded(r.exitCode);
    const restart = ok && ((r.exitCode !== null && REBOOT_EXIT_CODES.includes(r.exitCode)) || fs.existsSync(restartFlag));
    fs.rmSync(restartFlag, { force: true });
    const held = this.state.advertisements[ad.id];
    const at = new Date().toISOString();
    this.setAd(ad.id, {
      packageId: ad.packageId,
      version,
      // Installed only once the machine restarted, when the program asked for it.
      state: ok ? (restart ? 'restart-pending' : 'succeeded') : 'failed',
      bytesDone: manifest.bytes,
      bytesTotal: manifest.bytes,
      exitCode: r.exitCode,
      output: r.output.slice(-4096),
      detail: r.error ?? (restart ? 'succeeded; counts as installed once the machine has restarted' : null),
      ...(restart ? { bootId: bootId() } : {}),
      runs: { ...(held?.runs ?? {}), [String(version)]: { result: ok ? 'succeeded' : 'failed', at } },
    });
    this.say(`${ad.id}: ${ok ? 'succeeded' : 'failed'} (exit code ${r.exitCode ?? 'none'}${r.error ? `, ${r.error}` : ''})`);
    const tail = r.output.trim().split('\n').slice(-3);
    if (tail[0]) for (const line of tail) this.say(`${ad.id} output: ${line}`);
    // Keep what this version needs; trim the rest down to the bound.
    await this.cache.trim(new Set(manifest.files.flatMap((f) => (f.type === 'file' ? f.chunks.map(([d]) => d) : []))));
  }

  /**
   * An agent upgrade, downloaded and verified like any package: the file must carry the version
   * the signed manifest names and answer `--version` with it; then it is installed beside the
   * others (`versions/V/`, whole or not at all) and named the version to try. This agent stops
   * after delivering its reports; the launcher starts the new one, and rolls it back if it does
   * not check in.
   */
  private async installAgent(
    adId: string,
    packageId: string,
    version: number,
    upgrade: AgentUpgrade,
    manifest: Manifest,
    command: string,
  ): Promise<void> {
    const target = upgrade.version;
    // It names a folder: only a version's characters (the record's schema says so; checked here too).
    if (!AGENT_VERSION.test(target)) throw fail('bad_request', `"${target.slice(0, 40)}" is not an agent version; nothing was installed`);
    const named = upgradeCommandVersion(command);
    if (named !== target)
      throw fail(
        'bad_request',
        `the signed manifest of ${packageId} version ${version} carries agent ${named ?? '(none)'}, not ${target} as the advertisement says; nothing was installed`,
      );
    const staging = path.join(this.dir, 'staging', `${adId}-v${version}`);
    await assemble(manifest, this.cache, staging);
    const file = path.join(staging, AGENT_FILE);
    if (!fs.existsSync(file)) throw fail('bad_request', `${packageId} version ${version} holds no ${AGENT_FILE}; nothing was installed`);
    const says = await new Promise<string>((resolve) => {
      const env = { ...process.env };
      delete env.CASCADE_AGENT_SUPERVISED;
      execFile(process.execPath, [file, '--version'], { timeout: 30_000, env }, (err, stdout, stderr) =>
        resolve(err ? `failed: ${(stderr || err.message).trim().split('\n').slice(-2).join(' | ')}` : stdout.trim()),
      );
    });
    if (says !== target)
      throw fail(
        'bad_request',
        `the new agent does not answer "--version" with ${target} (${says.slice(0, 300) || 'no output'}); not installed`,
      );
    const dest = versionDir(this.dir, target);
    const tmp = `${dest}.tmp`;
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.mkdirSync(tmp, { recursive: true });
    fs.copyFileSync(file, path.join(tmp, AGENT_FILE));
    const fd = fs.openSync(path.join(tmp, AGENT_FILE), 'r');
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.rmSync(dest, { recursive: true, force: true });
    fs.renameSync(tmp, dest);
    fs.rmSync(staging, { recursive: true, force: true });
    const v = readVersions(this.dir);
    writeVersions(this.dir, {
      ...v,
      trying: {
        version: target,
        from: v.current,
        advertisement: adId,
        packageId,
        packageVersion: version,
        graceSeconds: upgrade.graceSeconds,
        since: new Date().toISOString(),
      },
    });
    this.setAd(adId, {
      packageId,
      version,
      state: 'running',
      bytesDone: manifest.bytes,
      bytesTotal: manifest.bytes,
      detail: `agent ${target} installed; switching to it (it reports once it has checked in)`,
    });
    this.switchTo = target;
    this.say(`${adId}: agent ${target} installed in ${dest}; switching to it`);
  }
}
