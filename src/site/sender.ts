import { transferCalls } from '../api/transfers.js';
import { encodeRecordHeader, RECORD_DELTA, RECORD_WHOLE, storedRecordParts } from '../content/batch.js';
import { decodeChunk } from '../content/codec.js';
import { MAX_BASES, makeDelta, signature } from '../content/delta.js';
import { chunkIndex, type Manifest, verifyManifest } from '../content/manifest.js';
import { CascadeError, fail } from '../core/errors.js';
import { PRIORITY_ORDER } from '../core/package.js';
import { TokenBucket } from '../core/rate.js';
import { backoffSeconds } from '../core/retry.js';
import { isOpen, nextOpening, rateAt, type Schedule } from '../core/schedule.js';
import { sleep, throttle } from '../lib/throttle.js';
import { getTransfer, listTargets, listTransfers, type TransferRow, updateTarget, updateTransfer } from '../store/distribution.js';
import type { SiteRow } from '../store/store.js';
import type { SiteContext } from './context.js';
import { courierHold, isCourier, parcelArrivedAt } from './courier.js';
import { readIncoming, sendRemovals } from './distribution.js';
import { originCertificate } from './hierarchy.js';
import { emit } from './messages.js';
import { peerClient } from './peers.js';
import { DEFAULT_ROUTE_CONCURRENCY, DEFAULT_SITE_CONCURRENCY, routeSchedule } from './routes.js';

/**
 * The sender: at each site, one queue per route (child site), ordered by priority then age.
 * A transfer offers the signed manifest, learns which chunks the child lacks, sends those
 * (as deltas of the version the child holds where smaller) through the route's token
 * bucket, and commits. It honours the route's schedule: nothing starts while the cell
 * forbids the priority, and a window that closes mid-transfer pauses it between batches;
 * the next attempt asks again what is missing, so no verified chunk crosses twice.
 */

const BATCH_BYTES = 4 << 20;
/** A relay waits this long for the next chunk to arrive before it steps aside. */
const RELAY_IDLE_MS = 30_000;

/** Failed attempts after which a transfer stops retrying (CASCADE_MAX_RETRIES; default 200, some 16 hours at the 5-minute cap). */
const maxRetries = (): number => Math.max(1, Math.floor(Number(process.env.CASCADE_MAX_RETRIES) || 200));

/**
 * The rate a transfer moves at: bytes over the last few seconds, not since it began (the
 * socket's send buffers swallow the first few hundred KiB at once, which would read as a
 * burst far above a slow link's real rate).
 */
export class RateMeter {
  private readonly samples: { t: number; bytes: number }[] = [];
  constructor(
    private readonly windowMs = 5000,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Records the running total; returns bytes per second over the window (0 until 2 s of data:
   * the send buffers, TCP's and TLS's, keep filling during the first second or so).
   */
  add(total: number): number {
    const t = this.now();
    this.samples.push({ t, bytes: total });
    while (this.samples.length > 2 && t - (this.samples[1] as { t: number }).t >= this.windowMs) this.samples.shift();
    const first = this.samples[0] as { t: number; bytes: number };
    const span = (t - first.t) / 1000;
    return span >= 2 ? (total - first.bytes) / span : 0;
  }
}

export { backoffSeconds };

interface RouteState {
  bucket: TokenBucket;
  rate: number | null;
}

/** Why a transfer stopped here: another process holds its route now, and carries it on. */
class LeaseLost extends Error {}

/** The lease on a route's sending (./processes.ts): one process of the site sends on each route. */
export const routeLease = (child: string): string => `route:${child}`;

export class Sender {
  private readonly active = new Map<string, AbortController>();
  /** The route (child) of each transfer running here. */
  private readonly activeRoute = new Map<string, string>();
  private readonly routes = new Map<string, RouteState>();
  private timer: NodeJS.Timeout | undefined;
  private ticking = false;

  constructor(private readonly ctx: SiteContext) {
    ctx.leases?.onLost((name) => {
      for (const [id, child] of this.activeRoute)
        if (routeLease(child) === name) this.active.get(id)?.abort(new LeaseLost(`another process took over the route to ${child}`));
    });
  }

  /** Whether this process does a route's sending: it holds (or now takes) the route's lease. */
  private async mayUse(child: string): Promise<boolean> {
    return !this.ctx.leases || (await this.ctx.leases.claim(routeLease(child)));
  }

