import { pino } from 'pino';
import { fail } from '../core/errors.js';

export type Logger = pino.Logger;

export const LOG_FORMATS = ['json', 'text'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const SKIP = new Set(['level', 'time', 'pid', 'hostname', 'name', 'msg']);

/** One JSON log line as a person reads it on a console: time, level, who, message, then key=value. */
export function textLine(json: string): string {
  let r: Record<string, unknown>;
  try {
    r = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json;
  }
  const t = typeof r.time === 'number' ? new Date(r.time).toISOString().slice(11, 23) : '';
  const extra = Object.entries(r)
    .filter(([k]) => !SKIP.has(k))
    .map(([k, v]) => `${k}=${typeof v === 'string' ? (/\s/.test(v) ? JSON.stringify(v) : v) : JSON.stringify(v)}`)
    .join(' ');
  const level = LEVELS[r.level as number] ?? String(r.level);
  return `${t} ${level.padEnd(5)} ${r.name ?? ''}: ${r.msg ?? ''}${extra ? `  ${extra}` : ''}\n`;
}

/** `json` or `text`, as given (flag or CASCADE_LOG_FORMAT); a usage error otherwise. */
export function parseLogFormat(v: string): LogFormat {
  if (!(LOG_FORMATS as readonly string[]).includes(v)) throw fail('usage', `--log-format must be json or text, not "${v}"`);
  return v as LogFormat;
}

/**
 * Logs on stdout: JSON lines when stdout is not a terminal (a file, journald, a collector), and
 * readable lines on a terminal, unless `format` says which.
 */
export function createLogger(opts: { level?: string; name?: string; format?: LogFormat | undefined } = {}): Logger {
  const format = opts.format ?? (process.stdout.isTTY ? 'text' : 'json');
  const options = {
    level: opts.level ?? process.env.CASCADE_LOG_LEVEL ?? 'info',
    name: opts.name ?? 'cascade',
    base: { pid: process.pid },
  };
  if (format === 'json') return pino(options);
  return pino(options, { write: (line: string) => process.stdout.write(textLine(line)) });
}

export const silentLogger = (): Logger => pino({ level: 'silent' });
