import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { ApiClient, type ContentConnection } from '../api/client.js';
import type { AllowedDp, ContentProblem } from '../api/clients.js';
import { decodeChunk } from '../content/codec.js';
import { type Manifest, verifyManifest } from '../content/manifest.js';
import type { TrustedKey } from '../content/signing.js';
import { CHUNK_SIZES } from '../core/chunk.js';
import { type CascadeError, fail } from '../core/errors.js';
import { sleep } from '../lib/throttle.js';
import type { ChunkCache } from './cache.js';

/**
 * Downloads a package version for the agent from the DPs it may use, in order: the signed
 * manifest first (checked against the keys the agent trusts, through the one verifyManifest),
 * then every chunk the cache lacks, each checked against its digest before it is kept. A DP
 * that does not answer within seconds, or answers wrongly, is skipped for the next; one that
 * serves a chunk that does not match is reported by name. Works against any DP, or nginx, in
 * the static layout (`content/manifests/ID/N.json`, `content/chunks/ab/DIGEST`).
 */

/**
 * Chunks fetched at once, each lane on a connection of its own to each DP; a small download
 * uses fewer lanes (one per LANE_CHUNKS chunks it needs), so an agent fetching a few chunks
 * does not open eight connections (and, over HTTPS, eight handshakes) for them.
 */
const WINDOW = 8;
const LANE_CHUNKS = 4;
const TIMEOUT_MS = Number(process.env.CASCADE_AGENT_TIMEOUT_MS) || 5000;

export interface DownloadProgress {
  bytesDone: number;
  bytesTotal: number;
  /** Bytes fetched over the network this time, and how long that took. */
  fetched: number;
  ms: number;
}

interface Source {
  dp: AllowedDp;
  client: ApiClient;
  /** Failed to answer this time: tried last. */
  down: boolean;
  /** Answers without Content-Length (a proxy streaming them): fetched through node:http instead. */
  plain: boolean;
}

/**
 * One of the downloads in flight: a buffer each chunk is read into (reused), and a connection
 * of its own to each DP it fetched from.
 */
interface Lane {
  into: Buffer;
  conns: Map<Source, ContentConnection>;
  /** Bytes this lane has received as the DPs stored them: what crossed the link. */
  wire: number;
}

/**
 * Chunks that checked out, by digest, as a DP stored them and decoded: an answer byte for byte
 * the same as one already verified is that chunk, so it is compared (memcmp) instead of decoded
 * and hashed again. For `agent simulate`, whose thousands of clients fetch the same few chunks;
 * an agent fetches each chunk once and has no use for it. Bounded in bytes; past the bound,
 * chunks are verified as usual.
 */
export class VerifiedChunks {
  private readonly known = new Map<string, { stored: Buffer; raw: Buffer }>();
  private bytes = 0;
  constructor(private readonly limit: number) {}

  /** The decoded chunk when `stored` is exactly what verified before; null otherwise. */
  match(digest: string, stored: Buffer): Buffer | null {
    const k = this.known.get(digest);
    return k?.stored.equals(stored) ? k.raw : null;
  }

  remember(digest: string, stored: Buffer, raw: Buffer): void {
    const n = stored.length + raw.length;
    if (this.known.has(digest) || this.bytes + n > this.limit) return;
    // Copies: both may be views of a lane's reused buffer.
    this.known.set(digest, { stored: Buffer.from(stored), raw: Buffer.from(raw) });
    this.bytes += n;
  }
}

export class Downloader {
  private readonly sources: Source[];
  readonly problems: ContentProblem[] = [];
  /** How long each DP took to answer the manifest request, this time (ms). */
  readonly responseMs = new Map<string, number>();
  /** Bytes received from each DP this time, as stored (compressed where it helped). */
  readonly bytesFrom = new Map<string, number>();

  /** `dps` in the site's order; within one rank, the fastest by `measured` response first. */
  constructor(
    dps: readonly AllowedDp[],
    measured: Record<string, number> = {},
    private readonly verified: VerifiedChunks | null = null,
  ) {
    if (dps.length === 0) throw fail('unavailable', 'no DP to download from');
    const ordered = dps
      .map((dp, i) => ({ dp, i }))
      .sort((a, b) => a.dp.rank - b.dp.rank || (measured[a.dp.name] ?? Infinity) - (measured[b.dp.name] ?? Infinity) || a.i - b.i)
      .map((x) => x.dp);
    this.sources = ordered.map((dp) => ({
      dp,
      client: new ApiClient(dp.url, { who: `DP ${dp.name}`, timeoutMs: TIMEOUT_MS, pin: dp.tlsPin }),
      down: false,
      plain: false,
    }));
  }

  /** Bytes per second to keep to (the site's share for this download); null: as fast as it goes. */
  rate: number | null = null;
  private nextFree = 0;

