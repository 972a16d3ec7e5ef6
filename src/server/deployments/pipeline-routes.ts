/** /api/v1/pipelines: continuous delivery through environments in order. */
import { Type } from '@sinclair/typebox';
import { NAME_PATTERN } from '../../core/inventory.ts';
import { STRATEGIES } from '../../core/strategies.ts';
import { Line, Strict } from '../../protocol/common.ts';
import { StrategyOptionsSchema } from '../../protocol/deployments.ts';
import { EnvironmentName, ReleaseName } from '../../protocol/releases.ts';
import { type App, principalOf } from '../http/route-kit.ts';
import type { PipelineService } from './pipeline-service.ts';

const PipelineName = Type.String({ pattern: NAME_PATTERN });
const CreatePipelineRequest = Strict({
  name: PipelineName,
  releaseName: ReleaseName,
  stages: Type.Array(
    Strict({
      environment: EnvironmentName,
      strategy: Type.Union(STRATEGIES.map((s) => Type.Literal(s))),
      options: Type.Optional(StrategyOptionsSchema),
      soakSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 30 * 86_400 })),
      template: Type.Optional(Type.String({ pattern: NAME_PATTERN })),
      requireEvidence: Type.Optional(Type.Boolean()),
    }),
    { minItems: 1, maxItems: 20 },
  ),
  autoStart: Type.Optional(Type.Boolean()),
});

export function registerPipelineRoutes(app: App, pipelines: PipelineService): void {
  app.get(
    '/api/v1/pipelines',
    {
      config: { permission: 'deployments:read' },
      schema: { tags: ['deployments'], summary: 'List pipelines with their latest runs' },
    },
    async () => ({ pipelines: await pipelines.list() }),
  );
  app.get(
    '/api/v1/pipelines/:name',
    {
      config: { permission: 'deployments:read' },
      schema: {
        tags: ['deployments'],
        summary: 'Show a pipeline and its runs',
        params: Strict({ name: PipelineName }),
      },
    },
    async (request) => pipelines.get(request.params.name),
  );
  app.post(
    '/api/v1/pipelines',
    {
      config: { permission: 'deployments:write' },
      schema: {
        tags: ['deployments'],
        summary:
          'Create a pipeline: environments in order, each with its strategy, soak time and change template',
        body: CreatePipelineRequest,
      },
    },
    async (request, reply) =>
      reply.status(201).send(
        await pipelines.create(principalOf(request), {
          ...request.body,
          stages: request.body.stages,
        }),
      ),
  );
  app.post(
    '/api/v1/pipelines/:name/runs',
    {
      config: { permission: 'deployments:write' },
      schema: {
        tags: ['deployments'],
        summary: 'Carry a release through the pipeline',
        params: Strict({ name: PipelineName }),
        body: Strict({ release: Line({ minLength: 1, maxLength: 200 }) }),
      },
    },
    async (request, reply) =>
      reply
        .status(201)
        .send(await pipelines.start(principalOf(request), request.params.name, request.body.release)),
  );
  app.post(
    '/api/v1/pipeline-runs/:id/approve',
    {
      config: { permission: 'deployments:write' },
      schema: {
        tags: ['deployments'],
        summary: 'Let a run waiting at an environment’s door go on under an approved change',
        params: Strict({ id: Line({ minLength: 1, maxLength: 64 }) }),
        body: Strict({ change: Line({ minLength: 1, maxLength: 64 }) }),
      },
    },
    async (request, reply) => {
      await pipelines.approve(principalOf(request), request.params.id, request.body.change);
      return reply.status(204).send();
    },
  );
}
