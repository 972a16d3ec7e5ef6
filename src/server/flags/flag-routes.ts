/** /api/v1/environments/:name/flags and the evaluation endpoint for applications. */
import { GantryError } from '../../core/errors.ts';
import {
  EvaluateQuery,
  EvaluationResult,
  FlagList,
  FlagParams,
  FlagSchema,
  SetFlagRequest,
} from '../../protocol/changes.ts';
import { Strict } from '../../protocol/common.ts';
import { EnvironmentName } from '../../protocol/releases.ts';
import { type App, principalOf, responses } from '../http/route-kit.ts';
import type { FlagService } from './flag-service.ts';

const EnvParams = Strict({ name: EnvironmentName });

export function registerFlagRoutes(app: App, flags: FlagService): void {
  app.get(
    '/api/v1/environments/:name/flags',
    {
      config: { permission: 'flags:read' },
      schema: {
        tags: ['flags'],
        summary: 'List the feature flags of an environment',
        params: EnvParams,
        response: responses(FlagList),
      },
    },
    async (request) => ({ flags: await flags.list(request.params.name) }),
  );
  app.get(
    '/api/v1/environments/:name/flags/:key',
    {
      config: { permission: 'flags:read' },
      schema: {
        tags: ['flags'],
        summary: 'Show a flag',
        params: FlagParams,
        response: responses(FlagSchema),
      },
    },
    async (request) => flags.get(request.params.name, request.params.key),
  );
  app.put(
    '/api/v1/environments/:name/flags/:key',
    {
      config: { permission: 'flags:write' },
      schema: {
        tags: ['flags'],
        summary:
          'Create or change a flag (on/off, percentage, attribute rules); fields not given keep their value',
        params: FlagParams,
        body: SetFlagRequest,
        response: responses(FlagSchema),
      },
    },
    async (request) => flags.set(principalOf(request), request.params.name, request.params.key, request.body),
  );
  app.get(
    '/api/v1/environments/:name/evaluation',
    {
      config: { permission: 'flags:read' },
      schema: {
        tags: ['flags'],
        summary:
          'Every flag for one subject (OpenFeature-shaped: value, variant, reason); send If-None-Match to poll cheaply',
        params: EnvParams,
        querystring: EvaluateQuery,
        response: { ...responses(EvaluationResult), 304: {} },
      },
    },
    async (request, reply) => {
      const attributes: Record<string, string> = Object.create(null);
      for (const pair of request.query.attr ?? []) {
        const at = pair.indexOf(':');
        if (at <= 0)
          throw new GantryError(
            'VALIDATION',
            `Attribute '${pair}' must read key:value, e.g. attr=region:eu.`,
            [{ path: '/attr', message: 'expected key:value' }],
          );
        attributes[pair.slice(0, at)] = pair.slice(at + 1);
      }
      const { etag, result } = await flags.evaluate(request.params.name, {
        id: request.query.subject,
        attributes: { ...attributes },
      });
      reply.header('etag', etag);
      if (request.headers['if-none-match'] === etag) return reply.status(304).send();
      return result;
    },
  );
}
