import { Command } from 'commander';
import { runProgram } from '../lib/run-program.js';
import { VERSION } from '../lib/version.js';
import { registerClientsAdmin, registerSiteSettings } from './commands/clients.js';
import { registerCourier } from './commands/courier.js';
import { registerDistribute } from './commands/distribute.js';
import { registerDpAdmin, registerValidate } from './commands/dp.js';
import { registerPackage } from './commands/package.js';
import { registerRollouts } from './commands/rollouts.js';
import { registerRoute } from './commands/route.js';
import { registerSiteAdmin } from './commands/sites.js';
import { registerToken } from './commands/token.js';

/** The admin CLI; `roles` add the commands that run a role (site, demo), wired in src/main.ts. */
export function buildProgram(roles: ((p: Command) => unknown)[] = []): Command {
  const program = new Command('cascade')
    .version(VERSION, '-V, --version', 'print the version')
    .enablePositionalOptions()
    .description('Cascade: distribute software packages down a hierarchy of sites to distribution points and clients.')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride();
  for (const r of roles) r(program);
  const site = program.commands.find((c) => c.name() === 'site') ?? program.command('site').description('sites of the hierarchy');
  registerSiteAdmin(site);
  registerSiteSettings(site);
  registerRoute(program);
  registerDistribute(program);
  registerDpAdmin(program);
  registerValidate(program);
  registerPackage(program);
  registerCourier(program);
  registerToken(program);
  registerClientsAdmin(program);
  registerRollouts(program);
  return program;
}

/** Runs the CLI: user errors print one line and exit 1 (or 2 for bad usage); never a stack trace. */
export async function main(argv: string[], roles: ((p: Command) => unknown)[] = []): Promise<void> {
  const program = buildProgram(roles);
  // Examples and "(required)" marks only matter to --help: the table loads only then.
  if (argv.some((a) => a === '--help' || a === '-h' || a === 'help')) (await import('./examples.js')).polishHelp(program);
  // Output piped into `head` and the like: a closed pipe ends the command quietly.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
  });
  await runProgram(program, argv, 'cascade');
}
