import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../api/client.js';
import { certificatePin, derInteger, installTls, parsePin, readTls, TLS_CERT_FILE, TLS_KEY_FILE } from './tls.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-tls-'));
let server: https.Server;
let url = '';
let seen: string[] = [];

beforeAll(async () => {
  const made = installTls(dir, { names: ['localhost', '127.0.0.1', '::1', 'dp1.example'], commonName: 'Cascade site CEN' });
  server = https.createServer({ cert: made.cert, key: made.key }, (req, res) => {
    seen.push(`${req.url} ${req.headers.authorization ?? ''}`);
    res.setHeader('content-type', 'application/json');
    res.end('{"ok":true}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `https://127.0.0.1:${(server.address() as { port: number }).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('a made certificate', () => {
  it('is a valid self-signed X.509 certificate for the names given, whose key is beside it', () => {
    const files = readTls(dir);
    const x = new crypto.X509Certificate(files.cert);
    expect(x.verify(x.publicKey)).toBe(true);
    expect(x.subject).toBe('CN=Cascade site CEN');
    expect(x.subjectAltName).toBe('DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, DNS:dp1.example');
    expect(x.checkHost('dp1.example')).toBe('dp1.example');
    expect(x.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(new Date(x.validTo).getTime() - Date.now()).toBeGreaterThan(19 * 365 * 86400_000);
    expect(files.pin).toBe(certificatePin(files.cert));
    expect(fs.statSync(path.join(dir, TLS_KEY_FILE)).mode & 0o077).toBe(0);
  });

  it('encodes its serial and version as DER integers in their fewest bytes (OpenSSL refuses padding)', () => {
    const hex = (b: number[]) => derInteger(Buffer.from(b)).toString('hex');
    expect(hex([2])).toBe('020102');
    expect(hex([0, 0, 0x05, 0x10])).toBe('02020510');
    expect(hex([0, 0x85])).toBe('02020085');
    expect(hex([0x85, 1])).toBe('0203008501');
    expect(hex([0, 0])).toBe('020100');
  });

  it("refuses a key that is not the certificate's, in one line", () => {
    const other = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-tls-'));
    installTls(other, { names: ['localhost'], commonName: 'other' });
    fs.copyFileSync(path.join(dir, TLS_CERT_FILE), path.join(other, TLS_CERT_FILE));
    expect(() => readTls(other)).toThrow(/do not belong together/);
    fs.rmSync(other, { recursive: true, force: true });
  });

  it('reads pins with or without colons, and refuses anything else', () => {
    const pin = readTls(dir).pin;
    expect(parsePin(pin.toUpperCase().replace(/(..)(?!$)/g, '$1:'))).toBe(pin);
    expect(() => parsePin('abc')).toThrow(/not a certificate's SHA-256 fingerprint/);
  });
});

describe('the client over https', () => {
  it('talks to the server whose certificate it pinned', async () => {
    seen = [];
    const c = new ApiClient(url, { token: 'secret-1', pin: readTls(dir).pin });
    expect(JSON.parse((await c.send('GET', '/a')).toString())).toEqual({ ok: true });
    expect(seen).toEqual(['/a Bearer secret-1']);
  });

  it('sends nothing, token least of all, to a server showing another certificate', async () => {
    seen = [];
    const c = new ApiClient(url, { token: 'secret-2', pin: 'ab'.repeat(32), who: 'site CEN' });
    await expect(c.send('GET', '/b')).rejects.toThrow(
      /cannot reach site CEN at .*: its TLS certificate is [0-9a-f]{16}…, not the pinned abababababababab…; nothing was sent/,
    );
    expect(seen).toEqual([]);
  });

  it('reads content over TLS on a connection of its own, with the same pin rule', async () => {
    seen = [];
    const into = Buffer.alloc(64);
    const pinned = new ApiClient(url, { pin: readTls(dir).pin }).connection();
    try {
      expect((await pinned.get('/d', into)).toString()).toBe('{"ok":true}');
      expect((await pinned.get('/e', into)).toString()).toBe('{"ok":true}');
    } finally {
      pinned.close();
    }
    const wrong = new ApiClient(url, { pin: 'ab'.repeat(32), who: 'DP dp1' }).connection();
    await expect(wrong.get('/f', into)).rejects.toThrow(
      /cannot reach DP dp1 at .*: its TLS certificate is [0-9a-f]{16}…, not the pinned .*nothing was sent/,
    );
    const unpinned = new ApiClient(url).connection();
    await expect(unpinned.get('/g', into)).rejects.toThrow(/SELF_SIGNED|self.signed/i);
    expect(seen).toEqual(['/d ', '/e ']);
  });

  it('without a pin, checks the certificate the usual way (a self-signed one is refused)', async () => {
    seen = [];
    await expect(new ApiClient(url, { token: 'secret-3' }).send('GET', '/c')).rejects.toThrow(/SELF_SIGNED|self.signed/i);
    expect(seen).toEqual([]);
  });
});
