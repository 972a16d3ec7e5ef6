/**
 * One contract for every store, run on SQLite always and on PostgreSQL when TEST_DATABASE_URL is
 * set: what one database does, the other must do too.
 */
import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TestClock } from '../../test/helpers/test-app.ts';
import { type TestDatabase, testDatabases } from '../../test/helpers/test-databases.ts';
import { CHAIN_START, verifyChainPage } from '../core/audit-chain.ts';
import { GantryError } from '../core/errors.ts';
import { AuditLog, SYSTEM_ACTOR } from './audit/audit-log.ts';
import { LoginThrottleStore } from './auth/login-throttle-store.ts';
import { SessionStore } from './auth/session-store.ts';
import { isUniqueViolation } from './db/db-errors.ts';
import { MIGRATIONS, migrateToLatest } from './db/migrations.ts';
import { TokenStore } from './tokens/token-store.ts';
import { inTransaction } from './unit-of-work.ts';
import { UserStore } from './users/user-store.ts';

const sha = (text: string) => createHash('sha256').update(text).digest('hex');
const NOW = '2026-11-22T10:00:00.000Z';

for (const kind of testDatabases()) {
  describe(`stores on ${kind.name}`, () => {
    let t: TestDatabase;
    const clock = new TestClock();
    beforeEach(async () => {
      t = await kind.open();
    });
    afterEach(async () => t.cleanup());

    const addUser = (username: string, role: 'admin' | 'viewer' = 'viewer') =>
      new UserStore(t.database.db).insert({
        id: `id-${username}`,
        username,
        displayName: username,
        role,
        passwordHash: null,
        createdAt: NOW,
      });

    it('users: inserts, finds by id and name, updates, and refuses a second user of the same name', async () => {
      const users = new UserStore(t.database.db);
      await addUser('alice', 'admin');
      await addUser('bob');
      expect((await users.findByUsername('alice'))?.role).toBe('admin');
      expect(await users.findById('nope')).toBeUndefined();
      await users.update(
        'id-bob',
        { role: 'admin', disabled: true, displayName: 'Bob B' },
        '2026-11-22T11:00:00.000Z',
      );
      expect(await users.findById('id-bob')).toMatchObject({
        role: 'admin',
        disabled: true,
        displayName: 'Bob B',
        updatedAt: '2026-11-22T11:00:00.000Z',
      });
      expect(await users.countActiveAdmins()).toBe(1);
      expect((await users.list()).map((u) => u.username)).toEqual(['alice', 'bob']);
      const duplicate = await addUser('alice').catch((e: unknown) => e);
      expect(isUniqueViolation(duplicate)).toBe(true);
    });

    it('users: keeps strings with quotes and SQL in them as plain data', async () => {
      const users = new UserStore(t.database.db);
      await addUser('x');
      await users.update('id-x', { displayName: "Robert'); DROP TABLE users;--" }, NOW);
      expect(await users.findByUsername("' OR 1=1--")).toBeUndefined();
      expect((await users.findById('id-x'))?.displayName).toBe("Robert'); DROP TABLE users;--");
      expect(await users.count()).toBe(1);
    });

    it('tokens: finds by hash with the owner’s name, lists, revokes once', async () => {
      await addUser('alice');
      const tokens = new TokenStore(t.database.db);
      await tokens.insert({
        id: 't1',
        userId: 'id-alice',
        name: 'ci',
        secretHash: 'h1',
        prefix: 'gnt_abcd…',
        createdAt: NOW,
        expiresAt: null,
      });
      await tokens.insert({
        id: 't2',
        userId: 'id-alice',
        name: 'cli',
        secretHash: 'h2',
        prefix: 'gnt_efgh…',
        createdAt: NOW,
        expiresAt: NOW,
      });
      expect(await tokens.findBySecretHash('h1')).toMatchObject({
        id: 't1',
        username: 'alice',
        revokedAt: null,
      });
      expect(await tokens.revoke('t1', NOW)).toBe(true);
      expect(await tokens.revoke('t1', NOW)).toBe(false);
      expect((await tokens.list({ userId: 'id-alice', includeRevoked: false })).map((x) => x.id)).toEqual([
        't2',
      ]);
      expect(await tokens.list({ includeRevoked: true })).toHaveLength(2);
      expect(await tokens.revokeAllOfUser('id-alice', NOW)).toBe(1);
    });

    it('sessions and login throttle: store, find, expire, upsert', async () => {
      await addUser('alice');
      const sessions = new SessionStore(t.database.db);
      await sessions.insert({
        idHash: 's1',
        userId: 'id-alice',
        csrfToken: 'c',
        createdAt: NOW,
        expiresAt: '2026-11-22T12:00:00.000Z',
      });
      expect(await sessions.find('s1')).toMatchObject({ userId: 'id-alice', csrfToken: 'c' });
      await sessions.deleteExpired('2026-11-22T12:00:00.000Z');
      expect(await sessions.find('s1')).toBeUndefined();

      const throttle = new LoginThrottleStore(t.database.db);
      await throttle.put('user:alice', { failures: 3, lockedUntil: null }, NOW);
      await throttle.put(
        'user:alice',
        { failures: 6, lockedUntil: new Date('2026-11-22T10:00:01.000Z') },
        NOW,
      );
      expect(await throttle.get('user:alice')).toEqual({
        failures: 6,
        lockedUntil: new Date('2026-11-22T10:00:01.000Z'),
      });
      await throttle.put('user:alice', { failures: 0, lockedUntil: null }, NOW);
      expect(await throttle.get('user:alice')).toEqual({ failures: 0, lockedUntil: null });
    });

    it('audit: appends a verifiable chain, filters, pages, and matches action prefixes', async () => {
      const log = new AuditLog(t.database.db, t.database.dialect, clock);
      for (let i = 0; i < 5; i++)
        await log.append(
          { actor: 'user:a', source: '10.0.0.1' },
          { action: i % 2 ? 'user.created' : 'token.created', subject: `s:${i}`, details: { i } },
        );
      const all = await log.list({ limit: 100 });
      expect(all.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
      expect(verifyChainPage(CHAIN_START, all, sha).broken).toBeNull();
      expect((await log.list({ action: 'user.*', limit: 100 })).map((e) => e.seq)).toEqual([2, 4]);
      expect(await log.list({ action: 'user.', limit: 100 })).toEqual([]);
      expect((await log.list({ after: 3, limit: 1 })).map((e) => e.seq)).toEqual([4]);
      expect(await log.list({ subject: "s:1' OR '1'='1", limit: 100 })).toEqual([]);
      expect(await log.head()).toEqual({ seq: 5, hash: all[4]?.hash });
    });

    it('audit: concurrent transactions still give one gap-free chain', async () => {
      const deps = { database: t.database, clock };
      await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          inTransaction(deps, SYSTEM_ACTOR, async (uow) => {
            await uow.audit({ action: 'test.parallel', subject: `n:${i}` });
            await uow.audit({ action: 'test.parallel.second', subject: `n:${i}` });
          }),
        ),
      );
      const entries = await new AuditLog(t.database.db, t.database.dialect, clock).list({ limit: 1000 });
      expect(entries).toHaveLength(40);
      expect(verifyChainPage(CHAIN_START, entries, sha).broken).toBeNull();
    });

    it('audit: an entry written in a transaction that fails is rolled back with it', async () => {
      const deps = { database: t.database, clock };
      await expect(
        inTransaction(deps, SYSTEM_ACTOR, async (uow) => {
          await new UserStore(uow.db).insert({
            id: 'u1',
            username: 'carol',
            displayName: 'c',
            role: 'viewer',
            passwordHash: null,
            createdAt: NOW,
          });
          await uow.audit({ action: 'user.created', subject: 'user:u1' });
          throw new Error('boom');
        }),
      ).rejects.toThrow('boom');
      expect(await new AuditLog(t.database.db, t.database.dialect, clock).list({ limit: 10 })).toEqual([]);
      expect(await new UserStore(t.database.db).findById('u1')).toBeUndefined();
    });

    it('migrations: a second run applies nothing, and a database from a newer Gantry is refused by name', async () => {
      expect(await migrateToLatest(t.database.db, t.database.dialect)).toEqual([]);
      await t.database.db
        .insertInto('gantry_migration' as never)
        .values({ name: '9999-from-the-future', timestamp: NOW } as never)
        .execute();
      const error = await migrateToLatest(t.database.db, t.database.dialect).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(GantryError);
      expect((error as GantryError).code).toBe('DB_NEWER_THAN_PROGRAM');
      expect((error as GantryError).message).toContain('9999-from-the-future');
      expect(Object.keys(MIGRATIONS)).toContain('0001-foundation');
    });
  });
}
