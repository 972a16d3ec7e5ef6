/**
 * One transaction with its audit trail: every state change in Gantry runs through `inTransaction`
 * and records itself with `uow.audit(...)`, so the change and its audit entry commit together.
 * Entries are handed to the optional `sink` only after the commit.
 */
import { type Kysely, sql } from 'kysely';
import type { AuditEntry } from '../core/audit-chain.ts';
import { type AuditActor, AuditLog, type AuditRecord, type ChainHead } from './audit/audit-log.ts';
import type { AuditSink } from './audit/audit-sink.ts';
import type { Clock } from './clock.ts';
import { AUDIT_LOCK_SQL, type Database, lockAuditChain } from './db/database.ts';
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
  let group = groups.get(deps.database);
  if (!group) {
    group = { queue: [], draining: false };
    groups.set(deps.database, group);
  }
  const queued = group;
  return new Promise<T>((resolve, reject) => {
    queued.queue.push({ deps, by, work, resolve, reject } as Unit<unknown>);
    if (!queued.draining) void drain(deps.database, queued);
  });
}

/**
 * Group commit. Every write transaction takes the audit-chain lock first, so they run one at a
 * time anyway; those that arrive while one runs are run together in the next transaction, each
 * inside a savepoint of its own, and committed at once: one durable commit for many changes. A
 * unit that fails is rolled back to its savepoint alone and rejected; the others commit. Each
 * caller hears of its result only after the commit.
 */
interface Unit<T> {
  deps: TransactionDeps;
  by: AuditActor;
  work: (uow: UnitOfWork) => Promise<T>;
  resolve: (value: T) => void;
  reject: (error: unknown) => void;
}
interface Group {
  queue: Array<Unit<unknown>>;
  draining: boolean;
}
const groups = new WeakMap<Database, Group>();
/** At most this many units share one transaction. */
const MAX_GROUP = 100;

/**
 * A write transaction holding the audit-chain lock. Taking the lock first also makes the
 * transaction's reads (uniqueness, "last admin") see a stable state on PostgreSQL; there `begin`
 * and the lock go in one round trip (a statement list without parameters). SQLite has a single
 * writer already.
 */
async function lockedTransaction(
  database: Database,
  work: (trx: Kysely<Tables>) => Promise<void>,
): Promise<void> {
  if (database.dialect !== 'postgres') {
    await database.writer.transaction().execute(async (trx) => {
      await lockAuditChain(trx, database.dialect);
      await work(trx);
    });
    return;
  }
  await database.writer.connection().execute(async (conn) => {
    try {
      await sql.raw(`begin; ${AUDIT_LOCK_SQL}`).execute(conn);
      await work(conn);
    } catch (error) {
      // Also when the lock was not had (a statement timeout): the connection goes back to the pool
      // outside any transaction. A rollback that fails leaves a broken connection the pool drops.
      await sql
        .raw('rollback')
        .execute(conn)
        .catch(() => {});
      throw error;
    }
    await sql.raw('commit').execute(conn);
  });
}

async function drain(database: Database, group: Group): Promise<void> {
  group.draining = true;
  try {
    while (group.queue.length > 0) {
      // One turn of the event loop first: requests that have arrived meanwhile reach this queue
      // (with a synchronous driver, a transaction never yields to I/O on its own).
      await new Promise((resolve) => setImmediate(resolve));
      const batch = group.queue.splice(0, MAX_GROUP);
      const settle: Array<() => void> = [];
      try {
        await lockedTransaction(database, async (trx) => {
          const alone = batch.length === 1;
          // Under the lock the chain's end is read once and carried from append to append.
          const head: ChainHead = { last: undefined, pending: [] };
          for (const [i, unit] of batch.entries()) {
            const written: AuditEntry[] = [];
            const log = new AuditLog(trx, database.dialect, unit.deps.clock, head);
            const headBefore = head.last;
            const pendingBefore = head.pending?.length ?? 0;
            if (!alone) await sql.raw(`savepoint unit_${i}`).execute(trx);
            try {
              const value = await unit.work({
                db: trx,
                now: unit.deps.clock.now(),
                audit: async (record) => {
                  written.push(await log.append(record.by ?? unit.by, record));
                },
              });
              settle.push(() => {
                unit.deps.auditSink?.write(written);
                unit.resolve(value);
              });
            } catch (error) {
              // Alone, the whole transaction rolls back (the error ends it); else only this unit.
              if (alone) throw error;
              // (Savepoints are not released one by one: the commit ends them all, one round trip less.)
              await sql.raw(`rollback to savepoint unit_${i}`).execute(trx);
              head.last = headBefore;
              if (head.pending) head.pending.length = pendingBefore;
              settle.push(() => unit.reject(error));
            }
          }
          // The group's audit entries, in chain order, in one statement (or a few), before the commit.
          await AuditLog.flush(trx, head);
        });
      } catch (error) {
        for (const unit of batch) unit.reject(error);
        continue;
      }
      for (const done of settle) done();
    }
  } finally {
    group.draining = false;
  }
}
