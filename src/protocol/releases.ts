/** Wire schemas: releases, evidence, lifecycles, subscriptions. */
import { type Static, Type } from '@sinclair/typebox';
import { FLAG_KEY_PATTERN } from '../core/flags.ts';
import { NAME_PATTERN } from '../core/inventory.ts';
import { ComponentName, Digest, Version } from './artifacts.ts';
import { Id, Line, MULTI_LINE, Nullable, Strict, Timestamp } from './common.ts';

export const ReleaseName = Type.String({ pattern: NAME_PATTERN, description: 'e.g. shop' });
export const EnvironmentName = Type.String({ pattern: NAME_PATTERN });
export const FlagKey = Type.String({ pattern: FLAG_KEY_PATTERN });
const Notes = Type.String({ maxLength: 100_000, pattern: MULTI_LINE });

export const ReleaseComponent = Strict({ component: ComponentName, version: Version, digest: Digest });

export const EvidenceSchema = Strict({
  id: Id,
  name: Type.String(),
  kind: Type.Union([Type.Literal('test-report'), Type.Literal('scan'), Type.Literal('other')]),
  digest: Digest,
  passed: Type.Boolean(),
  summary: Type.String(),
  addedBy: Type.String(),
  addedAt: Timestamp,
});

export const OutcomeSchema = Strict({
  id: Id,
  environment: Type.String(),
  outcome: Type.Union([Type.Literal('succeeded'), Type.Literal('failed')]),
  deploymentId: Nullable(Type.String()),
  changeId: Nullable(Type.String()),
  source: Type.String(),
  note: Nullable(Type.String()),
  recordedBy: Type.String(),
  at: Timestamp,
});

export const ReleaseSchema = Strict({
  id: Id,
  name: Type.String(),
  version: Type.String(),
  notes: Type.String(),
  components: Type.Array(ReleaseComponent),
  flags: Type.Array(Type.String()),
  createdBy: Type.String(),
  createdAt: Timestamp,
  updatedAt: Timestamp,
  /** Set once a submitted change names the release; it cannot change afterwards. */
  lockedAt: Nullable(Timestamp),
  evidence: Type.Array(EvidenceSchema),
  /** passed: every piece of evidence passed (and there is some); failed; none. */
  evidenceSummary: Type.Union([Type.Literal('passed'), Type.Literal('failed'), Type.Literal('none')]),
  /** Per environment: deployments of this release and how they ended. */
  lifecycle: Type.Array(OutcomeSchema),
  availableIn: Type.Array(Strict({ environment: Type.String(), at: Timestamp, by: Type.String() })),
});
export type ReleaseView = Static<typeof ReleaseSchema>;

export const ReleaseList = Strict({ releases: Type.Array(ReleaseSchema) });
export const ReleaseListQuery = Strict({ name: Type.Optional(ReleaseName) });

export const CreateReleaseRequest = Strict({
  name: ReleaseName,
  version: Version,
  notes: Type.Optional(Notes),
  /** Each component by digest, or by version (the media library's artifact of that version). */
  components: Type.Array(
    Strict({
      component: ComponentName,
      version: Type.Optional(Version),
      digest: Type.Optional(Digest),
    }),
    { minItems: 1, maxItems: 200 },
  ),
  flags: Type.Optional(Type.Array(FlagKey, { maxItems: 200 })),
});
export type CreateReleaseRequest = Static<typeof CreateReleaseRequest>;

export const UpdateReleaseRequest = Strict({
  notes: Type.Optional(Notes),
  components: Type.Optional(CreateReleaseRequest.properties.components),
  flags: Type.Optional(Type.Array(FlagKey, { maxItems: 200 })),
});

export const AddEvidenceRequest = Strict({
  name: Line({ minLength: 1, maxLength: 200 }),
  kind: Type.Union([Type.Literal('test-report'), Type.Literal('scan'), Type.Literal('other')]),
  /** A document in the media library. */
  digest: Digest,
  passed: Type.Boolean(),
  summary: Type.Optional(Type.String({ maxLength: 10_000, pattern: MULTI_LINE })),
});

export const RecordOutcomeRequest = Strict({
  environment: EnvironmentName,
  outcome: Type.Union([Type.Literal('succeeded'), Type.Literal('failed')]),
  /** The change it was done under: its id or CHG-number. */
  changeId: Type.Optional(Line({ minLength: 1, maxLength: 64 })),
  note: Type.Optional(Line({ maxLength: 1000 })),
});

export const MakeAvailableRequest = Strict({ environment: EnvironmentName });

export const LifecycleSchema = Strict({
  id: Id,
  name: Type.String(),
  releaseName: Type.String(),
  phases: Type.Array(Type.String()),
  createdAt: Timestamp,
  updatedAt: Timestamp,
});
export const LifecycleList = Strict({ lifecycles: Type.Array(LifecycleSchema) });
export const PutLifecycleRequest = Strict({
  releaseName: ReleaseName,
  phases: Type.Array(EnvironmentName, { minItems: 1, maxItems: 20 }),
});

export const SubscriptionSchema = Strict({
  id: Id,
  url: Type.String(),
  releaseName: Nullable(Type.String()),
  createdBy: Type.String(),
  createdAt: Timestamp,
});
export const SubscriptionList = Strict({ subscriptions: Type.Array(SubscriptionSchema) });
export const CreateSubscriptionRequest = Strict({
  url: Type.String({ minLength: 8, maxLength: 2000, pattern: '^https?://[^\\s]+$' }),
  releaseName: Type.Optional(ReleaseName),
});
