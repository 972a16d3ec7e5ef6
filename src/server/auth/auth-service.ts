/**
 * Password logins (dashboard sessions and CLI tokens), password changes, and session lookup.
 *
 * Every password attempt is counted against the user name and the source address *before* the
 * password is checked, in one transaction under the audit-chain lock, so parallel guesses cannot
 * slip past the lock; a right password then takes its attempt back. The counters live in the
 * database, so the slow-down survives a restart. Each success and failure is audited; attempts
 * refused by the lock are not checked at all and only logged.
 */
import { randomBytes } from 'node:crypto';
import { GantryError } from '../../core/errors.ts';
import {
  afterFailure,
  afterSuccess,
  forgiveOne,
  lockRemainingMs,
  SOURCE_THROTTLE,
  USER_THROTTLE,
} from '../../core/login-throttle.ts';
import type { AuditActor } from '../audit/audit-log.ts';
import { hashSecret, newSessionSecret } from '../tokens/token-secret.ts';
import { type CreatedApiToken, DEFAULT_TOKEN_DAYS, issueToken } from '../tokens/token-service.ts';
import { inTransaction, type TransactionDeps, type UnitOfWork } from '../unit-of-work.ts';
import { hashPassword, verifyPassword } from '../users/passwords.ts';
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

export interface AuthServiceDeps extends TransactionDeps {
  /** Told after a user sets a password of their own (the bootstrap removes its password file). */
  onOwnPasswordChanged?: ((username: string) => void) | undefined;
}

interface Attempt {
  userKey: string;
  sourceKey: string;
}

export class AuthService {
  constructor(private readonly deps: AuthServiceDeps) {}

  async login(username: string, password: string, source: string | null): Promise<StartedSession> {
    const secret = newSessionSecret();
    let started: StartedSession | undefined;
    await this.withPassword(username, password, source, 'session', async (uow, user) => {
      const session: Session = {
        idHash: hashSecret(secret),
        userId: user.id,
        csrfToken: randomBytes(24).toString('base64url'),
        createdAt: uow.now.toISOString(),
        expiresAt: new Date(uow.now.getTime() + SESSION_TTL_MS).toISOString(),
      };
      const sessions = new SessionStore(uow.db);
      await sessions.deleteExpired(uow.now.toISOString());
      await sessions.insert(session);
      await uow.audit({
        action: 'auth.login',
        subject: `user:${user.id}`,
        details: { username: user.username, via: 'session' },
      });
      started = { user, secret, session };
    });
    if (!started) throw new Error('login finished without a session');
    return started;
  }

  /** Trades a user name and password for a new API token: how `gantry login` signs in. */
  async loginForToken(
    input: { username: string; password: string; name: string; expiresInDays?: number | undefined },
    source: string | null,
  ): Promise<CreatedApiToken> {
    let created: CreatedApiToken | undefined;
    await this.withPassword(input.username, input.password, source, 'token', async (uow, user) => {
      await uow.audit({
        action: 'auth.login',
        subject: `user:${user.id}`,
        details: { username: user.username, via: 'token' },
      });
      const expiresAt = new Date(
        uow.now.getTime() + (input.expiresInDays ?? DEFAULT_TOKEN_DAYS) * DAY_MS,
      ).toISOString();
      created = await issueToken(uow, {
        userId: user.id,
        username: user.username,
        name: input.name,
        expiresAt,
      });
    });
    if (!created) throw new Error('login finished without a token');
    return created;
  }

