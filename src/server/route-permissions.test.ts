/**
 * Walks every mounted route with every role (and with no credentials) on every database, and
 * checks the answer against the table below, written out by hand: a route added without a row
 * here, or a permission that drifts, fails this test.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, startTestApp, type TestApp } from '../../test/helpers/test-app.ts';
import { testDatabases } from '../../test/helpers/test-databases.ts';
import { ROLES, type Role } from '../core/roles.ts';

const EVERYONE: readonly Role[] = ROLES;
const ADMIN: readonly Role[] = ['admin'];
const READERS: readonly Role[] = [
  'admin',
  'change-authority',
  'emergency-authority',
  'release-manager',
  'deployer',
  'viewer',
];
const PUBLISHERS: readonly Role[] = ['admin', 'release-manager'];
/** Also who may deploy: admin and deployer. */
const HARDWARE_KEEPERS: readonly Role[] = ['admin', 'deployer'];
const CHANGE_READERS: readonly Role[] = [...READERS, 'supplier'];
const CHANGE_WRITERS: readonly Role[] = ['admin', 'release-manager', 'deployer', 'supplier'];
const AUTHORITIES: readonly Role[] = ['admin', 'change-authority', 'emergency-authority'];
const IMPLEMENTERS: readonly Role[] = ['admin', 'deployer', 'supplier'];
const BOOKERS: readonly Role[] = ['admin', 'release-manager', 'deployer'];