  /** Tries this DP first (the one whose download slot the site granted). */
  prefer(name: string): void {
    const i = this.sources.findIndex((s) => s.dp.name === name);
    if (i > 0) this.sources.unshift(...this.sources.splice(i, 1));
  }

  /**
   * Waits until the rate lets the next chunk start, and answers when that is. Chunk starts are
   * spaced by what each one cost on the link (`charge`): compressed chunks cost what was
   * received, not their decoded size.
   */
  private async turn(signal?: AbortSignal): Promise<number> {
    const now = performance.now();
    if (!this.rate || this.nextFree <= now) return now;
    await sleep(this.nextFree - now, signal);
    return performance.now();
  }

  /** Pays for `bytes` received for a chunk that started at `at`: the next start waits until they fit the rate. */
  private charge(at: number, bytes: number): void {
    if (this.rate) this.nextFree = Math.max(this.nextFree, at) + (bytes / this.rate) * 1000;
  }

  /** The DPs in the order they are tried. */
  get order(): string[] {
    return this.sources.map((s) => s.dp.name);
  }

  private tryOrder(): Source[] {
    return [...this.sources.filter((s) => !s.down), ...this.sources.filter((s) => s.down)];
  }

  /** The signed manifest, verified: from the first DP that serves one that checks out. */
  async manifest(id: string, version: number, trusted: readonly TrustedKey[]): Promise<Manifest> {
    const errors: string[] = [];
    for (const s of this.tryOrder()) {
      try {
        const t0 = performance.now();
        const bytes = await s.client.bytes(`/content/manifests/${id}/${version}.json`);
        this.responseMs.set(s.dp.name, performance.now() - t0);
        const { manifest } = verifyManifest(bytes, trusted);
        if (manifest.id !== id || manifest.version !== version)
          throw fail('bad_signature', `served the manifest of ${manifest.id} version ${manifest.version} instead`);
        return manifest;
      } catch (e) {
        s.down = true;
        errors.push(`${s.dp.name}: ${(e as Error).message}`);
      }
    }
    throw fail('unavailable', `no DP served a valid manifest of ${id} version ${version} (${errors.join('; ')})`);
  }

  /** The chunk as stored, from this DP: through the lane's connection, or node:http when the DP needs it. */
  private async fetchStored(s: Source, lane: Lane, digest: string, signal?: AbortSignal): Promise<Buffer> {
    const path = `/content/chunks/${digest.slice(0, 2)}/${digest}`;
    if (s.plain) return s.client.bytes(path, { signal });
    let c = lane.conns.get(s);
    if (!c) {
      c = s.client.connection();
      lane.conns.set(s, c);
    }
    try {
      return await c.get(path, lane.into, signal);
    } catch (e) {
      if (!c.lengthless) throw e;
      s.plain = true;
      return s.client.bytes(path, { signal });
    }
  }

  /**
   * One chunk, verified: tries each DP in turn; a mismatch is recorded as a problem naming the
   * DP. The answer may be a view of `lane.into`, valid until the lane fetches again.
   */
  private async chunk(m: Manifest, file: string, digest: string, size: number, lane: Lane, signal?: AbortSignal): Promise<Buffer> {
    const errors: string[] = [];
    for (const s of this.tryOrder()) {
      if (signal?.aborted) throw fail('unavailable', 'stopped');
      let stored: Buffer | undefined;
      try {
        stored = await this.fetchStored(s, lane, digest, signal);
        lane.wire += stored.length;
      } catch (e) {
        // Longer than the chunk can be stored: served wrong, like a chunk that does not match.
        if ((e as CascadeError).code !== 'too_large') {
          s.down = true;
          errors.push(`${s.dp.name}: ${(e as Error).message}`);
          continue;
        }
      }
      const known = stored && this.verified?.match(digest, stored);
      if (stored && known) {
        this.bytesFrom.set(s.dp.name, (this.bytesFrom.get(s.dp.name) ?? 0) + stored.length);
        return known;
      }
      let raw: Buffer | undefined;
      try {
        if (stored) raw = decodeChunk(stored, size);
      } catch {}
      if (stored && raw && raw.length === size && crypto.createHash('sha256').update(raw).digest('hex') === digest) {
        this.bytesFrom.set(s.dp.name, (this.bytesFrom.get(s.dp.name) ?? 0) + stored.length);
        this.verified?.remember(digest, stored, raw);
        return raw;
      }
      this.problems.push({
        dp: s.dp.name,
        packageId: m.id,
        version: m.version,
        file,
        chunk: digest,
        text: !stored ? `it is longer than ${size} bytes can be stored` : raw ? 'its SHA-256 differs' : 'it does not decode',
      });
      errors.push(`${s.dp.name}: served chunk ${digest} that does not match the signed manifest`);
    }
    throw fail('unavailable', `no DP served chunk ${digest} of ${file} intact (${errors.join('; ')})`);
  }