  /**
   * Changes the caller's own password after checking the current one (counted and audited like a
   * login). Every other session of the user ends.
   */
  async changeOwnPassword(by: Principal, currentPassword: string, newPassword: string): Promise<void> {
    const passwordHash = await hashPassword(newPassword);
    await this.withPassword(
      by.user.username,
      currentPassword,
      by.source,
      'password_change',
      async (uow, user) => {
        if (user.id !== by.user.id) throw new Error('password change for another user');
        await new UserStore(uow.db).update(user.id, { passwordHash }, uow.now.toISOString());
        await new SessionStore(uow.db).deleteAllOfUser(user.id, by.session?.idHash);
        await uow.audit({
          action: 'user.password_changed',
          subject: `user:${user.id}`,
          details: { username: user.username },
        });
      },
      () =>
        new GantryError('VALIDATION', 'The current password is wrong; nothing was changed.', [
          { path: '/currentPassword', message: 'wrong password' },
        ]),
      actorOf(by),
    );
    this.deps.onOwnPasswordChanged?.(by.user.username);
  }

  async logout(by: Principal): Promise<void> {
    if (!by.session) {
      throw new GantryError(
        'VALIDATION',
        'Logout ends a dashboard session; an API token is ended with `gantry tokens revoke ID` (or `gantry logout`).',
      );
    }
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

  /**
   * Counts an attempt, checks the password, and on success runs `onSuccess` in the transaction
   * that takes the attempt back; on failure audits it and throws `failure()`.
   */
  private async withPassword(
    username: string,
    password: string,
    source: string | null,
    via: string,
    onSuccess: (uow: UnitOfWork, user: User) => Promise<void>,
    failure: () => GantryError = () => new GantryError('INVALID_CREDENTIALS', 'Wrong user name or password.'),
    successActor?: AuditActor,
  ): Promise<void> {
    const attempt: Attempt = {
      userKey: `user:${username.toLowerCase()}`,
      sourceKey: `source:${source ?? 'unknown'}`,
    };
    // Whoever failed to sign in is not known to be that user: the claimed name goes in the details.
    const anonymous: AuditActor = { actor: 'anonymous', source };
    const wait = await inTransaction(this.deps, anonymous, async (uow) => {
      const store = new LoginThrottleStore(uow.db);
      const userState = await store.get(attempt.userKey);
      const sourceState = await store.get(attempt.sourceKey);
      const remaining = Math.max(lockRemainingMs(userState, uow.now), lockRemainingMs(sourceState, uow.now));
      if (remaining > 0) return remaining;
      await store.put(
        attempt.userKey,
        afterFailure(userState, USER_THROTTLE, uow.now),
        uow.now.toISOString(),
      );
      await store.put(
        attempt.sourceKey,
        afterFailure(sourceState, SOURCE_THROTTLE, uow.now),
        uow.now.toISOString(),
      );
      return 0;
    });
    if (wait > 0) {
      const seconds = Math.ceil(wait / 1000);
      throw new GantryError(
        'RATE_LIMITED',
        `Too many failed attempts; try again in ${seconds} s.`,
        { retryAfterSeconds: seconds },
        seconds,
      );
    }

    const user = await new UserStore(this.deps.database.db).findByUsername(username);
    // The hash is computed even for an unknown user, so timing does not tell which names exist.
    const passwordOk = await verifyPassword(password, user?.passwordHash ?? null);
    if (user && passwordOk && !user.disabled) {
      await inTransaction(
        this.deps,
        successActor ?? { actor: `user:${user.username}`, source },
        async (uow) => {
          const store = new LoginThrottleStore(uow.db);
          await store.put(attempt.userKey, afterSuccess(), uow.now.toISOString());
          await store.put(
            attempt.sourceKey,
            forgiveOne(await store.get(attempt.sourceKey), SOURCE_THROTTLE),
            uow.now.toISOString(),
          );
          await onSuccess(uow, user);
        },
      );
      return;
    }
    const reason = !user
      ? 'unknown_user'
      : user.disabled
        ? 'disabled'
        : user.passwordHash === null
          ? 'no_password'
          : 'wrong_password';
    await inTransaction(this.deps, anonymous, (uow) =>
      uow.audit({
        action: `auth.${via === 'password_change' ? 'password_change' : 'login'}_failed`,
        subject: `user-name:${username}`,
        details: { username, via, reason },
      }),
    );
    throw failure();
  }
}
