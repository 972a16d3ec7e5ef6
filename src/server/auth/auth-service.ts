/**
 * Password logins (dashboard sessions and CLI tokens) and session lookup. Failed attempts are
 * counted per user name and per source address in the database, so the slow-down survives a
 * restart; each success and failure is audited.
 */
import { randomBytes } from 'node:crypto';
import { GantryError } from '../../core/errors.ts';
import {
  afterFailure,
  afterSuccess,
  lockRemainingMs,
  SOURCE_THROTTLE,
  USER_THROTTLE,
} from '../../core/login-throttle.ts';
import type { AuditActor } from '../audit/audit-log.ts';
import { hashSecret, newSessionSecret } from '../tokens/token-secret.ts';
import { type CreatedApiToken, DEFAULT_TOKEN_DAYS, issueToken } from '../tokens/token-service.ts';
import { inTransaction, type TransactionDeps } from '../unit-of-work.ts';
import { verifyPassword } from '../users/passwords.ts';
import { type User, UserStore } from '../users/user-store.ts';
import { LoginThrottleStore } from './login-throttle-store.ts';
import { actorOf, type Principal } from './principal.ts';
import { type Session, SessionStore } from './session-store.ts';

export const SESSION_TTL_MS = 12 * 3_600_000;
const DAY_MS = 86_400_000;

export interface StartedSession {
  user: User;
  secret: string;
  session: Session;
}

export class AuthService {
  constructor(private readonly deps: TransactionDeps) {}

  async login(username: string, password: string, source: string | null): Promise<StartedSession> {
    const user = await this.checkPassword(username, password, source, 'session');
    const secret = newSessionSecret();
    const now = this.deps.clock.now();
    const session: Session = {
      idHash: hashSecret(secret),
      userId: user.id,
      csrfToken: randomBytes(24).toString('base64url'),
      createdAt: now.toISOString(),
      expiresAt: new Date(now.getTime() + SESSION_TTL_MS).toISOString(),
    };
    await inTransaction(this.deps, { actor: `user:${user.username}`, source }, async (uow) => {
      await new SessionStore(uow.db).deleteExpired(uow.now.toISOString());
      await new SessionStore(uow.db).insert(session);
      await uow.audit({
        action: 'auth.login',
        subject: `user:${user.id}`,
        details: { username: user.username, via: 'session' },
      });
    });
    return { user, secret, session };
  }

  /** Trades a user name and password for a new API token: how `gantry login` signs in. */
  async loginForToken(
    input: { username: string; password: string; name: string; expiresInDays?: number | undefined },
    source: string | null,
  ): Promise<CreatedApiToken> {
    const user = await this.checkPassword(input.username, input.password, source, 'token');
    return inTransaction(this.deps, { actor: `user:${user.username}`, source }, async (uow) => {
      await uow.audit({
        action: 'auth.login',
        subject: `user:${user.id}`,
        details: { username: user.username, via: 'token' },
      });
      const expiresAt = new Date(
        uow.now.getTime() + (input.expiresInDays ?? DEFAULT_TOKEN_DAYS) * DAY_MS,
      ).toISOString();
      return issueToken(uow, { userId: user.id, username: user.username, name: input.name, expiresAt });
    });
  }

  async logout(by: Principal): Promise<void> {
    if (!by.session) return;
    const session = by.session;
    await inTransaction(this.deps, actorOf(by), async (uow) => {
      await new SessionStore(uow.db).delete(session.idHash);
      await uow.audit({
        action: 'auth.logout',
        subject: `user:${by.user.id}`,
        details: { username: by.user.username },
      });
    });
  }

  /** The session behind a cookie value, or null when it is unknown or expired. */
  async findSession(secret: string, now: Date): Promise<Session | null> {
    const session = await new SessionStore(this.deps.database.db).find(hashSecret(secret));
    if (!session || session.expiresAt <= now.toISOString()) return null;
    return session;
  }

  private async checkPassword(
    username: string,
    password: string,
    source: string | null,
    via: string,
  ): Promise<User> {
    const db = this.deps.database.db;
    const throttle = new LoginThrottleStore(db);
    const userKey = `user:${username.toLowerCase()}`;
    const sourceKey = `source:${source ?? 'unknown'}`;
    const now = this.deps.clock.now();
    const wait = Math.max(
      lockRemainingMs(await throttle.get(userKey), now),
      lockRemainingMs(await throttle.get(sourceKey), now),
    );
    const actor: AuditActor = { actor: `user:${username}`, source };
    if (wait > 0) {
      await inTransaction(this.deps, actor, (uow) =>
        uow.audit({
          action: 'auth.login_throttled',
          subject: `user-name:${username}`,
          details: { username, via, waitMs: wait },
        }),
      );
      const seconds = Math.ceil(wait / 1000);
      throw new GantryError(
        'RATE_LIMITED',
        `Too many failed logins; try again in ${seconds} s.`,
        { retryAfterSeconds: seconds },
        seconds,
      );
    }

    const user = await new UserStore(db).findByUsername(username);
    // The hash is computed even for an unknown user, so timing does not tell which names exist.
    const passwordOk = await verifyPassword(password, user?.passwordHash ?? null);
    if (user && passwordOk && !user.disabled) {
      await throttle.put(userKey, afterSuccess(), now.toISOString());
      return user;
    }

    const reason = !user
      ? 'unknown_user'
      : user.disabled
        ? 'disabled'
        : user.passwordHash === null
          ? 'no_password'
          : 'wrong_password';
    await inTransaction(this.deps, actor, async (uow) => {
      // The audit append takes the chain lock first, which also orders concurrent counter updates.
      await uow.audit({
        action: 'auth.login_failed',
        subject: `user-name:${username}`,
        details: { username, via, reason },
      });
      const store = new LoginThrottleStore(uow.db);
      const at = uow.now;
      await store.put(userKey, afterFailure(await store.get(userKey), USER_THROTTLE, at), at.toISOString());
      await store.put(
        sourceKey,
        afterFailure(await store.get(sourceKey), SOURCE_THROTTLE, at),
        at.toISOString(),
      );
    });
    throw new GantryError('INVALID_CREDENTIALS', 'Wrong user name or password.');
  }
}
