/** Wire schemas: deployments, their plans and their progress. */
import { type Static, Type } from '@sinclair/typebox';
import { DEPLOYMENT_STATES } from '../core/deployments.ts';
import { LABEL_KEY_PATTERN } from '../core/inventory.ts';
import { STRATEGIES } from '../core/strategies.ts';
import { Selector } from './changes.ts';
import { Line, Nullable, Strict, Timestamp } from './common.ts';
import { EnvironmentName } from './releases.ts';

const Seconds = Type.Integer({ minimum: 0, maximum: 7 * 86_400 });
const Count = Type.Integer({ minimum: 1, maximum: 1_000_000 });

/** How a strategy cuts the targets into waves (each field for the strategies named). */
export const StrategyOptionsSchema = Strict({
  waves: Type.Optional(
    Type.Array(
      Strict({
        count: Type.Optional(Count),
        percent: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
        selector: Type.Optional(Selector),
        bakeSeconds: Type.Optional(Seconds),
        gate: Type.Optional(Type.Union([Type.Literal('auto'), Type.Literal('manual')])),
      }),
      { minItems: 1, maxItems: 50 },
    ),
  ),
  batchSize: Type.Optional(Count),
  maxUnavailable: Type.Optional(Count),
  canaryCount: Type.Optional(Count),
  canaryPercent: Type.Optional(Type.Integer({ minimum: 1, maximum: 99 })),
  rest: Type.Optional(Type.Integer({ minimum: 1, maximum: 50 })),
  bakeSeconds: Type.Optional(Seconds),
  keepSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 30 * 86_400 })),
  installAhead: Type.Optional(
    Type.Boolean({
      description:
        'phased, rolling, canary: the next wave installs the release while a wave bakes (default true; not after a canary wave nor before a manual gate); false installs each wave only when it starts',
    }),
  ),
  groupLabel: Type.Optional(
    Type.String({
      pattern: LABEL_KEY_PATTERN,
      description:
        'blue-green by two target groups: the label whose value is blue or green (the group) or router (runs the switch)',
    }),
  ),
  serving: Type.Optional(
    Type.Union([Type.Literal('blue'), Type.Literal('green')], {
      description:
        'blue-green by groups: which group serves now, after a person put the routers right (otherwise Gantry knows it)',
    }),
  ),
});

const Group = Type.Union([Type.Literal('blue'), Type.Literal('green')]);

/** The options as stored: what was asked, and for blue-green by groups what Gantry worked out. */
const StoredOptionsSchema = Type.Object({
  ...StrategyOptionsSchema.properties,
  groups: Type.Optional(
    Type.Object({
      label: Type.String(),
      group: Group,
      previous: Nullable(Group),
      routers: Type.Array(Type.String(), { description: 'ids of the targets that run the switch' }),
      previousTargets: Type.Array(Type.String(), { description: 'where traffic goes back to on a rollback' }),
      targets: Type.Optional(Type.Array(Type.String(), { description: 'where the routers moved traffic' })),
    }),
  ),
});

export const OnFailureSchema = Type.Union([
  Type.Literal('rollback'),
  Type.Literal('pause'),
  Type.Literal('freeze'),
]);

export const CreateDeploymentRequest = Strict({
  release: Line({ minLength: 1, maxLength: 200 }),
  environment: EnvironmentName,
  change: Type.Optional(Line({ minLength: 1, maxLength: 64 })),
  strategy: Type.Union(STRATEGIES.map((s) => Type.Literal(s))),
  options: Type.Optional(StrategyOptionsSchema),
  haltRule: Type.Optional(
    Strict({
      maxFailedPercent: Type.Optional(Type.Number({ minimum: 0, maximum: 100 })),
      canaryMaxFailures: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000 })),
    }),
  ),
  onFailure: Type.Optional(OnFailureSchema),
  start: Type.Optional(Type.Union([Type.Literal('now'), Type.Literal('window')])),
});

const TargetInWave = Type.Object({
  name: Type.String(),
  state: Type.String(),
  message: Nullable(Type.String()),
  before: Type.Record(Type.String(), Nullable(Type.String()), {
    description: 'component → version active before this deployment (what a rollback puts back)',
  }),
});

const WaveSchema = Type.Object({
  index: Type.Integer(),
  name: Type.String(),
  gate: Type.String(),
  canary: Type.Boolean(),
  bakeSeconds: Type.Integer(),
  state: Type.String(),
  bakeUntil: Nullable(Timestamp),
  approvedBy: Nullable(Type.String()),
  startedAt: Nullable(Timestamp),
  finishedAt: Nullable(Timestamp),
  targets: Type.Array(TargetInWave),
});

/** A deployment: the plan (waves and their targets) beside what happened, and counts by state. */
export const DeploymentSchema = Type.Object({
  id: Type.String(),
  number: Type.String({ examples: ['DEP-101'] }),
  release: Type.Object({ id: Type.String(), name: Type.String(), version: Type.String() }),
  environment: Type.String(),
  change: Nullable(Type.String()),
  strategy: Type.String(),
  options: StoredOptionsSchema,
  haltRule: Type.Object({ maxFailedPercent: Type.Number(), canaryMaxFailures: Type.Integer() }),
  onFailure: OnFailureSchema,
  state: Type.Union(DEPLOYMENT_STATES.map((s) => Type.Literal(s))),
  reason: Nullable(Type.String()),
  scheduledFor: Nullable(Timestamp),
  excluded: Type.Array(Type.Object({ target: Type.String(), reason: Type.String() })),
  createdBy: Type.String(),
  createdAt: Timestamp,
  startedAt: Nullable(Timestamp),
  finishedAt: Nullable(Timestamp),
  waves: Type.Array(WaveSchema),
  counts: Type.Record(Type.String(), Type.Integer()),
});
export type DeploymentView = Static<typeof DeploymentSchema>;

export const DeploymentList = Type.Object({ deployments: Type.Array(DeploymentSchema) });
