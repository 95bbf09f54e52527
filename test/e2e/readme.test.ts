import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, tmpDir } from './helpers.js';

/**
 * The README's command blocks, run as written and in order, in one shell in an empty folder, as
 * a new user would paste them: the README can never drift from what works. The harness adds
 * only what a person does without thinking: a source folder to package, and, after a line that
 * starts a server in the background, waiting until it listens.
 */
const README = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
const PORTS = [8100, 8101, 8201];

/** Every ```sh block after the quick start (which installs and tests this very checkout). */
function blocks(): string[] {
  const all = [...README.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1] as string);
  return all.filter((b) => !/npm install/.test(b));
}

/** A block's commands: continuation lines joined, comments kept (bash ignores them). */
function commands(block: string): string[] {
  return block
    .replace(/\\\n\s*/g, ' ')
    .split('\n')
    .filter((l) => l.trim() !== '');
}

const inUse = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });

describe('README', () => {
  it('has command blocks that run as written', async () => {
    const busy = [];
    for (const p of PORTS) if (await inUse(p)) busy.push(p);
    expect(busy, `the README's ports must be free for this test (is "npm start" running?)`).toEqual([]);
    const bs = blocks();
    expect(bs.length).toBeGreaterThanOrEqual(3);
    const dir = tmpDir('cascade-readme-');
    fs.symlinkSync(path.join(ROOT, 'bin'), path.join(dir, 'bin'));
    for (const [name, text] of [
      ['my-installer', 'version 1'],
      ['my-installer-sp1', 'version 1 with service pack 1'],
    ] as const) {
      fs.mkdirSync(path.join(dir, name));
      // An installer a POSIX client can run: a shell script, padded to about 400 KB.
      fs.writeFileSync(
        path.join(dir, name, 'setup.exe'),
        `#!/bin/sh\necho "installed ${text} ($1)"\nexit 0\n${`# ${text}\n`.repeat(20_000)}`,
        {
          mode: 0o755,
        },
      );
      fs.writeFileSync(path.join(dir, name, 'readme.txt'), `${text}\n`);
    }
    // After a background `... --data DIR &`, wait until the server of DIR listens.
    const lines: string[] = [];
    for (const b of bs)
      for (const c of commands(b)) {
        lines.push(`echo ${JSON.stringify(`$ ${c.replace(/\s+#.*$/, '')}`)}`, c);
        const bg = /--data (\S+)\s*&/.exec(c);
        if (bg) lines.push(`wait_for ${bg[1]}`);
      }
    const script = [
      'set -euo pipefail',
      "trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null' EXIT",
      // A signal ends the script through its EXIT trap, which stops the background servers.
      "trap 'exit 143' TERM INT",
      "wait_for() { local port; port=$(node -e \"const c=require(process.argv[1]+'/config.json');console.log((c.listen||'127.0.0.1:8100').split(':').pop())\" \"$1\");",
      '  for i in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && return 0; sleep 0.1; done; echo "nothing listens on $port" >&2; return 1; }',
      ...lines,
    ].join('\n');
    fs.writeFileSync(path.join(dir, 'readme.sh'), script);
    const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const p = spawn('bash', ['readme.sh'], {
        cwd: dir,
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, TMPDIR: dir, CASCADE_LOG_LEVEL: 'warn' },
      });
      let out = '';
      p.stdout.on('data', (d) => {
        out += d;
      });
      p.stderr.on('data', (d) => {
        out += d;
      });
      // SIGTERM first, so the script's trap stops the servers it started in the background.
      const t = setTimeout(() => {
        p.kill('SIGTERM');
        setTimeout(() => p.kill('SIGKILL'), 5000).unref();
      }, 150_000);
      p.on('close', (code) => {
        clearTimeout(t);
        resolve({ code, out });
      });
    });
    expect(r.code, r.out).toBe(0);
    // What the blocks promise, as their output shows it.
    expect(r.out).toMatch(/CEN00001 version 2/);
    expect(r.out).toMatch(/all verified/);
    expect(r.out).toMatch(/NYC\s+\S+\s+.*installed/);
    expect(r.out).toMatch(/nyc-dp1\s+NYC\s+remote\s+\w+/);
    expect(r.out).toMatch(/nyc-dp1\s+\S*\s*ok/);
    // The DP's join token came from NYC, though CASCADE_SITE and CASCADE_TOKEN were CEN's.
    expect(r.out).toContain('join token for a DP of site NYC');
    expect(fs.readFileSync(path.join(dir, 'out', 'setup.exe'), 'utf8')).toBe(
      `#!/bin/sh\necho "installed version 1 ($1)"\nexit 0\n${'# version 1\n'.repeat(20_000)}`,
    );
    // The agent ran the newest version's installer, and the site and why say so.
    expect(r.out).toContain('installed version 1 with service pack 1 (/q)');
    expect(r.out).toMatch(/NYC-A00001: 1 client\(s\): 1 succeeded/);
    expect(r.out).toMatch(/✓ succeeded at /);
  }, 180_000);
});
