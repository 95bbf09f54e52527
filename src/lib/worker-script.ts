import { fileURLToPath } from 'node:url';

/**
 * The file of a worker script (a thread's or a forked process's) that sits beside a module:
 * `./NAME.js` next to it, as compiled in dist/. Node runs only compiled code in a new thread or
 * process, so tests that run the TypeScript sources map the path into the build once, in their
 * setup (test/setup.ts): the sources never name dist/ themselves.
 */
let mapPath: ((file: string) => string) | undefined;

export function workerScript(moduleUrl: string, name: string): string {
  const file = fileURLToPath(new URL(`./${name}.js`, moduleUrl));
  return mapPath ? mapPath(file) : file;
}

/** Where worker scripts are taken from instead (tests: the compiled tree). */
export function mapWorkerScripts(map: (file: string) => string): void {
  mapPath = map;
}
