/**
 * Group commit: transactions asked for together run in one database transaction, each in a
 * savepoint. A unit that fails leaves nothing behind and does not take the others with it; every
 * caller hears of its own result only; the audit chain stays whole. On every database.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TestClock } from '../../test/helpers/test-app.ts';
import { type TestDatabase, testDatabases } from '../../test/helpers/test-databases.ts';
import { CHAIN_START, verifyChainPage } from '../core/audit-chain.ts';
import { AuditLog, sha256Hex } from './audit/audit-log.ts';
import { inTransaction } from './unit-of-work.ts';

for (const kind of testDatabases()) {
  describe(`group commit on ${kind.name}`, () => {
    let t: TestDatabase;
    const clock = new TestClock();
    beforeEach(async () => {
      t = await kind.open();
    });
    afterEach(async () => t.cleanup());

    const deps = () => ({ database: t.database, clock });
    const insertEnvironment = (name: string, fail = false) =>
      inTransaction(deps(), { actor: `user:${name}`, source: null }, async (uow) => {
        await uow.db
          .insertInto('environments')
          .values({
            id: `env-${name}`,
            name,
            position: 0,
            policy: '{}',
            standards: '{}',
            created_at: uow.now.toISOString(),
            updated_at: uow.now.toISOString(),
          })
          .execute();
        await uow.audit({ action: 'environment.created', subject: `environment:${name}` });
        if (fail) throw new Error(`refused ${name}`);
        return name;
      });

    it('fifty at once: the failing ones leave nothing, the others commit, and the chain verifies', async () => {
      const names = Array.from({ length: 50 }, (_, i) => `env-${String(i).padStart(2, '0')}`);
      const results = await Promise.allSettled(names.map((n, i) => insertEnvironment(n, i % 7 === 3)));
      const failed = names.filter((_, i) => i % 7 === 3);
      results.forEach((r, i) => {
        if (i % 7 === 3)
          expect(r).toMatchObject({ status: 'rejected', reason: { message: `refused ${names[i]}` } });
        else expect(r).toEqual({ status: 'fulfilled', value: names[i] });
      });
      const stored = (await t.database.db.selectFrom('environments').select('name').execute()).map(
        (e) => e.name,
      );
      for (const n of names) expect(stored.includes(n), n).toBe(!failed.includes(n));
      const log = new AuditLog(t.database.db, t.database.dialect, clock);
      const entries = await log.list({ limit: 1000, action: 'environment.created' });
      expect(entries.map((e) => e.subject).sort()).toEqual(
        names.filter((n) => !failed.includes(n)).map((n) => `environment:${n}`),
      );
      const all = await log.list({ limit: 10_000 });
      expect(all.map((e) => e.seq)).toEqual(all.map((_, i) => i + 1));
      expect(verifyChainPage(CHAIN_START, all, sha256Hex).broken).toBeNull();
    });

    it('a duplicate within the same group fails alone (the database refuses it, the rest goes on)', async () => {
      const results = await Promise.allSettled([
        insertEnvironment('same'),
        insertEnvironment('same'),
        insertEnvironment('other'),
      ]);
      expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
      const stored = await t.database.db.selectFrom('environments').select('name').orderBy('name').execute();
      expect(stored.map((e) => e.name)).toEqual(['other', 'same']);
    });
  });
}