  start(intervalMs = 500): void {
    this.timer = setInterval(() => void this.tick(), intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    for (const a of this.active.values()) a.abort(new Error('site stopping'));
    for (let i = 0; i < 100 && this.active.size > 0; i++) await new Promise((r) => setTimeout(r, 20));
  }

  /** Stops one running transfer (cancelled: its state is already failed, so it is not queued again). */
  stop1(id: string): void {
    this.active.get(id)?.abort(new Error('cancelled'));
  }

  /** One pass: start whatever may start now. */
  async tick(): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    try {
      const now = this.ctx.clock();
      const total = Number((await this.ctx.store.getMeta('sender.concurrency')) ?? DEFAULT_SITE_CONCURRENCY);
      const all = await listTransfers(this.ctx.store, { states: ['queued', 'sending', 'retrying'] });
      // Only routes whose lease this process holds (or takes now: its holder stopped or died).
      const routes = new Set(all.map((t) => t.child));
      const mine = new Set<string>();
      for (const c of routes) if (await this.mayUse(c)) mine.add(c);
      // A route with nothing left to send: its lease goes back, for any process to take next time.
      for (const name of this.ctx.leases?.names() ?? [])
        if (name.startsWith('route:') && !routes.has(name.slice(6)) && ![...this.activeRoute.values()].some((c) => routeLease(c) === name))
          await this.ctx.leases?.release(name);
      const open = all.filter((t) => mine.has(t.child));
      // A transfer marked sending but not running here was cut off by a restart, or by the death
      // of the process that held its route: resume it (the child says what it still lacks).
      for (const t of open) if (t.state === 'sending' && !this.active.has(t.id)) t.state = 'queued';
      // Child sites and this site's own DPs: both are reached by the same transfer protocol.
      const children = new Map(
        [...(await this.ctx.store.listSites()), ...(await this.ctx.store.listDps())]
          .filter((s) => s.relation === 'child' || s.relation === 'dp')
          .map((s) => [s.code, s]),
      );
      const waiting = open
        .filter((t) => !this.active.has(t.id))
        .sort((a, b) => PRIORITY_ORDER[a.priority] - PRIORITY_ORDER[b.priority] || (a.createdAt < b.createdAt ? -1 : 1));
      for (const t of waiting) {
        if (this.active.size >= total) break;
        const child = children.get(t.child);
        if (!child) continue;
        const route = await this.routeOf(t.child);
        const perRoute = [...this.active.keys()].filter((id) => open.find((x) => x.id === id)?.child === t.child).length;
        if (perRoute >= route.concurrency) continue;
        if (t.nextAttemptAt && t.nextAttemptAt > now.toISOString()) continue;
        if (!isOpen(route.schedule, t.priority, now)) {
          const opens = nextOpening(route.schedule, t.priority, now);
          await this.markTargets(t, 'pending', {
            detail: `waiting for the route's schedule (opens ${opens ? opens.toISOString() : 'never'})`,
          });
          continue;
        }
        const ac = new AbortController();
        this.active.set(t.id, ac);
        this.activeRoute.set(t.id, t.child);
        void this.run(t, child, route, ac.signal).finally(() => {
          this.active.delete(t.id);
          this.activeRoute.delete(t.id);
        });
      }
      if (!this.ctx.leases || (await this.ctx.leases.claim('removals'))) await sendRemovals(this.ctx);
    } catch (err) {
      this.ctx.log.error({ err }, 'sender pass failed');
    } finally {
      this.ticking = false;
    }
  }

  private async routeOf(child: string): Promise<{ schedule: Schedule; concurrency: number; state: RouteState }> {
    const r = await this.ctx.store.getRoute(child);
    // The route's rate, capped by the rate of the schedule's current hour when it has one.
    const rate = rateAt(routeSchedule(r), r?.rate ?? null, this.ctx.clock());
    let st = this.routes.get(child);
    if (!st) {
      st = { bucket: new TokenBucket({ rate, now: () => Date.now() }), rate };
      this.routes.set(child, st);
    } else if (st.rate !== rate) {
      st.bucket.setRate(rate);
      st.rate = rate;
    }
    return {
      schedule: routeSchedule(r),
      concurrency: r?.concurrency ?? DEFAULT_ROUTE_CONCURRENCY,
      state: st,
    };
  }

