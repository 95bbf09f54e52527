import { describe, expect, it } from 'vitest';
import { CascadeError } from '../core/errors.js';
import { parseLogFormat, textLine } from './log.js';

describe('logs', () => {
  it('reads a JSON line as a console line: time, level, who, message, the rest as key=value', () => {
    const line = JSON.stringify({
      level: 40,
      time: Date.UTC(2026, 11, 3, 18, 4, 5, 67),
      pid: 42,
      name: 'site',
      url: 'http://127.0.0.1:8100',
      err: 'cannot reach site NYC at http://x: ECONNREFUSED',
      n: 3,
      msg: 'status report to the parent failed',
    });
    expect(textLine(line)).toBe(
      '18:04:05.067 WARN  site: status report to the parent failed  url=http://127.0.0.1:8100 err="cannot reach site NYC at http://x: ECONNREFUSED" n=3\n',
    );
    // Anything that is not JSON passes as it is.
    expect(textLine('plain\n')).toBe('plain\n');
  });

  it('takes json or text, nothing else', () => {
    expect(parseLogFormat('json')).toBe('json');
    expect(parseLogFormat('text')).toBe('text');
    expect(() => parseLogFormat('pretty')).toThrow(CascadeError);
    expect(() => parseLogFormat('pretty')).toThrow('--log-format must be json or text, not "pretty"');
  });
});