const EXPECTED: Record<string, 'public' | 'agent' | readonly Role[]> = {
  'GET /healthz': 'public',
  'GET /readyz': 'public',
  'GET /api/v1/version': 'public',
  'GET /api/v1/openapi.json': 'public',
  'GET /agent/gantry-agent.js': 'public',
  'POST /api/v1/auth/login': 'public',
  'POST /api/v1/auth/token': 'public',
  'POST /api/v1/auth/logout': EVERYONE,
  'GET /api/v1/whoami': EVERYONE,
  'PUT /api/v1/me/password': EVERYONE,
  'GET /api/v1/users': ADMIN,
  'POST /api/v1/users': ADMIN,
  'GET /api/v1/users/:id': ADMIN,
  'PATCH /api/v1/users/:id': ADMIN,
  'GET /api/v1/tokens': EVERYONE,
  'POST /api/v1/tokens': EVERYONE,
  'DELETE /api/v1/tokens/:id': EVERYONE,
  'GET /api/v1/audit': READERS,
  'GET /api/v1/audit/verify': READERS,
  'GET /api/v1/events': READERS,
  'GET /api/v1/keys': READERS,
  'POST /api/v1/keys': ADMIN,
  'DELETE /api/v1/keys/:id': ADMIN,
  'POST /api/v1/artifacts': PUBLISHERS,
  'GET /api/v1/artifacts': READERS,
  'GET /api/v1/artifacts/:id': READERS,
  'GET /api/v1/artifacts/:id/content': READERS,
  'GET /api/v1/blobs/:digest': READERS,
  'POST /api/v1/artifacts/:id/verify': PUBLISHERS,
  'POST /api/v1/artifacts/:id/signatures': PUBLISHERS,
  'GET /api/v1/artifacts/:id/usage': READERS,
  'DELETE /api/v1/artifacts/:id': ADMIN,
  'POST /api/v1/dml/retention': ADMIN,
  'GET /api/v1/hardware': READERS,
  'GET /api/v1/hardware/:ref': READERS,
  'POST /api/v1/hardware': HARDWARE_KEEPERS,
  'POST /api/v1/hardware/import': HARDWARE_KEEPERS,
  'POST /api/v1/hardware/:ref/moves': HARDWARE_KEEPERS,
  'GET /api/v1/environments': EVERYONE,
  'POST /api/v1/environments': ADMIN,
  'GET /api/v1/environments/:name': EVERYONE,
  'PATCH /api/v1/environments/:name': ADMIN,
  'GET /api/v1/suppliers': ADMIN,
  'POST /api/v1/suppliers': ADMIN,
  'GET /api/v1/targets': EVERYONE,
  'GET /api/v1/targets/:ref': EVERYONE,
  'POST /api/v1/targets/:ref/retire': ADMIN,
  'POST /api/v1/targets/:ref/revoke-agent': ADMIN,
  'POST /api/v1/enrollment-tokens': ADMIN,
  'POST /api/v1/agent/enroll': 'public',
  'GET /api/v1/ledger': EVERYONE,
  'GET /api/v1/targets/:ref/ledger': EVERYONE,
  'POST /api/v1/ledger/external': ['admin', 'deployer', 'supplier'],
  // Only an agent's own credential: every user, admin included, is turned away as unknown.
  'POST /api/v1/agent/heartbeat': 'agent',
  'GET /api/v1/agent/steps/next': 'agent',
  'POST /api/v1/agent/steps/:id/result': 'agent',
  'GET /api/v1/agent/blobs/:digest': 'agent',
  'POST /api/v1/targets/:ref/steps': ['admin', 'deployer'],
  'GET /api/v1/targets/:ref/steps': EVERYONE,
  'GET /api/v1/releases': READERS,
  'POST /api/v1/releases': PUBLISHERS,
  'GET /api/v1/releases/:ref': READERS,
  'PATCH /api/v1/releases/:ref': PUBLISHERS,
  'POST /api/v1/releases/:ref/evidence': PUBLISHERS,
  'POST /api/v1/releases/:ref/outcomes': PUBLISHERS,
  'POST /api/v1/releases/:ref/make-available': PUBLISHERS,
  'GET /api/v1/lifecycles': READERS,
  'PUT /api/v1/lifecycles/:name': ADMIN,
  'GET /api/v1/subscriptions': ADMIN,
  'POST /api/v1/subscriptions': ADMIN,
  'DELETE /api/v1/subscriptions/:id': ADMIN,
  'GET /api/v1/changes': CHANGE_READERS,
  'POST /api/v1/changes': CHANGE_WRITERS,
  'GET /api/v1/changes/:id': CHANGE_READERS,
  'PATCH /api/v1/changes/:id': CHANGE_WRITERS,
  'POST /api/v1/changes/:id/submit': CHANGE_WRITERS,
  'POST /api/v1/changes/:id/cancel': CHANGE_WRITERS,
  'POST /api/v1/changes/:id/approve': AUTHORITIES,
  'POST /api/v1/changes/:id/reject': AUTHORITIES,
  'POST /api/v1/changes/:id/review': AUTHORITIES,
  'POST /api/v1/changes/:id/close': AUTHORITIES,
  'POST /api/v1/changes/:id/schedule': IMPLEMENTERS,
  'POST /api/v1/changes/:id/start': IMPLEMENTERS,
  'POST /api/v1/changes/:id/complete': IMPLEMENTERS,
  'POST /api/v1/changes/:id/fail': IMPLEMENTERS,
  'POST /api/v1/changes/:id/back-out': IMPLEMENTERS,
  'POST /api/v1/gates/check': CHANGE_READERS,
  'GET /api/v1/change-templates': CHANGE_READERS,
  'POST /api/v1/change-templates': AUTHORITIES,
  'DELETE /api/v1/change-templates/:name': AUTHORITIES,
  'GET /api/v1/freezes': CHANGE_READERS,
  'POST /api/v1/freezes': AUTHORITIES,
  'DELETE /api/v1/freezes/:id': AUTHORITIES,
  'GET /api/v1/bookings': CHANGE_READERS,
  'POST /api/v1/bookings': BOOKERS,
  'DELETE /api/v1/bookings/:id': BOOKERS,
  'GET /api/v1/calendar.ics': CHANGE_READERS,
  'GET /api/v1/environments/:name/flags': READERS,
  'GET /api/v1/environments/:name/flags/:key': READERS,
  'PUT /api/v1/environments/:name/flags/:key': PUBLISHERS,
  'GET /api/v1/environments/:name/evaluation': READERS,
  'POST /api/v1/deployments': HARDWARE_KEEPERS,
  'GET /api/v1/deployments': READERS,
  'GET /api/v1/deployments/:id': READERS,
  'GET /api/v1/deployments/:id/events': READERS,
  'POST /api/v1/deployments/:id/pause': HARDWARE_KEEPERS,
  'POST /api/v1/deployments/:id/resume': HARDWARE_KEEPERS,
  'POST /api/v1/deployments/:id/abort': HARDWARE_KEEPERS,
  'POST /api/v1/deployments/:id/approve-wave': HARDWARE_KEEPERS,
  'POST /api/v1/deployments/:id/retry-failed': HARDWARE_KEEPERS,
  'POST /api/v1/deployments/:id/rollback': HARDWARE_KEEPERS,
  'GET /api/v1/pipelines': READERS,
  'GET /api/v1/pipelines/:name': READERS,
  'POST /api/v1/pipelines': HARDWARE_KEEPERS,
  'POST /api/v1/pipelines/:name/runs': HARDWARE_KEEPERS,
  'POST /api/v1/pipeline-runs/:id/approve': HARDWARE_KEEPERS,
};