  private async markTargets(
    t: TransferRow,
    state: 'pending' | 'sending' | 'retrying' | 'failed',
    p: {
      detail?: string | null;
      lastError?: string | null;
      nextRetryAt?: string | null;
      retries?: number;
      bytesDone?: number;
      rate?: number;
    } = {},
  ) {
    const targets = await listTargets(this.ctx.store, { packageId: t.packageId, version: t.version, sites: t.targets });
    for (const x of targets)
      if (x.state !== 'installed') await updateTarget(this.ctx.store, t.packageId, t.version, x.site, { state, ...p });
  }

  private async run(t: TransferRow, child: SiteRow, route: { schedule: Schedule; state: RouteState }, signal: AbortSignal): Promise<void> {
    const ctx = this.ctx;
    try {
      await updateTransfer(ctx.store, t.id, { state: 'sending', lastError: null });
      // By courier: the offer and commit go over the route, the chunks on media (./courier.ts).
      const courier = await isCourier(ctx, t);
      if (!courier) await this.markTargets(t, 'sending', { detail: `sending to ${t.child}`, lastError: null, nextRetryAt: null });
      // Relay: a version still arriving here is sent on as its chunks arrive and are verified.
      let here = Boolean(await ctx.store.getVersion(t.packageId, t.version));
      const bytes = here
        ? await ctx.library.readManifest(t.packageId, t.version)
        : await readIncoming(ctx, t.packageId, t.version).catch(async (e) => {
            // Installed in the meantime: the offer file made way for the library's copy.
            if (!(await ctx.store.getVersion(t.packageId, t.version))) throw e;
            here = true;
            return ctx.library.readManifest(t.packageId, t.version);
          });
      const { manifest, signature: sig } = verifyManifest(bytes, ctx.trusted);
      const certificate = await originCertificate(ctx, manifest.origin, sig.keyId);
      const peer = peerClient(child);
      // Chunk batches: no time-out (a throttled batch may take minutes; the signal stops it).
      const bulk = peerClient(child, { timeoutMs: 0 });
      // What the child lacks: asked first, and again while the transfer runs (below).
      const askMissing = () =>
        peer.call(transferCalls.offer, {
          packageId: t.packageId,
          version: t.version,
          priority: t.priority,
          manifest: bytes.toString('base64'),
          originCertificate: certificate,
          targets: t.targets,
        });
      const offer = await askMissing();
      if (child.reachable !== true) await ctx.store.setSiteContact(child.code, true);
      const sizes = new Map<string, number>();
      for (const e of manifest.files) if (e.type === 'file') for (const [d, n] of e.chunks) sizes.set(d, n);
      const missingBytes = offer.missing.reduce((n, d) => n + (sizes.get(d) ?? 0), 0);
      if (courier && (await courierHold(ctx, t, offer, missingBytes, manifest.bytes))) return;
      let done = manifest.bytes - missingBytes;
      let wire = 0;
      await updateTransfer(ctx.store, t.id, { bytesTotal: manifest.bytes, bytesDone: done });
      const bases = await this.baseIndex(manifest, offer.versions);
      let pending = offer.missing;
      let idle = Date.now();
      const meter = new RateMeter();
      // While it runs, the receiver may get chunks another way (a courier parcel imported
      // there): ask again what it lacks at once when it says a parcel arrived, and every so
      // often besides (less often for a large manifest, which each asking carries).
      const reaskMs = 5000 + (bytes.length / 65536) * 1000;
      let asked = Date.now();
      while (pending.length > 0) {
        if (Date.now() - asked > reaskMs || parcelArrivedAt(ctx, t.child, t.packageId, t.version) > asked) {
          asked = Date.now();
          const lacks = new Set((await askMissing()).missing);
          const brought = pending.filter((d) => !lacks.has(d));
          if (brought.length > 0) {
            pending = pending.filter((d) => lacks.has(d));
            done += brought.reduce((n, d) => n + (sizes.get(d) ?? 0), 0);
            await updateTransfer(ctx.store, t.id, { bytesDone: done });
            ctx.log.info({ transfer: t.id, chunks: brought.length }, `${t.child} got chunks another way meanwhile: not sent`);
          }
          if (pending.length === 0) break;
        }
        // The route may have been changed while this transfer runs: read it again each batch.
        const fresh = await this.routeOf(t.child);
        if (!isOpen(fresh.schedule, t.priority, ctx.clock())) {
          await updateTransfer(ctx.store, t.id, { state: 'queued' });
          await this.markTargets(t, 'pending', {
            detail: `paused: the route's schedule closed for ${t.priority} priority`,
            bytesDone: done,
          });
          await emit(ctx, {
            component: 'sender',
            severity: 'info',
            code: 'transfer_paused',
            text: `${t.packageId} to ${t.child} paused: schedule window closed`,
            packageId: t.packageId,
          });
          return;
        }
        // Only chunks this site holds (verified) can go; while relaying, wait for the rest.
        const ready = here ? pending : await this.held(pending);
        if (ready.length === 0) {
          here = Boolean(await ctx.store.getVersion(t.packageId, t.version));
          if (here) continue;
          if (Date.now() - idle > RELAY_IDLE_MS) {
            // Nothing new arrived for a while: step aside without counting a retry.
            const next = new Date(ctx.clock().getTime() + 5000).toISOString();
            await updateTransfer(ctx.store, t.id, { state: 'queued', nextAttemptAt: next });
            await this.markTargets(t, 'pending', { detail: `waiting for ${t.packageId} to arrive at ${ctx.code}`, bytesDone: done });
            return;
          }
          await sleep(100, signal);
          continue;
        }
        idle = Date.now();
        const batch: string[] = [];
        let size = 0;
        for (const d of ready) {
          if (size >= BATCH_BYTES) break;
          batch.push(d);
          size += sizes.get(d) ?? 0;
        }
        const taken = new Set(batch);
        pending = pending.filter((d) => !taken.has(d));
        const parts = await this.encode(batch, sizes, bases, offer.storedRecords === true);
        const batchWire = parts.reduce((n, p) => n + p.length, 0);
        // Progress while the batch is on the wire, at most twice a second: status shows the
        // real rate even when one batch takes minutes on a slow link.
        let onWire = 0;
        let reported = Date.now();
        const progress = (n: number) => {
          onWire += n;
          if (Date.now() - reported < 500) return;
          reported = Date.now();
          const w = wire + onWire;
          const d = done + Math.round((size * onWire) / batchWire);
          const rate = meter.add(w);
          void updateTransfer(ctx.store, t.id, { bytesDone: d, wireBytes: t.wireBytes + w })
            .then(() => this.markTargets(t, 'sending', { bytesDone: d, rate, detail: `sending to ${t.child}` }))
            .catch(() => {});
        };
        await bulk.uploadStream(transferCalls.chunks, throttle(each(parts), route.state.bucket, { signal }), batchWire, {
          onBytes: progress,
          signal,
        });
        wire += batchWire;
        done += size;
        const rate = meter.add(wire);
        await updateTransfer(ctx.store, t.id, { bytesDone: done, wireBytes: t.wireBytes + wire });
        await this.markTargets(t, 'sending', { bytesDone: done, rate, detail: `sending to ${t.child}` });
      }
      const commit = await peer.call(transferCalls.commit, { packageId: t.packageId, version: t.version });
      if (!commit.installed) throw fail('unavailable', `${t.child} still lacks ${commit.missing} chunk(s) after the transfer`);
      // The child answered for itself: its own target is installed (sites below report later).
      if (t.targets.includes(t.child)) {
        await updateTarget(ctx.store, t.packageId, t.version, t.child, {
          state: 'installed',
          bytesDone: manifest.bytes,
          detail: null,
          lastError: null,
        });
      }
      // A done transfer keeps how many retries it took (its messages told each one); reopening resets it.
      await updateTransfer(ctx.store, t.id, { state: 'done', bytesDone: manifest.bytes, nextAttemptAt: null });
      await emit(ctx, {
        component: 'sender',
        severity: 'info',
        code: 'transfer_done',
        text: `${t.packageId} version ${t.version} sent to ${t.child}: ${wire} bytes on the wire for ${missingBytes} bytes it lacked`,
        packageId: t.packageId,
      });
    } catch (e) {
      // Another process holds the route now and runs this transfer: nothing more is written here.
      if (signal.aborted && signal.reason instanceof LeaseLost) return;
      if (signal.aborted) {
        // Paused (the schedule closed, the site stops): queued again; cancelled: it stays failed.
        if ((await getTransfer(ctx.store, t.id))?.state !== 'failed')
          await updateTransfer(ctx.store, t.id, { state: 'queued' }).catch(() => {});
        return;
      }
      const message = e instanceof Error ? e.message : String(e);
      // A neighbour that cannot be reached shows as such at once, not at the next health check.
      if (e instanceof CascadeError && e.code === 'unavailable' && message.startsWith('cannot reach'))
        await ctx.store.setSiteContact(t.child, false).catch(() => {});
      const retries = t.retries + 1;
      // Retrying cannot help these: the content or the request itself is wrong.
      const wrong = e instanceof CascadeError && ['bad_signature', 'invalid_manifest', 'too_large', 'bad_request'].includes(e.code);
      // The others are retried, a bounded number of times: then the transfer fails, saying so.
      const limit = maxRetries();
      const givenUp = !wrong && retries >= limit;
      const fatal = wrong || givenUp;
      const lastError = givenUp
        ? `${message}; gave up after ${retries} failed attempts (CASCADE_MAX_RETRIES=${limit}): distribute again to resume`
        : message;
      const next = new Date(ctx.clock().getTime() + backoffSeconds(retries) * 1000).toISOString();
      await updateTransfer(ctx.store, t.id, {
        state: fatal ? 'failed' : 'retrying',
        retries,
        nextAttemptAt: fatal ? null : next,
        lastError,
      });
      await this.markTargets(t, fatal ? 'failed' : 'retrying', {
        lastError,
        retries,
        nextRetryAt: fatal ? null : next,
        detail: null,
      });
      await emit(ctx, {
        component: 'sender',
        severity: fatal ? 'error' : 'warning',
        code: fatal ? 'transfer_failed' : 'transfer_retrying',
        text: `${t.packageId} version ${t.version} to ${t.child}: ${lastError}${fatal ? '' : `; retry ${retries} at ${next}`}`,
        packageId: t.packageId,
      });
    }
  }

