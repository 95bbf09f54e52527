import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { closeServer } from './close-server.js';

const listen = (handler: http.RequestListener) =>
  new Promise<http.Server>((resolve) => {
    const s = http.createServer(handler);
    s.keepAliveTimeout = 65_000;
    s.listen(0, '127.0.0.1', () => resolve(s));
  });

const get = (port: number, agent: http.Agent) =>
  new Promise<string>((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, agent }, (r) => {
        let body = '';
        r.on('data', (d) => (body += d));
        r.on('end', () => resolve(body));
        r.on('error', reject);
      })
      .on('error', reject);
  });

describe('closeServer', () => {
  it('closes once a keep-alive request that was running at close time has its answer', async () => {
    const s = await listen((_req, res) => setTimeout(() => res.end('done'), 300));
    const agent = new http.Agent({ keepAlive: true });
    const answer = get((s.address() as AddressInfo).port, agent);
    await new Promise((r) => setTimeout(r, 100));
    const t0 = Date.now();
    await closeServer(s, 10_000);
    expect(await answer).toBe('done');
    // Plain server.close() would wait the 65 s keep-alive timeout here.
    expect(Date.now() - t0).toBeLessThan(5000);
    agent.destroy();
  });

  it('ends a request still running after the grace period', async () => {
    const s = await listen((_req, res) => res.write('partial'));
    const agent = new http.Agent({ keepAlive: true });
    const answer = get((s.address() as AddressInfo).port, agent).catch((e: Error) => `failed: ${e.message}`);
    await new Promise((r) => setTimeout(r, 100));
    await closeServer(s, 300);
    expect(await answer).toMatch(/^failed|partial/);
    agent.destroy();
  });
});
