import { existsSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, startTestApp, type TestApp } from '../../../test/helpers/test-app.ts';
import { testDatabases } from '../../../test/helpers/test-databases.ts';
import { passwordFilePath } from '../bootstrap.ts';

for (const kind of testDatabases()) {
  describe(`users on ${kind.name}`, () => {
    let t: TestApp;
    beforeEach(async () => {
      t = await startTestApp(kind);
    });
    afterEach(async () => t.close());

    it('creates, shows, lists and changes a user, auditing each change without the password', async () => {
      const created = await t.call('POST', '/api/v1/users', {
        token: ADMIN_TOKEN,
        body: {
          username: 'alice',
          role: 'release-manager',
          displayName: 'Alice A',
          password: 'alice has a long password',
        },
      });
      expect(created.status).toBe(201);
      expect(created.body).toMatchObject({
        username: 'alice',
        role: 'release-manager',
        hasPassword: true,
        disabled: false,
      });
      const changed = await t.call('PATCH', `/api/v1/users/${created.body.id}`, {
        token: ADMIN_TOKEN,
        body: { role: 'deployer' },
      });
      expect(changed.body.role).toBe('deployer');
      const list = await t.call('GET', '/api/v1/users', { token: ADMIN_TOKEN });
      expect(list.body.users.map((u: { username: string }) => u.username)).toEqual(['admin', 'alice']);
      const audit = await t.call('GET', `/api/v1/audit?subject=user:${created.body.id}`, {
        token: ADMIN_TOKEN,
      });
      expect(audit.body.entries.map((e: { action: string }) => e.action)).toEqual([
        'user.created',
        'user.updated',
      ]);
      expect(audit.body.entries[1].details.changed).toEqual({
        role: { from: 'release-manager', to: 'deployer' },
      });
      expect(JSON.stringify(audit.body)).not.toContain('alice has a long password');
    });

    it('refuses a second user with the same name with 409, and a short password with 400', async () => {
      expect(
        (
          await t.call('POST', '/api/v1/users', {
            token: ADMIN_TOKEN,
            body: { username: 'bob', role: 'viewer' },
          })
        ).status,
      ).toBe(201);
      const again = await t.call('POST', '/api/v1/users', {
        token: ADMIN_TOKEN,
        body: { username: 'bob', role: 'admin' },
      });
      expect(again.status).toBe(409);
      expect(again.body.error.message).toContain("'bob' already exists");
      const short = await t.call('POST', '/api/v1/users', {
        token: ADMIN_TOKEN,
        body: { username: 'carl', role: 'viewer', password: 'short' },
      });
      expect(short.status).toBe(400);
      expect(short.body.error.details[0].path).toBe('/password');
    });

    it('never leaves Gantry without an active admin', async () => {
      const me = await t.call('GET', '/api/v1/whoami', { token: ADMIN_TOKEN });
      const demote = await t.call('PATCH', `/api/v1/users/${me.body.user.id}`, {
        token: ADMIN_TOKEN,
        body: { role: 'viewer' },
      });
      expect(demote.status).toBe(409);
      expect(demote.body.error.message).toContain('last active admin');
      const disable = await t.call('PATCH', `/api/v1/users/${me.body.user.id}`, {
        token: ADMIN_TOKEN,
        body: { disabled: true },
      });
      expect(disable.status).toBe(409);
      expect((await t.call('GET', '/api/v1/whoami', { token: ADMIN_TOKEN })).body.user.role).toBe('admin');
    });

    it('lets a user change their own password, checking the current one, and removes the bootstrap password file', async () => {
      const file = passwordFilePath(t.dataDir);
      expect(existsSync(file)).toBe(true);
      const { readFileSync } = await import('node:fs');
      const bootstrapPassword = readFileSync(file, 'utf8').trim();
      const wrong = await t.call('PUT', '/api/v1/me/password', {
        token: ADMIN_TOKEN,
        body: { currentPassword: 'not it at all', newPassword: 'a brand new admin password' },
      });
      expect(wrong.status).toBe(400);
      expect(wrong.body.error.details[0].path).toBe('/currentPassword');
      expect(existsSync(file)).toBe(true);
      const failed = await t.call('GET', '/api/v1/audit?action=auth.password_change_failed', {
        token: ADMIN_TOKEN,
      });
      expect(failed.body.entries).toHaveLength(1);
      const ok = await t.call('PUT', '/api/v1/me/password', {
        token: ADMIN_TOKEN,
        body: { currentPassword: bootstrapPassword, newPassword: 'a brand new admin password' },
      });
      expect(ok.status).toBe(204);
      expect(existsSync(file)).toBe(false);
      const login = await t.call('POST', '/api/v1/auth/login', {
        body: { username: 'admin', password: 'a brand new admin password' },
      });
      expect(login.status).toBe(200);
    });
  });
}
