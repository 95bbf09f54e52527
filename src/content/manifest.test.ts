import crypto from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { checkPath, LIMITS } from '../api/manifests.js';
import { CascadeError } from '../core/errors.js';
import { canonicalJson } from './canonical.js';
import { CHUNK_PARAMS } from './chunker.js';
import { encodeManifest, type Manifest, manifestChunks, manifestDigest, parseManifest, signManifest, verifyManifest } from './manifest.js';
import { generateSiteKey, publicKeyPem, type TrustedKey } from './signing.js';

const digest = (s: string): string => crypto.createHash('sha256').update(s).digest('hex');

function sample(): Manifest {
  return {
    format: 1,
    id: 'CEN00001',
    version: 3,
    name: 'Office 2024 ünïcode ✓',
    priority: 'medium',
    origin: 'CEN',
    created: '2025-01-02T03:04:05.000Z',
    programs: [
      { name: 'Install', command: 'setup.exe /quiet "C:\\Program Files"' },
      { name: 'Uninstall', command: 'setup.exe /uninstall' },
    ],
    files: [
      { type: 'dir', path: 'bin', mode: 0o755 },
      {
        type: 'file',
        path: 'bin/setup.exe',
        mode: 0o755,
        size: 100_000,
        chunks: [
          [digest('a'), 60_000],
          [digest('b'), 40_000],
        ],
      },
      { type: 'file', path: 'readme.txt', mode: 0o644, size: 12, chunks: [[digest('c'), 12]] },
      { type: 'file', path: 'empty', mode: 0o644, size: 0, chunks: [] },
      { type: 'link', path: 'bin/latest', target: 'setup.exe' },
      { type: 'link', path: 'docs', target: 'bin/../readme.txt' },
    ],
    bytes: 100_012,
  };
}

// biome-ignore lint/suspicious/noExplicitAny: hostile input takes any shape
type Loose = Record<string, any>;

