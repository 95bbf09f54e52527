import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

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

/** The folder this release is installed in: `package.json`, `bin/`, `dist/` and `node_modules/`. */
export const installUrl = (): URL => new URL('../../', import.meta.url);

/**
 * This installation as another release would be: `package.json`, `bin/` and `dist/` copied to
 * `out` with the release numbered `version` (its bundled agent too), on the same dependencies
 * (`node_modules` linked). What the demo, the tests and the benchmarks start as a newer release.
 */
export function writeRelease(version: string, out: string): string {
  const root = fileURLToPath(installUrl());
  fs.rmSync(out, { recursive: true, force: true });
  fs.mkdirSync(out, { recursive: true });
  fs.copyFileSync(path.join(root, 'package.json'), path.join(out, 'package.json'));
  fs.cpSync(path.join(root, 'bin'), path.join(out, 'bin'), { recursive: true });
  fs.cpSync(path.join(root, 'dist'), path.join(out, 'dist'), { recursive: true });
  const v = path.join(out, 'dist', 'lib', 'version.js');
  fs.writeFileSync(v, fs.readFileSync(v, 'utf8').replace(`VERSION = '${VERSION}'`, `VERSION = '${version}'`));
  const agent = path.join(out, 'dist', 'cascade-agent.cjs');
  if (fs.existsSync(agent)) writeAgentRelease(agent, version, agent);
  fs.symlinkSync(fs.realpathSync(path.join(root, 'node_modules')), path.join(out, 'node_modules'), 'dir');
  return out;
}
