import net from 'node:net';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cascade, type SiteProcess, startSite, tmpDir } from './helpers.js';

/**
 * The unauthenticated calls (join, enrol) must arrive whole within a deadline: a client that
 * trickles its body a byte at a time is cut off, and an honest one is still answered.
 */
describe('a slow unauthenticated body', () => {
  let site: SiteProcess | undefined;
  afterAll(async () => {
    await site?.stop();
  });

  it('is cut off at the deadline', async () => {
    const dir = path.join(tmpDir(), 'site');
    expect((await cascade(['site', 'init', '--data', dir, '--code', 'CEN'])).code).toBe(0);
    site = await startSite(dir, [], { env: { CASCADE_JOIN_DEADLINE_SECONDS: '2' } });
    const url = new URL(site.url);
    const started = Date.now();
    const closedAfter = await new Promise<number>((resolve, reject) => {
      const s = net.connect(Number(url.port), url.hostname, () => {
        s.write(
          `POST /api/v1/agent/enrol HTTP/1.1\r\nhost: ${url.host}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{`,
        );
        const drip = setInterval(() => s.write(' '), 200);
        s.on('close', () => {
          clearInterval(drip);
          resolve(Date.now() - started);
        });
      });
      s.on('error', () => {});
      setTimeout(() => reject(new Error('the connection was still open after 15 s')), 15_000);
    });
    expect(closedAfter).toBeGreaterThanOrEqual(1500);
    expect(closedAfter).toBeLessThan(10_000);
    // An honest enrolment (a bad token, answered at once) is unaffected.
    const r = await fetch(`${site.url}/api/v1/agent/enrol`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        token: 'casj_agent_x_0123456789abcdef',
        inventory: { hostname: 'h', os: 'linux', arch: 'x64', version: '0.1.0', addresses: [], freeDisk: null, linkSpeed: null },
      }),
    });
    expect(r.status).toBe(401);
  }, 60_000);
});
