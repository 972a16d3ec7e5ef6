/** /api/v1/environments, /api/v1/suppliers, /api/v1/targets, /api/v1/agents, /api/v1/agent/* */

import { Type } from '@sinclair/typebox';
import {
  CreateEnrollmentTokenRequest,
  CreateEnvironmentRequest,
  CreateSupplierRequest,
  EnrollmentTokenCreated,
  EnrollRequest,
  EnrollResponse,
  EnvironmentList,
  EnvironmentSchema,
  HeartbeatRequest,
  HeartbeatResponse,
  LedgerEntrySchema,
  LedgerHistory,
  LedgerHistoryQuery,
  LedgerQuery,
  LedgerView,
  NameParams,
  NextStepQuery,
  QueueStepRequest,
  RecordExternalRequest,
  RefParams,
  StepList,
  StepParams,
  StepResultRequest,
  StepSchema,
  SupplierList,
  SupplierSchema,
  TargetList,
  TargetListQuery,
  TargetSchema,
  UpdateEnvironmentRequest,
} from '../../protocol/inventory.ts';
import { type App, agentOf, principalOf, responses } from '../http/route-kit.ts';
import type { EnrollmentService } from './enrollment-service.ts';
import type { InventoryService } from './inventory-service.ts';
import type { LedgerService } from './ledger-service.ts';
import type { StepService } from './step-service.ts';

