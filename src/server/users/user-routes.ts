/** /api/v1/users and /api/v1/me/password */
import { Type } from '@sinclair/typebox';
import { IdParams } from '../../protocol/common.ts';
import {
  ChangeOwnPasswordRequest,
  CreateUserRequest,
  UpdateUserRequest,
  UserList,
  UserSchema,
  type UserView,
} from '../../protocol/users.ts';
import type { AuthService } from '../auth/auth-service.ts';
import { type App, principalOf, responses } from '../http/route-kit.ts';
import type { UserService } from './user-service.ts';
import type { User } from './user-store.ts';

export function toUserView(user: User): UserView {
  return {
    id: user.id,
    username: user.username,
    displayName: user.displayName,
    role: user.role,
    disabled: user.disabled,
    hasPassword: user.passwordHash !== null,
    supplierId: user.supplierId,
    createdAt: user.createdAt,
    updatedAt: user.updatedAt,
  };
}

export function registerUserRoutes(app: App, users: UserService, auth: AuthService): void {
  app.get(
    '/api/v1/users',
    {
      config: { permission: 'users:read' },
      schema: { tags: ['users'], summary: 'List users', response: responses(UserList) },
    },
    async () => ({ users: (await users.list()).map(toUserView) }),
  );

  app.post(
    '/api/v1/users',
    {
      config: { permission: 'users:write' },
      schema: {
        tags: ['users'],
        summary: 'Create a user',
        body: CreateUserRequest,
        response: responses(UserSchema, 201),
      },
    },
    async (request, reply) => {
      const user = await users.create(principalOf(request), request.body);
      return reply.status(201).send(toUserView(user));
    },
  );

  app.get(
    '/api/v1/users/:id',
    {
      config: { permission: 'users:read' },
      schema: { tags: ['users'], summary: 'Show a user', params: IdParams, response: responses(UserSchema) },
    },
    async (request) => toUserView(await users.get(request.params.id)),
  );

  app.patch(
    '/api/v1/users/:id',
    {
      config: { permission: 'users:write' },
      schema: {
        tags: ['users'],
        summary: 'Change a user’s name, role, password or disabled state',
        params: IdParams,
        body: UpdateUserRequest,
        response: responses(UserSchema),
      },
    },
    async (request) => toUserView(await users.update(principalOf(request), request.params.id, request.body)),
  );

  app.put(
    '/api/v1/me/password',
    {
      config: { permission: 'authenticated' },
      schema: {
        tags: ['users'],
        summary: 'Change your own password',
        body: ChangeOwnPasswordRequest,
        response: responses(Type.Null(), 204),
      },
    },
    async (request, reply) => {
      await auth.changeOwnPassword(
        principalOf(request),
        request.body.currentPassword,
        request.body.newPassword,
      );
      return reply.status(204).send(null);
    },
  );
}
