/** Wire schemas: change requests, templates, freezes, bookings, feature flags, gate checks. */
import { type Static, Type } from '@sinclair/typebox';
import { CHANGE_ACTIONS, CHANGE_STATES, CHANGE_TYPES } from '../core/changes.ts';
import { LABEL_KEY_PATTERN, LABEL_VALUE_PATTERN, NAME_PATTERN } from '../core/inventory.ts';
import { ComponentName } from './artifacts.ts';
import { Id, Line, MULTI_LINE, Nullable, Strict, Timestamp } from './common.ts';
import { EnvironmentName, FlagKey } from './releases.ts';

const Text = (maxLength: number) => Type.String({ maxLength, pattern: MULTI_LINE });
const Reason = Line({ minLength: 1, maxLength: 2000 });
const LocalTime = Type.String({
  minLength: 10,
  maxLength: 40,
  pattern: '^\\d{4}-\\d{2}-\\d{2}[T ][0-9:.]+(Z|[+-]\\d{2}:?\\d{2})?$',
  description: 'ISO 8601, local to timeZone unless it carries an offset: 2026-11-24T22:00',
});
const TimeZone = Line({ minLength: 1, maxLength: 64, description: 'IANA time zone, e.g. Europe/Berlin' });

export const ChangeTypeSchema = Type.Union(CHANGE_TYPES.map((t) => Type.Literal(t)));
export const ChangeStateSchema = Type.Union(CHANGE_STATES.map((t) => Type.Literal(t)));
export const RiskSchema = Type.Union([Type.Literal('low'), Type.Literal('medium'), Type.Literal('high')]);
export const Selector = Type.Record(
  Type.String({ pattern: LABEL_KEY_PATTERN }),
  Type.String({ pattern: LABEL_VALUE_PATTERN }),
  { maxProperties: 20 },
);

export const RiskAnswersSchema = Strict({
  userImpact: Type.Union([Type.Literal('none'), Type.Literal('some'), Type.Literal('major')]),
  doneBefore: Type.Boolean(),
  backoutTested: Type.Boolean(),
  changesData: Type.Boolean(),
});

export const WindowInput = Strict({ start: LocalTime, end: LocalTime, timeZone: Type.Optional(TimeZone) });
export const WindowSchema = Strict({
  start: Type.String(),
  end: Type.String(),
  timeZone: Type.String(),
  startAt: Timestamp,
  endAt: Timestamp,
});

export const ApprovalSchema = Strict({
  approver: Type.String(),
  role: Type.String(),
  decision: Type.Union([Type.Literal('approved'), Type.Literal('rejected')]),
  reason: Type.String(),
  automatic: Type.Boolean(),
  /** False once the change's content changed after this decision. */
  current: Type.Boolean(),
  at: Timestamp,
});

export const HistorySchema = Strict({
  at: Timestamp,
  actor: Type.String(),
  action: Type.String(),
  from: Type.String(),
  to: Type.String(),
  reason: Nullable(Type.String()),
});

export const ConflictSchema = Strict({ change: Type.String(), title: Type.String(), reason: Type.String() });

export const ChangeSchema = Strict({
  id: Id,
  number: Type.String({ description: 'CHG-1001' }),
  type: ChangeTypeSchema,
  state: ChangeStateSchema,
  title: Type.String(),
  description: Type.String(),
  risk: RiskSchema,
  riskAnswers: RiskAnswersSchema,
  riskBecause: Type.Array(Type.String()),
  release: Strict({ id: Id, name: Type.String(), version: Type.String() }),
  environments: Type.Array(Type.String()),
  targetSelector: Selector,
  windows: Type.Array(WindowSchema),
  backoutPlan: Type.String(),
  links: Type.Array(Type.String()),
  template: Nullable(Type.String()),
  requester: Type.String(),
  contentDigest: Type.String(),
  revision: Type.Integer(),
  freezeOverrideReason: Nullable(Type.String()),
  approvalsRequired: Type.Integer(),
  approvalsValid: Type.Integer(),
  approverRoles: Type.Array(Type.String()),
  approvals: Type.Array(ApprovalSchema),
  history: Type.Array(HistorySchema),
  conflicts: Type.Array(ConflictSchema),
  /** What may be done next from this state. */
  actions: Type.Array(Type.String()),
  createdAt: Timestamp,
  updatedAt: Timestamp,
});
export type ChangeView = Static<typeof ChangeSchema>;

export const ChangeList = Strict({ changes: Type.Array(ChangeSchema) });
export const ChangeListQuery = Strict({
  state: Type.Optional(ChangeStateSchema),
  environment: Type.Optional(EnvironmentName),
  type: Type.Optional(ChangeTypeSchema),
});