export function registerInventoryRoutes(
  app: App,
  inventory: InventoryService,
  enrollment: EnrollmentService,
  ledger: LedgerService,
  steps: StepService,
): void {
  app.get(
    '/api/v1/environments',
    {
      config: { permission: 'inventory:read' },
      schema: { tags: ['inventory'], summary: 'Environments in order', response: responses(EnvironmentList) },
    },
    async (request) => ({ environments: await inventory.listEnvironments(principalOf(request)) }),
  );
  app.post(
    '/api/v1/environments',
    {
      config: { permission: 'inventory:write' },
      schema: {
        tags: ['inventory'],
        summary: 'Create an environment',
        body: CreateEnvironmentRequest,
        response: responses(EnvironmentSchema, 201),
      },
    },
    async (request, reply) =>
      reply.status(201).send(await inventory.createEnvironment(principalOf(request), request.body)),
  );
  app.get(
    '/api/v1/environments/:name',
    {
      config: { permission: 'inventory:read' },
      schema: {
        tags: ['inventory'],
        summary: 'Show an environment',
        params: NameParams,
        response: responses(EnvironmentSchema),
      },
    },
    async (request) => inventory.environment(principalOf(request), request.params.name),
  );
  app.patch(
    '/api/v1/environments/:name',
    {
      config: { permission: 'inventory:write' },
      schema: {
        tags: ['inventory'],
        summary: 'Change an environment’s order or platform standards',
        params: NameParams,
        body: UpdateEnvironmentRequest,
        response: responses(EnvironmentSchema),
      },
    },
    async (request) => inventory.updateEnvironment(principalOf(request), request.params.name, request.body),
  );

  app.get(
    '/api/v1/suppliers',
    {
      config: { permission: 'inventory:write' },
      schema: { tags: ['inventory'], summary: 'List suppliers', response: responses(SupplierList) },
    },
    async () => ({ suppliers: await inventory.listSuppliers() }),
  );
  app.post(
    '/api/v1/suppliers',
    {
      config: { permission: 'inventory:write' },
      schema: {
        tags: ['inventory'],
        summary: 'Create a supplier',
        body: CreateSupplierRequest,
        response: responses(SupplierSchema, 201),
      },
    },
    async (request, reply) =>
      reply.status(201).send(await inventory.createSupplier(principalOf(request), request.body.name)),
  );

  app.get(
    '/api/v1/targets',
    {
      config: { permission: 'inventory:read' },
      schema: {
        tags: ['inventory'],
        summary: 'Targets you may see, with liveness and platform standards',
        querystring: TargetListQuery,
        response: responses(TargetList),
      },
    },
    async (request) => ({ targets: await inventory.listTargets(principalOf(request), request.query) }),
  );
  app.get(
    '/api/v1/targets/:ref',
    {
      config: { permission: 'inventory:read' },
      schema: {
        tags: ['inventory'],
        summary: 'Show a target (by id or name)',
        params: RefParams,
        response: responses(TargetSchema),
      },
    },
    async (request) => inventory.target(principalOf(request), request.params.ref),
  );
  app.post(
    '/api/v1/targets/:ref/retire',
    {
      config: { permission: 'inventory:write' },
      schema: {
        tags: ['inventory'],
        summary: 'Retire a target; its agent credential stops working',
        params: RefParams,
        response: responses(TargetSchema),
      },
    },
    async (request) => inventory.retireTarget(principalOf(request), request.params.ref),
  );
  app.post(
    '/api/v1/targets/:ref/revoke-agent',
    {
      config: { permission: 'inventory:write' },
      schema: {
        tags: ['inventory'],
        summary: 'Revoke the agent credential of a target (it must enroll again)',
        params: RefParams,
        response: responses(TargetSchema),
      },
    },
    async (request) => {
      const principal = principalOf(request);
      const target = await inventory.target(principal, request.params.ref);
      await enrollment.revokeAgentOfTarget(principal, target.id, target.name);
      return inventory.target(principal, request.params.ref);
    },
  );

  app.post(
    '/api/v1/enrollment-tokens',
    {
      config: { permission: 'inventory:write' },
      schema: {
        tags: ['agents'],
        summary: 'Make a one-time enrollment token for an agent in an environment',
        body: CreateEnrollmentTokenRequest,
        response: responses(EnrollmentTokenCreated, 201),
      },
    },
    async (request, reply) =>
      reply.status(201).send(await enrollment.createToken(principalOf(request), request.body)),
  );

  app.post(
    '/api/v1/agent/enroll',
    {
      config: { permission: 'public' },
      schema: {
        tags: ['agents'],
        summary: 'An agent trades its enrollment token for its own credential',
        body: EnrollRequest,
        response: responses(EnrollResponse, 201),
      },
    },
    async (request, reply) => reply.status(201).send(await enrollment.enroll(request.body, request.ip)),
  );
  app.post(
    '/api/v1/agent/heartbeat',
    {
      config: { permission: 'agent' },
      // Every agent asks every few seconds: its requests are logged only when they go wrong.
      logLevel: 'warn',
      schema: {
        tags: ['agents'],
        summary: 'An agent reports that it lives, with its host facts',
        body: HeartbeatRequest,
        response: responses(HeartbeatResponse),
      },
    },
    async (request) => {
      const agent = agentOf(request);
      const answer = await enrollment.heartbeat(agent, request.body.facts);
      await ledger.reportInstalled(agent, request.body.installed ?? []);
      return answer;
    },
  );

  app.get(
    '/api/v1/ledger',
    {
      config: { permission: 'inventory:read' },
      schema: {
        tags: ['ledger'],
        summary: 'What runs where: the active and previous version per target and component, with drift',
        querystring: LedgerQuery,
        response: responses(LedgerView),
      },
    },
    async (request) => ({ positions: await ledger.current(principalOf(request), request.query) }),
  );
  app.get(
    '/api/v1/targets/:ref/ledger',
    {
      config: { permission: 'inventory:read' },
      schema: {
        tags: ['ledger'],
        summary: 'Every change on one target, oldest first',
        params: RefParams,
        querystring: LedgerHistoryQuery,
        response: responses(LedgerHistory),
      },
    },
    async (request) => ({
      entries: await ledger.history(principalOf(request), request.params.ref, request.query.component),
    }),
  );
  app.post(
    '/api/v1/ledger/external',
    {
      config: { permission: 'ledger:record' },
      schema: {
        tags: ['ledger'],
        summary:
          'Record a change made outside Gantry (a supplier’s firmware update), so the ledger stays true',
        body: RecordExternalRequest,
        response: responses(LedgerEntrySchema, 201),
      },
    },
    async (request, reply) =>
      reply.status(201).send(await ledger.recordExternal(principalOf(request), request.body)),
  );

  app.post(
    '/api/v1/targets/:ref/steps',
    {
      config: { permission: 'steps:run' },
      schema: {
        tags: ['steps'],
        summary: 'Queue a step for the target’s agent: install, activate, rollback or remove',
        params: RefParams,
        body: QueueStepRequest,
        response: responses(StepSchema, 201),
      },
    },
    async (request, reply) =>
      reply.status(201).send(await steps.queue(principalOf(request), request.params.ref, request.body)),
  );
  app.get(
    '/api/v1/targets/:ref/steps',
    {
      config: { permission: 'inventory:read' },
      schema: {
        tags: ['steps'],
        summary: 'The target’s steps, oldest first',
        params: RefParams,
        response: responses(StepList),
      },
    },
    async (request) => ({ steps: await steps.list(principalOf(request), request.params.ref) }),
  );
  app.get(
    '/api/v1/agent/steps/next',
    {
      config: { permission: 'agent' },
      // Every agent asks every few seconds: its requests are logged only when they go wrong.
      logLevel: 'warn',
      schema: {
        tags: ['agents'],
        summary: 'Long-poll for the next step (204 when none came within `wait` seconds)',
        querystring: NextStepQuery,
        response: { 200: StepSchema, 204: Type.Null(), ...responses(StepSchema) },
      },
    },
    async (request, reply) => {
      const agent = agentOf(request);
      const until = Date.now() + (request.query.wait ?? 0) * 1000;
      const gone = new AbortController();
      const onClose = () => gone.abort();
      request.raw.once('close', onClose);
      // Waiting costs nothing: the database is asked again only when a step is queued here, or
      // now and then on PostgreSQL (for steps queued by another replica; see `recheckMs`).
      let hint: Awaited<ReturnType<typeof steps.waitForWork>>;
      try {
        for (;;) {
          // A step queued while the look-up is on its way ends the wait at once.
          const mark = steps.mark(agent.targetId);
          const step = await steps.next(agent, hint);
          if (step) return step;
          const left = until - Date.now();
          if (gone.signal.aborted || left <= 0) return reply.status(204).send(null);
          hint = await steps.waitForWork(agent.targetId, Math.min(left, steps.recheckMs), gone.signal, mark);
          if (gone.signal.aborted) return reply.status(204).send(null);
          // The poll's time is up with no wake since the look-up began: no need to look again, the
          // agent's next poll looks first thing. (A timer may fire a moment early by the clock.)
          if (!hint && Date.now() >= until - 5 && !steps.wokenSince(agent.targetId, mark))
            return reply.status(204).send(null);
        }
      } finally {
        // Answered: the connection's close (or its next request) is no business of this one.
        request.raw.off('close', onClose);
      }
    },
  );
  app.post(
    '/api/v1/agent/steps/:id/result',
    {
      config: { permission: 'agent' },
      // Every agent asks every few seconds: its requests are logged only when they go wrong.
      logLevel: 'warn',
      schema: {
        tags: ['agents'],
        summary: 'Report a step’s outcome (a repeated report changes nothing)',
        params: StepParams,
        body: StepResultRequest,
        response: responses(StepSchema),
      },
    },
    async (request) => steps.report(agentOf(request), request.params.id, request.body),
  );
}
