import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, it } from 'vitest';
import { loadConfig, loadState } from '../../src/agent/config.js';
import { encodeRecordHeader, RECORD_WHOLE, readBatch } from '../../src/content/batch.js';
import { issueCertificate, verifyCertificate } from '../../src/content/certificate.js';
import { decodeChunk, encodeChunk } from '../../src/content/codec.js';
import { applyDelta, makeDelta, parseDelta, signature } from '../../src/content/delta.js';
import { signFreshness, verifyFreshness } from '../../src/content/freshness.js';
import { type Manifest, manifestChunks, parseManifest, signManifest, verifyManifest } from '../../src/content/manifest.js';
import { ParcelReader, unverifiedManifest, writeParcel } from '../../src/content/parcel.js';
import { readParcelToc } from '../../src/content/parcel-toc.js';
import { signPolicy, verifyPolicy } from '../../src/content/policy.js';
import { generateSiteKey, publicKeyPem, type TrustedKey } from '../../src/content/signing.js';
import { issueTicket, verifyTicket } from '../../src/content/ticket.js';
import { parseCidr } from '../../src/core/cidr.js';
import { parseAdvertisementId, parseAgentVersion, parseClientId } from '../../src/core/client.js';
import { parseDpName, parseTargetSpec } from '../../src/core/dp.js';
import { CascadeError } from '../../src/core/errors.js';
import { parseRate } from '../../src/core/rate.js';
import { parseRule } from '../../src/core/rule.js';
import { parseSchedule, scheduleFromGrid } from '../../src/core/schedule.js';
import { parseDuration, parseWhen } from '../../src/core/time.js';
import { parseListen, readSiteConfig } from '../../src/lib/site-config.js';
import { anyJson, casesRun, fromText, mutated, mutatedText, RUNS, refusesCleanly, refusesCleanlyAsync, SEED } from './fuzz.js';

/**
 * Every parser that reads what another party sent (or an operator typed) returns its value or
 * refuses with a CascadeError of one line: never another exception. Inputs are random and,
 * mostly, valid inputs damaged at random places (docs/development.md#fuzzing).
 */
const key = generateSiteKey('CEN');
const trusted: TrustedKey[] = [{ keyId: key.keyId, publicKeyPem: publicKeyPem(key.publicKey), site: 'CEN' }];
const sha = (b: Uint8Array) => crypto.createHash('sha256').update(b).digest('hex');
const raw = Buffer.from('the quick brown fox jumps over the lazy dog\n'.repeat(400));
const manifest: Manifest = {
  format: 1,
  id: 'CEN00001',
  version: 2,
  name: 'Fuzzed',
  origin: 'CEN',
  priority: 'medium',
  created: '2026-12-01T00:00:00.000Z',
  bytes: raw.length,
  programs: [{ name: 'Install', command: 'setup.sh /q' }],
  files: [
    { type: 'dir', path: 'bin', mode: 0o755 },
    { type: 'file', path: 'bin/setup.sh', mode: 0o755, size: raw.length, chunks: [[sha(raw), raw.length]] },
    { type: 'link', path: 'setup', target: 'bin/setup.sh' },
  ],
} as Manifest;
const signed = signManifest(manifest, key);
const source = (b: Uint8Array, size = 1000) =>
  (async function* () {
    for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
  })();

