import { type Static, Type } from '@sinclair/typebox';
import { ROLES } from '../core/roles.ts';
import { Id, Line, Nullable, Strict, Timestamp } from './common.ts';

export const RoleSchema = Type.Union(
  ROLES.map((r) => Type.Literal(r)),
  { description: 'admin, change-authority, release-manager, deployer, supplier or viewer' },
);

export const Username = Type.String({
  minLength: 2,
  maxLength: 64,
  pattern: '^[a-z0-9][a-z0-9._-]*$',
  description: 'Lower-case letters, digits, dot, dash, underscore; starts with a letter or digit',
});

export const Password = Type.String({
  minLength: 12,
  maxLength: 1024,
  description: 'At least 12 characters',
});

export const UserSchema = Strict({
  id: Id,
  username: Type.String(),
  displayName: Type.String(),
  role: RoleSchema,
  disabled: Type.Boolean(),
  hasPassword: Type.Boolean(),
  supplierId: Nullable(Type.String({ description: 'For supplier users: whose scope they act in' })),
  createdAt: Timestamp,
  updatedAt: Timestamp,
});
export type UserView = Static<typeof UserSchema>;

export const UserList = Strict({ users: Type.Array(UserSchema) });

export const CreateUserRequest = Strict({
  username: Username,
  displayName: Type.Optional(Line({ maxLength: 200 })),
  role: RoleSchema,
  password: Type.Optional(Password),
  supplier: Type.Optional(
    Type.String({ pattern: '^[a-z0-9][a-z0-9._-]{0,62}$', description: 'supplier name, for supplier users' }),
  ),
});
export type CreateUserRequest = Static<typeof CreateUserRequest>;

export const UpdateUserRequest = Strict(
  {
    displayName: Type.Optional(Line({ maxLength: 200 })),
    role: Type.Optional(RoleSchema),
    disabled: Type.Optional(Type.Boolean()),
    password: Type.Optional(Password),
  },
  { minProperties: 1 },
);
export type UpdateUserRequest = Static<typeof UpdateUserRequest>;

export const ChangeOwnPasswordRequest = Strict({
  currentPassword: Type.String({ maxLength: 1024 }),
  newPassword: Password,
});
export type ChangeOwnPasswordRequest = Static<typeof ChangeOwnPasswordRequest>;

export const LoginRequest = Strict({
  username: Line({ minLength: 1, maxLength: 64 }),
  password: Type.String({ minLength: 1, maxLength: 1024 }),
});
export type LoginRequest = Static<typeof LoginRequest>;

export const LoginResponse = Strict({
  user: UserSchema,
  csrfToken: Type.String({
    description: 'Send as X-CSRF-Token on every state-changing request made with the session cookie',
  }),
  expiresAt: Timestamp,
});

export const WhoamiResponse = Strict({
  user: UserSchema,
  via: Type.Union([Type.Literal('token'), Type.Literal('session')]),
  tokenId: Nullable(Id),
  permissions: Type.Array(Type.String()),
  csrfToken: Nullable(Type.String()),
});
export type WhoamiResponse = Static<typeof WhoamiResponse>;
