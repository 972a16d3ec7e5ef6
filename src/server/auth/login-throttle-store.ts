/** Rows of `login_throttle`: failed-login counters that outlive a restart. */
import type { Kysely } from 'kysely';
import { EMPTY_THROTTLE, type ThrottleState } from '../../core/login-throttle.ts';
import type { Tables } from '../db/schema.ts';

export class LoginThrottleStore {
  constructor(private readonly db: Kysely<Tables>) {}

  async get(key: string): Promise<ThrottleState> {
    const row = await this.db
      .selectFrom('login_throttle')
      .selectAll()
      .where('key', '=', key)
      .executeTakeFirst();
    if (!row) return EMPTY_THROTTLE;
    return {
      failures: Number(row.failures),
      lockedUntil: row.locked_until ? new Date(row.locked_until) : null,
    };
  }

  async put(key: string, state: ThrottleState, now: string): Promise<void> {
    if (state.failures === 0) {
      await this.db.deleteFrom('login_throttle').where('key', '=', key).execute();
      return;
    }
    const values = {
      failures: state.failures,
      locked_until: state.lockedUntil?.toISOString() ?? null,
      updated_at: now,
    };
    await this.db
      .insertInto('login_throttle')
      .values({ key, ...values })
      .onConflict((oc) => oc.column('key').doUpdateSet(values))
      .execute();
  }
}
