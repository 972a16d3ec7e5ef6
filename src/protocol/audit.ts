import { type Static, Type } from '@sinclair/typebox';
import { Line, Nullable, Strict, Timestamp } from './common.ts';

export const AuditEntrySchema = Strict({
  seq: Type.Integer(),
  at: Timestamp,
  actor: Type.String(),
  source: Nullable(Type.String()),
  action: Type.String(),
  subject: Type.String(),
  details: Type.Record(Type.String(), Type.Unknown()),
  prevHash: Type.String(),
  hash: Type.String(),
});
export type AuditEntryView = Static<typeof AuditEntrySchema>;

const Filter = Line({ minLength: 1, maxLength: 200 });

export const AuditListQuery = Strict({
  action: Type.Optional(Filter),
  actor: Type.Optional(Filter),
  subject: Type.Optional(Filter),
  since: Type.Optional(Timestamp),
  until: Type.Optional(Timestamp),
  after: Type.Optional(
    Type.Integer({
      minimum: 0,
      maximum: 2_147_483_647,
      description: 'Return entries with a sequence number above this',
    }),
  ),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, description: 'Default 100' })),
});
export type AuditListQuery = Static<typeof AuditListQuery>;

export const AuditPage = Strict({
  entries: Type.Array(AuditEntrySchema),
  nextAfter: Nullable(
    Type.Integer({ description: 'Pass as `after` for the next page; null on the last page' }),
  ),
});
export type AuditPage = Static<typeof AuditPage>;

export const AuditVerifyResult = Strict({
  ok: Type.Boolean(),
  checked: Type.Integer(),
  head: Nullable(Strict({ seq: Type.Integer(), hash: Type.String() })),
  broken: Nullable(Strict({ seq: Type.Integer(), kind: Type.String(), message: Type.String() })),
});
export type AuditVerifyResult = Static<typeof AuditVerifyResult>;
