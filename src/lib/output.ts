/** Output helpers shared by every command (admin CLI and role commands alike). */

/** Prints a value as indented JSON on stdout: what `--json` prints. */
export function printJson(v: unknown): void {
  process.stdout.write(`${JSON.stringify(v, null, 2)}\n`);
}
