/** The audit API: read-only, filtered, paged; `verify` names the first entry edited behind Gantry’s back. */

import { sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, startTestApp, type TestApp } from '../../../test/helpers/test-app.ts';
import { testDatabases } from '../../../test/helpers/test-databases.ts';

for (const kind of testDatabases()) {
  describe(`audit API on ${kind.name}`, () => {
    let t: TestApp;
    beforeEach(async () => {
      t = await startTestApp(kind);
    });
    afterEach(async () => t.close());

    async function makeActivity(n: number) {
      for (let i = 0; i < n; i++) {
        await t.call('POST', '/api/v1/users', {
          token: ADMIN_TOKEN,
          body: { username: `user${i}`, role: 'viewer' },
        });
        t.clock.advance(60_000);
      }
    }

    it('pages through every entry in order with `after`', async () => {
      await makeActivity(7);
      const seen: number[] = [];
      let after = 0;
      for (;;) {
        const page = await t.call('GET', `/api/v1/audit?limit=3&after=${after}`, { token: ADMIN_TOKEN });
        seen.push(...page.body.entries.map((e: { seq: number }) => e.seq));
        if (page.body.nextAfter === null) break;
        after = page.body.nextAfter;
      }
      expect(seen).toEqual(Array.from({ length: seen.length }, (_, i) => i + 1));
      expect(seen.length).toBeGreaterThanOrEqual(9);
    });

    it('filters by action, actor and time', async () => {
      await makeActivity(3);
      const created = await t.call('GET', '/api/v1/audit?action=user.created', { token: ADMIN_TOKEN });
      expect(created.body.entries.map((e: { details: { username: string } }) => e.details.username)).toEqual([
        'admin',
        'user0',
        'user1',
        'user2',
      ]);
      const byAdmin = await t.call('GET', '/api/v1/audit?actor=user:admin', { token: ADMIN_TOKEN });
      expect(byAdmin.body.entries).toHaveLength(3);
      const since = await t.call('GET', '/api/v1/audit?since=2026-11-22T10:01:00.000Z&action=user.*', {
        token: ADMIN_TOKEN,
      });
      expect(since.body.entries.map((e: { details: { username: string } }) => e.details.username)).toEqual([
        'user1',
        'user2',
      ]);
    });

    it('offers no way to change or delete an entry', async () => {
      for (const method of ['PUT', 'PATCH', 'DELETE', 'POST']) {
        expect((await t.call(method, '/api/v1/audit', { token: ADMIN_TOKEN, body: {} })).status).toBe(404);
        expect((await t.call(method, '/api/v1/audit/1', { token: ADMIN_TOKEN, body: {} })).status).toBe(404);
      }
    });

    it('verifies an intact chain, then names the entry edited directly in the database', async () => {
      await makeActivity(4);
      const intact = await t.call('GET', '/api/v1/audit/verify', { token: ADMIN_TOKEN });
      expect(intact.body).toMatchObject({ ok: true, broken: null });
      expect(intact.body.head.seq).toBe(intact.body.checked);
      await sql`update audit_log set actor = 'user:nobody' where seq = 3`.execute(t.db.database.db);
      const broken = await t.call('GET', '/api/v1/audit/verify', { token: ADMIN_TOKEN });
      expect(broken.body).toMatchObject({ ok: false, checked: 2, broken: { seq: 3, kind: 'hash_mismatch' } });
      expect(broken.body.broken.message).toContain('entry 3 was changed');
    });

    it('finds an entry deleted directly in the database', async () => {
      await makeActivity(3);
      await sql`delete from audit_log where seq = 2`.execute(t.db.database.db);
      const broken = await t.call('GET', '/api/v1/audit/verify', { token: ADMIN_TOKEN });
      expect(broken.body.broken).toMatchObject({ seq: 3, kind: 'gap' });
      expect(broken.body.broken.message).toContain('entry 2 is missing');
    });
  });
}
