import fs from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/**
 * Dependency rules (docs/architecture.md): dependencies point inward. Checked on every source
 * file under src/ except tests (*.test.ts), which may wire layers together. Imports are found
 * by TypeScript's own scanner: static, type-only, re-exports and dynamic import('...').
 */
const SRC = fileURLToPath(new URL('../src', import.meta.url));

type Layer = string;

interface Rule {
  /** The layer whose imports this rule checks. */
  from: Layer;
  /** Layers it must not import. */
  notLayers?: Layer[];
  /** When set: the only layers it may import. */
  onlyLayers?: Layer[];
  /** It must not import Node's built-in modules (I/O: fs, net, child_process, ...). */
  noBuiltins?: boolean;
  /** It must not import npm packages. */
  noPackages?: boolean;
  why: string;
}

const RULES: Rule[] = [
  {
    from: 'core',
    onlyLayers: ['core'],
    noBuiltins: true,
    noPackages: true,
    why: 'core is pure domain rules: no I/O, nothing outside src/core',
  },
  {
    from: 'api',
    onlyLayers: ['api', 'core'],
    why: 'the wire contract (schemas, paths, the one HTTP client) is what every party shares: it knows only core',
  },
  { from: 'cli', notLayers: ['store', 'site', 'dp', 'agent', 'console'], why: 'the admin CLI talks to a site over HTTP only' },
  {
    from: 'agent',
    notLayers: ['store', 'site', 'dp', 'cli', 'console', 'demo'],
    why: 'the agent runs on every client: HTTP through the api client, no store, no server code',
  },
  { from: 'console', notLayers: ['store', 'site', 'cli', 'agent', 'demo'], why: 'the console reads the site through its API' },
  { from: 'dp', notLayers: ['cli', 'agent', 'console', 'demo'], why: 'a DP is a role of its own; it does not depend on the tools' },
  { from: 'content', notLayers: ['site', 'store', 'cli', 'agent', 'dp', 'demo'], why: 'content is a library the roles use' },
  { from: 'site', notLayers: ['cli'], why: 'a role does not depend on the admin CLI; shared helpers live in src/lib' },
  { from: 'store', notLayers: ['site', 'cli', 'agent', 'dp', 'demo', 'content'], why: 'the store is a repository below the roles' },
  { from: 'lib', onlyLayers: ['lib', 'core'], why: 'lib holds small shared helpers with no upward dependencies' },
];

/** Packages a client machine cannot be asked to build: the agent must run on Node.js alone. */
const NATIVE = ['better-sqlite3', 'pg', 'kysely', 'piscina'];

const BUILTINS = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));

interface Import {
  /** Path of the importing file, relative to src/ (posix separators). */
  file: string;
  spec: string;
}

/** The layer of a path relative to src/: its first folder, or `main` for files directly in src/. */
const layerOf = (rel: string): Layer => (rel.includes('/') ? (rel.split('/')[0] as string) : 'main');

/** Every rule an import breaks, as one line each. */
function violations(imports: readonly Import[], rules: readonly Rule[] = RULES): string[] {
  const out: string[] = [];
  for (const { file, spec } of imports) {
    const from = layerOf(file);
    for (const rule of rules.filter((r) => r.from === from)) {
      const say = (what: string) => out.push(`src/${file} imports ${spec}: ${what} (${rule.why})`);
      if (spec.startsWith('.')) {
        const target = path.posix.normalize(path.posix.join(path.posix.dirname(file), spec));
        if (target.startsWith('../')) {
          say('outside src/');
          continue;
        }
        const to = layerOf(target);
        if (rule.notLayers?.includes(to)) say(`src/${from} must not import src/${to}`);
        if (rule.onlyLayers && !rule.onlyLayers.includes(to))
          say(`src/${from} may import only ${rule.onlyLayers.map((l) => `src/${l}`).join(', ')}`);
      } else if (BUILTINS.has(spec) || BUILTINS.has(spec.split('/')[0] as string)) {
        if (rule.noBuiltins) say(`src/${from} must not import Node built-in modules`);
      } else if (rule.noPackages) {
        say(`src/${from} must not import packages`);
      } else if (from === 'agent' && NATIVE.includes(spec)) {
        say('the agent must not load native modules or the database layer');
      }
    }
  }
  return out;
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(p));
    else if (/\.tsx?$/.test(e.name) && !/\.test\.tsx?$/.test(e.name) && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

function importsOf(file: string): Import[] {
  const info = ts.preProcessFile(fs.readFileSync(file, 'utf8'), true, true);
  const rel = path.relative(SRC, file).split(path.sep).join('/');
  return info.importedFiles.map((f) => ({ file: rel, spec: f.fileName }));
}

/** Every import cycle among the files: strongly connected components of more than one file (Tarjan). */
function cycles(imports: readonly Import[]): string[][] {
  const graph = new Map<string, string[]>();
  for (const { file, spec } of imports) {
    if (!graph.has(file)) graph.set(file, []);
    if (!spec.startsWith('.')) continue;
    const target = path.posix.normalize(path.posix.join(path.posix.dirname(file), spec)).replace(/\.js$/, '.ts');
    (graph.get(file) as string[]).push(target);
  }
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const out: string[][] = [];
  let next = 0;
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
      } else if (stack.includes(w)) low.set(v, Math.min(low.get(v) as number, index.get(w) as number));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop() as string;
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1) out.push(scc.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return out;
}

