import { type Static, Type } from '@sinclair/typebox';
import { ARTIFACT_KINDS, COMPONENT_PATTERN, DIGEST_PATTERN, VERSION_PATTERN } from '../core/artifacts.ts';
import { Id, Line, Nullable, Strict, Timestamp } from './common.ts';

export const ComponentName = Type.String({
  pattern: COMPONENT_PATTERN,
  description: 'Lower-case letters, digits, . _ -; no path characters',
});
export const Version = Type.String({
  pattern: VERSION_PATTERN,
  description: 'e.g. 2.4.0; semver where it is semver',
});
export const Digest = Type.String({ pattern: DIGEST_PATTERN, description: 'sha256:<64 hex>' });
export const ArtifactKindSchema = Type.Union(ARTIFACT_KINDS.map((k) => Type.Literal(k)));

export const Provenance = Strict({
  builder: Nullable(Type.String()),
  sourceRepo: Nullable(Type.String()),
  revision: Nullable(Type.String()),
  builtAt: Nullable(Type.String()),
});

export const SignatureView = Strict({
  keyId: Type.String(),
  keyName: Nullable(Type.String()),
  /** True when the key is registered, not revoked, and the signature verifies now. */
  trusted: Type.Boolean(),
  problem: Nullable(Type.String()),
  addedAt: Timestamp,
  addedBy: Type.String(),
});

export const ArtifactSchema = Strict({
  id: Id,
  component: Type.String(),
  version: Type.String(),
  kind: ArtifactKindSchema,
  digest: Digest,
  size: Type.Integer(),
  filename: Nullable(Type.String()),
  state: Type.Union([Type.Literal('available'), Type.Literal('quarantined')]),
  quarantineReason: Nullable(Type.String()),
  provenance: Provenance,
  signatures: Type.Array(SignatureView),
  createdAt: Timestamp,
  createdBy: Type.String(),
  verifiedAt: Nullable(Timestamp),
});
export type ArtifactView = Static<typeof ArtifactSchema>;

export const ArtifactList = Strict({
  artifacts: Type.Array(ArtifactSchema),
  nextAfter: Nullable(Type.String()),
});

export const ArtifactListQuery = Strict({
  component: Type.Optional(ComponentName),
  version: Type.Optional(Version),
  kind: Type.Optional(ArtifactKindSchema),
  state: Type.Optional(Type.Union([Type.Literal('available'), Type.Literal('quarantined')])),
  after: Type.Optional(Id),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
});

const Text = Line({ minLength: 1, maxLength: 500 });
export const UploadQuery = Strict({
  component: ComponentName,
  version: Version,
  kind: Type.Optional(ArtifactKindSchema),
  filename: Type.Optional(
    Type.String({ minLength: 1, maxLength: 255, pattern: '^[^/\\\\\\u0000-\\u001f]+$' }),
  ),
  digest: Type.Optional(Digest),
  builder: Type.Optional(Text),
  sourceRepo: Type.Optional(Text),
  revision: Type.Optional(Text),
  builtAt: Type.Optional(Text),
});
export type UploadQuery = Static<typeof UploadQuery>;

export const AddSignatureRequest = Strict({
  keyId: Type.String({ minLength: 1, maxLength: 100 }),
  signature: Type.String({
    minLength: 1,
    maxLength: 400,
    description: 'base64 Ed25519 signature over the signed statement',
  }),
});

export const VerifyResult = Strict({
  id: Id,
  ok: Type.Boolean(),
  digest: Digest,
  actualDigest: Nullable(Type.String()),
  state: Type.String(),
  message: Type.String(),
});

export const UsageView = Strict({
  artifactId: Id,
  releases: Type.Array(Type.String()),
  changes: Type.Array(Type.String()),
  deployments: Type.Array(Type.String()),
  targets: Type.Array(Type.String()),
});

export const RetentionRequest = Strict({
  keep: Type.Integer({ minimum: 1, maximum: 10_000, description: 'newest versions to keep per component' }),
  component: Type.Optional(ComponentName),
  dryRun: Type.Optional(Type.Boolean()),
});

export const RetentionResult = Strict({
  dryRun: Type.Boolean(),
  removed: Type.Array(Strict({ id: Id, component: Type.String(), version: Type.String() })),
});

export const DigestParams = Strict({ digest: Digest });

export const KeySchema = Strict({
  id: Type.String(),
  name: Type.String(),
  algorithm: Type.Literal('ed25519'),
  publicKey: Type.String({ description: 'SPKI PEM' }),
  createdAt: Timestamp,
  createdBy: Type.String(),
  revokedAt: Nullable(Timestamp),
});
export type KeyView = Static<typeof KeySchema>;
export const KeyList = Strict({ keys: Type.Array(KeySchema) });
export const AddKeyRequest = Strict({
  name: Type.String({ minLength: 1, maxLength: 100, pattern: '^[^\\u0000-\\u001f]+$' }),
  publicKey: Type.String({ minLength: 1, maxLength: 2000, description: 'Ed25519 public key, SPKI PEM' }),
});
export const KeyParams = Strict({
  id: Type.String({ minLength: 1, maxLength: 100, pattern: '^[A-Za-z0-9:_-]+$' }),
});

export const EventSchema = Strict({
  id: Id,
  at: Timestamp,
  severity: Type.Union([Type.Literal('informational'), Type.Literal('warning'), Type.Literal('exception')]),
  kind: Type.String(),
  subject: Type.String(),
  message: Type.String(),
  details: Type.Record(Type.String(), Type.Unknown()),
});
export const EventList = Strict({ events: Type.Array(EventSchema) });
export const EventListQuery = Strict({
  severity: Type.Optional(
    Type.Union([Type.Literal('informational'), Type.Literal('warning'), Type.Literal('exception')]),
  ),
  subject: Type.Optional(Line({ maxLength: 200 })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
});