/** A deep copy with `edit` applied, as plain untrusted JSON. */
function hostile(edit: (m: Loose) => void): unknown {
  const m = JSON.parse(JSON.stringify(sample())) as Loose;
  edit(m);
  return m;
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

const key = generateSiteKey('CEN');
const trusted: TrustedKey[] = [{ keyId: key.keyId, publicKeyPem: publicKeyPem(key.publicKey), site: 'CEN' }];

describe('manifest signing', () => {
  it('a signed manifest verifies and comes back equal', () => {
    const m = sample();
    const bytes = signManifest(m, key);
    const v = verifyManifest(bytes, trusted);
    expect(v.manifest).toEqual(m);
    expect(v.signature.keyId).toBe(key.keyId);
    expect(key.keyId).toMatch(/^CEN:[0-9a-f]{16}$/);
    // The stored form is canonical JSON of the envelope.
    expect(bytes.toString()).toBe(canonicalJson(JSON.parse(bytes.toString())));
  });

  it('any single flipped byte of the signed bytes fails verification', () => {
    const bytes = signManifest(sample(), key);
    expect(bytes.length).toBeGreaterThan(500);
    const passed: number[] = [];
    const codes = new Set<string>();
    for (let i = 0; i < bytes.length; i++) {
      const bad = Buffer.from(bytes);
      bad[i] = (bad[i] as number) ^ 0x01;
      try {
        verifyManifest(bad, trusted);
        passed.push(i);
      } catch (e) {
        expect(e).toBeInstanceOf(CascadeError);
        codes.add((e as CascadeError).code);
      }
    }
    expect(passed.map((i) => `${i}: ${bytes.toString('latin1', Math.max(0, i - 20), i + 20)}`)).toEqual([]);
    expect([...codes].sort()).toEqual(['bad_signature', 'invalid_manifest']);
  });

  it('any other single-bit flip of the signature or keyId fails too', () => {
    const bytes = signManifest(sample(), key);
    const text = bytes.toString();
    const start = text.indexOf('"signature":');
    expect(start).toBeGreaterThan(0);
    for (let i = start; i < bytes.length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        const bad = Buffer.from(bytes);
        bad[i] = (bad[i] as number) ^ (1 << bit);
        expect(() => verifyManifest(bad, trusted), `byte ${i} bit ${bit}`).toThrow(CascadeError);
      }
    }
  });

  it('refuses a signature by a key that is not trusted', () => {
    const other = generateSiteKey('CEN');
    const bytes = signManifest(sample(), other);
    expect(codeOf(() => verifyManifest(bytes, trusted))).toBe('bad_signature');
    expect(() => verifyManifest(bytes, trusted)).toThrow(/not trusted/);
    expect(codeOf(() => verifyManifest(signManifest(sample(), key), []))).toBe('bad_signature');
  });

  it('refuses a signature by another key presented under the trusted key id', () => {
    const other = generateSiteKey('CEN');
    const forged = signManifest(sample(), { ...other, keyId: key.keyId });
    expect(codeOf(() => verifyManifest(forged, trusted))).toBe('bad_signature');
    // A trusted-key list holding the other key under the same id is someone else's trust.
    expect(verifyManifest(forged, [{ keyId: key.keyId, publicKeyPem: publicKeyPem(other.publicKey), site: 'CEN' }]).manifest.id).toBe(
      'CEN00001',
    );
  });

  it("refuses a manifest signed by another site's trusted key: a site signs only its own packages", () => {
    const eur = generateSiteKey('EUR');
    const both: TrustedKey[] = [...trusted, { keyId: eur.keyId, publicKeyPem: publicKeyPem(eur.publicKey), site: 'EUR' }];
    // EUR's key is trusted (vouched for by the central site), but CEN00001 is CEN's package.
    const forged = signManifest(sample(), eur);
    expect(codeOf(() => verifyManifest(forged, both))).toBe('bad_signature');
    expect(() => verifyManifest(forged, both)).toThrow(/CEN00001 belongs to site CEN, .*signed by site EUR's key/);
    // Nor may it claim EUR as the origin of CEN's package, nor sign it under its own origin.
    const m = sample();
    m.origin = 'EUR';
    expect(() => verifyManifest(signManifest(m, eur), both)).toThrow(/names origin EUR/);
    expect(() => verifyManifest(signManifest(m, key), both)).toThrow(/names origin EUR/);
    // EUR's own package verifies with EUR's key, and the cache never lends one key's pass to another.
    const own = { ...sample(), id: 'EUR00001', origin: 'EUR' };
    expect(verifyManifest(signManifest(own, eur), both).manifest.id).toBe('EUR00001');
    const bytes = signManifest(sample(), key);
    expect(verifyManifest(bytes, both).manifest.id).toBe('CEN00001');
    expect(codeOf(() => verifyManifest(bytes, [{ ...(trusted[0] as TrustedKey), site: 'EUR' }]))).toBe('bad_signature');
  });

  it("a manifest verified before is checked against today's trust, and each caller gets its own copy", () => {
    const m = sample();
    const bytes = signManifest(m, key);
    const first = verifyManifest(bytes, trusted);
    // The same bytes again, once the key is no longer trusted or its id names another key.
    expect(codeOf(() => verifyManifest(bytes, []))).toBe('bad_signature');
    const other = generateSiteKey('CEN');
    expect(codeOf(() => verifyManifest(bytes, [{ keyId: key.keyId, publicKeyPem: publicKeyPem(other.publicKey), site: 'CEN' }]))).toBe(
      'bad_signature',
    );
    // Editing what one caller got changes nothing for the next.
    first.manifest.name = 'edited';
    (first.manifest.files[0] as { path: string }).path = 'elsewhere';
    expect(verifyManifest(bytes, trusted).manifest).toEqual(m);
    // Any altered byte is still refused after the original passed.
    const bad = Buffer.from(bytes);
    const at = bad.indexOf('"name"') + 9;
    bad.writeUInt8((bad.readUInt8(at) ^ 0x01) & 0xff, at);
    expect(() => verifyManifest(bad, trusted)).toThrow(CascadeError);
  });

  it('refuses a re-encoded (non-canonical) but otherwise identical manifest', () => {
    const bytes = signManifest(sample(), key);
    const pretty = Buffer.from(JSON.stringify(JSON.parse(bytes.toString()), null, 2));
    expect(() => verifyManifest(pretty, trusted)).toThrow(/canonical/);
    const spaced = Buffer.concat([bytes, Buffer.from(' ')]);
    expect(codeOf(() => verifyManifest(spaced, trusted))).toBe('invalid_manifest');
  });

  it('refuses bytes that are not valid UTF-8 even when they decode to the same text', () => {
    const m = sample();
    m.name = 'replacement \ufffd char';
    const bytes = signManifest(m, key);
    expect(verifyManifest(bytes, trusted).manifest.name).toBe(m.name);
    const at = bytes.indexOf(Buffer.from('\ufffd'));
    expect(at).toBeGreaterThan(0);
    // 0xFF is not UTF-8; a lenient decoder turns it into U+FFFD, the very character signed.
    const bad = Buffer.concat([bytes.subarray(0, at), Buffer.from([0xff]), bytes.subarray(at + 3)]);
    expect(codeOf(() => verifyManifest(bad, trusted))).toBe('invalid_manifest');
  });

  it('refuses a manifest signed and then edited, even when re-canonicalised', () => {
    const bytes = signManifest(sample(), key);
    const env = JSON.parse(bytes.toString());
    env.manifest.programs[0].command = 'evil.exe';
    expect(codeOf(() => verifyManifest(Buffer.from(canonicalJson(env)), trusted))).toBe('bad_signature');
  });

  it('refuses envelopes of the wrong shape', () => {
    const bytes = signManifest(sample(), key);
    const env = JSON.parse(bytes.toString());
    const cases: unknown[] = [
      { manifest: env.manifest },
      { ...env, extra: 1 },
      { ...env, signature: { ...env.signature, alg: 'none' } },
      { ...env, signature: { keyId: env.signature.keyId, value: '' } },
      [env],
      'text',
    ];
    for (const c of cases) expect(codeOf(() => verifyManifest(Buffer.from(canonicalJson(c)), trusted))).toBe('invalid_manifest');
    expect(codeOf(() => verifyManifest(Buffer.from('{not json'), trusted))).toBe('invalid_manifest');
    expect(codeOf(() => verifyManifest(Buffer.from(''), trusted))).toBe('invalid_manifest');
  });

  it('refuses a correctly signed manifest that breaks the rules', () => {
    // The origin's own signing path refuses it...
    const m = sample();
    m.bytes += 1;
    expect(codeOf(() => signManifest(m, key))).toBe('invalid_manifest');
    // ...and a manifest signed by a buggy or compromised origin is still checked on receipt.
    const envBytes = Buffer.from(
      canonicalJson({
        manifest: m,
        signature: { keyId: key.keyId, value: crypto.sign(null, encodeManifest(m), key.privateKey).toString('base64') },
      }),
    );
    expect(codeOf(() => verifyManifest(envBytes, trusted))).toBe('invalid_manifest');
  });

  it('refuses a manifest over the size limit before parsing it', () => {
    const big = { length: LIMITS.manifestBytes + 1 } as Uint8Array;
    expect(codeOf(() => verifyManifest(big, trusted))).toBe('too_large');
  });

  it('the digest is stable and changes with any field', () => {
    const a = manifestDigest(sample());
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(manifestDigest(sample())).toBe(a);
    const m = sample();
    m.version = 4;
    expect(manifestDigest(m)).not.toBe(a);
  });

  it('lists the unique chunks with their sizes', () => {
    const m = sample();
    m.files.push({ type: 'file', path: 'copy.exe', mode: 0o644, size: 60_000, chunks: [[digest('a'), 60_000]] });
    m.bytes += 60_000;
    const c = manifestChunks(parseManifest(m));
    expect(c).toEqual(
      new Map([
        [digest('a'), 60_000],
        [digest('b'), 40_000],
        [digest('c'), 12],
      ]),
    );
  });
});

describe('hostile manifests', () => {
  const rejects = (value: unknown, why?: RegExp): void => {
    let err: unknown;
    try {
      parseManifest(value);
    } catch (e) {
      err = e;
    }
    expect(err, 'parseManifest should have thrown').toBeInstanceOf(CascadeError);
    expect((err as CascadeError).code).toBe('invalid_manifest');
    if (why) expect((err as CascadeError).message).toMatch(why);
  };

  it('accepts the sample', () => {
    expect(parseManifest(hostile(() => {}))).toEqual(sample());
  });

  it('rejects ".." segments', () => {
    for (const p of ['..', '../x', 'a/../b', 'a/..', 'bin/../../etc/passwd']) {
      rejects(
        hostile((m) => {
          m.files[2].path = p;
        }),
        /\.\./,
      );
    }
  });

  it('rejects empty and "." segments', () => {
    for (const p of ['', '.', './a', 'a/./b', 'a//b', 'a/']) {
      rejects(
        hostile((m) => {
          m.files[2].path = p;
        }),
      );
    }
  });

  it('rejects absolute paths', () => {
    for (const p of ['/etc/passwd', '/', 'C:/x', 'c:x', 'Z:\\x']) {
      rejects(
        hostile((m) => {
          m.files[2].path = p;
        }),
        /absolute/,
      );
    }
  });

  it('rejects backslashes and control characters', () => {
    rejects(
      hostile((m) => {
        m.files[2].path = 'bin\\..\\..\\evil';
      }),
      /backslash/,
    );
    for (const p of ['a\u0000b', 'line\nbreak', 'del\u007f']) {
      rejects(
        hostile((m) => {
          m.files[2].path = p;
        }),
        /control character/,
      );
    }
  });

  it('rejects over-long paths and names', () => {
    rejects(
      hostile((m) => {
        m.files[2].path = 'x'.repeat(256);
      }),
      /longer than 255/,
    );
    rejects(
      hostile((m) => {
        m.files[2].path = Array.from({ length: 1000 }, () => 'abcd').join('/');
      }),
      /longer than 4096/,
    );
    // 255 bytes of a multi-byte character is fewer than 255 characters.
    rejects(
      hostile((m) => {
        m.files[2].path = 'é'.repeat(128);
      }),
      /longer than 255 bytes/,
    );
    expect(checkPath('x'.repeat(255))).toBeUndefined();
  });

  it('rejects duplicate paths', () => {
    rejects(
      hostile((m) => {
        m.files[2].path = 'bin/setup.exe';
      }),
      /appears twice/,
    );
    rejects(
      hostile((m) => {
        m.files.push({ type: 'dir', path: 'bin', mode: 0o755 });
      }),
      /appears twice/,
    );
  });

  it('rejects an entry under a path that is a file or a link', () => {
    rejects(
      hostile((m) => {
        m.files.push({ type: 'dir', path: 'readme.txt/sub', mode: 0o755 });
      }),
      /lies under readme.txt, which is a file/,
    );
    rejects(
      hostile((m) => {
        m.files.push({ type: 'file', path: 'bin/setup.exe/x/y', mode: 0o644, size: 0, chunks: [] });
      }),
      /which is a file/,
    );
    rejects(
      hostile((m) => {
        m.files.push({ type: 'file', path: 'docs/x', mode: 0o644, size: 0, chunks: [] });
      }),
      /which is a link/,
    );
  });

  it('rejects links pointing outside the package', () => {
    for (const target of [
      '../../etc',
      '..',
      '../x',
      'a/../../..',
      '/etc/passwd',
      '.',
      'sub/..',
      'C:/Windows',
      'c:x',
      'x\\..\\..\\y',
      'a\u0000b',
    ]) {
      rejects(
        hostile((m) => {
          m.files.push({ type: 'link', path: 'escape', target });
        }),
      );
    }
    // From a sub-folder, one '..' stays inside but two leave.
    expect(() =>
      parseManifest(
        hostile((m) => {
          m.files.push({ type: 'link', path: 'bin/up', target: '../readme.txt' });
        }),
      ),
    ).not.toThrow();
    rejects(
      hostile((m) => {
        m.files.push({ type: 'link', path: 'bin/up', target: '../../readme.txt' });
      }),
      /points outside/,
    );
  });

  it('rejects links that escape through another link', () => {
    // d/up -> ".." is d's parent (the package root) ...
    // d/e/esc -> "../up/.." looks like "d" by text, but d/up is a link to the root, so it is the root's parent.
    rejects(
      hostile((m) => {
        m.files.push({ type: 'dir', path: 'd', mode: 0o755 });
        m.files.push({ type: 'dir', path: 'd/e', mode: 0o755 });
        m.files.push({ type: 'link', path: 'd/e/up', target: '..' });
        m.files.push({ type: 'link', path: 'd/e/esc', target: 'up/../..' });
      }),
      /points outside/,
    );
    rejects(
      hostile((m) => {
        m.files.push({ type: 'link', path: 'bin/root', target: '..' });
      }),
    );
    // A chain of links: "a" -> "b/c/.." where b is a link to "bin" is inside; its target through b is not checked by text alone.
    rejects(
      hostile((m) => {
        m.files.push({ type: 'dir', path: 'p', mode: 0o755 });
        m.files.push({ type: 'dir', path: 'p/q', mode: 0o755 });
        m.files.push({ type: 'link', path: 'p/q/r', target: '..' });
        m.files.push({ type: 'link', path: 'hop', target: 'p/q/r/../../..' });
      }),
    );
  });

  it('accepts links through links that stay inside, and rejects loops', () => {
    const ok = parseManifest(
      hostile((m) => {
        m.files.push({ type: 'dir', path: 'lib64', mode: 0o755 });
        m.files.push({ type: 'link', path: 'lib', target: 'lib64' });
        m.files.push({ type: 'link', path: 'bin/tool', target: '../lib/../bin/setup.exe' });
        m.files.push({ type: 'link', path: 'bin/chain', target: 'latest' });
        m.files.push({ type: 'link', path: 'libfoo', target: './lib/./libfoo.so.1' });
      }),
    );
    expect(ok.files.filter((e) => e.type === 'link').length).toBe(6);
    rejects(
      hostile((m) => {
        m.files.push({ type: 'link', path: 'a', target: 'b/x' });
        m.files.push({ type: 'link', path: 'b', target: 'a/y' });
      }),
      /points outside/,
    );
    rejects(
      hostile((m) => {
        m.files.push({ type: 'link', path: 'self', target: 'self/x' });
      }),
    );
  });

  it('resolves many links that pass through each other quickly', () => {
    const started = performance.now();
    parseManifest(
      hostile((m) => {
        m.files.push({ type: 'dir', path: 'd', mode: 0o755 });
        m.files.push({ type: 'link', path: 'l0', target: 'd' });
        for (let i = 1; i < 2000; i++) m.files.push({ type: 'link', path: `l${i}`, target: `l${i - 1}/../l${i - 1}/../l${i - 1}` });
      }),
    );
    expect(performance.now() - started).toBeLessThan(2000);
  });

  it('rejects chunk sizes that do not add up to the file size', () => {
    rejects(
      hostile((m) => {
        m.files[1].size = 100_001;
        m.bytes += 1;
      }),
      /add up to 100000 bytes, not its size 100001/,
    );
    rejects(
      hostile((m) => {
        m.files[3].size = 5;
        m.bytes += 5;
      }),
      /add up to 0 bytes/,
    );
  });

  it('rejects a bytes total that does not match the files', () => {
    rejects(
      hostile((m) => {
        m.bytes = 100_011;
      }),
      /files add up to 100012 bytes, but the manifest says 100011/,
    );
    rejects(
      hostile((m) => {
        m.bytes = 0;
      }),
    );
  });

  it('rejects absurd sizes and counts', () => {
    const D = digest('x');
    rejects(
      hostile((m) => {
        m.files.push({ type: 'file', path: 'huge', mode: 0o644, size: 2 ** 40 + 1, chunks: [[D, 1]] });
      }),
    );
    rejects(
      hostile((m) => {
        m.files[2].chunks = [[D, CHUNK_PARAMS.max + 1]];
        m.files[2].size = CHUNK_PARAMS.max + 1;
        m.bytes = 100_000 + CHUNK_PARAMS.max + 1;
      }),
    );
    rejects(
      hostile((m) => {
        m.files[2].chunks = [
          [D, 0],
          [D, 12],
        ];
      }),
    );
    rejects(
      hostile((m) => {
        m.files[2].chunks = [
          [D, -12],
          [D, 24],
        ];
      }),
    );
    rejects(
      hostile((m) => {
        m.bytes = 2 ** 42 + 1;
      }),
    );
    for (const bad of [1.5, -1, Number.MAX_SAFE_INTEGER + 2, '12']) {
      rejects(
        hostile((m) => {
          m.files[2].size = bad;
        }),
      );
    }
    // Many files of nearly 1 TiB each cannot add up past the total limit.
    rejects(
      hostile((m) => {
        const chunks = Array.from({ length: 1 }, () => [D, CHUNK_PARAMS.max]);
        for (let i = 0; i < 5; i++) m.files.push({ type: 'file', path: `big${i}`, mode: 0o644, size: CHUNK_PARAMS.max, chunks });
        m.bytes = 2 ** 42 + 10;
      }),
    );
  });

  it('rejects too many entries', () => {
    const entry = { type: 'dir', path: 'x', mode: 0o755 };
    rejects(
      hostile((m) => {
        m.files = new Array(LIMITS.entries + 1).fill(entry);
      }),
      /^manifest rejected: files: /,
    );
  });

  it('rejects too many programs and duplicate program names', () => {
    rejects(
      hostile((m) => {
        m.programs = Array.from({ length: LIMITS.programs + 1 }, (_, i) => ({ name: `p${i}`, command: 'x' }));
      }),
    );
    expect(() =>
      parseManifest(
        hostile((m) => {
          m.programs = Array.from({ length: LIMITS.programs }, (_, i) => ({ name: `p${i}`, command: 'x' }));
        }),
      ),
    ).not.toThrow();
    rejects(
      hostile((m) => {
        m.programs[1].name = 'Install';
      }),
      /program Install appears twice/,
    );
    for (const name of ['', ' lead', 'a/b', 'x'.repeat(65), 'semi;colon']) {
      rejects(
        hostile((m) => {
          m.programs[0].name = name;
        }),
      );
    }
    rejects(
      hostile((m) => {
        m.programs[0].command = 'x'.repeat(LIMITS.commandLength + 1);
      }),
    );
  });

  it('rejects extra unknown keys at every level', () => {
    rejects(
      hostile((m) => {
        m.extra = 1;
      }),
    );
    rejects(
      hostile((m) => {
        m.files[1].setuid = true;
      }),
    );
    rejects(
      hostile((m) => {
        m.files[0].size = 0;
      }),
    );
    rejects(
      hostile((m) => {
        m.programs[0].runAs = 'SYSTEM';
      }),
    );
  });

  it('rejects wrong field values', () => {
    const edits: ((m: Loose) => void)[] = [
      (m) => {
        m.format = 2;
      },
      (m) => {
        m.id = 'cen00001';
      },
      (m) => {
        m.id = 'CEN0001';
      },
      (m) => {
        m.version = 0;
      },
      (m) => {
        m.priority = 'urgent';
      },
      (m) => {
        m.origin = 'CENTRAL';
      },
      (m) => {
        m.name = '';
      },
      (m) => {
        m.files[1].mode = 0o4755;
      },
      (m) => {
        m.files[1].chunks[0][0] = 'A'.repeat(64);
      },
      (m) => {
        m.files[1].chunks[0] = [digest('a'), 60_000, 'extra'];
      },
      (m) => {
        m.files[0].type = 'fifo';
      },
      (m) => {
        m.files[4].target = '';
      },
      (m) => {
        delete m.bytes;
      },
      (m) => {
        m.files = {};
      },
    ];
    for (const edit of edits) rejects(hostile(edit));
    for (const v of [null, undefined, 'manifest', 42, []]) rejects(v);
  });

  it('the rejection names what is wrong', () => {
    rejects(
      hostile((m) => {
        m.files[2].path = '../x';
      }),
      /files\.2\.path: path "\.\.\/x" contains "\.\."/,
    );
  });
});
