import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Worker threads and e2e tests run the compiled code in dist/: build it once before the
 * tests so it is never stale.
 *
 * Every temporary folder of the run (tests, the sites and CLIs they start) goes under one
 * folder, removed when the run ends: runs used to leave gigabytes behind in /tmp. Set
 * CASCADE_KEEP_TEST_TMP=1 to keep it for a look.
 */
export default function setup(): () => void {
  const root = fileURLToPath(new URL('..', import.meta.url));
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cascade-tests-'));
  // Readable by the servers some tests start under other users (nginx).
  fs.chmodSync(tmp, 0o755);
  const before = process.env.TMPDIR;
  process.env.TMPDIR = tmp;
  return () => {
    if (before === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = before;
    if (process.env.CASCADE_KEEP_TEST_TMP) process.stdout.write(`test files kept in ${tmp}\n`);
    else fs.rmSync(tmp, { recursive: true, force: true });
  };
}
