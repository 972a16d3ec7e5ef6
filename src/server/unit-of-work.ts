/**
 * One transaction with its audit trail: every state change in Gantry runs through `inTransaction`
 * and records itself with `uow.audit(...)`, so the change and its audit entry commit together.
 */
import type { Kysely } from 'kysely';
import { type AuditActor, AuditLog, type AuditRecord } from './audit/audit-log.ts';
import type { Clock } from './clock.ts';
import type { Database } from './db/database.ts';
import type { Tables } from './db/schema.ts';

export interface UnitOfWork {
  readonly db: Kysely<Tables>;
  readonly now: Date;
  audit(record: AuditRecord): Promise<void>;
}

export interface TransactionDeps {
  database: Database;
  clock: Clock;
}

export async function inTransaction<T>(
  deps: TransactionDeps,
  by: AuditActor,
  work: (uow: UnitOfWork) => Promise<T>,
): Promise<T> {
  return deps.database.db.transaction().execute(async (trx) => {
    const log = new AuditLog(trx, deps.database.dialect, deps.clock);
    return work({
      db: trx,
      now: deps.clock.now(),
      audit: async (record) => void (await log.append(by, record)),
    });
  });
}
