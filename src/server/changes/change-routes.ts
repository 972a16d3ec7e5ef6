/**
 * /api/v1/changes, /api/v1/change-templates, /api/v1/gates/check, /api/v1/freezes,
 * /api/v1/bookings, /api/v1/calendar.ics
 */
import { Type } from '@sinclair/typebox';
import type { ChangeAction } from '../../core/changes.ts';
import type { Permission } from '../../core/roles.ts';
import {
  BookingList,
  BookingListQuery,
  BookingSchema,
  ChangeActionRequest,
  ChangeList,
  ChangeListQuery,
  ChangeRefParams,
  ChangeSchema,
  CreateBookingRequest,
  CreateChangeRequest,
  CreateFreezeRequest,
  CreateTemplateRequest,
  FreezeList,
  FreezeListQuery,
  FreezeSchema,
  GateCheckRequest,
  GateVerdictSchema,
  TemplateList,
  TemplateSchema,
  UpdateChangeRequest,
} from '../../protocol/changes.ts';
import { IdParams, Strict } from '../../protocol/common.ts';
import { EnvironmentName } from '../../protocol/releases.ts';
import { type App, principalOf, responses } from '../http/route-kit.ts';
import type { ChangeService } from './change-service.ts';
import type { ScheduleService } from './schedule-service.ts';

/** Who may take each step: requesters raise and withdraw, authorities decide, implementers run. */
const ACTION_PERMISSIONS: Record<Exclude<ChangeAction, 'edit'>, Permission> = {
  submit: 'changes:write',
  cancel: 'changes:write',
  approve: 'changes:approve',
  reject: 'changes:approve',
  review: 'changes:approve',
  close: 'changes:approve',
  schedule: 'changes:implement',
  start: 'changes:implement',
  complete: 'changes:implement',
  fail: 'changes:implement',
  'back-out': 'changes:implement',
};

