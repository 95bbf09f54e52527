/**
 * The one catalogue of error codes. API errors are `{ error: { code, message } }` with the
 * status below; the CLI prints the message on one line and exits with the exit code below.
 * docs/errors.md lists them for users; keep the two in step.
 */
export const ERROR_CODES = {
  bad_request: { status: 400, exit: 1, summary: 'The request body or parameters are malformed.' },
  usage: { status: 400, exit: 2, summary: 'A command was called with wrong arguments.' },
  invalid_manifest: { status: 400, exit: 1, summary: 'A manifest breaks a rule (path, size, count, encoding).' },
  invalid_source: { status: 400, exit: 1, summary: 'A source folder holds something that cannot be packaged.' },
  invalid_config: { status: 400, exit: 2, summary: 'A configuration value is missing or wrong.' },
  chunk_mismatch: { status: 422, exit: 1, summary: 'Received chunk data does not match its digest.' },
  missing_chunks: { status: 409, exit: 1, summary: 'A manifest names chunks the library does not hold.' },
  bad_signature: { status: 422, exit: 1, summary: 'A signature is missing, wrong, or by an untrusted key.' },
  bad_parcel: { status: 422, exit: 1, summary: 'A courier parcel is malformed, truncated, or altered.' },
  damaged: { status: 500, exit: 1, summary: 'Stored content no longer matches its digest.' },
  unauthorized: { status: 401, exit: 1, summary: 'No valid bearer token was given.' },
  forbidden: { status: 403, exit: 1, summary: "The token's role does not allow this." },
  not_found: { status: 404, exit: 1, summary: 'No such resource.' },
  conflict: { status: 409, exit: 1, summary: 'The request conflicts with the current state.' },
  too_large: { status: 413, exit: 1, summary: 'A body, file, or count is over its limit.' },
  unavailable: { status: 503, exit: 1, summary: 'A server or dependency cannot be reached.' },
  rate_limited: { status: 429, exit: 1, summary: 'Too many failed attempts from one address: wait a minute and try again.' },
  bad_answer: { status: 502, exit: 1, summary: 'Another party answered with something that does not match the API.' },
  disk_full: {
    status: 507,
    exit: 1,
    summary: 'A site or DP has no space left on its disk (or is over its quota) for what it was asked to store.',
  },
  internal: { status: 500, exit: 1, summary: 'An unexpected failure; the log has details.' },
} as const satisfies Record<string, { status: number; exit: number; summary: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export class CascadeError extends Error {
  override readonly name = 'CascadeError';
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    // One line, always: input quoted in a message (a name, a path, a typed value) may hold
    // newlines or control characters; they are shown escaped.
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it escapes
    super(message.replace(/[\u0000-\u001f\u007f]/g, (c) => JSON.stringify(c).slice(1, -1)));
  }
  get status(): number {
    return ERROR_CODES[this.code].status;
  }
  get exitCode(): number {
    return ERROR_CODES[this.code].exit;
  }
  toJSON(): { error: { code: ErrorCode; message: string } } {
    return { error: { code: this.code, message: this.message } };
  }
}

export const isErrorCode = (s: unknown): s is ErrorCode => typeof s === 'string' && s in ERROR_CODES;

/**
 * The error an API answer carries (`{"error": {"code", "message"}}`, as text or parsed), or
 * undefined when it carries none of the catalogue. `prefix` names who answered.
 */
export function errorFromBody(body: unknown, prefix = ''): CascadeError | undefined {
  let value = body;
  if (typeof body === 'string') {
    try {
      value = JSON.parse(body);
    } catch {
      return undefined;
    }
  }
  const e = (value as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  return e && isErrorCode(e.code) && typeof e.message === 'string' ? new CascadeError(e.code, `${prefix}${e.message}`) : undefined;
}

/** Shorthand: `throw fail('not_found', 'package CEN00009 does not exist')`. */
export const fail = (code: ErrorCode, message: string): CascadeError => new CascadeError(code, message);

/**
 * An operating-system error that has a cause worth naming to whoever asked (a full disk), as a
 * CascadeError saying whose disk; undefined for the others (those stay `internal`, logged).
 * `who` is e.g. "site BER" or "DP ber-dp1".
 */
export function fromSystemError(err: unknown, who: string): CascadeError | undefined {
  const e = err as { code?: unknown; path?: unknown; cause?: unknown } | null;
  // A worker thread's error arrives without its code: its message still starts with it.
  const message = err instanceof Error ? err.message : '';
  const code =
    typeof e?.code === 'string'
      ? e.code
      : (/^(ENOSPC|EDQUOT)\b/.exec(message)?.[1] ?? (/database or disk is full/.test(message) ? 'SQLITE_FULL' : undefined));
  if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'SQLITE_FULL') {
    const where = typeof e?.path === 'string' ? ` writing ${e.path}` : '';
    return fail(
      'disk_full',
      `${who}: no space left on its disk (${code}${where}); free space there (or raise its quota), then try again: nothing half-written was kept`,
    );
  }
  if (e?.cause && e.cause !== err) return fromSystemError(e.cause, who);
  return undefined;
}
