import { type Static, Type } from '@sinclair/typebox';
import { Id, Line, Nullable, Strict, Timestamp } from './common.ts';

export const TokenSchema = Strict({
  id: Id,
  name: Type.String(),
  userId: Id,
  username: Type.String(),
  /** The first characters of the secret, enough to recognise it, never enough to use it. */
  prefix: Type.String(),
  createdAt: Timestamp,
  expiresAt: Nullable(Timestamp),
  lastUsedAt: Nullable(Timestamp),
  revokedAt: Nullable(Timestamp),
});
export type TokenView = Static<typeof TokenSchema>;

export const TokenList = Strict({ tokens: Type.Array(TokenSchema) });

export const TokenName = Type.String({
  minLength: 1,
  maxLength: 100,
  pattern: '^[^\\u0000-\\u001f\\u007f]+$',
});
export const ExpiresInDays = Type.Integer({
  minimum: 1,
  maximum: 3650,
  description: 'Days until the token expires; default 90',
});

export const CreateTokenRequest = Strict({
  name: TokenName,
  expiresInDays: Type.Optional(ExpiresInDays),
  userId: Type.Optional(Id),
});
export type CreateTokenRequest = Static<typeof CreateTokenRequest>;

export const CreatedToken = Strict({
  token: TokenSchema,
  secret: Type.String({ description: 'The token itself. Shown once: Gantry keeps only its hash.' }),
});
export type CreatedToken = Static<typeof CreatedToken>;

export const TokenListQuery = Strict({
  all: Type.Optional(Type.Boolean({ description: 'Admins: list every user’s tokens' })),
  includeRevoked: Type.Optional(Type.Boolean()),
});

export const PasswordTokenRequest = Strict({
  username: Line({ minLength: 1, maxLength: 64 }),
  password: Type.String({ minLength: 1, maxLength: 1024 }),
  name: TokenName,
  expiresInDays: Type.Optional(ExpiresInDays),
});
export type PasswordTokenRequest = Static<typeof PasswordTokenRequest>;
