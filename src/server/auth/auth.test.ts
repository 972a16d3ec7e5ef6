/**
 * Sign-in, sessions, CSRF, tokens and the failed-login slow-down, through the real HTTP stack on
 * every database (rows A01, A02, A05, A06, A07, A10, B20 of the test plan).
 */
import { readFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, startTestApp, type TestApp } from '../../../test/helpers/test-app.ts';
import { testDatabases } from '../../../test/helpers/test-databases.ts';
import { passwordFilePath } from '../bootstrap.ts';

const PASSWORD = 'correct horse battery staple';

for (const kind of testDatabases()) {
  describe(`authentication on ${kind.name}`, () => {
    let t: TestApp;
    beforeEach(async () => {
      t = await startTestApp(kind);
    });
    afterEach(async () => t.close());

    async function userWithPassword(username: string, role = 'deployer') {
      const res = await t.call('POST', '/api/v1/users', {
        token: ADMIN_TOKEN,
        body: { username, role, password: PASSWORD },
      });
      expect(res.status).toBe(201);
      return res.body.id as string;
    }

    async function login(username: string, password = PASSWORD) {
      const res = await t.call('POST', '/api/v1/auth/login', { body: { username, password } });
      const setCookie = [res.headers['set-cookie']].flat().join(';');
      const cookie = /gantry_session=([^;]+)/.exec(setCookie)?.[1];
      return { res, setCookie, cookie: cookie ? `gantry_session=${cookie}` : '' };
    }

    it('logs in with the bootstrap password and sets an HttpOnly, SameSite=Strict session cookie', async () => {
      const password = readFileSync(passwordFilePath(t.dataDir), 'utf8').trim();
      const { res, setCookie, cookie } = await login('admin', password);
      expect(res.status).toBe(200);
      expect(setCookie).toMatch(/HttpOnly/i);
      expect(setCookie).toMatch(/SameSite=Strict/i);
      const me = await t.call('GET', '/api/v1/whoami', { headers: { cookie } });
      expect(me.body).toMatchObject({ via: 'session', user: { username: 'admin' } });
      expect(me.body.csrfToken).toBe(res.body.csrfToken);
    });

    it('B20: refuses a state change made with the cookie but without the CSRF token, or from another site', async () => {
      await userWithPassword('dora', 'admin');
      const { res, cookie } = await login('dora');
      const csrf = res.body.csrfToken as string;
      const body = { username: 'eve', role: 'viewer' };
      const missing = await t.call('POST', '/api/v1/users', { headers: { cookie }, body });
      expect(missing.status).toBe(403);
      expect(missing.body.error.code).toBe('CSRF_REJECTED');
      const wrong = await t.call('POST', '/api/v1/users', {
        headers: { cookie, 'x-csrf-token': 'x'.repeat(csrf.length) },
        body,
      });
      expect(wrong.body.error.code).toBe('CSRF_REJECTED');
      const crossSite = await t.call('POST', '/api/v1/users', {
        headers: { cookie, 'x-csrf-token': csrf, 'sec-fetch-site': 'cross-site' },
        body,
      });
      expect(crossSite.body.error.code).toBe('CSRF_REJECTED');
      const foreignOrigin = await t.call('POST', '/api/v1/users', {
        headers: { cookie, 'x-csrf-token': csrf, origin: 'https://evil.example' },
        body,
      });
      expect(foreignOrigin.body.error.code).toBe('CSRF_REJECTED');
      const loginCsrf = await t.call('POST', '/api/v1/auth/login', {
        headers: { 'sec-fetch-site': 'cross-site' },
        body: { username: 'dora', password: PASSWORD },
      });
      expect(loginCsrf.status).toBe(403);
      // Nothing was created by any of the refused requests; GET never changes anything.
      const users = await t.call('GET', '/api/v1/users', { headers: { cookie } });
      expect(users.body.users.map((u: { username: string }) => u.username)).not.toContain('eve');
      const ok = await t.call('POST', '/api/v1/users', {
        headers: { cookie, 'x-csrf-token': csrf, 'sec-fetch-site': 'same-origin' },
        body,
      });
      expect(ok.status).toBe(201);
    });

    it('refuses logout with an API token, which is ended by revoking it', async () => {
      const res = await t.call('POST', '/api/v1/auth/logout', { token: ADMIN_TOKEN });
      expect(res.status).toBe(400);
      expect(res.body.error.message).toContain('tokens revoke');
    });

    it('ends the session on logout', async () => {
      await userWithPassword('fred');
      const { res, cookie } = await login('fred');
      const out = await t.call('POST', '/api/v1/auth/logout', {
        headers: { cookie, 'x-csrf-token': res.body.csrfToken },
      });
      expect(out.status).toBe(204);
      const after = await t.call('GET', '/api/v1/whoami', { headers: { cookie } });
      expect(after.status).toBe(401);
    });

    it('A06: shows a token once, stores only its hash, and a revocation takes effect on the very next request', async () => {
      const created = await t.call('POST', '/api/v1/tokens', {
        token: ADMIN_TOKEN,
        body: { name: 'ci', expiresInDays: 7 },
      });
      expect(created.status).toBe(201);
      const secret = created.body.secret as string;
      expect(secret).toMatch(/^gnt_[A-Za-z0-9_-]{43}$/);
      const listed = await t.call('GET', '/api/v1/tokens', { token: secret });
      expect(JSON.stringify(listed.body)).not.toContain(secret);
      const rows = await t.db.database.db.selectFrom('api_tokens').selectAll().execute();
      expect(JSON.stringify(rows)).not.toContain(secret);
      expect((await t.call('GET', '/api/v1/whoami', { token: secret })).status).toBe(200);
      const revoked = await t.call('DELETE', `/api/v1/tokens/${created.body.token.id}`, {
        token: ADMIN_TOKEN,
      });
      expect(revoked.body.revokedAt).not.toBeNull();
      const next = await t.call('GET', '/api/v1/whoami', { token: secret });
      expect(next.status).toBe(401);
      expect(next.body.error.message).toContain('revoked');
    });

    it('A06: refuses an expired token', async () => {
      const created = await t.call('POST', '/api/v1/tokens', {
        token: ADMIN_TOKEN,
        body: { name: 'short', expiresInDays: 1 },
      });
      const secret = created.body.secret as string;
      expect((await t.call('GET', '/api/v1/whoami', { token: secret })).status).toBe(200);
      t.clock.advance(86_400_000 + 1);
      const later = await t.call('GET', '/api/v1/whoami', { token: secret });
      expect(later.status).toBe(401);
      expect(later.body.error.message).toContain('expired');
    });

    it('A05: answers malformed, forged and unknown credentials with 401', async () => {
      const attempts: Array<Record<string, string>> = [
        { authorization: 'Bearer' },
        { authorization: 'Basic YWRtaW46YWRtaW4=' },
        { authorization: `Bearer ${ADMIN_TOKEN.slice(0, -1)}y` },
        { authorization: 'Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.' },
        { authorization: `Bearer ${ADMIN_TOKEN} extra` },
        { cookie: 'gantry_session=forged' },
      ];
      for (const headers of attempts) {
        const res = await t.call('GET', '/api/v1/whoami', { headers });
        expect(res.status, JSON.stringify(headers)).toBe(401);
        expect(res.body.error.code).toBe('UNAUTHENTICATED');
      }
    });

    it('A01: another user’s token answers 404 exactly like one that does not exist', async () => {
      const alice = await t.userWithToken('deployer');
      const bob = await t.userWithToken('deployer');
      const bobsTokens = await t.call('GET', '/api/v1/tokens', { token: bob.token });
      const bobTokenId = bobsTokens.body.tokens[0].id as string;
      const other = await t.call('DELETE', `/api/v1/tokens/${bobTokenId}`, { token: alice.token });
      const missing = await t.call('DELETE', '/api/v1/tokens/does-not-exist', { token: alice.token });
      expect(other.status).toBe(404);
      expect(missing.status).toBe(404);
      expect(other.body.error.code).toBe(missing.body.error.code);
      expect((await t.call('GET', '/api/v1/whoami', { token: bob.token })).status).toBe(200);
      const listed = await t.call('GET', '/api/v1/tokens', { token: alice.token });
      expect(listed.body.tokens.map((x: { userId: string }) => x.userId)).toEqual([alice.id]);
    });

    it('A02: a non-admin cannot list everyone’s tokens, make one for someone else, or manage users', async () => {
      const viewer = await t.userWithToken('viewer');
      expect((await t.call('GET', '/api/v1/tokens?all=true', { token: viewer.token })).status).toBe(403);
      const forOther = await t.call('POST', '/api/v1/tokens', {
        token: viewer.token,
        body: { name: 'x', userId: 'someone' },
      });
      expect(forOther.status).toBe(403);
      const promote = await t.call('PATCH', `/api/v1/users/${viewer.id}`, {
        token: viewer.token,
        body: { role: 'admin' },
      });
      expect(promote.status).toBe(403);
      expect((await t.call('GET', '/api/v1/whoami', { token: viewer.token })).body.user.role).toBe('viewer');
    });

    it('A07: slows down repeated failed logins, and the slow-down survives a restart', async () => {
      await userWithPassword('gina');
      for (let i = 0; i < 6; i++) {
        const res = await t.call('POST', '/api/v1/auth/login', {
          body: { username: 'gina', password: 'wrong password!' },
        });
        expect(res.status).toBe(401);
        expect(res.body.error.code).toBe('INVALID_CREDENTIALS');
      }
      await t.restart();
      // Even the right password is refused while the lock lasts.
      const locked = await t.call('POST', '/api/v1/auth/login', {
        body: { username: 'gina', password: PASSWORD },
      });
      expect(locked.status).toBe(429);
      expect(locked.body.error.code).toBe('RATE_LIMITED');
      expect(Number(locked.headers['retry-after'])).toBeGreaterThan(0);
      t.clock.advance(60_000);
      expect((await login('gina')).res.status).toBe(200);
    });

    it('A07: a burst of parallel guesses gets no more tries than one guess after another', async () => {
      await userWithPassword('kate');
      const results = await Promise.all(
        Array.from({ length: 40 }, () =>
          t.call('POST', '/api/v1/auth/login', { body: { username: 'kate', password: 'guess guess guess' } }),
        ),
      );
      const checked = results.filter((r) => r.status === 401).length;
      expect(checked).toBeLessThanOrEqual(6);
      expect(results.filter((r) => r.status === 429).length).toBe(40 - checked);
      const failed = await t.call('GET', '/api/v1/audit?action=auth.login_failed', { token: ADMIN_TOKEN });
      expect(failed.body.entries).toHaveLength(checked);
    });

    it('A07: failures spread over many user names are slowed down by source address', async () => {
      for (let i = 0; i < 21; i++) {
        await t.call('POST', '/api/v1/auth/login', {
          body: { username: `nobody${i}`, password: 'guess guess guess' },
        });
      }
      await userWithPassword('hank');
      const res = await t.call('POST', '/api/v1/auth/login', {
        body: { username: 'hank', password: PASSWORD },
      });
      expect(res.status).toBe(429);
    });

    it('A10: audits every login success and failure with who, when and where', async () => {
      await userWithPassword('ivy');
      await login('ivy');
      await login('ivy', 'not the password');
      await t.call('POST', '/api/v1/auth/token', {
        body: { username: 'ivy', password: PASSWORD, name: 'cli' },
      });
      const audit = await t.call('GET', '/api/v1/audit?action=auth.*', { token: ADMIN_TOKEN });
      const rows = audit.body.entries.map(
        (e: { action: string; actor: string; source: string; details: { via?: string } }) => [
          e.action,
          e.actor,
          e.source,
          e.details.via,
        ],
      );
      expect(rows).toEqual([
        ['auth.login', 'user:ivy', '127.0.0.1', 'session'],
        ['auth.login_failed', 'anonymous', '127.0.0.1', 'session'],
        ['auth.login', 'user:ivy', '127.0.0.1', 'token'],
      ]);
      for (const entry of audit.body.entries) expect(entry.at).toMatch(/Z$/);
    });

    it('a disabled user’s tokens and sessions stop working at once', async () => {
      const id = await userWithPassword('jack');
      const { cookie } = await login('jack');
      const token = await t.call('POST', '/api/v1/auth/token', {
        body: { username: 'jack', password: PASSWORD, name: 'cli' },
      });
      const disabled = await t.call('PATCH', `/api/v1/users/${id}`, {
        token: ADMIN_TOKEN,
        body: { disabled: true },
      });
      expect(disabled.body.disabled).toBe(true);
      expect((await t.call('GET', '/api/v1/whoami', { token: token.body.secret })).status).toBe(401);
      expect((await t.call('GET', '/api/v1/whoami', { headers: { cookie } })).status).toBe(401);
      expect((await login('jack')).res.status).toBe(401);
    });
  });
}
