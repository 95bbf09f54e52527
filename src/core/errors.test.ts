import { describe, expect, it } from 'vitest';
import { fromSystemError } from './errors.js';

describe('system errors named to whoever asked', () => {
  it('says whose disk is full, and where, for ENOSPC, EDQUOT and SQLITE_FULL, also as a cause', () => {
    const enospc = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', path: '/data/sml/tmp/x' });
    const e = fromSystemError(enospc, 'site SML');
    expect(e?.code).toBe('disk_full');
    expect(e?.status).toBe(507);
    expect(e?.message).toBe(
      'site SML: no space left on its disk (ENOSPC writing /data/sml/tmp/x); free space there (or raise its quota), then try again: nothing half-written was kept',
    );
    expect(fromSystemError(Object.assign(new Error('quota'), { code: 'EDQUOT' }), 'DP d1')?.message).toMatch(
      /^DP d1: no space left on its disk \(EDQUOT\)/,
    );
    const wrapped = new Error('insert failed', { cause: Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' }) });
    expect(fromSystemError(wrapped, 'site BER')?.code).toBe('disk_full');
    // From a worker thread: the code is gone, the message keeps it.
    expect(fromSystemError(new Error("ENOSPC: no space left on device, write '/d/x'"), 'DP d1')?.code).toBe('disk_full');
  });

  it('leaves other errors alone (they stay internal, logged)', () => {
    expect(fromSystemError(Object.assign(new Error('x'), { code: 'EACCES' }), 'site A')).toBeUndefined();
    expect(fromSystemError(new Error('plain'), 'site A')).toBeUndefined();
    expect(fromSystemError(null, 'site A')).toBeUndefined();
  });
});
