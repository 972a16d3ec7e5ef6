import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../../test/helpers/test-app.ts';
import { testDatabases } from '../../test/helpers/test-databases.ts';

const [sqlite] = testDatabases();

describe('meta endpoints', () => {
  let t: TestApp;
  beforeAll(async () => {
    if (!sqlite) throw new Error('no sqlite');
    t = await startTestApp(sqlite);
  });
  afterAll(async () => t.close());

  it('serves an OpenAPI 3.1 document that describes every API route with its request schema', async () => {
    const res = await t.call('GET', '/api/v1/openapi.json');
    expect(res.status).toBe(200);
    expect(res.body.openapi).toBe('3.1.0');
    const documented = Object.entries(res.body.paths as Record<string, Record<string, unknown>>).flatMap(
      ([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`),
    );
    for (const route of t.app.routeTable) {
      if (route.method === 'HEAD' || route.url === '/api/v1/openapi.json') continue;
      expect(documented).toContain(`${route.method} ${route.url.replace(/:(\w+)/g, '{$1}')}`);
    }
    const createUser = res.body.paths['/api/v1/users'].post;
    expect(createUser.requestBody.content['application/json'].schema.additionalProperties).toBe(false);
  });

  it('answers liveness and readiness, and sets a request id on every answer', async () => {
    const health = await t.call('GET', '/healthz');
    const ready = await t.call('GET', '/readyz');
    expect(health.body.status).toBe('ok');
    expect(ready.body).toEqual({ status: 'ok', checks: { database: 'ok' } });
    expect(ready.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('reports readiness as degraded with 503 when the database is gone', async () => {
    await t.db.database.destroy();
    const ready = await t.call('GET', '/readyz');
    expect(ready.status).toBe(503);
    expect(ready.body.status).toBe('degraded');
    const api = await t.call('GET', '/api/v1/whoami', { token: 'gnt_anything' });
    expect(api.status).toBe(503);
    expect(api.body.error.code).toBe('UNAVAILABLE');
    expect(api.headers['retry-after']).toBe('5');
    expect(JSON.stringify(api.body)).not.toMatch(/\.ts:\d+|node_modules|stack/);
  });
});
