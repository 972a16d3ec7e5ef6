/** Managing users: create, change, disable. Every change is audited; no user is ever deleted. */
import { randomUUID } from 'node:crypto';
import { GantryError } from '../../core/errors.ts';
import type { Role } from '../../core/roles.ts';
import { actorOf, type Principal } from '../auth/principal.ts';
import { SessionStore } from '../auth/session-store.ts';
import { isUniqueViolation } from '../db/db-errors.ts';
import { supplierIdByName } from '../inventory/inventory-service.ts';
import { TokenStore } from '../tokens/token-store.ts';
import { inTransaction, type TransactionDeps } from '../unit-of-work.ts';
import { hashPassword } from './passwords.ts';
import { type User, type UserChanges, UserStore } from './user-store.ts';

export interface CreateUserInput {
  username: string;
  displayName?: string | undefined;
  role: Role;
  password?: string | undefined;
  /** Supplier name; a supplier user acts only inside this supplier's scope. */
  supplier?: string | undefined;
}

export interface UpdateUserInput {
  displayName?: string | undefined;
  role?: Role | undefined;
  disabled?: boolean | undefined;
  password?: string | undefined;
}

export type UserServiceDeps = TransactionDeps;

export class UserService {
  constructor(private readonly deps: UserServiceDeps) {}

  list(): Promise<User[]> {
    return new UserStore(this.deps.database.db).list();
  }

  async get(id: string): Promise<User> {
    const user = await new UserStore(this.deps.database.db).findById(id);
    if (!user) throw notFound(id);
    return user;
  }

  async create(by: Principal, input: CreateUserInput): Promise<User> {
    const passwordHash = input.password !== undefined ? await hashPassword(input.password) : null;
    try {
      return await inTransaction(this.deps, actorOf(by), async (uow) => {
        const supplierId =
          input.supplier !== undefined ? await supplierIdByName(uow.db, input.supplier) : null;
        const user = await new UserStore(uow.db).insert({
          id: randomUUID(),
          username: input.username,
          displayName: input.displayName ?? input.username,
          role: input.role,
          passwordHash,
          supplierId,
          createdAt: uow.now.toISOString(),
        });
        await uow.audit({
          action: 'user.created',
          subject: `user:${user.id}`,
          details: {
            username: user.username,
            role: user.role,
            hasPassword: passwordHash !== null,
            supplier: input.supplier ?? null,
          },
        });
        return user;
      });
    } catch (error) {
      if (isUniqueViolation(error)) {
        throw new GantryError(
          'CONFLICT',
          `A user named '${input.username}' already exists. Choose another name.`,
          {
            field: '/username',
          },
        );
      }
      throw error;
    }
  }

  async update(by: Principal, id: string, input: UpdateUserInput): Promise<User> {
    const passwordHash = input.password !== undefined ? await hashPassword(input.password) : undefined;
    return inTransaction(this.deps, actorOf(by), async (uow) => {
      const users = new UserStore(uow.db);
      const before = await users.findById(id);
      if (!before) throw notFound(id);
      const losesAdmin =
        before.role === 'admin' &&
        !before.disabled &&
        ((input.role !== undefined && input.role !== 'admin') || input.disabled === true);
      if (losesAdmin && (await users.countActiveAdmins()) <= 1) {
        throw new GantryError(
          'CONFLICT',
          `'${before.username}' is the last active admin; make another user admin before demoting or disabling this one.`,
        );
      }
      const changes: UserChanges = {
        displayName: input.displayName,
        role: input.role,
        disabled: input.disabled,
        passwordHash,
      };
      await users.update(id, changes, uow.now.toISOString());
      const changed: Record<string, unknown> = {};
      if (input.displayName !== undefined && input.displayName !== before.displayName)
        changed.displayName = input.displayName;
      if (input.role !== undefined && input.role !== before.role)
        changed.role = { from: before.role, to: input.role };
      if (input.disabled !== undefined && input.disabled !== before.disabled)
        changed.disabled = input.disabled;
      if (passwordHash !== undefined) changed.password = 'changed';
      if (input.disabled === true || passwordHash !== undefined) {
        // A disabled user or a reset password ends every open dashboard session at once.
        await new SessionStore(uow.db).deleteAllOfUser(id);
      }
      await uow.audit({
        action: 'user.updated',
        subject: `user:${id}`,
        details: { username: before.username, changed },
      });
      if (input.disabled === true) {
        // Each token ends with an entry of its own, so its history is complete under its subject.
        const tokens = new TokenStore(uow.db);
        for (const token of await tokens.list({ userId: id, includeRevoked: false })) {
          await tokens.revoke(token.id, uow.now.toISOString());
          await uow.audit({
            action: 'token.revoked',
            subject: `token:${token.id}`,
            details: { name: token.name, userId: id, username: before.username, reason: 'user disabled' },
          });
        }
      }
      const after = await users.findById(id);
      if (!after) throw notFound(id);
      return after;
    });
  }
}

function notFound(id: string): GantryError {
  return new GantryError('NOT_FOUND', `No user with id '${id}'. List users with \`gantry users list\`.`, {
    id,
  });
}