  /** Which of these chunks the library holds now, in the given order. */
  private async held(digests: string[]): Promise<string[]> {
    const have = await this.ctx.store.haveChunks(digests);
    return digests.filter((d) => have.has(d));
  }

  /** Chunks of the newest version the child holds, by path and offset: delta bases. */
  private async baseIndex(
    m: Manifest,
    childVersions: number[],
  ): Promise<Map<string, { digest: string; offset: number; size: number }[]> | undefined> {
    const base = childVersions.filter((v) => v < m.version).sort((a, b) => b - a)[0];
    if (base === undefined || !(await this.ctx.store.getVersion(m.id, base))) return undefined;
    const old = verifyManifest(await this.ctx.library.readManifest(m.id, base), this.ctx.trusted).manifest;
    const idx = chunkIndex(old);
    // Where each new chunk sits, to find its base chunks.
    const at = new Map<string, { path: string; offset: number }>();
    for (const e of m.files) {
      if (e.type !== 'file') continue;
      let offset = 0;
      for (const [d, n] of e.chunks) {
        if (!at.has(d)) at.set(d, { path: e.path, offset });
        offset += n;
      }
    }
    const out = new Map<string, { digest: string; offset: number; size: number }[]>();
    for (const [d, where] of at) {
      const olds = idx.get(where.path);
      if (!olds) continue;
      out.set(d, olds.filter((o) => o.offset < where.offset + 262144 && o.offset + o.size > where.offset).slice(0, MAX_BASES));
    }
    return out;
  }