export const CreateChangeRequest = Strict({
  type: ChangeTypeSchema,
  title: Line({ minLength: 1, maxLength: 200 }),
  description: Type.Optional(Text(20_000)),
  riskAnswers: Type.Optional(RiskAnswersSchema),
  /** The release: its id, or name@version. */
  release: Line({ minLength: 1, maxLength: 200 }),
  environments: Type.Array(EnvironmentName, { minItems: 1, maxItems: 20, uniqueItems: true }),
  targetSelector: Type.Optional(Selector),
  windows: Type.Array(WindowInput, { minItems: 1, maxItems: 20 }),
  backoutPlan: Type.Optional(Text(20_000)),
  links: Type.Optional(
    Type.Array(Type.String({ maxLength: 2000, pattern: '^https?://[^\\s]+$' }), { maxItems: 20 }),
  ),
  /** A standard change names its pre-approved template. */
  template: Type.Optional(Type.String({ pattern: NAME_PATTERN })),
  /** An emergency change may deploy inside a freeze, for this reason (audited). */
  freezeOverrideReason: Type.Optional(Reason),
});
export type CreateChangeRequest = Static<typeof CreateChangeRequest>;

export const UpdateChangeRequest = Strict({
  title: Type.Optional(CreateChangeRequest.properties.title),
  description: Type.Optional(Text(20_000)),
  riskAnswers: Type.Optional(RiskAnswersSchema),
  release: Type.Optional(Line({ minLength: 1, maxLength: 200 })),
  environments: Type.Optional(CreateChangeRequest.properties.environments),
  targetSelector: Type.Optional(Selector),
  windows: Type.Optional(CreateChangeRequest.properties.windows),
  backoutPlan: Type.Optional(Text(20_000)),
  links: Type.Optional(CreateChangeRequest.properties.links),
  freezeOverrideReason: Type.Optional(Reason),
  expectedRevision: Type.Optional(Type.Integer({ minimum: 1 })),
});
export type UpdateChangeRequest = Static<typeof UpdateChangeRequest>;

export const ChangeActionSchema = Type.Union(
  CHANGE_ACTIONS.filter((a) => a !== 'edit').map((a) => Type.Literal(a)),
);
export const ChangeActionRequest = Strict({
  reason: Type.Optional(Reason),
  /** The revision the caller saw: when the change moved on since, the action is refused (409). */
  expectedRevision: Type.Optional(Type.Integer({ minimum: 1 })),
  /** For approve: the content digest the approver reviewed. */
  contentDigest: Type.Optional(Type.String({ pattern: '^sha256:[0-9a-f]{64}$' })),
});
export const ChangeActionParams = Strict({
  id: Line({ minLength: 1, maxLength: 64 }),
  action: ChangeActionSchema,
});
export const ChangeRefParams = Strict({ id: Line({ minLength: 1, maxLength: 64 }) });

export const GateCheckRequest = Strict({
  environment: EnvironmentName,
  /** The release (id or name@version); the change's release when a change is named. */
  release: Type.Optional(Line({ minLength: 1, maxLength: 200 })),
  change: Type.Optional(Line({ minLength: 1, maxLength: 64 })),
  strategy: Type.Optional(Line({ minLength: 1, maxLength: 40 })),
});
export const GateReasonSchema = Strict({ code: Type.String(), message: Type.String() });
export const GateVerdictSchema = Strict({
  allowed: Type.Boolean(),
  reasons: Type.Array(GateReasonSchema),
  notes: Type.Array(GateReasonSchema),
  at: Timestamp,
});

// Templates ------------------------------------------------------------------------------------

export const TemplateSchema = Strict({
  id: Id,
  name: Type.String(),
  description: Type.String(),
  components: Type.Array(Type.String()),
  environments: Type.Array(Type.String()),
  strategies: Type.Array(Type.String()),
  createdBy: Type.String(),
  createdAt: Timestamp,
  retiredAt: Nullable(Timestamp),
});
export const TemplateList = Strict({ templates: Type.Array(TemplateSchema) });
export const CreateTemplateRequest = Strict({
  name: Type.String({ pattern: NAME_PATTERN }),
  description: Type.Optional(Text(5000)),
  components: Type.Array(ComponentName, { minItems: 1, maxItems: 50, uniqueItems: true }),
  environments: Type.Array(EnvironmentName, { minItems: 1, maxItems: 20, uniqueItems: true }),
  strategies: Type.Optional(Type.Array(Line({ minLength: 1, maxLength: 40 }), { maxItems: 10 })),
});

