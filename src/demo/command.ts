import type { Command } from 'commander';

/** `cascade demo`: the tour lives in ./tour.ts and loads only when run. */
export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description(
      'start a small hierarchy on loopback (a central site, a region, a branch and three DPs) with sample packages, show what Cascade does, and keep serving',
    )
    .option('--data <dir>', 'data folder (default: a new temporary folder)')
    .option('--listen <host:port>', 'address (default 127.0.0.1:8100, or any free port if taken)')
    .option('--once', 'exit after the tour instead of serving')
    .action(async (o: { data?: string; listen?: string; once?: boolean }) => {
      const { runDemo } = await import('./tour.js');
      await runDemo(o);
    });
}