  /**
   * Batch records for these chunks: a delta against the child's version where it saves; else
   * the chunk as stored here (compressed where that helped) when the child reads stored
   * records, or raw.
   */
  private async encode(
    batch: string[],
    sizes: Map<string, number>,
    bases: Map<string, { digest: string; offset: number; size: number }[]> | undefined,
    storedRecords: boolean,
  ): Promise<Uint8Array[]> {
    const parts: Uint8Array[] = [];
    for (const d of batch) {
      const stored = await this.ctx.library.readStored(d);
      const size = sizes.get(d) ?? 0;
      const cands = bases?.get(d);
      let raw: Buffer | null = null;
      let delta: Buffer | null = null;
      if (cands && cands.length > 0) {
        raw = decodeChunk(stored, size);
        const withSigs = [];
        for (const c of cands)
          withSigs.push({ digest: c.digest, sig: signature(decodeChunk(await this.ctx.library.readStored(c.digest), c.size)) });
        delta = makeDelta(raw, withSigs);
      }
      if (delta && (!storedRecords || delta.length < stored.length + 4))
        parts.push(encodeRecordHeader(RECORD_DELTA, d, delta.length), delta);
      else if (storedRecords) parts.push(...storedRecordParts(d, size, stored));
      else {
        raw ??= decodeChunk(stored, size);
        parts.push(encodeRecordHeader(RECORD_WHOLE, d, raw.length), raw);
      }
    }
    return parts;
  }
}

/** The parts of a batch, one after another, for the route's token bucket. */
async function* each(parts: readonly Uint8Array[]): AsyncGenerator<Uint8Array> {
  for (const p of parts) yield p;
}