function concreteUrl(url: string): string {
  return url
    .replace(/:id/g, '00000000-0000-4000-8000-000000000000')
    .replace(/:digest/g, `sha256:${'0'.repeat(64)}`)
    .replace(/:ref/g, 'NO-SUCH-TAG')
    .replace(/:name/g, 'no-such-env')
    .replace(/:key/g, 'no-such-flag');
}

for (const kind of testDatabases()) {
  describe(`route permissions on ${kind.name}`, () => {
    let t: TestApp;
    const tokens = new Map<Role, string>();

    beforeAll(async () => {
      t = await startTestApp(kind);
      tokens.set('admin', ADMIN_TOKEN);
      for (const role of ROLES) if (role !== 'admin') tokens.set(role, (await t.userWithToken(role)).token);
    });
    afterAll(async () => t.close());

    it('has a row in the expected table for every mounted route, and a route for every row', () => {
      const mounted = new Set(
        t.app.routeTable.filter((r) => r.method !== 'HEAD').map((r) => `${r.method} ${r.url}`),
      );
      expect([...mounted].sort()).toEqual(Object.keys(EXPECTED).sort());
    });

    it('answers every route with the status its permission implies, for every role and for no caller', async () => {
      const failures: string[] = [];
      for (const route of t.app.routeTable) {
        const key = `${route.method === 'HEAD' ? 'GET' : route.method} ${route.url}`;
        const allowed = EXPECTED[key];
        if (allowed === undefined) {
          failures.push(`${key}: no expectation`);
          continue;
        }
        const url = concreteUrl(route.url);
        const anonymous = await t.call(route.method, url);
        if (allowed === 'agent') {
          for (const role of [undefined, ...ROLES]) {
            const result = await t.call(route.method, url, { token: role ? tokens.get(role) : undefined });
            if (result.status !== 401)
              failures.push(`${key} as ${role ?? 'anonymous'}: ${result.status}, wanted 401`);
          }
          continue;
        }
        if (allowed === 'public') {
          if (anonymous.status === 401 || anonymous.status === 403)
            failures.push(`${key} anonymous: ${anonymous.status}`);
          continue;
        }
        if (anonymous.status !== 401 || anonymous.body?.error?.code !== 'UNAUTHENTICATED') {
          if (route.method !== 'HEAD' || anonymous.status !== 401)
            failures.push(`${key} anonymous: ${anonymous.status}, wanted 401`);
        }
        for (const role of ROLES) {
          const result = await t.call(route.method, url, { token: tokens.get(role) });
          const refused = result.status === 403;
          if (allowed.includes(role) && (refused || result.status === 401))
            failures.push(`${key} as ${role}: ${result.status}, wanted allowed`);
          if (!allowed.includes(role)) {
            if (!refused) failures.push(`${key} as ${role}: ${result.status}, wanted 403`);
            else if (route.method !== 'HEAD' && result.body?.error?.code !== 'FORBIDDEN')
              failures.push(`${key} as ${role}: code ${result.body?.error?.code}`);
          }
        }
      }
      expect(failures).toEqual([]);
    });
  });
}
