/**
 * Bad input at the edge (rows B01, B02, B03, B18, A08 of the test plan): every refusal is a 400
 * in the one error shape, naming the field, and changes nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, startTestApp, type TestApp } from '../../../test/helpers/test-app.ts';
import { testDatabases } from '../../../test/helpers/test-databases.ts';

for (const kind of testDatabases()) {
  describe(`bad input on ${kind.name}`, () => {
    let t: TestApp;
    let viewerId: string;
    beforeAll(async () => {
      t = await startTestApp(kind);
      viewerId = (await t.userWithToken('viewer', 'victor')).id;
    });
    afterAll(async () => t.close());

    /** Every table that a refused request could have touched, except the audit log. */
    async function snapshot() {
      const db = t.db.database.db;
      const users = await db.selectFrom('users').selectAll().orderBy('id').execute();
      const tokens = await db.selectFrom('api_tokens').select(['id', 'revoked_at']).orderBy('id').execute();
      return JSON.stringify({ users, tokens });
    }

    function expectValidation(res: {
      status: number;
      body: { error: { code: string; message: string; details: unknown; requestId: string } };
    }) {
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('VALIDATION');
      expect(res.body.error.requestId).toMatch(/[0-9a-f-]{36}/);
      expect(JSON.stringify(res.body)).not.toMatch(/at .*\.ts:\d+|node_modules/);
    }

    it('B01: refuses malformed bodies with a field path, and nothing changes', async () => {
      const before = await snapshot();
      const bodies: Array<[string, string | Buffer, string]> = [
        ['truncated', '{"username":"x1","role":"vie', ''],
        ['wrong type', '{"username":42,"role":"viewer"}', '/username'],
        ['unknown field', '{"username":"x2","role":"viewer","isSuperuser":true}', '/isSuperuser'],
        ['duplicate key', '{"username":"x3","role":"viewer","role":"admin"}', '/role'],
        ['deep nesting', `{"username":${'['.repeat(10_000)}${']'.repeat(10_000)}}`, ''],
        ['huge number', '{"username":"x4","role":"viewer","displayName":1e309}', '/displayName'],
        [
          'invalid UTF-8',
          Buffer.concat([
            Buffer.from('{"username":"x5'),
            Buffer.from([0xc3, 0x28]),
            Buffer.from('","role":"viewer"}'),
          ]),
          '',
        ],
        ['not an object', '["viewer"]', ''],
        ['bad enum', '{"username":"x6","role":"root"}', '/role'],
      ];
      for (const [name, rawBody, path] of bodies) {
        const res = await t.call('POST', '/api/v1/users', { token: ADMIN_TOKEN, rawBody });
        expectValidation(res);
        if (path) expect(JSON.stringify(res.body.error.details), name).toContain(path);
      }
      expect(await snapshot()).toBe(before);
    });

    it('B01: lists every problem in a body at once', async () => {
      const res = await t.call('POST', '/api/v1/users', {
        token: ADMIN_TOKEN,
        body: { username: 'A B', role: 'root', extra: 1 },
      });
      expectValidation(res);
      const paths = res.body.error.details.map((d: { path: string }) => d.path);
      expect(paths).toEqual(expect.arrayContaining(['/username', '/role', '/extra']));
    });

    it('B01: refuses a body over the limit before parsing it, with 413', async () => {
      const big = `{"username":"x","role":"viewer","displayName":"${'a'.repeat(2 * 1024 * 1024)}"}`;
      const res = await t.call('POST', '/api/v1/users', { token: ADMIN_TOKEN, rawBody: big });
      expect(res.status).toBe(413);
      expect(res.body.error.code).toBe('PAYLOAD_TOO_LARGE');
    });

    it('B01: refuses a body that is not JSON with 415', async () => {
      const res = await t.call('POST', '/api/v1/users', {
        token: ADMIN_TOKEN,
        rawBody: 'username=x&role=admin',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
      });
      expect(res.status).toBe(415);
      expect(res.body.error.code).toBe('UNSUPPORTED_MEDIA_TYPE');
    });

    it('B02: __proto__ and constructor keys are refused and Object.prototype stays clean', async () => {
      const before = await snapshot();
      for (const [url, rawBody] of [
        ['/api/v1/users', '{"username":"p1","role":"viewer","__proto__":{"polluted":true}}'],
        ['/api/v1/users', '{"username":"p2","role":"viewer","constructor":{"prototype":{"polluted":true}}}'],
        ['/api/v1/tokens', '{"name":"t","__proto__":{"userId":"x","polluted":true}}'],
        [
          '/api/v1/hardware',
          '{"assetTag":"P-1","model":"m","vendor":"v","serial":"s","location":"l","__proto__":{"polluted":true}}',
        ],
      ] as const) {
        const res = await t.call('POST', url, { token: ADMIN_TOKEN, rawBody });
        expectValidation(res);
        expect(res.body.error.details[0].message).toBe('forbidden key');
      }
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      expect(Object.prototype).not.toHaveProperty('polluted');
      expect(await snapshot()).toBe(before);
    });

    it('B03: mass assignment of fields a client may not set is refused and the user is unchanged', async () => {
      const before = await snapshot();
      for (const body of [
        { passwordHash: 'x' },
        { id: 'other' },
        { createdAt: '2020-01-01T00:00:00Z' },
        { username: 'renamed' },
        { role: 'admin', hasPassword: true },
      ]) {
        const res = await t.call('PATCH', `/api/v1/users/${viewerId}`, { token: ADMIN_TOKEN, body });
        expectValidation(res);
      }
      const mine = await t.userWithToken('viewer');
      const self = await t.call('POST', '/api/v1/tokens', {
        token: mine.token,
        body: { name: 'x', revokedAt: null, secretHash: 'aa' },
      });
      expectValidation(self);
      expect((await t.call('GET', `/api/v1/users/${viewerId}`, { token: ADMIN_TOKEN })).body).toMatchObject({
        username: 'victor',
        role: 'viewer',
      });
      const after = JSON.parse(await snapshot());
      expect(after.users.find((u: { id: string }) => u.id === viewerId)).toEqual(
        JSON.parse(before).users.find((u: { id: string }) => u.id === viewerId),
      );
      const audit = await t.call('GET', '/api/v1/audit?action=request.rejected_fields&limit=1000', {
        token: ADMIN_TOKEN,
      });
      const fields = audit.body.entries.flatMap((e: { details: { fields: string[] } }) => e.details.fields);
      expect(fields).toEqual(
        expect.arrayContaining([
          '/passwordHash',
          '/id',
          '/createdAt',
          '/username',
          '/hasPassword',
          '/secretHash',
        ]),
      );
      expect(audit.body.entries.at(-1)).toMatchObject({
        actor: `user:${mine.username}`,
        subject: 'route:POST /api/v1/tokens',
      });
    });

    it('B01: NUL and control characters, and numbers beyond what is stored, get 400 on every database', async () => {
      const before = await snapshot();
      const probes: Array<[string, string, unknown]> = [
        ['POST', '/api/v1/auth/login', { username: 'ad\u0000min', password: 'x' }],
        ['POST', '/api/v1/auth/token', { username: 'a\u0000', password: 'x', name: 'n' }],
        ['POST', '/api/v1/users', { username: 'nul', role: 'viewer', displayName: 'a\u0000b' }],
        ['GET', '/api/v1/audit?actor=user%00x', undefined],
        ['GET', '/api/v1/audit?after=99999999999', undefined],
        ['GET', '/api/v1/audit?since=2026-99-99T00:00:00Z', undefined],
      ];
      for (const [method, url, body] of probes) {
        const res = await t.call(method, url, { token: ADMIN_TOKEN, ...(body ? { body } : {}) });
        expect(res.status, url).toBe(400);
        expect(res.body.error.code).toBe('VALIDATION');
      }
      expect(await snapshot()).toBe(before);
    });

    it('B18: SQL in ids, filters and names is plain data: 400 or an ordinary answer, the database unchanged', async () => {
      const before = await snapshot();
      const probes = [
        "' OR 1=1--",
        '1; DROP TABLE users;--',
        "x' UNION SELECT password_hash FROM users--",
        '＇ OR ＇1＇=＇1',
      ];
      for (const probe of probes) {
        const q = encodeURIComponent(probe);
        const user = await t.call('GET', `/api/v1/users/${q}`, { token: ADMIN_TOKEN });
        expect([400, 404]).toContain(user.status);
        for (const filter of ['action', 'actor', 'subject']) {
          const audit = await t.call('GET', `/api/v1/audit?${filter}=${q}`, { token: ADMIN_TOKEN });
          expect(audit.status).toBe(200);
          expect(audit.body.entries).toEqual([]);
        }
        const since = await t.call('GET', `/api/v1/audit?since=${q}`, { token: ADMIN_TOKEN });
        expectValidation(since);
        const token = await t.call('DELETE', `/api/v1/tokens/${q}`, { token: ADMIN_TOKEN });
        expect([400, 404]).toContain(token.status);
        const login = await t.call('POST', '/api/v1/auth/login', {
          body: { username: probe, password: probe },
        });
        expect([400, 401]).toContain(login.status);
      }
      const after = JSON.parse(await snapshot());
      expect(after.users).toEqual(JSON.parse(before).users);
    });

    it('A08: no response ever carries a password hash or a token secret after its creation', async () => {
      await t.call('PATCH', `/api/v1/users/${viewerId}`, {
        token: ADMIN_TOKEN,
        body: { password: 'a long enough password' },
      });
      const hashes = (await t.db.database.db.selectFrom('users').select('password_hash').execute())
        .map((r) => r.password_hash)
        .filter(Boolean);
      const tokenHashes = (
        await t.db.database.db.selectFrom('api_tokens').select('secret_hash').execute()
      ).map((r) => r.secret_hash);
      const everything = JSON.stringify([
        await t.call('GET', '/api/v1/users', { token: ADMIN_TOKEN }),
        await t.call('GET', `/api/v1/users/${viewerId}`, { token: ADMIN_TOKEN }),
        await t.call('GET', '/api/v1/tokens?all=true&includeRevoked=true', { token: ADMIN_TOKEN }),
        await t.call('GET', '/api/v1/whoami', { token: ADMIN_TOKEN }),
        await t.call('GET', '/api/v1/audit?limit=1000', { token: ADMIN_TOKEN }),
      ]);
      for (const secret of [...hashes, ...tokenHashes, ADMIN_TOKEN, 'a long enough password'])
        expect(everything).not.toContain(secret as string);
      expect(everything).not.toContain('scrypt$');
    });

    it('answers unknown routes and ids with 404 in the one error shape', async () => {
      const route = await t.call('GET', '/api/v1/nothing-here', { token: ADMIN_TOKEN });
      expect(route.status).toBe(404);
      expect(route.body.error).toMatchObject({ code: 'NOT_FOUND' });
      const user = await t.call('GET', '/api/v1/users/unknown-id', { token: ADMIN_TOKEN });
      expect(user.status).toBe(404);
      expect(Object.keys(user.body.error).sort()).toEqual(['code', 'details', 'message', 'requestId']);
    });
  });
}
