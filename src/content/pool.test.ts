import { describe, expect, it } from 'vitest';
import { workerScript } from '../lib/worker-script.js';
import { destroyPool, newPool } from './pool.js';
import { WORKER_LOADED } from './pool-messages.js';

describe('the worker pool', () => {
  it('ends threads only once they have loaded their modules (terminating one mid-load aborts Node 20)', async () => {
    const p = newPool({ filename: workerScript(import.meta.url, 'worker'), minThreads: 2, maxThreads: 2 });
    const loaded = new Set<number>();
    p.on('message', (m: Record<string, number>) => {
      if (WORKER_LOADED in m) loaded.add(m[WORKER_LOADED] as number);
    });
    // Destroyed at once, while both threads are still starting (that takes ~0.2 s here).
    const started = p.threads.map((w) => w.threadId);
    expect(started).toHaveLength(2);
    await destroyPool(p);
    expect([...loaded].sort()).toEqual([...started].sort());
    expect(p.threads).toHaveLength(0);
  });
});
