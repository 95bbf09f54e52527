import crypto from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { CHUNK_SIZES } from '../core/chunk.js';
import { fail } from '../core/errors.js';

/**
 * The agent's chunk cache: verified raw chunks appended to pack files (`cache/NNNNNNNN.pack`),
 * bounded in bytes; when over, the least recently used packs go first (a pack's mtime is touched
 * when one of its chunks is used), and the chunks still wanted are carried into a new pack. A
 * new version of a package downloads only the chunks that changed; a restarted agent never
 * fetches a chunk it already verified.
 *
 * One file per chunk cost the download half its speed: creating 8,000 files of 64 KiB takes the
 * kernel ten times longer than appending the same bytes to one (docs/performance.md#clients).
 *
 * A pack is a run of records, each `CCK1` · size (u32 LE) · SHA-256 (32 bytes) · the raw bytes.
 * Records are appended by one writer at a time, so a pack is always whole records and at most
 * one cut short at its end. A pack is sealed (flushed, its index written beside it as
 * `NNNNNNNN.idx`, checksummed) when it is full or a download ends; a pack found unsealed at
 * start (the agent was killed) is read record by record and every record re-hashed: the whole
 * ones are kept, the tail cut short is cut off, and it is sealed.
 */

const MAGIC = 0x314b4343; // "CCK1", little-endian
const HEADER = 40;
const PACK_MAX = 64 << 20;
const IDX_ENTRY = 44; // digest 32 · offset u64 · size u32

interface Entry {
  pack: number;
  /** Where the record's bytes start (after its header). */
  offset: number;
  size: number;
}

interface Pack {
  id: number;
  /** Bytes of the file (records whole). */
  bytes: number;
  /** Last use, ms since the epoch. */
  used: number;
  /** Digests whose newest record is in this pack. */
  digests: Set<string>;
}

interface Writing {
  pack: Pack;
  fh: Promise<fsp.FileHandle>;
  queue: (Staged & { done: (e?: Error) => void })[];
  busy: Promise<void> | null;
}

/** Buffers records are copied into on their way to a pack, reused: a download allocates none per chunk. */
interface Slab {
  buf: Buffer;
  used: number;
  /** Records in it not written yet. */
  pending: number;
}

/** A record (header and bytes) copied into a slab, waiting to be appended. */
interface Staged {
  digest: string;
  size: number;
  slab: Slab;
  start: number;
}

const SLAB = 512 << 10;
const SPARE_SLABS = 2;

/**
 * A record's header read at `at` in `buf`, when it is one and its bytes fit within `size` (the
 * pack's length); null: what follows is not a whole record.
 */
function header(buf: Buffer, at: number, from: number, size: number): { digest: string; bytes: number } | null {
  const bytes = buf.readUInt32LE(at + 4);
  if (buf.readUInt32LE(at) !== MAGIC || bytes > CHUNK_SIZES.max || from + HEADER + bytes > size) return null;
  return { digest: buf.toString('hex', at + 8, at + HEADER), bytes };
}

const packName = (id: number) => `${String(id).padStart(8, '0')}.pack`;
const sha256 = (b: Uint8Array) => crypto.createHash('sha256').update(b).digest('hex');

export class ChunkCache {
  private readonly index = new Map<string, Entry>();
  private readonly packs = new Map<number, Pack>();
  private readonly readers = new Map<number, Promise<fsp.FileHandle>>();
  private writing: Writing | null = null;
  private slab: Slab | null = null;
  private readonly spare: Slab[] = [];
  private readonly sealing = new Set<Promise<void>>();
  private opened: Promise<void> | null = null;
  private nextId = 1;

  /**
   * `readOnly`: for a look from another process while the agent runs (`agent status`): nothing
   * is repaired, sealed or written.
   */
  constructor(
    readonly root: string,
    readonly maxBytes: number,
    private readonly readOnly = false,
  ) {}

  private file(id: number, ext: 'pack' | 'idx' = 'pack'): string {
    return path.join(this.root, ext === 'pack' ? packName(id) : packName(id).replace(/\.pack$/, '.idx'));
  }

