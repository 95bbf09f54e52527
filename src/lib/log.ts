import { pino } from 'pino';

export type Logger = pino.Logger;

/** JSON logs on stdout (or silent in tests). */
export function createLogger(opts: { level?: string; name?: string } = {}): Logger {
  return pino({ level: opts.level ?? process.env.CASCADE_LOG_LEVEL ?? 'info', name: opts.name ?? 'cascade', base: { pid: process.pid } });
}

export const silentLogger = (): Logger => pino({ level: 'silent' });