// Freezes --------------------------------------------------------------------------------------

export const FreezeSchema = Strict({
  id: Id,
  environment: Type.String(),
  name: Type.String(),
  reason: Type.String(),
  kind: Type.Union([Type.Literal('once'), Type.Literal('recurring')]),
  start: Nullable(Timestamp),
  end: Nullable(Timestamp),
  cron: Nullable(Type.String()),
  durationMinutes: Nullable(Type.Integer()),
  timeZone: Type.String(),
  /** Whether it holds now, and the occurrence that holds or comes next. */
  activeNow: Type.Boolean(),
  next: Nullable(Strict({ start: Timestamp, end: Timestamp })),
  createdBy: Type.String(),
  createdAt: Timestamp,
});
export const FreezeList = Strict({ freezes: Type.Array(FreezeSchema) });
export const FreezeListQuery = Strict({ environment: Type.Optional(EnvironmentName) });
export const CreateFreezeRequest = Strict({
  environment: EnvironmentName,
  name: Line({ minLength: 1, maxLength: 200 }),
  reason: Type.Optional(Line({ maxLength: 2000 })),
  /** A one-off freeze: start and end. */
  start: Type.Optional(LocalTime),
  end: Type.Optional(LocalTime),
  /** A recurring freeze: a five-field cron expression for each start, and how long it lasts. */
  cron: Type.Optional(Line({ minLength: 9, maxLength: 100 })),
  durationMinutes: Type.Optional(Type.Integer({ minimum: 1, maximum: 60 * 24 * 31 })),
  timeZone: Type.Optional(TimeZone),
});

// Bookings -------------------------------------------------------------------------------------

export const BookingSchema = Strict({
  id: Id,
  environment: Type.String(),
  team: Type.String(),
  purpose: Type.String(),
  start: Timestamp,
  end: Timestamp,
  /** Other bookings this one overlaps (allowed only when asked for). */
  overlaps: Type.Array(Type.String()),
  bookedBy: Type.String(),
  createdAt: Timestamp,
});
export const BookingList = Strict({ bookings: Type.Array(BookingSchema) });
export const BookingListQuery = Strict({ environment: Type.Optional(EnvironmentName) });
export const CreateBookingRequest = Strict({
  environment: EnvironmentName,
  team: Line({ minLength: 1, maxLength: 100 }),
  purpose: Type.Optional(Line({ maxLength: 500 })),
  start: LocalTime,
  end: LocalTime,
  timeZone: Type.Optional(TimeZone),
  /** Book even when another booking overlaps; both are flagged. */
  allowOverlap: Type.Optional(Type.Boolean()),
});

// Flags ----------------------------------------------------------------------------------------

export const FlagRuleSchema = Strict({
  attribute: Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' }),
  op: Type.Union([Type.Literal('eq'), Type.Literal('neq'), Type.Literal('in'), Type.Literal('not_in')]),
  values: Type.Array(Line({ maxLength: 200 }), { minItems: 1, maxItems: 100 }),
});
export const FlagSchema = Strict({
  key: Type.String(),
  environment: Type.String(),
  description: Type.String(),
  enabled: Type.Boolean(),
  percentage: Nullable(Type.Integer()),
  rules: Type.Array(FlagRuleSchema),
  revision: Type.Integer(),
  updatedBy: Type.String(),
  updatedAt: Timestamp,
});
export const FlagList = Strict({ flags: Type.Array(FlagSchema) });
export const FlagParams = Strict({ name: EnvironmentName, key: FlagKey });
export const SetFlagRequest = Strict({
  enabled: Type.Optional(Type.Boolean()),
  description: Type.Optional(Line({ maxLength: 1000 })),
  percentage: Type.Optional(Nullable(Type.Integer({ minimum: 0, maximum: 100 }))),
  rules: Type.Optional(Type.Array(FlagRuleSchema, { maxItems: 50 })),
  /** Where the environment puts flag changes under change control: the approved change. */
  change: Type.Optional(Line({ minLength: 1, maxLength: 64 })),
});
export const EvaluateQuery = Strict({
  subject: Line({ minLength: 1, maxLength: 200 }),
  /** Attributes as key:value, repeated: attr=region:eu&attr=plan:pro */
  attr: Type.Optional(Type.Array(Line({ minLength: 3, maxLength: 300 }), { maxItems: 50 })),
});
export const EvaluationSchema = Strict({
  key: Type.String(),
  value: Type.Boolean(),
  variant: Type.String(),
  reason: Type.String(),
});
export const EvaluationResult = Strict({
  environment: Type.String(),
  subject: Type.String(),
  flags: Type.Array(EvaluationSchema),
});