  /**
   * Puts every chunk of the manifest in the cache: those already there are not fetched again.
   * `onProgress` is called as chunks are kept. Each lane fetches its next chunk while the cache
   * writes its last one (`put` copies it first).
   */
  async fill(
    m: Manifest,
    cache: Pick<ChunkCache, 'has' | 'put'>,
    onProgress: (p: DownloadProgress) => void,
    signal?: AbortSignal,
  ): Promise<DownloadProgress> {
    const need: { file: string; digest: string; size: number }[] = [];
    const seen = new Set<string>();
    let total = 0;
    let done = 0;
    for (const e of m.files) {
      if (e.type !== 'file') continue;
      for (const [digest, size] of e.chunks) {
        total += size;
        if (seen.has(digest)) {
          done += size;
          continue;
        }
        seen.add(digest);
        if (await cache.has(digest, size)) done += size;
        else need.push({ file: e.path, digest, size });
      }
    }
    const p: DownloadProgress = { bytesDone: done, bytesTotal: total, fetched: 0, ms: 0 };
    const started = performance.now();
    let next = 0;
    let failed = false;
    // A stored chunk is its codec tag and at most its raw bytes.
    const largest = need.reduce((n, x) => Math.max(n, x.size), 0) + 1;
    const worker = async () => {
      const lane: Lane = { into: Buffer.allocUnsafeSlow(Math.min(largest, CHUNK_SIZES.max + 1)), conns: new Map(), wire: 0 };
      let writing: Promise<void> | null = null;
      try {
        while (next < need.length && !failed) {
          const n = need[next++] as (typeof need)[number];
          const at = await this.turn(signal);
          const wire = lane.wire;
          const raw = await this.chunk(m, n.file, n.digest, n.size, lane, signal);
          this.charge(at, lane.wire - wire);
          // At most one chunk of this lane waits for the cache.
          if (writing) await writing;
          writing = cache.put(n.digest, raw).then(() => {
            p.bytesDone += n.size;
            p.fetched += n.size;
            p.ms = performance.now() - started;
            onProgress(p);
          });
          // Awaited above or below; meanwhile its failure is not an unhandled rejection.
          writing.catch(() => {});
        }
        if (writing) await writing;
      } catch (e) {
        failed = true;
        throw e;
      } finally {
        for (const c of lane.conns.values()) c.close();
      }
    };
    await Promise.all(Array.from({ length: Math.min(WINDOW, Math.ceil(need.length / LANE_CHUNKS)) }, worker));
    p.ms = performance.now() - started;
    return p;
  }
}

/** Bytes of a file gathered before they are written to it when a package is assembled. */
const ASSEMBLE_BATCH = 2 << 20;

/**
 * Writes the version's tree into `dest` from the cache (every chunk is re-checked as it is
 * read): folders, files with their modes, links. The manifest was verified, so its paths stay
 * inside `dest`. A file's chunks are read a batch of ~2 MiB at a time, all of the batch at
 * once, into one reused buffer, and the batch written with one call: chunk by chunk, a read and
 * a write each waiting for the last, a 512 MiB package took 4.5 s to assemble.
 */
export async function assemble(m: Manifest, cache: ChunkCache, dest: string): Promise<void> {
  await fs.rm(dest, { recursive: true, force: true });
  await fs.mkdir(dest, { recursive: true });
  for (const e of m.files) if (e.type === 'dir') await fs.mkdir(path.join(dest, e.path), { recursive: true });
  const buf = Buffer.allocUnsafeSlow(ASSEMBLE_BATCH + CHUNK_SIZES.max);
  for (const e of m.files) {
    if (e.type !== 'file') continue;
    const target = path.join(dest, e.path);
    await fs.mkdir(path.dirname(target), { recursive: true });
    const fh = await fs.open(target, 'w', 0o600);
    try {
      let i = 0;
      while (i < e.chunks.length) {
        const batch: Promise<boolean>[] = [];
        let fill = 0;
        do {
          const [digest, size] = e.chunks[i++] as [string, number];
          batch.push(cache.readInto(digest, size, buf, fill));
          fill += size;
        } while (i < e.chunks.length && fill < ASSEMBLE_BATCH);
        const held = await Promise.all(batch);
        const lost = held.indexOf(false);
        if (lost >= 0)
          throw fail(
            'damaged',
            `chunk ${(e.chunks[i - batch.length + lost] as [string, number])[0]} of ${e.path} left the cache before the package was assembled; run again`,
          );
        let done = 0;
        while (done < fill) done += (await fh.write(buf, done, fill - done)).bytesWritten;
      }
    } finally {
      await fh.close();
    }
    await fs.chmod(target, e.mode);
  }
  for (const e of m.files) if (e.type === 'link') await fs.symlink(e.target, path.join(dest, e.path));
  for (const e of [...m.files].reverse()) if (e.type === 'dir') await fs.chmod(path.join(dest, e.path), e.mode);
}
