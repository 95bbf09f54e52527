import type { TokenBucket } from '../core/rate.js';

/** Default slice: small enough to pace smoothly, large enough to keep per-slice overhead low. */
export const DEFAULT_SLICE_BYTES = 16 * 1024;

/**
 * Wait `ms` milliseconds on a real timer. Rejects with `signal.reason` if the signal is
 * aborted, before or during the wait (the timer is cleared).
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    if (!(ms > 0)) {
      resolve();
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, Math.ceil(ms));
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export interface ThrottleOptions {
  /** Stops the stream: the generator throws `signal.reason` and closes the source. */
  signal?: AbortSignal;
  /** Largest slice yielded, in bytes (default 16 KiB; never more than the bucket's burst). */
  sliceBytes?: number;
}

/**
 * Yield `source`'s bytes, in order, in slices of at most `sliceBytes`, each once `bucket`
 * grants it. Slices are views into the source's chunks (no copy). Share one bucket — the
 * route's — between all of a route's transfers: each keeps its own connection and the route's
 * total stays within the rate. With no limit (`bucket.rate === null`) chunks pass through whole.
 *
 * Tokens are reserved when a slice is requested, so a consumer that stops early (or an abort)
 * forfeits at most one slice's worth.
 */
export async function* throttle(
  source: AsyncIterable<Uint8Array>,
  bucket: TokenBucket,
  opts: ThrottleOptions = {},
): AsyncGenerator<Uint8Array> {
  const { signal } = opts;
  const sliceBytes = opts.sliceBytes ?? DEFAULT_SLICE_BYTES;
  if (!(Number.isInteger(sliceBytes) && sliceBytes > 0)) {
    throw new RangeError(`sliceBytes must be a positive integer, not ${sliceBytes}`);
  }
  signal?.throwIfAborted();
  for await (const chunk of source) {
    let offset = 0;
    while (offset < chunk.length) {
      signal?.throwIfAborted();
      if (bucket.rate === null) {
        const rest = offset === 0 ? chunk : chunk.subarray(offset);
        offset = chunk.length;
        yield rest;
        continue;
      }
      // The bucket's window guarantee needs each take to fit in its burst.
      const size = Math.min(sliceBytes, Math.max(1, Math.floor(bucket.burst)), chunk.length - offset);
      const slice = chunk.subarray(offset, offset + size);
      offset += size;
      const wait = bucket.take(size);
      if (wait > 0) await sleep(wait, signal);
      yield slice;
    }
  }
}