export function registerChangeRoutes(
  app: App,
  changes: ChangeService,
  schedule: ScheduleService,
  options: { publicUrl: string | undefined },
): void {
  app.get(
    '/api/v1/changes',
    {
      config: { permission: 'changes:read' },
      schema: {
        tags: ['changes'],
        summary: 'List change requests',
        querystring: ChangeListQuery,
        response: responses(ChangeList),
      },
    },
    async (request) => ({ changes: await changes.list(principalOf(request), request.query) }),
  );
  app.post(
    '/api/v1/changes',
    {
      config: { permission: 'changes:write' },
      schema: {
        tags: ['changes'],
        summary: 'Raise a change request (a draft)',
        body: CreateChangeRequest,
        response: responses(ChangeSchema, 201),
      },
    },
    async (request, reply) =>
      reply.status(201).send(await changes.create(principalOf(request), request.body)),
  );
  app.get(
    '/api/v1/changes/:id',
    {
      config: { permission: 'changes:read' },
      schema: {
        tags: ['changes'],
        summary: 'Show a change (by id or CHG-number) with approvals, history and conflicts',
        params: ChangeRefParams,
        response: responses(ChangeSchema),
      },
    },
    async (request) => changes.get(principalOf(request), request.params.id),
  );
  app.patch(
    '/api/v1/changes/:id',
    {
      config: { permission: 'changes:write' },
      schema: {
        tags: ['changes'],
        summary: 'Edit a change; editing its scope, windows or release voids its approvals',
        params: ChangeRefParams,
        body: UpdateChangeRequest,
        response: responses(ChangeSchema),
      },
    },
    async (request) => changes.update(principalOf(request), request.params.id, request.body),
  );
  for (const [action, permission] of Object.entries(ACTION_PERMISSIONS) as Array<
    [Exclude<ChangeAction, 'edit'>, Permission]
  >) {
    app.post(
      `/api/v1/changes/:id/${action}`,
      {
        config: { permission },
        schema: {
          tags: ['changes'],
          summary: `${action[0]?.toUpperCase()}${action.slice(1)} a change`,
          params: ChangeRefParams,
          body: ChangeActionRequest,
          response: responses(ChangeSchema),
        },
      },
      async (request) => changes.act(principalOf(request), request.params.id, action, request.body ?? {}),
    );
  }

  app.post(
    '/api/v1/gates/check',
    {
      config: { permission: 'changes:read' },
      schema: {
        tags: ['changes'],
        summary: 'May this release run in this environment now (under this change)? Every reason if not',
        body: GateCheckRequest,
        response: responses(GateVerdictSchema),
      },
    },
    async (request) => changes.checkGate(principalOf(request), request.body),
  );

  app.get(
    '/api/v1/change-templates',
    {
      config: { permission: 'changes:read' },
      schema: {
        tags: ['changes'],
        summary: 'List standard-change templates',
        response: responses(TemplateList),
      },
    },
    async () => ({ templates: await changes.templates() }),
  );
  app.post(
    '/api/v1/change-templates',
    {
      config: { permission: 'changes:approve' },
      schema: {
        tags: ['changes'],
        summary: 'Create a pre-approved template for standard changes',
        body: CreateTemplateRequest,
        response: responses(TemplateSchema, 201),
      },
    },
    async (request, reply) =>
      reply.status(201).send(await changes.createTemplate(principalOf(request), request.body)),
  );
  app.delete(
    '/api/v1/change-templates/:name',
    {
      config: { permission: 'changes:approve' },
      schema: {
        tags: ['changes'],
        summary: 'Retire a template: no new standard changes from it',
        params: Strict({ name: EnvironmentName }),
        response: responses(TemplateSchema),
      },
    },
    async (request) => changes.retireTemplate(principalOf(request), request.params.name),
  );

  app.get(
    '/api/v1/freezes',
    {
      config: { permission: 'changes:read' },
      schema: {
        tags: ['changes'],
        summary: 'List freezes',
        querystring: FreezeListQuery,
        response: responses(FreezeList),
      },
    },
    async (request) => ({ freezes: await schedule.freezes(request.query) }),
  );
  app.post(
    '/api/v1/freezes',
    {
      config: { permission: 'changes:approve' },
      schema: {
        tags: ['changes'],
        summary:
          'Freeze an environment: once (start, end) or recurring (cron, durationMinutes), in a time zone',
        body: CreateFreezeRequest,
        response: responses(FreezeSchema, 201),
      },
    },
    async (request, reply) =>
      reply.status(201).send(await schedule.addFreeze(principalOf(request), request.body)),
  );
  app.delete(
    '/api/v1/freezes/:id',
    {
      config: { permission: 'changes:approve' },
      schema: { tags: ['changes'], summary: 'Remove a freeze', params: IdParams },
    },
    async (request, reply) => {
      await schedule.removeFreeze(principalOf(request), request.params.id);
      return reply.status(204).send();
    },
  );

  app.get(
    '/api/v1/bookings',
    {
      config: { permission: 'changes:read' },
      schema: {
        tags: ['changes'],
        summary: 'List environment bookings',
        querystring: BookingListQuery,
        response: responses(BookingList),
      },
    },
    async (request) => ({ bookings: await schedule.bookings(request.query) }),
  );
  app.post(
    '/api/v1/bookings',
    {
      config: { permission: 'bookings:write' },
      schema: {
        tags: ['changes'],
        summary: 'Book a non-production environment for a team',
        body: CreateBookingRequest,
        response: responses(BookingSchema, 201),
      },
    },
    async (request, reply) => reply.status(201).send(await schedule.book(principalOf(request), request.body)),
  );
  app.delete(
    '/api/v1/bookings/:id',
    {
      config: { permission: 'bookings:write' },
      schema: { tags: ['changes'], summary: 'Cancel a booking', params: IdParams },
    },
    async (request, reply) => {
      await schedule.cancelBooking(principalOf(request), request.params.id);
      return reply.status(204).send();
    },
  );

  app.get(
    '/api/v1/calendar.ics',
    {
      config: { permission: 'changes:read' },
      schema: {
        tags: ['changes'],
        summary:
          'iCalendar feed of change windows, freezes and bookings (subscribe with the API token as the Basic password)',
        querystring: Strict({ environment: Type.Optional(EnvironmentName) }),
      },
    },
    async (request, reply) => {
      const base = options.publicUrl ?? `${request.protocol}://${request.headers.host ?? 'localhost'}`;
      const body = await schedule.calendar(principalOf(request), request.query, base.replace(/\/$/, ''));
      return reply.type('text/calendar; charset=utf-8').send(body);
    },
  );
}
