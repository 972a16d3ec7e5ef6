/** /api/v1/releases, /api/v1/lifecycles, /api/v1/subscriptions */
import { Type } from '@sinclair/typebox';
import { IdParams, Line, Strict } from '../../protocol/common.ts';
import {
  AddEvidenceRequest,
  CreateReleaseRequest,
  CreateSubscriptionRequest,
  LifecycleList,
  LifecycleSchema,
  MakeAvailableRequest,
  PutLifecycleRequest,
  RecordOutcomeRequest,
  ReleaseList,
  ReleaseListQuery,
  ReleaseName,
  ReleaseSchema,
  SubscriptionList,
  SubscriptionSchema,
  UpdateReleaseRequest,
} from '../../protocol/releases.ts';
import { type App, principalOf, responses } from '../http/route-kit.ts';
import type { UnitOfWork } from '../unit-of-work.ts';
import type { ReleaseService } from './release-service.ts';

const RefParams = Strict({ ref: Line({ minLength: 1, maxLength: 200 }) });

export function registerReleaseRoutes(
  app: App,
  releases: ReleaseService,
  checkFlagChange: (uow: UnitOfWork, environment: string, change: string | undefined) => Promise<void>,
): void {
  app.get(
    '/api/v1/releases',
    {
      config: { permission: 'releases:read' },
      schema: {
        tags: ['releases'],
        summary: 'List releases, newest first',
        querystring: ReleaseListQuery,
        response: responses(ReleaseList),
      },
    },
    async (request) => ({ releases: await releases.list(request.query) }),
  );
  app.post(
    '/api/v1/releases',
    {
      config: { permission: 'releases:write' },
      schema: {
        tags: ['releases'],
        summary: 'Make a release: a name, a version and components from the media library',
        body: CreateReleaseRequest,
        response: responses(ReleaseSchema, 201),
      },
    },
    async (request, reply) =>
      reply.status(201).send(await releases.create(principalOf(request), request.body)),
  );
  app.get(
    '/api/v1/releases/:ref',
    {
      config: { permission: 'releases:read' },
      schema: {
        tags: ['releases'],
        summary: 'Show a release (by id or name@version) with its evidence and lifecycle record',
        params: RefParams,
        response: responses(ReleaseSchema),
      },
    },
    async (request) => releases.get(request.params.ref),
  );
  app.patch(
    '/api/v1/releases/:ref',
    {
      config: { permission: 'releases:write' },
      schema: {
        tags: ['releases'],
        summary: 'Change a release no submitted change refers to yet',
        params: RefParams,
        body: UpdateReleaseRequest,
        response: responses(ReleaseSchema),
      },
    },
    async (request) => releases.update(principalOf(request), request.params.ref, request.body),
  );
  app.post(
    '/api/v1/releases/:ref/evidence',
    {
      config: { permission: 'releases:write' },
      schema: {
        tags: ['releases'],
        summary: 'Attach build or test evidence (a document in the media library) with its verdict',
        params: RefParams,
        body: AddEvidenceRequest,
        response: responses(ReleaseSchema, 201),
      },
    },
    async (request, reply) =>
      reply
        .status(201)
        .send(await releases.addEvidence(principalOf(request), request.params.ref, request.body)),
  );
  app.post(
    '/api/v1/releases/:ref/outcomes',
    {
      config: { permission: 'releases:write' },
      schema: {
        tags: ['releases'],
        summary: 'Record how the release fared in an environment when it was deployed outside Gantry',
        params: RefParams,
        body: RecordOutcomeRequest,
        response: responses(ReleaseSchema, 201),
      },
    },
    async (request, reply) =>
      reply
        .status(201)
        .send(await releases.recordOutcome(principalOf(request), request.params.ref, request.body)),
  );
  app.post(
    '/api/v1/releases/:ref/make-available',
    {
      config: { permission: 'flags:write' },
      schema: {
        tags: ['releases'],
        summary:
          'Release without deploying: switch the release’s flags on in an environment and tell subscribers',
        params: RefParams,
        body: Strict({
          ...MakeAvailableRequest.properties,
          change: Type.Optional(Line({ minLength: 1, maxLength: 64 })),
        }),
        response: responses(ReleaseSchema),
      },
    },
    async (request) =>
      releases.makeAvailable(principalOf(request), request.params.ref, request.body.environment, (uow) =>
        checkFlagChange(uow, request.body.environment, request.body.change),
      ),
  );

  app.get(
    '/api/v1/lifecycles',
    {
      config: { permission: 'releases:read' },
      schema: { tags: ['releases'], summary: 'List lifecycles', response: responses(LifecycleList) },
    },
    async () => ({ lifecycles: await releases.lifecycles() }),
  );
  app.put(
    '/api/v1/lifecycles/:name',
    {
      config: { permission: 'inventory:write' },
      schema: {
        tags: ['releases'],
        summary: 'Set the environments a release line must succeed in, in order',
        params: Strict({ name: ReleaseName }),
        body: PutLifecycleRequest,
        response: responses(LifecycleSchema),
      },
    },
    async (request) => releases.putLifecycle(principalOf(request), request.params.name, request.body),
  );

  app.get(
    '/api/v1/subscriptions',
    {
      config: { permission: 'inventory:write' },
      schema: {
        tags: ['releases'],
        summary: 'List release-note subscribers (webhooks)',
        response: responses(SubscriptionList),
      },
    },
    async () => ({ subscriptions: await releases.subscriptions() }),
  );
  app.post(
    '/api/v1/subscriptions',
    {
      config: { permission: 'inventory:write' },
      schema: {
        tags: ['releases'],
        summary: 'Subscribe a webhook to release notes (all releases, or one release name)',
        body: CreateSubscriptionRequest,
        response: responses(SubscriptionSchema, 201),
      },
    },
    async (request, reply) =>
      reply.status(201).send(await releases.subscribe(principalOf(request), request.body)),
  );
  app.delete(
    '/api/v1/subscriptions/:id',
    {
      config: { permission: 'inventory:write' },
      schema: { tags: ['releases'], summary: 'Remove a subscriber', params: IdParams },
    },
    async (request, reply) => {
      await releases.unsubscribe(principalOf(request), request.params.id);
      return reply.status(204).send();
    },
  );
}
