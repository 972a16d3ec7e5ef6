/**
 * The authentication and permission hook, run on every request before its body is read:
 * resolves the caller from `Authorization: Bearer <token>` or the session cookie, refuses
 * cookie-borne state changes without the CSRF token or from another site, and checks the route's
 * permission. Order of answers: 401 (who are you?) before 403 (not allowed) before 400 (bad body).
 */
import { timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { GantryError } from '../../core/errors.ts';
import type { AuthService } from '../auth/auth-service.ts';
import { can, type Principal } from '../auth/principal.ts';
import type { Clock } from '../clock.ts';
import type { Database } from '../db/database.ts';
import type { EnrollmentService } from '../inventory/enrollment-service.ts';
import type { TokenService } from '../tokens/token-service.ts';
import { UserStore } from '../users/user-store.ts';

export const SESSION_COOKIE = 'gantry_session';
export const CSRF_HEADER = 'x-csrf-token';
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

export interface AuthenticateDeps {
  database: Database;
  clock: Clock;
  tokens: TokenService;
  auth: AuthService;
  enrollment: EnrollmentService;
  /** Origin of the configured public URL, if any; otherwise the request's own Host is the origin. */
  publicOrigin: string | undefined;
}

export function createAuthenticateHook(deps: AuthenticateDeps) {
  return async function authenticate(request: FastifyRequest): Promise<void> {
    const permission = request.routeOptions.config.permission;
    if (permission === undefined) return; // unknown route: the not-found handler answers
    const stateChanging = !SAFE_METHODS.has(request.method);

    if (permission === 'agent') {
      request.agent = await deps.enrollment.authenticate(bearer(request, 'an agent credential (gna_…)'));
      return;
    }

    if (permission === 'public') {
      // Login CSRF: a public state-changing call (login) must not come from another site's page.
      if (stateChanging) refuseCrossSite(request, deps.publicOrigin);
      return;
    }

    const principal = await resolvePrincipal(request, deps);
    if (principal.via === 'session' && stateChanging) {
      refuseCrossSite(request, deps.publicOrigin);
      const presented = request.headers[CSRF_HEADER];
      const expected = principal.session?.csrfToken ?? '';
      if (typeof presented !== 'string' || !safeEqual(presented, expected)) {
        throw new GantryError(
          'CSRF_REJECTED',
          `A state-changing request made with the session cookie must carry the ${CSRF_HEADER} header from login or /api/v1/whoami.`,
        );
      }
    }
    request.principal = principal;
    if (!can(principal, permission)) {
      throw new GantryError(
        'FORBIDDEN',
        `Your role '${principal.user.role}' does not allow this (it needs '${permission}').`,
        {
          permission,
          role: principal.user.role,
        },
      );
    }
  };
}

function bearer(request: FastifyRequest, what: string): string {
  const match = /^Bearer ([\x21-\x7e]+)$/.exec(request.headers.authorization ?? '');
  if (!match?.[1])
    throw new GantryError('UNAUTHENTICATED', `Send ${what} as \`Authorization: Bearer <credential>\`.`);
  return match[1];
}

async function resolvePrincipal(request: FastifyRequest, deps: AuthenticateDeps): Promise<Principal> {
  const now = deps.clock.now();
  const users = new UserStore(deps.database.db);
  const authorization = request.headers.authorization;
  if (authorization !== undefined) {
    const match = /^Bearer ([\x21-\x7e]+)$/.exec(authorization);
    // Calendar programs and feed readers cannot send a bearer token, but can send a user and
    // password: for reads only, an API token is accepted as the Basic password.
    const basic = SAFE_METHODS.has(request.method)
      ? /^Basic ([A-Za-z0-9+/=]{4,400})$/.exec(authorization)
      : null;
    const secret = match?.[1] ?? (basic?.[1] ? basicPassword(basic[1]) : undefined);
    if (!secret) {
      throw new GantryError(
        'UNAUTHENTICATED',
        'The Authorization header must read `Bearer <token>` (or, for reads, Basic with the token as password).',
      );
    }
    const token = await deps.tokens.authenticate(secret, now);
    const user = await users.findById(token.userId);
    if (!user || user.disabled)
      throw new GantryError('UNAUTHENTICATED', 'The user this token belongs to is disabled.');
    return { user, via: 'token', tokenId: token.id, session: null, source: request.ip };
  }
  const cookie = request.cookies[SESSION_COOKIE];
  if (cookie !== undefined) {
    const session = await deps.auth.findSession(cookie, now);
    if (!session) throw new GantryError('UNAUTHENTICATED', 'Your session has ended. Log in again.');
    const user = await users.findById(session.userId);
    if (!user || user.disabled)
      throw new GantryError('UNAUTHENTICATED', 'Your session has ended. Log in again.');
    return { user, via: 'session', tokenId: null, session, source: request.ip };
  }
  throw new GantryError(
    'UNAUTHENTICATED',
    'Sign in first: send `Authorization: Bearer <token>` (see `gantry login`), or log in to the dashboard.',
  );
}

/** Refuses a request that a browser says came from another site. */
function refuseCrossSite(request: FastifyRequest, publicOrigin: string | undefined): void {
  const site = request.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin' && site !== 'none') {
    throw new GantryError('CSRF_REJECTED', 'Cross-site requests cannot change anything in Gantry.');
  }
  const origin = request.headers.origin;
  if (origin !== undefined) {
    const own = publicOrigin ?? `${request.protocol}://${request.headers.host ?? ''}`;
    if (origin !== own)
      throw new GantryError(
        'CSRF_REJECTED',
        `Requests from origin ${origin} cannot change anything in Gantry.`,
      );
  }
}

function safeEqual(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && right.length > 0 && timingSafeEqual(left, right);
}

function basicPassword(encoded: string): string | undefined {
  const decoded = Buffer.from(encoded, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  const password = colon >= 0 ? decoded.slice(colon + 1) : '';
  return /^[\x21-\x7e]+$/.test(password) ? password : undefined;
}
