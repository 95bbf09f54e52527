import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * Worker threads and e2e tests run the compiled code in dist/: build it once before the
 * tests so it is never stale.
 */
export default function setup(): void {
  const root = fileURLToPath(new URL('..', import.meta.url));
  execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
}
