/** Rows of `users`, mapped to the domain `User`. */
import type { Kysely } from 'kysely';
import { isRole, type Role } from '../../core/roles.ts';
import type { Tables, UsersTable } from '../db/schema.ts';

export interface User {
  id: string;
  username: string;
  displayName: string;
  role: Role;
  passwordHash: string | null;
  disabled: boolean;
  /** For supplier users: the supplier whose scope they act in. */
  supplierId: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface NewUser {
  id: string;
  username: string;
  displayName: string;
  role: Role;
  passwordHash: string | null;
  supplierId?: string | null | undefined;
  createdAt: string;
}

export interface UserChanges {
  displayName?: string | undefined;
  role?: Role | undefined;
  disabled?: boolean | undefined;
  passwordHash?: string | undefined;
}

export class UserStore {
  constructor(private readonly db: Kysely<Tables>) {}

  async insert(user: NewUser): Promise<User> {
    await this.db
      .insertInto('users')
      .values({
        id: user.id,
        username: user.username,
        display_name: user.displayName,
        role: user.role,
        password_hash: user.passwordHash,
        disabled: 0,
        supplier_id: user.supplierId ?? null,
        created_at: user.createdAt,
        updated_at: user.createdAt,
      })
      .execute();
    return { ...user, supplierId: user.supplierId ?? null, disabled: false, updatedAt: user.createdAt };
  }

  async findById(id: string): Promise<User | undefined> {
    const row = await this.db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? toUser(row) : undefined;
  }

  async findByUsername(username: string): Promise<User | undefined> {
    const row = await this.db
      .selectFrom('users')
      .selectAll()
      .where('username', '=', username)
      .executeTakeFirst();
    return row ? toUser(row) : undefined;
  }

  async list(): Promise<User[]> {
    const rows = await this.db.selectFrom('users').selectAll().orderBy('username').execute();
    return rows.map(toUser);
  }

  async count(): Promise<number> {
    const row = await this.db
      .selectFrom('users')
      .select((eb) => eb.fn.countAll<string | number>().as('n'))
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  async countActiveAdmins(): Promise<number> {
    const row = await this.db
      .selectFrom('users')
      .select((eb) => eb.fn.countAll<string | number>().as('n'))
      .where('role', '=', 'admin')
      .where('disabled', '=', 0)
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  async update(id: string, changes: UserChanges, now: string): Promise<void> {
    await this.db
      .updateTable('users')
      .set({
        ...(changes.displayName !== undefined ? { display_name: changes.displayName } : {}),
        ...(changes.role !== undefined ? { role: changes.role } : {}),
        ...(changes.disabled !== undefined ? { disabled: changes.disabled ? 1 : 0 } : {}),
        ...(changes.passwordHash !== undefined ? { password_hash: changes.passwordHash } : {}),
        updated_at: now,
      })
      .where('id', '=', id)
      .execute();
  }
}

function toUser(row: UsersTable): User {
  if (!isRole(row.role)) throw new Error(`user ${row.id} has an unknown role '${row.role}'`);
  return {
    id: row.id,
    username: row.username,
    displayName: row.display_name,
    role: row.role,
    passwordHash: row.password_hash,
    disabled: Number(row.disabled) === 1,
    supplierId: row.supplier_id,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
