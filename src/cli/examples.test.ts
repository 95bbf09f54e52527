import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { registerAgent } from '../agent/command.js';
import { registerDemo } from '../demo/command.js';
import { registerDp } from '../dp/command.js';
import { registerSite } from '../site/command.js';
import { EXAMPLES, polishHelp } from './examples.js';
import { buildProgram } from './program.js';

const leaves = (c: Command, prefix: string[] = []): { path: string; cmd: Command }[] =>
  c.commands.flatMap((x) => {
    const path = [...prefix, x.name()];
    return x.commands.length ? leaves(x, path) : [{ path: path.join(' '), cmd: x }];
  });

describe('--help', () => {
  const program = buildProgram([registerSite, registerDp, registerAgent, registerDemo]);
  polishHelp(program);

  it('gives every command examples that run that command', () => {
    const all = leaves(program);
    expect(all.length).toBeGreaterThan(40);
    expect(all.filter((l) => !EXAMPLES[l.path]).map((l) => l.path)).toEqual([]);
    for (const [path, examples] of Object.entries(EXAMPLES)) {
      expect(
        all.map((l) => l.path),
        path,
      ).toContain(path);
      for (const e of examples) expect(e.replace(/^\w+=\$\((.*)\)$/, '$1'), path).toMatch(new RegExp(`^cascade ${path}( |$)`));
    }
  });

  it('marks required options as required', () => {
    const init = leaves(program).find((l) => l.path === 'dp init')?.cmd as Command;
    const required = init.options.filter((o) => o.mandatory);
    expect(required.map((o) => o.long)).toEqual(expect.arrayContaining(['--site', '--name']));
    for (const o of required) expect(o.description).toMatch(/\(required\)$/);
    expect(init.helpInformation()).toMatch(/--name <name> .*\n?.*\(required\)/);
  });
});
