import { type Static, Type } from '@sinclair/typebox';
import { LABEL_KEY_PATTERN, LABEL_VALUE_PATTERN, NAME_PATTERN } from '../core/inventory.ts';
import { Id, Line, MULTI_LINE, Nullable, Strict, Timestamp } from './common.ts';

export const InventoryName = Type.String({
  pattern: NAME_PATTERN,
  description: 'lower-case letters, digits, . _ -',
});
export const LabelsSchema = Type.Record(
  Type.String({ pattern: LABEL_KEY_PATTERN }),
  Type.String({ pattern: LABEL_VALUE_PATTERN }),
  {
    maxProperties: 32,
  },
);

export const StandardsSchema = Strict({
  os: Type.Optional(Type.Array(Line({ maxLength: 40 }), { maxItems: 10 })),
  arch: Type.Optional(Type.Array(Line({ maxLength: 40 }), { maxItems: 10 })),
  minFreeDiskBytes: Type.Optional(Type.Integer({ minimum: 0 })),
  minNodeMajor: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000 })),
});

export const FactsSchema = Strict({
  os: Type.Optional(Line({ maxLength: 40 })),
  arch: Type.Optional(Line({ maxLength: 40 })),
  freeDiskBytes: Type.Optional(Type.Integer({ minimum: 0 })),
  nodeVersion: Type.Optional(Line({ maxLength: 40 })),
  hostname: Type.Optional(Line({ maxLength: 255 })),
});

/** What an environment asks of changes and deployments (see core/changes.ts for each field). */
export const PolicyView = Strict({
  changeRequired: Type.Boolean(),
  approvals: Type.Integer({ minimum: 1, maximum: 10 }),
  approverRole: Type.Union([
    Type.Literal('change-authority'),
    Type.Literal('emergency-authority'),
    Type.Literal('admin'),
  ]),
  highRiskApprovals: Type.Integer({ minimum: 1, maximum: 10 }),
  requireSignature: Type.Boolean(),
  requireEvidence: Type.Boolean(),
  autoApproveLowRisk: Type.Boolean(),
  strategies: Type.Array(Type.String({ pattern: '^[a-z-]{1,40}$' }), { maxItems: 10, uniqueItems: true }),
  flagsUnderChange: Type.Boolean(),
  bookable: Type.Boolean(),
});
/** A policy change: fields not given keep their value. */
export const PolicySchema = Type.Partial(PolicyView, { additionalProperties: false });

export const EnvironmentSchema = Strict({
  id: Id,
  name: Type.String(),
  position: Type.Integer(),
  policy: PolicyView,
  standards: StandardsSchema,
  createdAt: Timestamp,
  updatedAt: Timestamp,
});
export const EnvironmentList = Strict({ environments: Type.Array(EnvironmentSchema) });
export const CreateEnvironmentRequest = Strict({
  name: InventoryName,
  position: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000 })),
  standards: Type.Optional(StandardsSchema),
});
export const UpdateEnvironmentRequest = Strict(
  {
    position: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000 })),
    standards: Type.Optional(StandardsSchema),
    policy: Type.Optional(PolicySchema),
  },
  { minProperties: 1 },
);
export const NameParams = Strict({ name: InventoryName });
export const RefParams = Strict({
  ref: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9._-]+$' }),
});

export const SupplierSchema = Strict({ id: Id, name: Type.String(), createdAt: Timestamp });
export const SupplierList = Strict({ suppliers: Type.Array(SupplierSchema) });
export const CreateSupplierRequest = Strict({ name: InventoryName });

export const TargetSchema = Strict({
  id: Id,
  name: Type.String(),
  environment: Type.String(),
  labels: Type.Record(Type.String(), Type.String()),
  supplierId: Nullable(Type.String()),
  facts: FactsSchema,
  state: Type.Union([
    Type.Literal('online'),
    Type.Literal('stale'),
    Type.Literal('offline'),
    Type.Literal('retired'),
  ]),
  lastSeenAt: Nullable(Timestamp),
  standardsProblems: Type.Array(Type.String()),
  createdAt: Timestamp,
});
export const TargetList = Strict({ targets: Type.Array(TargetSchema) });
export const TargetListQuery = Strict({ environment: Type.Optional(InventoryName) });

export const CreateEnrollmentTokenRequest = Strict({
  environment: InventoryName,
  labels: Type.Optional(LabelsSchema),
  supplier: Type.Optional(InventoryName),
  expiresInHours: Type.Optional(Type.Integer({ minimum: 1, maximum: 24 * 30 })),
});
export const EnrollmentTokenCreated = Strict({
  id: Id,
  secret: Type.String({ description: 'Shown once; give it to the agent with --enroll' }),
  environment: Type.String(),
  labels: Type.Record(Type.String(), Type.String()),
  expiresAt: Timestamp,
});

