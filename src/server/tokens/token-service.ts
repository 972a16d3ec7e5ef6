/**
 * API tokens: created for a user, shown once, stored as a hash, checked on every request with no
 * cache, so a revocation takes effect on the very next request.
 */
import { randomUUID } from 'node:crypto';
import { GantryError } from '../../core/errors.ts';
import { actorOf, can, type Principal } from '../auth/principal.ts';
import { inTransaction, type TransactionDeps, type UnitOfWork } from '../unit-of-work.ts';
import { UserStore } from '../users/user-store.ts';
import { displayPrefix, hashSecret, newTokenSecret } from './token-secret.ts';
import { type ApiToken, TokenStore } from './token-store.ts';

export const DEFAULT_TOKEN_DAYS = 90;
const DAY_MS = 86_400_000;
/** `last_used_at` is refreshed at most this often, so reads do not turn into writes. */
const TOUCH_INTERVAL_MS = 60_000;

export interface CreatedApiToken {
  token: ApiToken;
  secret: string;
}

export class TokenService {
  constructor(private readonly deps: TransactionDeps) {}

  async create(
    by: Principal,
    input: { name: string; expiresInDays?: number | undefined; userId?: string | undefined },
  ): Promise<CreatedApiToken> {
    const userId = input.userId ?? by.user.id;
    if (userId !== by.user.id && !can(by, 'tokens:admin')) {
      throw new GantryError('FORBIDDEN', 'Only an admin can create a token for another user.', {
        permission: 'tokens:admin',
      });
    }
    return inTransaction(this.deps, actorOf(by), async (uow) => {
      const user = await new UserStore(uow.db).findById(userId);
      if (!user) throw new GantryError('NOT_FOUND', `No user with id '${userId}'.`, { id: userId });
      if (user.disabled)
        throw new GantryError(
          'CONFLICT',
          `User '${user.username}' is disabled; enable it before giving it a token.`,
        );
      const expiresAt = new Date(
        uow.now.getTime() + (input.expiresInDays ?? DEFAULT_TOKEN_DAYS) * DAY_MS,
      ).toISOString();
      return issueToken(uow, { userId: user.id, username: user.username, name: input.name, expiresAt });
    });
  }

  async list(
    by: Principal,
    options: { all?: boolean | undefined; includeRevoked?: boolean | undefined },
  ): Promise<ApiToken[]> {
    if (options.all === true && !can(by, 'tokens:admin')) {
      throw new GantryError(
        'FORBIDDEN',
        'Only an admin can list every user’s tokens; leave out `all` to list your own.',
        {
          permission: 'tokens:admin',
        },
      );
    }
    return new TokenStore(this.deps.database.db).list({
      userId: options.all === true ? undefined : by.user.id,
      includeRevoked: options.includeRevoked === true,
    });
  }

  /** Revokes a token of the caller's own, or any token for an admin. Revoking twice changes nothing. */
  async revoke(by: Principal, id: string): Promise<ApiToken> {
    return inTransaction(this.deps, actorOf(by), async (uow) => {
      const tokens = new TokenStore(uow.db);
      const token = await tokens.findById(id);
      // Someone else's token answers exactly like a token that does not exist.
      if (!token || (token.userId !== by.user.id && !can(by, 'tokens:admin'))) {
        throw new GantryError(
          'NOT_FOUND',
          `No token with id '${id}'. List yours with \`gantry tokens list\`.`,
          { id },
        );
      }
      if (await tokens.revoke(id, uow.now.toISOString())) {
        await uow.audit({
          action: 'token.revoked',
          subject: `token:${id}`,
          details: { name: token.name, userId: token.userId, username: token.username },
        });
      }
      const after = await tokens.findById(id);
      if (!after) throw new Error(`token ${id} vanished inside its own transaction`);
      return after;
    });
  }

  /** Resolves a presented secret to its token, or says exactly why it is not accepted. */
  async authenticate(secret: string, now: Date): Promise<ApiToken> {
    const tokens = new TokenStore(this.deps.database.db);
    const token = await tokens.findBySecretHash(hashSecret(secret));
    if (!token)
      throw new GantryError(
        'UNAUTHENTICATED',
        'The API token is not known to this server. Create one with `gantry tokens create`.',
      );
    if (token.revokedAt !== null)
      throw new GantryError(
        'UNAUTHENTICATED',
        `The API token '${token.name}' was revoked at ${token.revokedAt}.`,
      );
    if (token.expiresAt !== null && token.expiresAt <= now.toISOString()) {
      throw new GantryError(
        'UNAUTHENTICATED',
        `The API token '${token.name}' expired at ${token.expiresAt}. Create a new one.`,
      );
    }
    if (token.lastUsedAt === null || now.getTime() - Date.parse(token.lastUsedAt) > TOUCH_INTERVAL_MS) {
      await tokens.touch(token.id, now.toISOString());
    }
    return token;
  }
}

/** Creates a token inside an open transaction and audits it. Returns the secret, once. */
export async function issueToken(
  uow: UnitOfWork,
  input: { userId: string; username: string; name: string; expiresAt: string | null; secret?: string },
): Promise<CreatedApiToken> {
  const secret = input.secret ?? newTokenSecret();
  const id = randomUUID();
  const prefix = displayPrefix(secret);
  await new TokenStore(uow.db).insert({
    id,
    userId: input.userId,
    name: input.name,
    secretHash: hashSecret(secret),
    prefix,
    createdAt: uow.now.toISOString(),
    expiresAt: input.expiresAt,
  });
  await uow.audit({
    action: 'token.created',
    subject: `token:${id}`,
    details: {
      name: input.name,
      userId: input.userId,
      username: input.username,
      prefix,
      expiresAt: input.expiresAt,
    },
  });
  return {
    token: {
      id,
      userId: input.userId,
      username: input.username,
      name: input.name,
      prefix,
      createdAt: uow.now.toISOString(),
      expiresAt: input.expiresAt,
      lastUsedAt: null,
      revokedAt: null,
    },
    secret,
  };
}
