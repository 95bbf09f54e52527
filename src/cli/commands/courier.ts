import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { ApiClient } from '../../api/client.js';
import type { DpTicket } from '../../api/courier.js';
import { PATHS } from '../../api/paths.js';
// Types only at the top: the parcel and manifest modules (zod) load when a command needs them.
import type { ImportReport } from '../../content/parcel.js';
import { formatOmitHeader, MAX_OMIT_RANGES, readParcelToc } from '../../content/parcel-toc.js';
import { normaliseTarget, TARGET_NAME } from '../../core/dp.js';
import { CascadeError, fail } from '../../core/errors.js';
import { parsePackageId } from '../../core/package.js';
import { parseSiteCode } from '../../core/site.js';
import { BlockFileWriter } from '../../lib/blockfile.js';
import { printJson } from '../../lib/output.js';
import { type AdminOpts, adminOptions, clientFrom, parseIntOpt, table } from '../common.js';
import { fmtBytes, Progress } from '../progress.js';

/** What a parcel holds, read from its header and manifests (signatures are checked at import). */
interface Inspection {
  parcel: string;
  format: number;
  created: string;
  source: string;
  destination: string | null;
  full: boolean;
  packages: { id: string; version: number; name: string; bytes: number; chunkBytesInParcel: number; signedBy: string }[];
  chunks: number;
  chunkBytes: number;
  rawBytes: number;
  bytes: number;
  checksum: string;
}

/**
 * Reads a parcel through: its table of contents (header, manifests' rules but not their
 * signatures, index) and the checksum of it; with `verify`, every chunk is decoded and checked
 * against its digest too. `onBytes` sees the bytes as they are read.
 */
async function readThrough(source: AsyncIterable<Uint8Array>, verify: boolean, onBytes?: (n: number) => void) {
  const [{ ParcelReader, unverifiedManifest }, { manifestChunks }] = await Promise.all([
    import('../../content/parcel.js'),
    import('../../content/manifest.js'),
  ]);
  const r = new ParcelReader(source);
  const header = await r.header();
  const pkgs = await r.packages();
  const sizes = new Map<string, number>();
  const perPackage = pkgs.map((p) => {
    const { manifest, keyId } = unverifiedManifest(p.manifest);
    const chunks = manifestChunks(manifest);
    for (const [d, n] of chunks) sizes.set(d, n);
    return { id: p.id, version: p.version, name: manifest.name, bytes: manifest.bytes, chunks, signedBy: keyId };
  });
  const index = await r.index((d) => sizes.get(d));
  await r.skipChunks(onBytes, verify);
  const { checksum } = await r.finish();
  const inspection: Inspection = {
    parcel: header.parcel,
    format: header.format,
    created: header.created,
    source: header.source,
    destination: header.destination,
    full: header.full,
    packages: perPackage.map((p) => ({
      id: p.id,
      version: p.version,
      name: p.name,
      bytes: p.bytes,
      chunkBytesInParcel: index.filter((e) => p.chunks.has(e.digest)).reduce((n, e) => n + e.size, 0),
      signedBy: p.signedBy,
    })),
    chunks: header.chunks,
    chunkBytes: header.chunkBytes,
    rawBytes: header.rawBytes,
    bytes: header.totalBytes,
    checksum,
  };
  return inspection;
}

/** A DP's name as typed for --dp / --to-dp (a three-character value names a site's local DP). */
function parseDpTarget(name: string): string {
  const n = normaliseTarget(name);
  if (!TARGET_NAME.test(n)) throw fail('usage', `"${name}" is not a DP name: use 4 to 64 letters, digits, ".", "_" or "-"`);
  return n;
}

/**
 * A file (or byte ranges of it, in order) as pieces of up to 1 MiB, from a few buffers the
 * caller hands back (`release`) once it is done with each piece; a new buffer is made only
 * when none is free.
 */
