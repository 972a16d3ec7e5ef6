/** Rows of `api_tokens`. The secret itself is never stored, only its hash. */
import type { Kysely } from 'kysely';
import type { Tables } from '../db/schema.ts';

export interface ApiToken {
  id: string;
  userId: string;
  username: string;
  name: string;
  prefix: string;
  createdAt: string;
  expiresAt: string | null;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

export interface NewApiToken {
  id: string;
  userId: string;
  name: string;
  secretHash: string;
  prefix: string;
  createdAt: string;
  expiresAt: string | null;
}

export class TokenStore {
  constructor(private readonly db: Kysely<Tables>) {}

  async insert(token: NewApiToken): Promise<void> {
    await this.db
      .insertInto('api_tokens')
      .values({
        id: token.id,
        user_id: token.userId,
        name: token.name,
        secret_hash: token.secretHash,
        prefix: token.prefix,
        created_at: token.createdAt,
        expires_at: token.expiresAt,
        last_used_at: null,
        revoked_at: null,
      })
      .execute();
  }

  private base() {
    return this.db
      .selectFrom('api_tokens')
      .innerJoin('users', 'users.id', 'api_tokens.user_id')
      .select([
        'api_tokens.id as id',
        'api_tokens.user_id as userId',
        'users.username as username',
        'api_tokens.name as name',
        'api_tokens.prefix as prefix',
        'api_tokens.created_at as createdAt',
        'api_tokens.expires_at as expiresAt',
        'api_tokens.last_used_at as lastUsedAt',
        'api_tokens.revoked_at as revokedAt',
      ]);
  }

  async findBySecretHash(secretHash: string): Promise<ApiToken | undefined> {
    return this.base().where('api_tokens.secret_hash', '=', secretHash).executeTakeFirst();
  }

  async findById(id: string): Promise<ApiToken | undefined> {
    return this.base().where('api_tokens.id', '=', id).executeTakeFirst();
  }

  async list(filter: { userId?: string | undefined; includeRevoked: boolean }): Promise<ApiToken[]> {
    let query = this.base();
    if (filter.userId !== undefined) query = query.where('api_tokens.user_id', '=', filter.userId);
    if (!filter.includeRevoked) query = query.where('api_tokens.revoked_at', 'is', null);
    return query.orderBy('api_tokens.created_at', 'desc').orderBy('api_tokens.id').execute();
  }

  async revoke(id: string, now: string): Promise<boolean> {
    const result = await this.db
      .updateTable('api_tokens')
      .set({ revoked_at: now })
      .where('id', '=', id)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }

  async revokeAllOfUser(userId: string, now: string): Promise<number> {
    const result = await this.db
      .updateTable('api_tokens')
      .set({ revoked_at: now })
      .where('user_id', '=', userId)
      .where('revoked_at', 'is', null)
      .executeTakeFirst();
    return Number(result.numUpdatedRows);
  }

  async touch(id: string, now: string): Promise<void> {
    await this.db.updateTable('api_tokens').set({ last_used_at: now }).where('id', '=', id).execute();
  }
}
