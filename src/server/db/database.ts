/**
 * Opens the one database Gantry keeps its state in: SQLite in the data directory by default,
 * PostgreSQL when a `postgres://` URL is given. Both sit behind the same Kysely query layer.
 *
 * SQLite: WAL, synchronous=FULL, foreign keys on. Kysely's SQLite driver runs every query on one
 * connection behind a mutex, so writes are serialised inside the process and no client ever sees
 * SQLITE_BUSY; busy_timeout covers a second process (a backup, a migration) holding the file.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import SQLite from 'better-sqlite3';
import {
  type DatabaseConnection,
  type Driver,
  Kysely,
  type LogEvent,
  PostgresDialect,
  SqliteDialect,
  type SqliteDialectConfig,
  SqliteDriver,
  sql,
} from 'kysely';
import pg from 'pg';
import { migrateToLatest } from './migrations.ts';
import { channelFor, PgListener, type PgSubscription } from './notifications.ts';
import type { Tables } from './schema.ts';

export type Dialect = 'sqlite' | 'postgres';

export interface Database {
  readonly db: Kysely<Tables>;
  /**
   * What write transactions run on. On PostgreSQL a pool of its own: every writer waits for the
   * one transaction that holds the audit-chain lock, so that transaction must never wait behind a
   * burst of reads for a connection. On SQLite the same as `db`.
   */
  readonly writer: Kysely<Tables>;
  readonly dialect: Dialect;
  /** Where the data is, without credentials: for logs and `gantry version`. */
  readonly location: string;
  /**
   * PostgreSQL: `channel` heard on the database's one listening connection (see
   * `notifications.ts`); the caller starts the subscription and closes it.
   */
  listener?(channel: string, onNotify: (payload: string) => void, onConnected: () => void): PgSubscription;
  destroy(): Promise<void>;
}

export type DatabaseTarget =
  | { kind: 'sqlite'; file: string; profileFile?: string | undefined }
  | {
      kind: 'postgres';
      url: string;
      schema?: string | undefined;
      poolSize?: number | undefined;
      profileFile?: string | undefined;
    };

export function openDatabase(target: DatabaseTarget): Database {
  switch (target.kind) {
    case 'sqlite': {
      if (target.file !== ':memory:') mkdirSync(path.dirname(target.file), { recursive: true, mode: 0o700 });
      const sqlite = new SQLite(target.file);
      sqlite.pragma('journal_mode = WAL');
      sqlite.pragma('synchronous = FULL');
      sqlite.pragma('foreign_keys = ON');
      sqlite.pragma('busy_timeout = 5000');
      const db = new Kysely<Tables>({
        dialect: new FifoSqliteDialect({ database: withStatementCache(sqlite) }),
        ...sqlProfile(target.profileFile),
      });
      return { db, writer: db, dialect: 'sqlite', location: target.file, destroy: () => db.destroy() };
    }
    case 'postgres': {
      const connection = {
        connectionString: target.url,
        ...(target.schema ? { options: `-c search_path=${target.schema}` } : {}),
      };
      const limits = {
        connectionTimeoutMillis: 5_000,
        // A statement that hangs (a partition to the database) fails instead of holding a request forever.
        statement_timeout: 15_000,
        // A replica stopped inside a transaction (SIGSTOP, a VM paused) would hold the audit-chain
        // lock for every replica: the database ends such a transaction after 30 s.
        idle_in_transaction_session_timeout: 30_000,
      };
      const pool = new pg.Pool({ ...connection, ...limits, max: target.poolSize ?? 10 });
      const writerPool = new pg.Pool({ ...connection, ...limits, max: 2 });
      // An idle client losing its connection (database restart) must not crash the server.
      pool.on('error', () => {});
      writerPool.on('error', () => {});
      const profile = sqlProfile(target.profileFile);
      const db = new Kysely<Tables>({ dialect: new PostgresDialect({ pool }), ...profile });
      const writer = new Kysely<Tables>({ dialect: new PostgresDialect({ pool: writerPool }), ...profile });
      const listening = new PgListener({ ...connection, connectionTimeoutMillis: 5_000 });
      return {
        db,
        writer,
        dialect: 'postgres',
        location: redactUrl(target.url),
        listener: (channel, onNotify, onConnected) =>
          listening.subscribe(channelFor(channel, target.schema), onNotify, onConnected),
        destroy: async () => {
          await writer.destroy();
          await db.destroy();
        },
      };
    }
  }
}

