/**
 * The databases every store and route test runs on: SQLite in memory always, and the real
 * PostgreSQL when TEST_DATABASE_URL is set (CI sets it). Each PostgreSQL test database is a schema
 * of its own, dropped afterwards, so test files can run side by side.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { type Database, type DatabaseTarget, openAndMigrate } from '../../src/server/db/database.ts';

export interface TestDatabase {
  database: Database;
  target: DatabaseTarget;
  /** A URL a separate process can use to reach the same data (PostgreSQL only). */
  url: string | undefined;
  cleanup(): Promise<void>;
}

export interface TestDatabaseKind {
  name: 'sqlite' | 'postgres';
  open(): Promise<TestDatabase>;
}

export const postgresUrl = process.env.TEST_DATABASE_URL || undefined;

export function testDatabases(): TestDatabaseKind[] {
  const kinds: TestDatabaseKind[] = [{ name: 'sqlite', open: openSqlite }];
  if (postgresUrl) kinds.push({ name: 'postgres', open: () => openPostgres(postgresUrl) });
  return kinds;
}

async function openSqlite(): Promise<TestDatabase> {
  const target: DatabaseTarget = { kind: 'sqlite', file: ':memory:' };
  const { database } = await openAndMigrate(target);
  return { database, target, url: undefined, cleanup: () => database.destroy() };
}

export async function createPostgresSchema(url: string): Promise<{ schema: string; drop(): Promise<void> }> {
  const schema = `gantry_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  await admin.query(`create schema ${schema}`);
  await admin.end();
  return {
    schema,
    async drop() {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      await client.query(`drop schema if exists ${schema} cascade`);
      await client.end();
    },
  };
}

/** A postgres URL whose connections use `schema` as their search path. */
export function urlWithSchema(url: string, schema: string): string {
  const u = new URL(url);
  u.searchParams.set('options', `-c search_path=${schema}`);
  return u.toString();
}

async function openPostgres(url: string): Promise<TestDatabase> {
  const { schema, drop } = await createPostgresSchema(url);
  const target: DatabaseTarget = { kind: 'postgres', url, schema, poolSize: 5 };
  const { database } = await openAndMigrate(target);
  return {
    database,
    target,
    url: urlWithSchema(url, schema),
    async cleanup() {
      await database.destroy();
      await drop();
    },
  };
}

/** The databases a test of real server processes runs on: SQLite, and PostgreSQL when it is set. */
export const SERVER_DATABASES = ['sqlite', ...(postgresUrl ? ['postgres'] : [])] as ReadonlyArray<
  'sqlite' | 'postgres'
>;

/**
 * What a server process needs to run on `kind`: nothing more for SQLite (it lives in the data
 * directory), or the URL of a fresh PostgreSQL schema; `drop` removes that schema afterwards.
 */
export async function serverDatabase(
  kind: 'sqlite' | 'postgres',
): Promise<{ env: Record<string, string>; drop(): Promise<void> }> {
  if (kind === 'sqlite' || !postgresUrl) return { env: {}, drop: async () => {} };
  const schema = await createPostgresSchema(postgresUrl);
  return { env: { GANTRY_DATABASE_URL: urlWithSchema(postgresUrl, schema.schema) }, drop: schema.drop };
}