describe('dependency rules', () => {
  it('src/ has no import cycle (type-only imports count too)', () => {
    const imports = sourceFiles(SRC).flatMap(importsOf);
    expect(cycles(imports)).toEqual([]);
    // The check finds a cycle when there is one.
    expect(
      cycles([
        { file: 'site/app.ts', spec: './handlers/x.js' },
        { file: 'site/handlers/x.ts', spec: '../http.js' },
        { file: 'site/http.ts', spec: './app.js' },
        { file: 'site/other.ts', spec: './http.js' },
      ]),
    ).toEqual([['site/app.ts', 'site/handlers/x.ts', 'site/http.ts']]);
  });

  it('src/ follows them', () => {
    const files = sourceFiles(SRC);
    expect(files.length).toBeGreaterThan(20);
    const imports = files.flatMap(importsOf);
    // The scanner sees imports of every kind, or this test would pass for the wrong reason.
    expect(imports.some((i) => i.file === 'site/command.ts' && i.spec === './server.js')).toBe(true);
    expect(imports.some((i) => i.file === 'core/site.ts' && i.spec === './errors.js')).toBe(true);
    expect(violations(imports)).toEqual([]);
  });

  it('HTTP handlers reach the store only through the services', () => {
    const dir = path.join(SRC, 'site', 'handlers');
    const found: string[] = [];
    for (const f of fs.readdirSync(dir).filter((n) => n.endsWith('.ts') && !n.endsWith('.test.ts'))) {
      const text = fs.readFileSync(path.join(dir, f), 'utf8');
      for (const { spec } of importsOf(path.join(dir, f))) if (spec.includes('/store/')) found.push(`site/handlers/${f} imports ${spec}`);
      if (/\bparts\.store\b/.test(text)) found.push(`site/handlers/${f} uses parts.store`);
    }
    expect(found).toEqual([]);
  });

  it('catches each kind of break', () => {
    const bad: Import[] = [
      { file: 'core/package.ts', spec: '../lib/log.js' },
      { file: 'core/package.ts', spec: 'node:fs' },
      { file: 'core/package.ts', spec: 'child_process' },
      { file: 'core/package.ts', spec: 'zod' },
      { file: 'cli/commands/package.ts', spec: '../../store/store.js' },
      { file: 'cli/program.ts', spec: '../site/server.js' },
      { file: 'agent/poll.ts', spec: '../store/db.js' },
      { file: 'content/library.ts', spec: '../site/content.js' },
      { file: 'content/library.ts', spec: '../store/store.js' },
      { file: 'content/library.ts', spec: '../cli/common.js' },
      { file: 'site/command.ts', spec: '../cli/common.js' },
      { file: 'api/client.ts', spec: '../lib/log.js' },
      { file: 'api/packages.ts', spec: '../content/manifest.js' },
      { file: 'agent/cache.ts', spec: 'better-sqlite3' },
      { file: 'agent/cache.ts', spec: '../site/content.js' },
      { file: 'console/pages.ts', spec: '../store/store.js' },
      { file: 'dp/command.ts', spec: '../cli/common.js' },
    ];
    const found = violations(bad);
    expect(found).toHaveLength(bad.length);
    expect(found[0]).toBe(
      'src/core/package.ts imports ../lib/log.js: src/core may import only src/core (core is pure domain rules: no I/O, nothing outside src/core)',
    );
    // And lets the allowed ones through.
    const good: Import[] = [
      { file: 'core/package.ts', spec: './errors.js' },
      { file: 'cli/program.ts', spec: '../core/errors.js' },
      { file: 'cli/upload.ts', spec: '../content/batch.js' },
      { file: 'site/app.ts', spec: '../store/store.js' },
      { file: 'main.ts', spec: './site/command.js' },
      { file: 'content/library.ts', spec: 'node:fs/promises' },
      { file: 'api/client.ts', spec: 'node:http' },
      { file: 'api/packages.ts', spec: 'zod' },
      { file: 'api/packages.ts', spec: '../core/package.js' },
      { file: 'agent/run.ts', spec: '../api/client.js' },
      { file: 'cli/commands/package.ts', spec: '../../api/packages.js' },
    ];
    expect(violations(good)).toEqual([]);
  });
});