/**
 * Kysely's SQLite driver hands its one connection on through a lock that wakes every waiter on
 * each release (one gets it, the rest wait again): with thousands of requests waiting that is
 * most of the server's time. This one hands it to the next waiter in order, waking only that one.
 */
class FifoSqliteDriver extends SqliteDriver {
  private connection: DatabaseConnection | undefined;
  private busy = false;
  private readonly waiting: Array<() => void> = [];

  override async init(): Promise<void> {
    await super.init();
    // Taken once from the base driver and never given back to it: this class lends it out.
    this.connection = await super.acquireConnection();
  }

  override async acquireConnection(): Promise<DatabaseConnection> {
    if (this.busy) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.busy = true;
    return this.connection as DatabaseConnection;
  }

  override async releaseConnection(): Promise<void> {
    const next = this.waiting.shift();
    if (next) next();
    else this.busy = false;
  }
}

class FifoSqliteDialect extends SqliteDialect {
  constructor(private readonly options: SqliteDialectConfig) {
    super(options);
  }

  override createDriver(): Driver {
    return new FifoSqliteDriver(this.options);
  }
}

/**
 * Kysely prepares every query anew; better-sqlite3 can run a prepared statement again and again.
 * The most recently used statements are kept (by their SQL), so the hot queries are compiled once.
 */
function withStatementCache(sqlite: SQLite.Database, size = 500): SQLite.Database {
  const cache = new Map<string, SQLite.Statement>();
  const prepare = (text: string) => {
    let statement = cache.get(text);
    if (statement) cache.delete(text);
    else {
      statement = sqlite.prepare(text);
      if (cache.size >= size) cache.delete(cache.keys().next().value as string);
    }
    cache.set(text, statement);
    return statement;
  };
  // What Kysely's SQLite dialect uses of the database: prepare and close.
  return { prepare, close: () => sqlite.close() } as unknown as SQLite.Database;
}

/**
 * Diagnostics for benchmarks: with GANTRY_SQL_PROFILE=FILE every query's time is added up by its
 * SQL text and written to FILE (JSON, slowest total first) when the process exits.
 */
function sqlProfile(file: string | undefined): { log?: (event: LogEvent) => void } {
  if (!file) return {};
  const totals = new Map<string, { count: number; ms: number }>();
  process.once('exit', () => {
    const rows = [...totals].map(([sql, t]) => ({ sql, ...t })).sort((a, b) => b.ms - a.ms);
    writeFileSync(file, `${JSON.stringify(rows, null, 1)}\n`);
  });
  return {
    log(event) {
      const text = event.query.sql.replace(/\(\?(, \?)+\)/g, '(?…)').replace(/\(\$\d+(, \$\d+)+\)/g, '($…)');
      const t = totals.get(text) ?? { count: 0, ms: 0 };
      t.count += 1;
      t.ms += event.queryDurationMillis;
      totals.set(text, t);
    },
  };
}

export async function openAndMigrate(
  target: DatabaseTarget,
): Promise<{ database: Database; applied: string[] }> {
  const database = openDatabase(target);
  try {
    const applied = await migrateToLatest(database.db, database.dialect);
    return { database, applied };
  } catch (error) {
    await database.destroy();
    throw error;
  }
}

/** PostgreSQL: the transaction-scoped lock every write transaction takes before its first write. */
export const AUDIT_LOCK_SQL = 'select pg_advisory_xact_lock(7170700001)';

/** Takes the transaction-scoped lock that orders audit appends across connections and replicas. */
export async function lockAuditChain(trx: Kysely<Tables>, dialect: Dialect): Promise<void> {
  // SQLite has one writer at a time already; PostgreSQL needs an explicit lock.
  if (dialect === 'postgres') await sql.raw(AUDIT_LOCK_SQL).execute(trx);
}

export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    for (const key of ['password', 'sslpassword', 'sslkey', 'sslcert'])
      if (parsed.searchParams.has(key)) parsed.searchParams.set(key, '***');
    return parsed.toString();
  } catch {
    return 'postgres://(unparseable url)';
  }
}
