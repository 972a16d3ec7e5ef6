/**
 * The one place where failures become HTTP answers. Every error leaves as
 * `{ "error": { "code", "message", "details", "requestId" } }`; a 5xx never carries the cause,
 * only a pointer to the server log by request id.
 */
import { type ErrorCode, GantryError } from '../../core/errors.ts';
import { isDatabaseDataError, isDatabaseUnavailable } from '../db/db-errors.ts';

export const STATUS_OF: Record<ErrorCode, number> = {
  VALIDATION: 400,
  UNAUTHENTICATED: 401,
  INVALID_CREDENTIALS: 401,
  FORBIDDEN: 403,
  CSRF_REJECTED: 403,
  NOT_FOUND: 404,
  CONFLICT: 409,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  RATE_LIMITED: 429,
  INTERNAL: 500,
  UNAVAILABLE: 503,
  CONFIG_INVALID: 500,
  DB_NEWER_THAN_PROGRAM: 500,
  IMMUTABLE_VERSION: 409,
  IN_USE: 409,
  DIGEST_MISMATCH: 400,
  UNSUPPORTED_ARTIFACT_TYPE: 415,
  SIGNATURE_INVALID: 400,
  QUARANTINED: 409,
  RANGE_NOT_SATISFIABLE: 416,
  DML_NO_SPACE: 507,
  ILLEGAL_TRANSITION: 409,
  GATE_REFUSED: 409,
};

export interface MappedError {
  status: number;
  code: ErrorCode;
  message: string;
  details: unknown;
  retryAfterSeconds: number | undefined;
  /** True when the cause belongs in the server log at error level. */
  serverFault: boolean;
}

/** The body of every error answer: `{ error: { code, message, details, requestId } }`. */
export function errorBody(mapped: MappedError, requestId: string) {
  return { error: { code: mapped.code, message: mapped.message, details: mapped.details, requestId } };
}

interface FrameworkError {
  statusCode?: number;
  code?: string;
  validation?: Array<{
    instancePath: string;
    message?: string;
    keyword: string;
    params: Record<string, unknown>;
  }>;
  validationContext?: string;
  message: string;
}

export function mapError(error: unknown, requestId: string): MappedError {
  if (error instanceof GantryError) {
    return {
      status: STATUS_OF[error.code],
      code: error.code,
      message: error.message,
      details: error.details,
      retryAfterSeconds: error.retryAfterSeconds,
      serverFault: STATUS_OF[error.code] >= 500,
    };
  }
  if (isDatabaseDataError(error)) {
    // A value the database itself refuses (out of range, bad encoding): the request's fault.
    return {
      status: 400,
      code: 'VALIDATION',
      message:
        'A value in the request is outside what can be stored (too large, or with characters that are not allowed).',
      details: null,
      retryAfterSeconds: undefined,
      serverFault: false,
    };
  }
  if (isDatabaseUnavailable(error)) {
    return {
      status: 503,
      code: 'UNAVAILABLE',
      message: 'The database is not available right now. Retry shortly.',
      details: null,
      retryAfterSeconds: 5,
      serverFault: true,
    };
  }
  const fw = error as FrameworkError;
  if (fw && Array.isArray(fw.validation)) {
    const part = fw.validationContext ?? 'body';
    const details = fw.validation.map((v) => {
      const extra = typeof v.params.additionalProperty === 'string' ? `/${v.params.additionalProperty}` : '';
      const message = v.keyword === 'additionalProperties' ? 'unknown field' : (v.message ?? v.keyword);
      return { in: part, path: `${v.instancePath}${extra}`, message };
    });
    const summary = details.map((d) => `${d.path || '(root)'}: ${d.message}`).join('; ');
    return {
      status: 400,
      code: 'VALIDATION',
      message: `Invalid ${part}: ${summary}.`,
      details,
      retryAfterSeconds: undefined,
      serverFault: false,
    };
  }
  const status = typeof fw?.statusCode === 'number' ? fw.statusCode : 500;
  if (status === 413) {
    return {
      status,
      code: 'PAYLOAD_TOO_LARGE',
      message: 'The request body is larger than this endpoint accepts.',
      details: null,
      retryAfterSeconds: undefined,
      serverFault: false,
    };
  }
  if (status === 415) {
    return {
      status,
      code: 'UNSUPPORTED_MEDIA_TYPE',
      message: 'Unsupported Content-Type; send application/json.',
      details: null,
      retryAfterSeconds: undefined,
      serverFault: false,
    };
  }
  if (status >= 400 && status < 500) {
    // Framework-level refusals (malformed framing, bad content length, poisoned JSON): the message
    // is about the request, never about the server, so it is safe to pass on.
    return {
      status: 400,
      code: 'VALIDATION',
      message: fw.message,
      details: fw.code ? { cause: fw.code } : null,
      retryAfterSeconds: undefined,
      serverFault: false,
    };
  }
  return {
    status: 500,
    code: 'INTERNAL',
    message: `Internal error. The server log has the cause under request id ${requestId}.`,
    details: null,
    retryAfterSeconds: undefined,
    serverFault: true,
  };
}
