/**
 * The agent on its own: `cascade-agent init | start | run-now | install | status`, the same
 * commands as `cascade agent ...`, for a client machine that needs one file and Node.js
 * (`npm run build:agent` bundles this into dist/cascade-agent.cjs; docs/agent.md).
 */
// First: V8 settings that must precede the rest of the agent's code.
import './lean.js';
import { Command } from 'commander';
import { runProgram } from '../lib/run-program.js';
import { VERSION } from '../lib/version.js';
import { registerAgent } from './command.js';

export async function agentMain(argv: string[]): Promise<void> {
  const program = new Command('cascade-agent')
    .version(VERSION, '-V, --version', 'print the version')
    .description('The Cascade agent: enrol this machine with a site, check in, install what is advertised to it.')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  // `cascade-agent start ...` reads as `cascade agent start ...`.
  for (const c of [...registerAgent(new Command('cascade')).commands]) program.addCommand(c);
  await runProgram(program, argv, 'cascade-agent');
}

void agentMain(process.argv);
