/**
 * The agent on its own: `cascade-agent init | start | run-now | install | status`, the same
 * commands as `cascade agent ...`, for a client machine that needs one file and Node.js
 * (`npm run build:agent` bundles this into dist/cascade-agent.cjs; docs/agent.md).
 */
import v8 from 'node:v8';
import { Command, CommanderError } from 'commander';
import { CascadeError } from '../core/errors.js';
import { VERSION } from '../lib/version.js';
import { registerAgent } from './command.js';

// A small young generation: a download makes much short-lived garbage (chunk buffers), and the
// agent shares the client machine with its user's work.
v8.setFlagsFromString('--max-semi-space-size=2');

export async function agentMain(argv: string[]): Promise<void> {
  const program = new Command('cascade-agent')
    .version(VERSION, '-V, --version', 'print the version')
    .description('The Cascade agent: enrol this machine with a site, check in, install what is advertised to it.')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  // `cascade-agent start ...` reads as `cascade agent start ...`.
  for (const c of [...registerAgent(new Command('cascade')).commands]) program.addCommand(c);
  program.commands.forEach(function exit(c: Command) {
    c.exitOverride();
    c.commands.forEach(exit);
  });
  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      process.exitCode = e.exitCode === 0 ? 0 : 2;
      return;
    }
    process.stderr.write(`cascade-agent: ${e instanceof CascadeError ? e.message : `unexpected error: ${(e as Error).message}`}\n`);
    process.exitCode = e instanceof CascadeError ? e.exitCode : 1;
  }
}

void agentMain(process.argv);
