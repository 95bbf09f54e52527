import { type Command, CommanderError } from 'commander';
import { CascadeError } from '../core/errors.js';

/**
 * Runs a commander program the way every Cascade executable does: user errors print one line
 * (`NAME: message`) and set the exit code (1, or 2 for bad usage); never a stack trace
 * (CASCADE_DEBUG=1 prints it for an unexpected error).
 */
export async function runProgram(program: Command, argv: string[], name: string): Promise<void> {
  program.exitOverride();
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
    if (e instanceof CascadeError) {
      process.stderr.write(`${name}: ${e.message}\n`);
      process.exitCode = e.exitCode;
      return;
    }
    const err = e as Error;
    process.stderr.write(`${name}: unexpected error: ${err.message}\n`);
    if (process.env.CASCADE_DEBUG) process.stderr.write(`${err.stack}\n`);
    process.exitCode = 1;
  }
}