export const EnrollRequest = Strict({
  token: Type.String({ minLength: 1, maxLength: 200 }),
  name: InventoryName,
  facts: FactsSchema,
});
export const EnrollResponse = Strict({
  agentId: Id,
  targetId: Id,
  credential: Type.String({ description: 'The agent’s own credential; shown once' }),
  heartbeatSeconds: Type.Integer(),
});
export const HeartbeatRequest = Strict({
  facts: FactsSchema,
  installed: Type.Optional(
    Type.Array(Strict({ component: InventoryName, version: Line({ minLength: 1, maxLength: 100 }) }), {
      maxItems: 500,
      description: 'what the agent runs now, component by component',
    }),
  ),
});
export const HeartbeatResponse = Strict({ serverTime: Timestamp, heartbeatSeconds: Type.Integer() });
export type HeartbeatResponse = Static<typeof HeartbeatResponse>;

export const LedgerEntrySchema = Strict({
  id: Id,
  target: Type.String(),
  component: Type.String(),
  version: Type.String(),
  digest: Nullable(Type.String()),
  previousVersion: Nullable(Type.String()),
  source: Type.String(),
  reference: Nullable(Type.String()),
  note: Nullable(Type.String()),
  recordedBy: Type.String(),
  at: Timestamp,
});
export const LedgerPositionSchema = Type.Composite(
  [
    LedgerEntrySchema,
    Strict({
      environment: Type.String(),
      drift: Nullable(Strict({ reportedVersion: Type.String(), since: Timestamp })),
    }),
  ],
  { additionalProperties: false },
);
export const LedgerView = Strict({ positions: Type.Array(LedgerPositionSchema) });
export const LedgerQuery = Strict({
  environment: Type.Optional(InventoryName),
  component: Type.Optional(InventoryName),
  target: Type.Optional(InventoryName),
});
export const LedgerHistory = Strict({ entries: Type.Array(LedgerEntrySchema) });
export const LedgerHistoryQuery = Strict({ component: Type.Optional(InventoryName) });
export const RecordExternalRequest = Strict({
  target: InventoryName,
  component: InventoryName,
  version: Line({ minLength: 1, maxLength: 100 }),
  digest: Type.Optional(Type.String({ pattern: '^sha256:[0-9a-f]{64}$' })),
  reference: Line({
    minLength: 1,
    maxLength: 200,
    description: 'the supplier’s or change’s reference, e.g. CHG-42 or a vendor ticket',
  }),
  note: Type.Optional(Line({ maxLength: 1000 })),
});

export const StepKindSchema = Type.Union([
  Type.Literal('install'),
  Type.Literal('activate'),
  Type.Literal('rollback'),
  Type.Literal('remove'),
  Type.Literal('logs'),
  /** Blue-green: start an installed version in the idle slot and check its health there. */
  Type.Literal('stage'),
  /** Blue-green: move traffic to the slot where the version is staged. */
  Type.Literal('switch'),
  /** Blue-green by two target groups, on a router: run the switch hook to move traffic to a group. */
  Type.Literal('route'),
]);
export const StepSchema = Strict({
  id: Id,
  target: Type.String(),
  kind: StepKindSchema,
  component: Type.String(),
  version: Nullable(Type.String()),
  digest: Nullable(Type.String({ description: 'hex SHA-256 of the package (install)' })),
  size: Nullable(Type.Integer({ description: 'its length in bytes (install)' })),
  keepSeconds: Type.Optional(
    Type.Integer({ description: 'switch: how long the old slot keeps running for an instant switch back' }),
  ),
  route: Type.Optional(
    Strict(
      {
        slot: Type.Union([Type.Literal('blue'), Type.Literal('green')]),
        previousSlot: Nullable(Type.Union([Type.Literal('blue'), Type.Literal('green')])),
        targets: Type.Array(Type.String()),
        previousTargets: Type.Array(Type.String()),
      },
      {
        description: 'route: the group traffic moves to, the one it leaves, and the group’s healthy targets',
      },
    ),
  ),
  state: Type.Union(
    [
      Type.Literal('held'),
      Type.Literal('queued'),
      Type.Literal('running'),
      Type.Literal('succeeded'),
      Type.Literal('failed'),
      Type.Literal('cancelled'),
    ],
    {
      description:
        'held: queued ahead by a deployment, given to the agent only when its wave starts; cancelled: held, and the deployment stopped first',
    },
  ),
  message: Nullable(Type.String()),
  requestedBy: Type.String(),
  createdAt: Timestamp,
  updatedAt: Timestamp,
});
export const StepList = Strict({ steps: Type.Array(StepSchema) });
export const QueueStepRequest = Strict({
  kind: StepKindSchema,
  component: InventoryName,
  version: Type.Optional(Line({ minLength: 1, maxLength: 100 })),
});
export const NextStepQuery = Strict({
  wait: Type.Optional(Type.Integer({ minimum: 0, maximum: 60, description: 'seconds to wait for work' })),
});
export const StepResultRequest = Strict({
  outcome: Type.Union([Type.Literal('succeeded'), Type.Literal('failed')]),
  /** What happened; for a `logs` step, the log's last lines (up to 64 KiB). */
  message: Type.Optional(Type.String({ maxLength: 70_000, pattern: MULTI_LINE })),
  active: Type.Optional(
    Strict({ component: InventoryName, version: Line({ minLength: 1, maxLength: 100 }) }),
  ),
});
export const StepParams = Strict({ id: Id });