function readFile(
  file: string,
  ranges?: readonly (readonly [start: number, end: number])[],
): { pieces: AsyncGenerator<Uint8Array>; release: (piece: Uint8Array) => void } {
  const free: Buffer[] = [];
  async function* pieces(): AsyncGenerator<Uint8Array> {
    const fh = await fsp.open(file, 'r').catch((e: NodeJS.ErrnoException) => {
      throw fail('usage', `cannot read ${file}: ${e.code ?? e.message}`);
    });
    try {
      for (const [start, end] of ranges ?? [[0, Number.MAX_SAFE_INTEGER] as const]) {
        for (let at = start; at < end; ) {
          const buf = free.pop() ?? Buffer.allocUnsafeSlow(1 << 20);
          const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, end - at), at);
          if (bytesRead === 0) {
            if (ranges) throw fail('usage', `${file} changed while it was being imported (it ends before byte ${end})`);
            break;
          }
          at += bytesRead;
          yield buf.subarray(0, bytesRead);
        }
      }
    } finally {
      await fh.close();
    }
  }
  const release = (piece: Uint8Array) => {
    if (piece.byteOffset === 0 && piece.buffer.byteLength === 1 << 20 && free.length < 8)
      free.push(Buffer.from(piece.buffer as ArrayBuffer, 0, 1 << 20));
  };
  return { pieces: pieces(), release };
}

/**
 * What of the parcel `file` the site (or DP) already holds, so a repeated or resumed import
 * sends only the rest: reads the parcel's table of contents here, asks the receiver which of
 * its chunks it lacks (`missingPath`: the site's chunks/missing, a DP's courier/missing with
 * the import ticket), and returns the byte ranges of the file to send and the `x-cascade-omit` header
 * for the chunks left out. Undefined when nothing is worth leaving out, or when the file or
 * the site cannot tell (then the whole file goes, and the site's import says what is wrong).
 */
async function resumePlan(
  client: ApiClient,
  missingPath: string,
  file: string,
  size: number,
): Promise<{ ranges: [number, number][]; omit: string; bytes: number } | undefined> {
  const fh = await fsp.open(file, 'r').catch(() => undefined);
  if (!fh) return undefined;
  const toc = await readParcelToc(async (position, length) => {
    const buf = Buffer.allocUnsafe(length);
    const { bytesRead } = await fh.read(buf, 0, length, position);
    return buf.subarray(0, bytesRead);
  })
    .catch(() => undefined)
    .finally(() => fh.close());
  if (!toc) return undefined;
  const { entries, tocEnd } = toc;
  const missing = new Set<string>();
  try {
    for (let i = 0; i < entries.length; i += 100_000) {
      const digests = entries.slice(i, i + 100_000).map((e) => e.digest);
      const res = await client.json<{ missing: string[] }>('POST', missingPath, { json: { digests } });
      for (const d of res.missing) missing.add(d);
    }
  } catch {
    return undefined;
  }
  // Runs of held chunks, with their place in the file; the largest ones, at most a header's worth.
  const runs: { from: number; to: number; start: number; end: number }[] = [];
  let at = tocEnd;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i] as { digest: string; stored: number };
    // A file cut short goes as it is, for the site to say so.
    if (at + e.stored > size) break;
    if (!missing.has(e.digest)) {
      const last = runs[runs.length - 1];
      if (last && last.to === i) {
        last.to = i + 1;
        last.end = at + e.stored;
      } else runs.push({ from: i, to: i + 1, start: at, end: at + e.stored });
    }
    at += e.stored;
  }
  const kept = runs
    .sort((a, b) => b.end - b.start - (a.end - a.start))
    .slice(0, MAX_OMIT_RANGES)
    .sort((a, b) => a.from - b.from);
  const bytes = kept.reduce((n, k) => n + k.end - k.start, 0);
  if (bytes < 1 << 20) return undefined;
  const ranges: [number, number][] = [];
  let from = 0;
  for (const k of kept) {
    ranges.push([from, k.start]);
    from = k.end;
  }
  ranges.push([from, size]);
  return { ranges: ranges.filter(([a, b]) => b > a), omit: formatOmitHeader(kept.map((k) => [k.from, k.to] as const)), bytes };
}

