/**
 * V8 settings the bundled agent sets for itself before the rest of it loads (imported first by
 * main.ts): a client machine should not lend an agent 140 MiB to fetch a package.
 * - `--semi-space-growth-factor=1`: the young generation stays at its first size (1 MiB a
 *   semi-space) instead of growing to 16 MiB under a download; the chunk buffers it would hold
 *   are reused, not allocated per chunk.
 * - `--no-opt`: no optimising compiler (TurboFan): its zones were ~15 MiB of the peak, and the
 *   agent's hot work (SHA-256, Brotli, socket and file calls) is native code anyway.
 * - `--optimize-for-size`: V8's smaller heap growth steps and code sizes.
 * Measured on the 512 MiB corpus (docs/performance.md#clients): peak RSS 138–140 MiB without
 * them, 75 MiB with, the download as fast within this machine's noise. Flags that resize the
 * heap only when Node starts (`--max-semi-space-size`) may still be given on the command line.
 */
import v8 from 'node:v8';

v8.setFlagsFromString('--semi-space-growth-factor=1');
v8.setFlagsFromString('--no-opt');
v8.setFlagsFromString('--optimize-for-size');
