/** Recognises driver errors by their stable codes, for both SQLite and PostgreSQL. */

function codeOf(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error) {
    const code = (error as { code: unknown }).code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}

export function isUniqueViolation(error: unknown): boolean {
  const code = codeOf(error);
  return code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || code === '23505';
}

/** PostgreSQL's class 22 (data exception): a value out of range, an invalid character, … */
export function isDatabaseDataError(error: unknown): boolean {
  const code = codeOf(error);
  return code !== undefined && /^22[0-9A-Z]{3}$/.test(code);
}

/**
 * True when the database cannot be reached or cannot write right now (connection refused or
 * dropped, server restarting, disk full): the request may succeed later and earns a 503.
 */
export function isDatabaseUnavailable(error: unknown): boolean {
  const code = codeOf(error);
  if (code === undefined) {
    return (
      error instanceof Error &&
      /Connection terminated|timeout exceeded when trying to connect|driver has already been destroyed|Cannot use a pool after calling end/i.test(
        error.message,
      )
    );
  }
  return (
    [
      'ECONNREFUSED',
      'ECONNRESET',
      'ETIMEDOUT',
      'EPIPE',
      'ENOTFOUND',
      '57P01',
      '57P02',
      '57P03',
      '53300',
      '57014',
    ].includes(code) ||
    code.startsWith('08') ||
    ['SQLITE_FULL', 'SQLITE_IOERR', 'SQLITE_BUSY', 'SQLITE_READONLY', 'SQLITE_CANTOPEN'].some((c) =>
      code.startsWith(c),
    )
  );
}
