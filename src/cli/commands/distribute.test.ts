import { describe, expect, it } from 'vitest';
import { CascadeError } from '../../core/errors.js';
import { parseSeverity } from './distribute.js';

describe('parseSeverity', () => {
  it('takes any case and the usual short forms', () => {
    for (const [typed, want] of [
      ['info', 'info'],
      ['INFO', 'info'],
      ['i', 'info'],
      ['warning', 'warning'],
      ['Warn', 'warning'],
      ['w', 'warning'],
      ['error', 'error'],
      ['ERR', 'error'],
      ['e', 'error'],
    ] as const)
      expect(parseSeverity(typed), typed).toBe(want);
  });

  it('refuses anything else as a usage error', () => {
    for (const typed of ['', 'loud', 'warnings', 'errors', 'x']) {
      expect(() => parseSeverity(typed)).toThrow(CascadeError);
      expect(() => parseSeverity(typed)).toThrow(/--severity must be info, warning or error/);
    }
  });
});
