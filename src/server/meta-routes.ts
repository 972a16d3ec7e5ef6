/** Liveness, readiness, version and the OpenAPI document. */
import { API_VERSION, HealthResponse, VersionResponse } from '../protocol/meta.ts';
import { GANTRY_VERSION } from '../version.ts';
import type { Database } from './db/database.ts';
import { ping } from './db/migrations.ts';
import { type App, responses } from './http/route-kit.ts';

export function registerMetaRoutes(app: App, deps: { database: Database }): void {
  app.get(
    '/healthz',
    {
      config: { permission: 'public' },
      schema: {
        tags: ['meta'],
        summary: 'Liveness: the process answers',
        response: responses(HealthResponse),
      },
    },
    async () => ({ status: 'ok' as const, checks: { process: 'ok' } }),
  );

  app.get(
    '/readyz',
    {
      config: { permission: 'public' },
      schema: {
        tags: ['meta'],
        summary: 'Readiness: the database answers',
        response: { 200: HealthResponse, 503: HealthResponse },
      },
    },
    async (_request, reply) => {
      try {
        await ping(deps.database.db);
        return { status: 'ok' as const, checks: { database: 'ok' } };
      } catch {
        return reply
          .status(503)
          .header('retry-after', '5')
          .send({ status: 'degraded' as const, checks: { database: 'unreachable' } });
      }
    },
  );

  app.get(
    '/api/v1/version',
    {
      config: { permission: 'public' },
      schema: { tags: ['meta'], summary: 'Server version', response: responses(VersionResponse) },
    },
    async () => ({
      name: 'gantry' as const,
      version: GANTRY_VERSION,
      apiVersion: API_VERSION,
      database: deps.database.dialect,
    }),
  );

  app.get('/api/v1/openapi.json', { config: { permission: 'public' }, schema: { hide: true } }, async () =>
    app.swagger(),
  );
}
