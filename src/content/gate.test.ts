import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { closeGate, newGate, openGate } from './gate.js';

/** A real thread that enters the gate, records when, stays `holdMs`, and leaves. */
function writer(gate: Int32Array, log: Int32Array, holdMs: number): Worker {
  const code = `
    const { workerData } = require('node:worker_threads');
    const { gate, log, holdMs } = workerData;
    for (;;) {
      while (Atomics.load(gate, 0) === 1) Atomics.wait(gate, 0, 1);
      Atomics.add(gate, 1, 1);
      if (Atomics.load(gate, 0) === 0) break;
      Atomics.sub(gate, 1, 1); Atomics.notify(gate, 1);
    }
    Atomics.store(log, 0, 1);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, holdMs);
    Atomics.sub(gate, 1, 1); Atomics.notify(gate, 1);
    Atomics.store(log, 1, 1);
  `;
  return new Worker(code, { eval: true, workerData: { gate, log, holdMs } });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const done = (w: Worker) => new Promise((r) => w.once('exit', r));

describe('write gate', () => {
  it('keeps writers out while closed, and lets them in when opened', async () => {
    const gate = newGate();
    await closeGate(gate);
    const log = new Int32Array(new SharedArrayBuffer(8));
    const w = writer(gate, log, 0);
    await sleep(200);
    expect(Atomics.load(log, 0)).toBe(0); // still waiting at the closed gate
    openGate(gate);
    await done(w);
    expect(Atomics.load(log, 0)).toBe(1);
    expect(Atomics.load(gate, 1)).toBe(0);
  });

  it('closing waits for the writer inside to leave', async () => {
    const gate = newGate();
    const log = new Int32Array(new SharedArrayBuffer(8));
    const w = writer(gate, log, 300);
    while (Atomics.load(log, 0) === 0) await sleep(5);
    await closeGate(gate);
    // The writer had left before closeGate resolved.
    expect(Atomics.load(log, 1)).toBe(1);
    openGate(gate);
    await done(w);
  });
});