/** `cascade courier export|import|inspect`. */
export function registerCourier(program: Command): void {
  const courier = program
    .command('courier')
    .description('courier parcels: package versions on physical media for sites behind slow or full links (docs/courier.md)');

  adminOptions(
    courier
      .command('export')
      .description('write one parcel for a site, or a DP of this site: signed manifests and the chunks it lacks, as far as this site knows')
      .argument('<id...>', 'package IDs')
      .option('--to-site <code>', 'the site the parcel is for')
      .option('--to-dp <name>', 'or: the DP of this site the parcel is for (imported there with "courier import FILE --dp NAME")')
      .requiredOption('-o, --output <file>', 'the parcel file to write')
      .option('--full', 'every chunk of the versions, whatever the site holds')
      .option('--version <n>', 'this version of every package (default: each latest)', parseIntOpt('--version', 1)),
  ).action(async (ids: string[], o: AdminOpts & { toSite?: string; toDp?: string; output: string; full?: boolean; version?: number }) => {
    const packages = ids.map(parsePackageId);
    if ((o.toSite === undefined) === (o.toDp === undefined))
      throw fail('usage', 'give the destination: --to-site CODE or --to-dp NAME (one of them)');
    const to = o.toDp !== undefined ? { toDp: parseDpTarget(o.toDp) } : { toSite: parseSiteCode(o.toSite as string) };
    const file = path.resolve(o.output);
    const part = `${file}.part`;
    const writer = await BlockFileWriter.open(part).catch((e: NodeJS.ErrnoException) => {
      throw fail('usage', `cannot write ${file}: ${e.code ?? e.message}`);
    });
    const res = await clientFrom(o)
      .download(PATHS.courierExport, {
        packages,
        ...to,
        ...(o.full ? { full: true } : {}),
        ...(o.version ? { version: o.version } : {}),
      })
      .catch(async (e) => {
        await writer.abort();
        await fsp.rm(part, { force: true });
        throw e;
      });
    const bar = new Progress('export', Number(res.headers['content-length'] ?? 0), !o.json);
    let written = 0;
    let inspection: Inspection;
    try {
      // Written in 4 MiB blocks while the next block fills (straight to the device where the
      // file system allows), then flushed to disk; its framing and table-of-contents checksum are
      // read through as it lands, so a file cut short is never left under its name (`courier
      // inspect` checks every chunk of a copy).
      const BLOCK = BlockFileWriter.BLOCK;
      let fill = 0;
      async function* tee(): AsyncGenerator<Uint8Array> {
        for await (const piece of res as AsyncIterable<Buffer>) {
          let at = 0;
          while (at < piece.length) {
            const n = Math.min(BLOCK - fill, piece.length - at);
            piece.copy(writer.block, fill, at, at + n);
            fill += n;
            at += n;
            if (fill === BLOCK) {
              await writer.put(fill);
              fill = 0;
            }
          }
          written += piece.length;
          bar.update(written);
          yield piece;
        }
        if (fill > 0) await writer.put(fill);
      }
      inspection = await readThrough(tee(), false);
      await writer.finish();
      await fsp.rename(part, file);
    } catch (e) {
      res.destroy();
      await writer.abort();
      await fsp.rm(part, { force: true });
      bar.done();
      if ((e as { code?: string }).code === 'bad_parcel')
        throw fail('unavailable', `the parcel from the site arrived incomplete or damaged (${(e as Error).message}); nothing written`);
      if (!(e instanceof CascadeError))
        throw fail('unavailable', `the site stopped sending the parcel (${(e as Error).message}; its log says why); nothing written`);
      throw e;
    }
    bar.done();
    const out = {
      parcel: inspection.parcel,
      file,
      destination: inspection.destination,
      packages: inspection.packages.map((p) => ({
        id: p.id,
        version: p.version,
        bytes: p.bytes,
        chunkBytesInParcel: p.chunkBytesInParcel,
      })),
      chunks: inspection.chunks,
      bytes: inspection.bytes,
    };
    if (o.json) printJson(out);
    else {
      process.stdout.write(
        `parcel ${out.parcel} for ${out.destination}: ${out.chunks} chunks, ${fmtBytes(out.bytes)} in ${file}\n` +
          table([
            ['  PACKAGE', 'VERSION', 'SIZE', 'IN PARCEL'],
            ...out.packages.map((p) => [`  ${p.id}`, String(p.version), fmtBytes(p.bytes), fmtBytes(p.chunkBytesInParcel)]),
          ]) +
          (o.toDp !== undefined
            ? `carry it to DP ${out.destination} and run there: cascade courier import ${path.basename(file)} --dp ${out.destination} (with this site's --site and --token)\n`
            : `carry it to ${out.destination} and run there: cascade courier import ${path.basename(file)}\n`),
      );
    }
  });

  adminOptions(
    courier
      .command('import')
      .description(
        'import a parcel at this site, or with --dp straight onto one of its DPs: signatures and every chunk verified first; importing twice is harmless',
      )
      .argument('<file>', 'the parcel file')
      .option('--dp <name>', "import onto this DP of the site: the site issues a ticket, the parcel's bytes go to the DP directly")
      .option('--dp-url <url>', 'with --dp: where this machine reaches the DP (default: the address the site knows)')
      .option('--anyway', 'import a parcel made for another site or DP here all the same (refused otherwise)'),
  ).action(async (file: string, o: AdminOpts & { dp?: string; dpUrl?: string; anyway?: boolean }) => {
    if (o.dpUrl !== undefined && o.dp === undefined) throw fail('usage', '--dp-url goes with --dp NAME');
    const dp = o.dp === undefined ? undefined : parseDpTarget(o.dp);
    const st = await fsp.stat(file).catch((e: NodeJS.ErrnoException) => {
      throw fail('usage', `cannot read ${file}: ${e.code ?? e.message}`);
    });
    if (!st.isFile()) throw fail('usage', `${file} is not a file`);
    let client = clientFrom(o);
    if (dp !== undefined) {
      // The site vouches (admin token, operate); the DP checks the site's signature itself.
      const t = await client.json<DpTicket>('POST', PATHS.dpTickets, { json: { dp } });
      client = new ApiClient(o.dpUrl ?? t.url, { token: t.ticket, who: `DP ${t.dp}`, pin: t.tlsPin });
    }
    // Chunks the site (or the DP) holds already, from a repeated or resumed import, are left out.
    const plan = await resumePlan(client, dp === undefined ? PATHS.chunksMissing : PATHS.courierMissing, file, st.size);
    const length = plan ? st.size - plan.bytes : st.size;
    const bar = new Progress('import', length, !o.json);
    let sent = 0;
    const parcel = readFile(file, plan?.ranges);
    const r = await client
      .uploadStream<ImportReport & { dp?: string }>(`${PATHS.courierImport}${o.anyway ? '?anyway=true' : ''}`, parcel.pieces, length, {
        onBytes: (n) => {
          sent += n;
          bar.update(sent, sent >= length ? 'verifying and installing' : '');
        },
        release: parcel.release,
        headers: plan ? { 'x-cascade-omit': plan.omit } : {},
      })
      .finally(() => bar.done());
    if (o.json) {
      printJson(r);
      return;
    }
    process.stdout.write(
      `parcel ${r.parcel} from ${r.source}${r.dp ? ` onto DP ${r.dp}` : r.importedAt ? ` imported at site ${r.importedAt}` : ''}: ${r.chunks.stored} chunks stored (${fmtBytes(r.bytes.stored)}), ${r.chunks.alreadyHeld} already here` +
        `${r.bytes.received < r.bytes.parcel ? ` (${fmtBytes(r.bytes.received)} of the parcel's ${fmtBytes(r.bytes.parcel)} sent)` : ''}\n` +
        table([
          ['  PACKAGE', 'VERSION', 'STATE', 'STILL MISSING'],
          ...r.packages.map((p) => [
            `  ${p.id}`,
            String(p.version),
            p.state,
            p.state === 'installed' ? '-' : `${p.missingBytes} bytes (${fmtBytes(p.missingBytes)}, ${p.missingChunks} chunks)`,
          ]),
        ]),
    );
    if (r.packages.some((p) => p.state !== 'installed'))
      process.stdout.write('the rest comes over the network, or in another parcel (cascade courier export at the sending site)\n');
  });

  courier
    .command('inspect')
    .description('what a parcel holds: packages, chunks, sizes; reads it through and checks its framing, checksum and every chunk')
    .argument('<file>', 'the parcel file')
    .option('--json', 'print JSON instead of text')
    .action(async (file: string, o: { json?: boolean }) => {
      if (!fs.existsSync(file)) throw fail('usage', `cannot read ${file}: no such file`);
      const i = await readThrough(readFile(file).pieces, true);
      if (o.json) {
        printJson(i);
        return;
      }
      process.stdout.write(
        `parcel ${i.parcel} (format ${i.format}), made ${i.created} at ${i.source} for ${i.destination ?? 'any site'}${i.full ? ', full' : ''}\n` +
          `${i.chunks} chunks, ${fmtBytes(i.rawBytes)} (${fmtBytes(i.chunkBytes)} stored); ${fmtBytes(i.bytes)} in all; checksum and every chunk ok\n` +
          table([
            ['  PACKAGE', 'VERSION', 'NAME', 'SIZE', 'IN PARCEL', 'SIGNED BY'],
            ...i.packages.map((p) => [
              `  ${p.id}`,
              String(p.version),
              p.name,
              fmtBytes(p.bytes),
              fmtBytes(p.chunkBytesInParcel),
              p.signedBy,
            ]),
          ]) +
          'signatures are checked by "cascade courier import" with the trust of the site that imports it\n',
      );
    });
}
