/** GET /api/v1/events */
import { EventList, EventListQuery } from '../../protocol/artifacts.ts';
import type { Database } from '../db/database.ts';
import { type App, responses } from '../http/route-kit.ts';
import { EventLog } from './event-log.ts';

export function registerEventRoutes(app: App, deps: { database: Database }): void {
  app.get(
    '/api/v1/events',
    {
      config: { permission: 'events:read' },
      schema: {
        tags: ['events'],
        summary: 'Recent events, newest first',
        querystring: EventListQuery,
        response: responses(EventList),
      },
    },
    async (request) => ({
      events: await new EventLog(deps.database.db).list({
        ...request.query,
        limit: request.query.limit ?? 100,
      }),
    }),
  );
}
