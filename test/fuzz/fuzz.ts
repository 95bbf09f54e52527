import fc from 'fast-check';
import { expect } from 'vitest';
import { CascadeError } from '../../src/core/errors.js';

/**
 * The fuzzing rounds (docs/development.md#fuzzing): CI runs a short round with a fixed seed;
 * `npm run fuzz` a long one (FUZZ_RUNS cases per parser, a random seed it prints, so that a
 * failure can be replayed with FUZZ_SEED).
 */
export const RUNS = Number(process.env.FUZZ_RUNS) || 150;
export const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : process.env.FUZZ_RUNS ? Date.now() % 2 ** 31 : 42;

const counts = new Map<string, number>();
/** Cases run per parser in this process, for the long round's report. */
export const casesRun = (): ReadonlyMap<string, number> => counts;

/**
 * Runs `parse` on each generated input: it must return (anything) or throw a CascadeError with
 * a one-line message; any other exception is a defect.
 */
export function refusesCleanly<T>(name: string, arb: fc.Arbitrary<T>, parse: (input: T) => unknown): void {
  fc.assert(
    fc.property(arb, (input) => {
      counts.set(name, (counts.get(name) ?? 0) + 1);
      try {
        parse(input);
      } catch (e) {
        if (!(e instanceof CascadeError)) throw new Error(`${name}: not a CascadeError: ${(e as Error)?.stack ?? String(e)}`);
        expect(e.message).not.toContain('\n');
      }
    }),
    { numRuns: RUNS, seed: SEED },
  );
}

/** As `refusesCleanly`, for async parsers. */
export async function refusesCleanlyAsync<T>(name: string, arb: fc.Arbitrary<T>, parse: (input: T) => Promise<unknown>): Promise<void> {
  await fc.assert(
    fc.asyncProperty(arb, async (input) => {
      counts.set(name, (counts.get(name) ?? 0) + 1);
      try {
        await parse(input);
      } catch (e) {
        if (!(e instanceof CascadeError)) throw new Error(`${name}: not a CascadeError: ${(e as Error)?.stack ?? String(e)}`);
        expect(e.message).not.toContain('\n');
      }
    }),
    { numRuns: RUNS, seed: SEED },
  );
}

/**
 * A valid input with damage: bytes flipped, cut short, spliced or repeated at random places.
 * What a hostile or broken peer sends most often looks almost right.
 */
export function mutated(valid: Uint8Array): fc.Arbitrary<Uint8Array> {
  const n = valid.length;
  return fc.oneof(
    fc
      .array(fc.tuple(fc.nat({ max: Math.max(0, n - 1) }), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 8 })
      .map((flips) => {
        const b = Buffer.from(valid);
        for (const [at, x] of flips) b[at] = (b[at] as number) ^ x;
        return new Uint8Array(b);
      }),
    fc.nat({ max: n }).map((at) => valid.subarray(0, at)),
    fc
      .tuple(fc.nat({ max: n }), fc.uint8Array({ maxLength: 64 }))
      .map(([at, junk]) => new Uint8Array(Buffer.concat([valid.subarray(0, at), junk, valid.subarray(at)]))),
    fc
      .tuple(fc.nat({ max: n }), fc.nat({ max: n }))
      .map(([a, b]) => new Uint8Array(Buffer.concat([valid, valid.subarray(Math.min(a, b), Math.max(a, b))]))),
  );
}

/** JSON text with damage (characters changed, cut short), and JSON values of every shape. */
export function mutatedText(valid: string): fc.Arbitrary<string> {
  return fc.oneof(
    mutated(Buffer.from(valid)).map((b) => Buffer.from(b).toString('utf8')),
    fc.string({ maxLength: 200 }),
  );
}

/**
 * For inputs that may be JSON text: the parser gets the parsed value; text that is not JSON is
 * skipped (JSON.parse refuses it before any parser of ours sees it). Other values pass as given.
 */
export const fromText =
  (parse: (value: unknown) => unknown) =>
  (input: unknown): unknown => {
    if (typeof input !== 'string') return parse(input);
    let value: unknown;
    try {
      value = JSON.parse(input);
    } catch {
      return undefined;
    }
    return parse(value);
  };

export const anyJson = (): fc.Arbitrary<unknown> => fc.jsonValue({ maxDepth: 4 });
