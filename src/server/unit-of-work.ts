/**
 * One transaction with its audit trail: every state change in Gantry runs through `inTransaction`
 * and records itself with `uow.audit(...)`, so the change and its audit entry commit together.
 * Entries are handed to the optional `sink` only after the commit.
 */
import type { Kysely } from 'kysely';
import type { AuditEntry } from '../core/audit-chain.ts';
import { type AuditActor, AuditLog, type AuditRecord } from './audit/audit-log.ts';
import type { AuditSink } from './audit/audit-sink.ts';
import type { Clock } from './clock.ts';
import { type Database, lockAuditChain } from './db/database.ts';
import type { Tables } from './db/schema.ts';

export interface UnitOfWork {
  readonly db: Kysely<Tables>;
  readonly now: Date;
  audit(record: AuditRecord): Promise<void>;
}

export interface TransactionDeps {
  database: Database;
  clock: Clock;
  auditSink?: AuditSink | undefined;
}

export async function inTransaction<T>(
  deps: TransactionDeps,
  by: AuditActor,
  work: (uow: UnitOfWork) => Promise<T>,
): Promise<T> {
  const written: AuditEntry[] = [];
  const result = await deps.database.db.transaction().execute(async (trx) => {
    // Every change appends to the audit chain, so write transactions are serialised at the chain
    // anyway; taking the lock first also makes the transaction's reads (uniqueness, "last admin")
    // see a stable state on PostgreSQL. SQLite has a single writer already.
    await lockAuditChain(trx, deps.database.dialect);
    const log = new AuditLog(trx, deps.database.dialect, deps.clock);
    return work({
      db: trx,
      now: deps.clock.now(),
      audit: async (record) => {
        written.push(await log.append(by, record));
      },
    });
  });
  deps.auditSink?.write(written);
  return result;
}
