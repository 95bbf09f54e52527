import crypto from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CascadeError } from '../core/errors.js';
import { CHUNK_PARAMS } from './chunker.js';
import { applyDelta, type Delta, encodeDelta, MAX_BASES, makeDelta, parseDelta, signature } from './delta.js';

const sha = (b: Uint8Array): string => crypto.createHash('sha256').update(b).digest('hex');

function seeded(size: number, seed: string): Buffer {
  const key = crypto.createHash('sha256').update(seed).digest();
  return crypto.createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(size));
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(CascadeError);
    return (e as CascadeError).code;
  }
  throw new Error('expected a CascadeError, but nothing was thrown');
}

const D1 = 'a'.repeat(64);
const D2 = 'b'.repeat(64);

/** Hand-built payload: header for the given bases and size, then raw op bytes. */
function payload(bases: string[], size: number, ...ops: Buffer[]): Buffer {
  const head = Buffer.alloc(1 + 32 * bases.length + 4);
  head[0] = bases.length;
  for (const [i, b] of bases.entries()) head.write(b, 1 + 32 * i, 32, 'hex');
  head.writeUInt32BE(size, 1 + 32 * bases.length);
  return Buffer.concat([head, ...ops]);
}
function copy(base: number, offset: number, length: number): Buffer {
  const b = Buffer.alloc(10);
  b[0] = 1;
  b[1] = base;
  b.writeUInt32BE(offset, 2);
  b.writeUInt32BE(length, 6);
  return b;
}
function data(bytes: Buffer, declared = bytes.length): Buffer {
  const b = Buffer.alloc(5);
  b[0] = 2;
  b.writeUInt32BE(declared, 1);
  return Buffer.concat([b, bytes]);
}

