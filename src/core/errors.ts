/**
 * The one domain error type. Business code throws `GantryError` with a stable `code`; it knows
 * nothing of HTTP. The server maps codes to statuses in one table (server/http/error-mapping.ts).
 */

export const ERROR_CODES = [
  'VALIDATION',
  'UNAUTHENTICATED',
  'INVALID_CREDENTIALS',
  'FORBIDDEN',
  'CSRF_REJECTED',
  'NOT_FOUND',
  'CONFLICT',
  'PAYLOAD_TOO_LARGE',
  'UNSUPPORTED_MEDIA_TYPE',
  'RATE_LIMITED',
  'UNAVAILABLE',
  'INTERNAL',
  'CONFIG_INVALID',
  'DB_NEWER_THAN_PROGRAM',
  'IMMUTABLE_VERSION',
  'IN_USE',
  'DIGEST_MISMATCH',
  'UNSUPPORTED_ARTIFACT_TYPE',
  'SIGNATURE_INVALID',
  'QUARANTINED',
  'RANGE_NOT_SATISFIABLE',
  'DML_NO_SPACE',
  'ILLEGAL_TRANSITION',
  /** A deployment's gates refused it; `details.reasons` names every reason. */
  'GATE_REFUSED',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export class GantryError extends Error {
  readonly code: ErrorCode;
  readonly details: unknown;
  /** Seconds after which a retry may succeed (rate limits, unavailable dependencies). */
  readonly retryAfterSeconds: number | undefined;

  constructor(code: ErrorCode, message: string, details?: unknown, retryAfterSeconds?: number) {
    super(message);
    this.name = 'GantryError';
    this.code = code;
    this.details = details ?? null;
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

export function isGantryError(value: unknown): value is GantryError {
  return value instanceof GantryError;
}

/** Exhaustiveness guard for discriminated unions. */
export function assertNever(value: never): never {
  throw new Error(`unexpected variant: ${JSON.stringify(value)}`);
}