  private open(): Promise<void> {
    this.opened ??= this.load();
    return this.opened;
  }

  private async load(): Promise<void> {
    let names: string[] = [];
    try {
      names = await fsp.readdir(this.root);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    const ids = names
      .map((n) => /^(\d{8})\.pack$/.exec(n)?.[1])
      .filter((x): x is string => x !== undefined)
      .map(Number)
      .sort((a, b) => a - b);
    for (const id of ids) {
      const st = await fsp.stat(this.file(id)).catch(() => undefined);
      if (!st) continue;
      const pack: Pack = { id, bytes: st.size, used: st.mtimeMs, digests: new Set() };
      let entries: { records: [string, Entry][]; end: number };
      try {
        entries = (await this.readIndex(id, st.size)) ?? (await this.recover(id));
      } catch (e) {
        // A look from outside may race the agent removing a pack.
        if (this.readOnly) continue;
        throw e;
      }
      this.nextId = Math.max(this.nextId, id + 1);
      if (entries.end === 0 && !this.readOnly) {
        await fsp.rm(this.file(id, 'idx'), { force: true });
        await fsp.rm(this.file(id), { force: true });
        continue;
      }
      pack.bytes = entries.end;
      for (const [digest, e] of entries.records) this.add(pack, digest, e);
      this.packs.set(id, pack);
    }
    if (this.readOnly) return;
    for (const n of names) {
      // Indexes of packs gone (a trim cut short), and chunk folders of the one-file-per-chunk layout of earlier agents.
      if (/^\d{8}\.idx(\.tmp)?$/.test(n) && !this.packs.has(Number(n.slice(0, 8)))) await fsp.rm(path.join(this.root, n), { force: true });
      if (/^[0-9a-f]{2}$/.test(n)) await fsp.rm(path.join(this.root, n), { recursive: true, force: true });
    }
  }

  private add(pack: Pack, digest: string, e: Entry): void {
    const old = this.index.get(digest);
    if (old) this.packs.get(old.pack)?.digests.delete(digest);
    this.index.set(digest, e);
    pack.digests.add(digest);
  }

  /** A sealed pack's index, if it is there and whole; undefined: read the pack itself. */
  private async readIndex(id: number, packBytes: number): Promise<{ records: [string, Entry][]; end: number } | undefined> {
    let buf: Buffer;
    try {
      buf = await fsp.readFile(this.file(id, 'idx'));
    } catch {
      return undefined;
    }
    if (buf.length < 32 || (buf.length - 40) % IDX_ENTRY !== 0) return undefined;
    const body = buf.subarray(0, buf.length - 32);
    if (
      !crypto
        .createHash('sha256')
        .update(body)
        .digest()
        .equals(buf.subarray(buf.length - 32))
    )
      return undefined;
    const end = Number(body.readBigUInt64LE(0));
    if (end !== packBytes) return undefined;
    const records: [string, Entry][] = [];
    for (let at = 8; at < body.length; at += IDX_ENTRY) {
      const digest = body.toString('hex', at, at + 32);
      records.push([digest, { pack: id, offset: Number(body.readBigUInt64LE(at + 32)), size: body.readUInt32LE(at + 40) }]);
    }
    return { records, end };
  }

  /**
   * An unsealed pack (its agent stopped mid-download): every whole record re-hashed; what follows
   * the last whole one is cut off, and the pack sealed. Read-only: the records are only listed.
   */
  private async recover(id: number): Promise<{ records: [string, Entry][]; end: number }> {
    const records: [string, Entry][] = [];
    const fh = await fsp.open(this.file(id), this.readOnly ? 'r' : 'r+');
    let end = 0;
    try {
      const size = (await fh.stat()).size;
      const head = Buffer.alloc(HEADER);
      while (end + HEADER <= size) {
        await fh.read(head, 0, HEADER, end);
        const h = header(head, 0, end, size);
        if (!h) break;
        const { digest, bytes: n } = h;
        if (!this.readOnly) {
          const data = Buffer.alloc(n);
          await fh.read(data, 0, n, end + HEADER);
          if (sha256(data) !== digest) break;
        }
        records.push([digest, { pack: id, offset: end + HEADER, size: n }]);
        end += HEADER + n;
      }
      if (!this.readOnly && end < size) await fh.truncate(end);
    } finally {
      await fh.close();
    }
    if (!this.readOnly) await this.writeIndex(id, records, end);
    return { records, end };
  }

  private recordsOf(pack: Pack): [string, Entry][] {
    return [...pack.digests].map((d) => [d, this.index.get(d) as Entry] as [string, Entry]).sort((a, b) => a[1].offset - b[1].offset);
  }

  private async writeIndex(id: number, records: readonly [string, Entry][], end: number): Promise<void> {
    const body = Buffer.alloc(8 + records.length * IDX_ENTRY);
    body.writeBigUInt64LE(BigInt(end), 0);
    records.forEach(([digest, e], i) => {
      const at = 8 + i * IDX_ENTRY;
      body.write(digest, at, 'hex');
      body.writeBigUInt64LE(BigInt(e.offset), at + 32);
      body.writeUInt32LE(e.size, at + 40);
    });
    const tmp = `${this.file(id, 'idx')}.tmp`;
    await fsp.writeFile(tmp, Buffer.concat([body, crypto.createHash('sha256').update(body).digest()]));
    await fsp.rename(tmp, this.file(id, 'idx'));
  }

  /** Held whole, as far as the cache knows (`get` re-hashes it before use). */
  async has(digest: string, size: number): Promise<boolean> {
    await this.open();
    return this.index.get(digest)?.size === size;
  }

  private reader(id: number): Promise<fsp.FileHandle> {
    let r = this.readers.get(id);
    if (!r) {
      r = fsp.open(this.file(id), 'r');
      this.readers.set(id, r);
      r.catch(() => this.readers.delete(id));
    }
    return r;
  }

  /** The chunk if held and still whole (re-hashed: a damaged record is forgotten). */
  async get(digest: string, size: number): Promise<Buffer | undefined> {
    const data = Buffer.allocUnsafe(size);
    return (await this.readInto(digest, size, data, 0)) ? data : undefined;
  }

  /**
   * Reads the chunk into `into` at `at` (no buffer of its own: assembling a package reads
   * thousands) and re-hashes it there; false when it is not held or no longer whole (a damaged
   * record is forgotten).
   */
  async readInto(digest: string, size: number, into: Buffer, at: number): Promise<boolean> {
    await this.open();
    const e = this.index.get(digest);
    if (!e || e.size !== size) return false;
    // A record still being appended is not in the index yet; one in the pack being written is read back from it.
    const data = into.subarray(at, at + size);
    let got = 0;
    try {
      got = (await (await this.reader(e.pack)).read(data, 0, size, e.offset)).bytesRead;
    } catch {}
    if (got !== size || sha256(data) !== digest) {
      const pack = this.packs.get(e.pack);
      if (this.index.get(digest) === e && pack) {
        this.index.delete(digest);
        pack.digests.delete(digest);
        // A sealed pack's index forgets it too, so a restarted agent fetches it again.
        if (!this.readOnly && this.writing?.pack !== pack && this.packs.get(e.pack) === pack)
          await this.writeIndex(pack.id, this.recordsOf(pack), pack.bytes).catch(() => {});
      }
      return false;
    }
    this.touch(e.pack);
    return true;
  }

  private touch(id: number): void {
    const p = this.packs.get(id);
    if (!p) return;
    const now = Date.now();
    if (now - p.used < 1000) return;
    p.used = now;
    if (!this.readOnly) void fsp.utimes(this.file(id), new Date(now), new Date(now)).catch(() => {});
  }

  /**
   * Stores a chunk the caller has verified. `data` is copied before `put` returns, so the caller
   * may reuse its buffer at once. Resolves once the chunk is written to its pack (not yet
   * flushed: a pack is flushed when it is sealed; one cut short by a crash is re-hashed at start).
   */
  put(digest: string, data: Uint8Array): Promise<void> {
    if (this.readOnly) return Promise.reject(fail('internal', 'the chunk cache was opened to be read only'));
    if (data.length > CHUNK_SIZES.max)
      return Promise.reject(fail('too_large', `chunk ${digest} is ${data.length} bytes, over ${CHUNK_SIZES.max}`));
    const staged = this.stage(digest, data);
    return this.open().then(
      () => this.enqueue(staged),
      (e: unknown) => {
        this.release(staged);
        throw e;
      },
    );
  }

  /** Copies a record (header and bytes) into a slab. */
  private stage(digest: string, data: Uint8Array): Staged {
    const need = HEADER + data.length;
    let s = this.slab;
    // The current slab starts over whenever its records are all written (release), so a full one still has some waiting.
    if (!s || s.buf.length - s.used < need) {
      s = this.spare.pop() ?? { buf: Buffer.allocUnsafeSlow(SLAB), used: 0, pending: 0 };
      this.slab = s;
    }
    const at = s.used;
    s.buf.writeUInt32LE(MAGIC, at);
    s.buf.writeUInt32LE(data.length, at + 4);
    s.buf.write(digest, at + 8, 'hex');
    s.buf.set(data, at + HEADER);
    s.used += need;
    s.pending++;
    return { digest, size: data.length, slab: s, start: at };
  }

  private release(q: Staged): void {
    const s = q.slab;
    s.pending--;
    if (s.pending > 0) return;
    if (s === this.slab) s.used = 0;
    else if (this.spare.length < SPARE_SLABS) {
      s.used = 0;
      this.spare.push(s);
    }
  }

  private enqueue(q: Staged): Promise<void> {
    if (this.index.has(q.digest)) {
      this.release(q);
      return Promise.resolve();
    }
    if (this.writing && this.writing.pack.bytes >= PACK_MAX) this.retire();
    if (!this.writing) {
      const id = this.nextId++;
      const fh = fsp.mkdir(this.root, { recursive: true }).then(() => fsp.open(this.file(id), 'wx+'));
      fh.catch(() => {});
      const pack: Pack = { id, bytes: 0, used: Date.now(), digests: new Set() };
      this.packs.set(id, pack);
      this.readers.set(id, fh);
      this.writing = { pack, fh, queue: [], busy: null };
    }
    const w = this.writing;
    return new Promise((resolve, reject) => {
      w.queue.push({ ...q, done: (e) => (e ? reject(e) : resolve()) });
      w.busy ??= this.drain(w);
    });
  }

  /** Appends whatever is queued, in one write each time, until the queue is empty. */
  private async drain(w: Writing): Promise<void> {
    while (w.queue.length > 0) {
      const batch = w.queue.splice(0);
      // Records side by side in one slab leave as one piece.
      const parts: Buffer[] = [];
      const placed: [string, Entry][] = [];
      let at = w.pack.bytes;
      let run: { slab: Slab; start: number; end: number } | null = null;
      for (const q of batch) {
        const end = q.start + HEADER + q.size;
        if (run && run.slab === q.slab && run.end === q.start) run.end = end;
        else {
          if (run) parts.push(run.slab.buf.subarray(run.start, run.end));
          run = { slab: q.slab, start: q.start, end };
        }
        placed.push([q.digest, { pack: w.pack.id, offset: at + HEADER, size: q.size }]);
        at += HEADER + q.size;
      }
      if (run) parts.push(run.slab.buf.subarray(run.start, run.end));
      try {
        let off = 0;
        const total = at - w.pack.bytes;
        while (off < total) {
          const { bytesWritten } = await (await w.fh).writev(off === 0 ? parts : sliceParts(parts, off), w.pack.bytes + off);
          off += bytesWritten;
        }
        w.pack.bytes = at;
        for (const [digest, e] of placed) this.add(w.pack, digest, e);
        for (const q of batch) this.release(q);
        for (const q of batch) q.done();
      } catch (e) {
        for (const q of batch) this.release(q);
        for (const q of batch) q.done(e as Error);
        // The pack may end in a partial record: nothing more goes in it.
        await fsp.truncate(this.file(w.pack.id), w.pack.bytes).catch(() => {});
        if (this.writing === w) this.writing = null;
        for (const q of w.queue.splice(0)) {
          this.release(q);
          q.done(e as Error);
        }
      }
    }
    w.busy = null;
  }

  /** Flushes the pack being written and writes its index; the next chunk starts a new pack. */
  async seal(): Promise<void> {
    this.retire();
    while (this.sealing.size > 0) await Promise.all([...this.sealing]);
  }

  /** The pack being written takes no more chunks: it is sealed once its queued ones are in. */
  private retire(): void {
    const w = this.writing;
    if (!w) return;
    this.writing = null;
    const done = (async () => {
      while (w.busy) await w.busy;
      if (w.pack.bytes === 0) return;
      await (await w.fh).sync();
      await this.writeIndex(w.pack.id, this.recordsOf(w.pack), w.pack.bytes);
      // The handle stays open for reads until the pack is removed or the cache closed.
    })().finally(() => this.sealing.delete(done));
    // Seen by whoever awaits `seal` next; not an unhandled rejection meanwhile.
    done.catch(() => {});
    this.sealing.add(done);
  }

  /** Seals and lets go of every file handle. */
  async close(): Promise<void> {
    await this.seal();
    const rs = [...this.readers.values()];
    this.readers.clear();
    for (const r of rs) await (await r.catch(() => undefined))?.close().catch(() => {});
  }

  /** Bytes held (the packs' sizes), and the chunks. */
  async usage(): Promise<{ bytes: number; chunks: number; packs: number }> {
    await this.open();
    let bytes = 0;
    for (const p of this.packs.values()) bytes += p.bytes;
    return { bytes, chunks: this.index.size, packs: this.packs.size };
  }

  /**
   * Frees the least recently used packs until the cache is within its bound; the chunks of
   * `keep` in them are carried into a new pack first. Returns the bytes freed.
   */
  async trim(keep: ReadonlySet<string> = new Set()): Promise<number> {
    await this.open();
    await this.seal();
    let bytes = [...this.packs.values()].reduce((n, p) => n + p.bytes, 0);
    const before = bytes;
    const oldestFirst = [...this.packs.values()].sort((a, b) => a.used - b.used || a.id - b.id);
    for (const p of oldestFirst) {
      if (bytes <= this.maxBytes) break;
      for (const d of p.digests) {
        if (!keep.has(d)) continue;
        const e = this.index.get(d) as Entry;
        const data = await this.get(d, e.size);
        if (data) {
          this.index.delete(d);
          await this.put(d, data);
          bytes += HEADER + data.length;
        }
      }
      await this.seal();
      for (const d of p.digests) if (this.index.get(d)?.pack === p.id) this.index.delete(d);
      this.packs.delete(p.id);
      const r = this.readers.get(p.id);
      this.readers.delete(p.id);
      await (await r?.catch(() => undefined))?.close().catch(() => {});
      await fsp.rm(this.file(p.id, 'idx'), { force: true });
      await fsp.rm(this.file(p.id), { force: true });
      bytes -= p.bytes;
    }
    return Math.max(0, before - bytes);
  }
}

/** The parts from byte `off` on, after a short write. */
function sliceParts(parts: readonly Uint8Array[], off: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const p of parts) {
    if (off >= p.length) {
      off -= p.length;
      continue;
    }
    out.push(off > 0 ? p.subarray(off) : p);
    off = 0;
  }
  return out;
}

/**
 * Every whole, verified chunk in the pack files of `root`, read straight from disk (for tests
 * and for looking into a cache by hand): what an agent started now would keep.
 */
export function verifiedChunks(root: string): string[] {
  const out: string[] = [];
  if (!fs.existsSync(root)) return out;
  for (const n of fs.readdirSync(root).filter((x) => /^\d{8}\.pack$/.test(x))) {
    const buf = fs.readFileSync(path.join(root, n));
    let at = 0;
    while (at + HEADER <= buf.length) {
      const h = header(buf, at, at, buf.length);
      if (!h || sha256(buf.subarray(at + HEADER, at + HEADER + h.bytes)) !== h.digest) break;
      out.push(h.digest);
      at += HEADER + h.bytes;
    }
  }
  return out;
}
