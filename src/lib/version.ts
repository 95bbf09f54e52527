import fs from 'node:fs';

export const VERSION = '0.1.0';

/**
 * The bundled agent of this release (`npm run build` writes dist/cascade-agent.cjs beside the
 * compiled code): what `cascade agent publish` publishes by default, and a site server of a
 * newer release publishes by itself (docs/agent.md#upgrades).
 */
export const bundledAgentUrl = (): URL => new URL('../cascade-agent.cjs', import.meta.url);

/**
 * The bundled agent as another release would carry it: the same code, numbered `version` (what
 * the demo, the tests and the benchmarks publish as a newer agent). Writes `file`; returns it.
 */
export function writeAgentRelease(bundle: string, version: string, file: string): string {
  fs.writeFileSync(file, fs.readFileSync(bundle, 'utf8').replaceAll(`"${VERSION}"`, `"${version}"`), { mode: 0o755 });
  return file;
}
