/** /api/v1/deployments: create, list, show, act, and the live progress stream. */
import { Type } from '@sinclair/typebox';
import { DEPLOYMENT_STATES } from '../../core/deployments.ts';
import { Line, Strict } from '../../protocol/common.ts';
import { CreateDeploymentRequest, DeploymentList, DeploymentSchema } from '../../protocol/deployments.ts';
import { EnvironmentName } from '../../protocol/releases.ts';
import { type App, principalOf, responses } from '../http/route-kit.ts';
import type { DeploymentAction, DeploymentService } from './deployment-service.ts';
import type { DeploymentEngine } from './engine.ts';

const Ref = Strict({ id: Line({ minLength: 1, maxLength: 64 }) });
const ActionBody = Strict({ reason: Type.Optional(Line({ maxLength: 2000 })) });
const ACTIONS: DeploymentAction[] = ['pause', 'resume', 'abort', 'approve-wave', 'retry-failed', 'rollback'];
const FINAL = new Set(['succeeded', 'failed', 'rolled_back', 'aborted', 'frozen']);

export function registerDeploymentRoutes(
  app: App,
  deployments: DeploymentService,
  engine: DeploymentEngine,
): void {
  app.post(
    '/api/v1/deployments',
    {
      config: { permission: 'deployments:write' },
      schema: {
        tags: ['deployments'],
        summary: 'Deploy a release to an environment: every gate checked, the plan stored, then run',
        body: CreateDeploymentRequest,
        response: responses(DeploymentSchema, 201),
      },
    },
    async (request, reply) =>
      reply.status(201).send(await deployments.create(principalOf(request), request.body)),
  );
  app.get(
    '/api/v1/deployments',
    {
      config: { permission: 'deployments:read' },
      schema: {
        tags: ['deployments'],
        summary: 'List deployments, newest first',
        querystring: Strict({
          state: Type.Optional(Type.Union(DEPLOYMENT_STATES.map((s) => Type.Literal(s)))),
          environment: Type.Optional(EnvironmentName),
        }),
        response: responses(DeploymentList),
      },
    },
    async (request) => ({ deployments: await deployments.list(request.query) }),
  );
  app.get(
    '/api/v1/deployments/:id',
    {
      config: { permission: 'deployments:read' },
      schema: {
        tags: ['deployments'],
        summary: 'Show a deployment (by id or DEP-number): plan beside outcome',
        params: Ref,
        response: responses(DeploymentSchema),
      },
    },
    async (request) => deployments.get(principalOf(request), request.params.id),
  );
  for (const action of ACTIONS) {
    app.post(
      `/api/v1/deployments/:id/${action}`,
      {
        config: { permission: 'deployments:write' },
        schema: {
          tags: ['deployments'],
          summary: `${action} a deployment`,
          params: Ref,
          body: ActionBody,
          response: responses(DeploymentSchema),
        },
      },
      async (request) =>
        deployments.act(principalOf(request), request.params.id, action, request.body?.reason),
    );
  }
  app.get(
    '/api/v1/deployments/:id/events',
    {
      config: { permission: 'deployments:read' },
      schema: {
        tags: ['deployments'],
        summary: 'Live progress as server-sent events: the whole deployment on every change, until it ends',
        params: Ref,
      },
    },
    async (request, reply) => {
      const by = principalOf(request);
      const first = await deployments.get(by, request.params.id);
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-store',
        'x-request-id': request.id,
        connection: 'keep-alive',
      });
      let last = '';
      let closed = false;
      const send = async () => {
        if (closed) return;
        const view = await deployments.get(by, first.id).catch(() => undefined);
        if (!view || closed) return;
        const text = JSON.stringify(view);
        if (text !== last) {
          last = text;
          res.write(`event: deployment\ndata: ${text}\n\n`);
        }
        if (FINAL.has(view.state)) finish();
      };
      const onChange = (id: string) => {
        if (id === first.id) void send();
      };
      const keepAlive = setInterval(() => {
        res.write(': keep-alive\n\n');
        void send();
      }, 5000);
      const finish = () => {
        if (closed) return;
        closed = true;
        clearInterval(keepAlive);
        engine.changed.off('changed', onChange);
        res.end();
      };
      engine.changed.on('changed', onChange);
      request.raw.on('close', finish);
      await send();
    },
  );
}
