/**
 * The write gate: chunk files are never written while the file system is being flushed.
 *
 * Measured on this project's machines (docs/performance.md, "Writes and flushes"): creating
 * and writing 474 MiB of chunk files while `syncfs` runs at the same time is 3-4x slower than
 * the same writes and flushes one after the other, because the writers and the flush keep
 * waiting for each other (journal commits, pages under writeback). So the worker threads
 * write only while the gate is open, and a group commit closes it, waits for the writers in
 * the gate to leave, flushes and renames, then opens it again. Hashing and compression go on
 * while it is closed: only the writes wait.
 *
 * The gate is two 32-bit cells in shared memory, [closed, writers]: workers wait with
 * `Atomics.wait` (they are threads of their own); the main thread with `Atomics.waitAsync`.
 */
const CLOSED = 0;
const WRITERS = 1;

export type Gate = Int32Array;

export function newGate(): Gate {
  return new Int32Array(new SharedArrayBuffer(8));
}

/** In a worker: waits until the gate is open, then counts this writer in. */
export function enterWrite(g: Gate): void {
  for (;;) {
    while (Atomics.load(g, CLOSED) === 1) Atomics.wait(g, CLOSED, 1);
    Atomics.add(g, WRITERS, 1);
    if (Atomics.load(g, CLOSED) === 0) return;
    // Closed between the check and the count: step out again so the flush can start.
    leaveWrite(g);
  }
}

export function leaveWrite(g: Gate): void {
  Atomics.sub(g, WRITERS, 1);
  Atomics.notify(g, WRITERS);
}

/** On the main thread: closes the gate and resolves once no writer is inside. */
export async function closeGate(g: Gate): Promise<void> {
  Atomics.store(g, CLOSED, 1);
  for (;;) {
    const n = Atomics.load(g, WRITERS);
    if (n === 0) return;
    const w = Atomics.waitAsync(g, WRITERS, n, 5_000);
    if (w.async) await w.value;
  }
}

export function openGate(g: Gate): void {
  Atomics.store(g, CLOSED, 0);
  Atomics.notify(g, CLOSED);
}