describe('delta', () => {
  const base = seeded(64 << 10, 'delta-base');
  const baseDigest = sha(base);

  it('describes a 3 KiB in-place edit of a 64 KiB chunk in a few KiB, and rebuilds it exactly', () => {
    const edited = Buffer.from(base);
    crypto.randomFillSync(edited, 30_000, 3 << 10);
    const payloadBytes = makeDelta(edited, [{ digest: baseDigest, sig: signature(base) }]);
    expect(payloadBytes).not.toBeNull();
    const p = payloadBytes as Buffer;
    expect(p.length).toBeLessThan(8 << 10);
    const d = parseDelta(p);
    expect(d.bases).toEqual([baseDigest]);
    expect(d.size).toBe(edited.length);
    expect(d.literalBytes).toBeGreaterThanOrEqual(3 << 10);
    expect(d.literalBytes).toBeLessThan(8 << 10);
    const rebuilt = applyDelta(d, new Map([[baseDigest, base]]));
    expect(sha(rebuilt)).toBe(sha(edited));
  });

  it('handles an insertion that shifts the rest of the chunk', () => {
    const edited = Buffer.concat([base.subarray(0, 10_000), crypto.randomBytes(200), base.subarray(10_000)]);
    const p = makeDelta(edited, [{ digest: baseDigest, sig: signature(base) }]);
    expect(p).not.toBeNull();
    const d = parseDelta(p as Buffer);
    expect(d.literalBytes).toBeLessThan(4 << 10);
    expect(Buffer.from(applyDelta(d, new Map([[baseDigest, base]]))).equals(edited)).toBe(true);
  });

  it('draws on several bases', () => {
    const other = seeded(64 << 10, 'delta-other');
    const otherDigest = sha(other);
    const mixed = Buffer.concat([base.subarray(0, 32 << 10), other.subarray(32 << 10)]);
    const p = makeDelta(mixed, [
      { digest: baseDigest, sig: signature(base) },
      { digest: otherDigest, sig: signature(other) },
    ]);
    const d = parseDelta(p as Buffer);
    expect(d.bases).toEqual([baseDigest, otherDigest]);
    expect(d.literalBytes).toBeLessThan(4 << 10);
    const used = new Set(d.ops.flatMap((o) => (o.op === 1 ? [o.base] : [])));
    expect(used).toEqual(new Set([0, 1]));
    expect(
      Buffer.from(
        applyDelta(
          d,
          new Map([
            [baseDigest, base],
            [otherDigest, other],
          ]),
        ),
      ).equals(mixed),
    ).toBe(true);
  });

  it('returns null when the chunk shares nothing with its bases', () => {
    expect(makeDelta(seeded(64 << 10, 'unrelated'), [{ digest: baseDigest, sig: signature(base) }])).toBeNull();
    expect(makeDelta(base, [])).toBeNull();
  });

  it('an identical chunk is one copy op and no literal bytes', () => {
    const d = parseDelta(makeDelta(base, [{ digest: baseDigest, sig: signature(base) }]) as Buffer);
    expect(d.literalBytes).toBe(0);
    expect(d.ops).toEqual([{ op: 1, base: 0, offset: 0, length: base.length }]);
  });

  it('uses at most MAX_BASES bases', () => {
    const bases = Array.from({ length: MAX_BASES + 3 }, (_, i) => ({ digest: sha(Buffer.from([i])), sig: signature(base) }));
    const d = parseDelta(makeDelta(base, bases) as Buffer);
    expect(d.bases.length).toBe(MAX_BASES);
  });

  it('signature covers the chunk with sub-chunks', () => {
    const sig = signature(base);
    expect(sig.reduce((a, [n]) => a + n, 0)).toBe(base.length);
    expect(sig.length).toBeGreaterThan(50);
    for (const [, fp] of sig) expect(fp).toMatch(/^[0-9a-f]{12}$/);
  });

  it('encodeDelta and parseDelta agree', () => {
    const d: Delta = {
      bases: [D1, D2],
      size: 30,
      ops: [
        { op: 1, base: 1, offset: 5, length: 10 },
        { op: 2, data: Buffer.from('0123456789abcdefghij') },
      ],
      literalBytes: 20,
    };
    const back = parseDelta(encodeDelta(d));
    expect(back.bases).toEqual(d.bases);
    expect(back.size).toBe(30);
    expect(back.literalBytes).toBe(20);
    expect(back.ops[0]).toEqual({ op: 1, base: 1, offset: 5, length: 10 });
    const op1 = back.ops[1];
    expect(op1?.op).toBe(2);
    if (op1?.op === 2) expect(Buffer.from(op1.data).toString()).toBe('0123456789abcdefghij');
  });

  it('parses a payload that is a view into a larger buffer', () => {
    const p = payload([D1], 3, data(Buffer.from('xyz')));
    const big = Buffer.concat([Buffer.alloc(17, 0xee), p, Buffer.alloc(9, 0xee)]);
    const d = parseDelta(big.subarray(17, 17 + p.length));
    expect(d.bases).toEqual([D1]);
    const op = d.ops[0];
    if (op?.op !== 2) throw new Error('expected a data op');
    expect(Buffer.from(op.data).toString()).toBe('xyz');
  });

  describe('hostile payloads', () => {
    it('rejects a bad base count', () => {
      expect(codeOf(() => parseDelta(new Uint8Array(0)))).toBe('bad_request');
      expect(codeOf(() => parseDelta(payload([], 10, data(Buffer.alloc(10)))))).toBe('bad_request');
      const nine = Array.from({ length: MAX_BASES + 1 }, () => D1);
      expect(codeOf(() => parseDelta(payload(nine, 10, data(Buffer.alloc(10)))))).toBe('bad_request');
      expect(() => parseDelta(payload(nine, 10))).toThrow(/9 bases/);
      // A count of 255 with too few bytes behind it.
      const p = payload([D1], 10, data(Buffer.alloc(10)));
      p[0] = 255;
      expect(codeOf(() => parseDelta(p))).toBe('bad_request');
    });

    it('rejects a truncated header', () => {
      const p = payload([D1, D2], 10, data(Buffer.alloc(10)));
      for (const n of [1, 20, 33, 65, 68])
        expect(
          codeOf(() => parseDelta(p.subarray(0, n))),
          `${n} bytes`,
        ).toBe('bad_request');
    });

    it('rejects a chunk size of 0 or over the chunk maximum', () => {
      expect(() => parseDelta(payload([D1], 0))).toThrow(/chunk size 0/);
      expect(codeOf(() => parseDelta(payload([D1], CHUNK_PARAMS.max + 1, copy(0, 0, CHUNK_PARAMS.max + 1))))).toBe('bad_request');
      expect(parseDelta(payload([D1], CHUNK_PARAMS.max, copy(0, 0, CHUNK_PARAMS.max))).size).toBe(CHUNK_PARAMS.max);
    });

    it('rejects a copy from a base it does not name', () => {
      expect(() => parseDelta(payload([D1], 10, copy(1, 0, 10)))).toThrow(/copy from base 1 of 1/);
    });

    it('rejects ops that do not add up to the size', () => {
      expect(() => parseDelta(payload([D1], 10, copy(0, 0, 9)))).toThrow(/ops make 9 bytes, not 10/);
      expect(() => parseDelta(payload([D1], 10, copy(0, 0, 11)))).toThrow(/past the chunk size/);
      expect(() => parseDelta(payload([D1], 10, copy(0, 0, 5), data(Buffer.alloc(6))))).toThrow(/past the chunk size/);
      expect(() => parseDelta(payload([D1], 10))).toThrow(/ops make 0 bytes/);
      // A huge length must not wrap around.
      expect(codeOf(() => parseDelta(payload([D1], 10, copy(0, 0, 0xffffffff), copy(0, 0, 11))))).toBe('bad_request');
    });

    it('rejects truncated ops and data running past the end', () => {
      const good = payload([D1], 10, copy(0, 0, 4), data(Buffer.from('abcdef')));
      expect(parseDelta(good).ops.length).toBe(2);
      const header = 1 + 32 + 4;
      for (let n = header + 1; n < good.length; n++)
        expect(
          codeOf(() => parseDelta(good.subarray(0, n))),
          `${n} of ${good.length} bytes`,
        ).toBe('bad_request');
      expect(() => parseDelta(payload([D1], 10, data(Buffer.alloc(4), 10)))).toThrow(/past the end/);
    });

    it('rejects an unknown op', () => {
      expect(() => parseDelta(payload([D1], 10, Buffer.from([3, 0, 0, 0, 10])))).toThrow(/unknown op 3/);
      expect(() => parseDelta(payload([D1], 10, Buffer.from([0])))).toThrow(/unknown op 0/);
    });

    it('applyDelta refuses a copy past the end of its base', () => {
      const d = parseDelta(payload([D1], 10, copy(0, 60, 10)));
      const e = (() => {
        try {
          applyDelta(d, new Map([[D1, new Uint8Array(64)]]));
        } catch (err) {
          return err as CascadeError;
        }
        return undefined;
      })();
      expect(e).toBeInstanceOf(CascadeError);
      expect(e?.code).toBe('bad_request');
      expect(e?.message).toMatch(/past its base/);
      // Within the base it works.
      const base = seeded(70, 'b');
      expect(Buffer.from(applyDelta(d, new Map([[D1, base]]))).equals(base.subarray(60, 70))).toBe(true);
      // An offset near 2^32 must not wrap.
      const far = parseDelta(payload([D1], 10, copy(0, 0xfffffff8, 10)));
      expect(codeOf(() => applyDelta(far, new Map([[D1, base]])))).toBe('bad_request');
    });

    it('applyDelta reports a base it does not have as missing_chunks', () => {
      const d = parseDelta(payload([D1, D2], 10, copy(1, 0, 10)));
      expect(codeOf(() => applyDelta(d, new Map([[D1, new Uint8Array(64)]])))).toBe('missing_chunks');
    });

    it('never throws anything but a CascadeError on random garbage', () => {
      for (let i = 0; i < 2000; i++) {
        const len = 1 + (i % 120);
        const junk = crypto.randomBytes(len);
        if (i % 3 === 0) junk[0] = 1 + (i % MAX_BASES);
        try {
          const d = parseDelta(junk);
          applyDelta(d, new Map(d.bases.map((b) => [b, new Uint8Array(CHUNK_PARAMS.max)])));
        } catch (e) {
          expect(e).toBeInstanceOf(CascadeError);
        }
      }
    });
  });
});