describe(`fuzzed parsers (${RUNS} cases each, seed ${SEED})`, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-fuzz-'));
  afterAll(() => {
    fs.rmSync(dir, { recursive: true, force: true });
    if (process.env.FUZZ_RUNS)
      process.stdout.write(`fuzz: seed ${SEED}; cases per parser: ${[...casesRun()].map(([k, n]) => `${k} ${n}`).join(', ')}; 0 crashes\n`);
  });

  it('manifests: signed bytes and their JSON', () => {
    refusesCleanly('manifest (signed bytes)', mutated(signed), (b) => verifyManifest(b, trusted));
    refusesCleanly('manifest (JSON)', fc.oneof(anyJson(), fc.constant(manifest)), (v) => parseManifest(v));
    const text = JSON.stringify(manifest);
    refusesCleanly('manifest (damaged JSON)', mutatedText(text), fromText(parseManifest));
  });

  it('courier parcels: framing, header, its signature, manifests, index, chunks, trailer', async () => {
    const stored = encodeChunk(raw);
    const plan = {
      parcel: crypto.randomUUID(),
      created: new Date(0).toISOString(),
      source: 'CEN',
      destination: 'EUR',
      full: true,
      packages: [{ id: manifest.id, version: manifest.version, bytes: manifest.bytes, manifest: signed, certificate: null }],
      chunks: [{ digest: sha(raw), stored: stored.length, size: raw.length }],
      signer: { keyId: key.keyId, certificate: null },
    };
    const parts: Uint8Array[] = [];
    for await (const b of writeParcel(
      plan,
      async () => stored,
      (b) => crypto.sign(null, b, key.privateKey),
    ))
      parts.push(b);
    const whole = Buffer.concat(parts);
    await refusesCleanlyAsync('parcel', fc.oneof(mutated(whole), fc.uint8Array({ maxLength: 300 })), async (b) => {
      const r = new ParcelReader(source(b, 777));
      await r.header();
      const { bytes, signature } = r.headerSignature;
      if (!crypto.verify(null, bytes, key.publicKey, signature)) throw new CascadeError('bad_parcel', 'header not signed');
      const pkgs = await r.packages();
      for (const p of pkgs) verifyManifest(p.manifest, trusted);
      const sizes = new Map(pkgs.flatMap((p) => [...manifestChunks(unverifiedManifest(p.manifest).manifest)]));
      await r.index((d) => sizes.get(d));
      await r.skipChunks(undefined, true);
      await r.finish();
    });
    await refusesCleanlyAsync('parcel table of contents', mutated(whole), (b) => readParcelToc(async (at, n) => b.subarray(at, at + n)));
  });

  it('chunk batches, stored chunks and deltas', async () => {
    const batch = Buffer.concat([encodeRecordHeader(RECORD_WHOLE, sha(raw), raw.length), raw]);
    await refusesCleanlyAsync('chunk batch', mutated(batch), async (b) => {
      for await (const _ of readBatch(source(b, 513))) {
        // Records are only read.
      }
    });
    refusesCleanly('stored chunk', fc.oneof(mutated(encodeChunk(raw)), mutated(encodeChunk(crypto.randomBytes(3000)))), (b) =>
      decodeChunk(b, raw.length),
    );
    const base = Buffer.from(raw);
    const changed = Buffer.concat([raw.subarray(0, 9000), Buffer.from('changed'), raw.subarray(9000)]);
    const delta = makeDelta(changed, [{ digest: sha(base), sig: signature(base) }]) as Buffer;
    const bases = new Map([[sha(base), base]]);
    refusesCleanly('delta', mutated(delta), (b) => applyDelta(parseDelta(b), bases));
  });

  it('certificates, import tickets and signed policy records', () => {
    const eur = generateSiteKey('EUR');
    const cert = issueCertificate(key, {
      code: 'EUR',
      name: 'Europe',
      parent: 'CEN',
      keyId: eur.keyId,
      publicKey: publicKeyPem(eur.publicKey),
      issuedAt: '2026-12-01T00:00:00.000Z',
    });
    const certText = JSON.stringify(cert);
    refusesCleanly(
      'certificate',
      fc.oneof(anyJson(), mutatedText(certText)),
      fromText((v) => verifyCertificate(v, trusted[0] as TrustedKey)),
    );
    const now = new Date('2026-12-01T00:00:00Z');
    const { ticket } = issueTicket(key, 'CEN', 'cen-dp1', now);
    refusesCleanly('import ticket', fc.oneof(mutatedText(ticket), fc.string()), (t) =>
      verifyTicket(t, { dp: 'cen-dp1', site: 'CEN', key: trusted[0] as TrustedKey, now }),
    );
    const policy = signPolicy(key, {
      kind: 'collection',
      id: 'Everyone',
      site: 'CEN',
      body: { name: 'Everyone', rule: 'os != ""' },
    } as never);
    refusesCleanly(
      'policy record',
      fc.oneof(anyJson(), mutatedText(JSON.stringify(policy))),
      fromText((v) => verifyPolicy(v as never, trusted)),
    );
    const word = signFreshness(key, { site: 'CEN', at: '2026-12-01T00:00:00.000Z', latest: [['CEN00001', 3]] });
    refusesCleanly(
      'freshness statement',
      fc.oneof(anyJson(), mutatedText(JSON.stringify(word))),
      fromText((v) => verifyFreshness(v, trusted)),
    );
  });

  it('what operators type: schedules, rules, durations, rates, times, addresses, names, IDs', () => {
    refusesCleanly('schedule SPEC', fc.oneof(mutatedText('mon-fri 08-18 high-only 2MiB/s; sat,sun closed'), fc.string()), (s) =>
      parseSchedule(s, 'Europe/Berlin'),
    );
    refusesCleanly('schedule grid', anyJson(), (v) => scheduleFromGrid(v));
    refusesCleanly(
      'collection rule',
      fc.oneof(mutatedText('hostname like "ber-%" and (os = "linux" or freeDisk > 10GiB)'), fc.string()),
      (s) => parseRule(s),
    );
    refusesCleanly('duration', fc.oneof(mutatedText('1h30m'), fc.string()), (s) => parseDuration(s));
    refusesCleanly('rate', fc.oneof(mutatedText('10Mbit/s'), fc.string()), (s) => parseRate(s));
    refusesCleanly('time', fc.oneof(mutatedText('2026-12-24T18:00:00Z'), fc.string()), (s) => parseWhen(s, new Date(0)));
    refusesCleanly('CIDR', fc.oneof(mutatedText('10.1.0.0/16'), mutatedText('fd00::/8'), fc.string()), (s) => parseCidr(s));
    refusesCleanly('listen address', fc.oneof(mutatedText('127.0.0.1:8100'), fc.string()), (s) => parseListen(s));
    refusesCleanly('target', fc.oneof(mutatedText('group:berlin'), fc.string()), (s) => parseTargetSpec(s));
    refusesCleanly('DP name', fc.string(), (s) => parseDpName(s));
    refusesCleanly('client ID', fc.oneof(mutatedText('BER-000001'), fc.string()), (s) => parseClientId(s));
    refusesCleanly('advertisement ID', fc.oneof(mutatedText('CEN-A00001'), fc.string()), (s) => parseAdvertisementId(s));
    refusesCleanly('agent version', fc.oneof(mutatedText('1.2.3-rc.1'), fc.string()), (s) => parseAgentVersion(s));
  });

  it('configuration files: a site or DP data folder, an agent data folder', () => {
    const siteDir = path.join(dir, 'site');
    fs.mkdirSync(siteDir);
    const siteCfg = JSON.stringify({ code: 'CEN', name: 'Central', listen: '127.0.0.1:8100', role: 'site' });
    refusesCleanly(
      'site config.json',
      fc.oneof(
        mutatedText(siteCfg),
        anyJson().map((v) => JSON.stringify(v)),
      ),
      (text) => {
        fs.writeFileSync(path.join(siteDir, 'config.json'), text);
        readSiteConfig(siteDir);
      },
    );
    const agentDir = path.join(dir, 'agent');
    fs.mkdirSync(agentDir);
    const agentCfg = JSON.stringify({ site: 'http://127.0.0.1:8100', client: 'CEN-000001', credential: 'x'.repeat(40) });
    refusesCleanly(
      'agent config.json',
      fc.oneof(
        mutatedText(agentCfg),
        anyJson().map((v) => JSON.stringify(v)),
      ),
      (text) => {
        fs.writeFileSync(path.join(agentDir, 'config.json'), text);
        loadConfig(agentDir);
      },
    );
    refusesCleanly(
      'agent state.json',
      anyJson().map((v) => JSON.stringify(v)),
      (text) => {
        fs.writeFileSync(path.join(agentDir, 'state.json'), text);
        loadState(agentDir);
      },
    );
  });
});
