/**
 * The inventory: environments (in order, each with a policy and platform standards), suppliers,
 * and targets. A supplier user sees only the targets of its own supplier; anything outside a
 * caller's scope answers exactly like something that does not exist.
 */
import { type Kysely, sql } from 'kysely';
import { type EnvironmentPolicy, policyOf } from '../../core/changes.ts';
import { GantryError } from '../../core/errors.ts';
import {
  type HostFacts,
  type Labels,
  type Liveness,
  liveness,
  type PlatformStandards,
  standardsProblems,
} from '../../core/inventory.ts';
import { actorOf, type Principal } from '../auth/principal.ts';
import { isUniqueViolation } from '../db/db-errors.ts';
import type { EnvironmentsTable, Tables, TargetsTable } from '../db/schema.ts';
import { newSortableId } from '../ids.ts';
import { inTransaction, type TransactionDeps, type UnitOfWork } from '../unit-of-work.ts';

/** Seconds between agent heartbeats; liveness is judged against it. */
export const HEARTBEAT_SECONDS = 15;

export interface Environment {
  id: string;
  name: string;
  position: number;
  policy: EnvironmentPolicy;
  standards: PlatformStandards;
  createdAt: string;
  updatedAt: string;
}

export interface Target {
  id: string;
  name: string;
  environment: string;
  labels: Labels;
  supplierId: string | null;
  facts: HostFacts;
  state: Liveness | 'retired';
  lastSeenAt: string | null;
  /** Why the target does not meet its environment's platform standards; empty when it does. */
  standardsProblems: string[];
  createdAt: string;
}

export class InventoryService {
  constructor(
    private readonly deps: TransactionDeps,
    /** Seconds between agent heartbeats (GANTRY_HEARTBEAT_SECONDS); liveness is judged against it. */
    readonly heartbeatSeconds = HEARTBEAT_SECONDS,
  ) {}

  /** Told when a target's agents lose their credentials (the enrollment service forgets them). */
  onAgentsRevoked: ((targetId: string) => void) | undefined;
  /** Told inside the transaction that revokes them (the enrollment service tells the other replicas). */
  announceAgentsRevoked: ((uow: UnitOfWork, targetId: string) => Promise<void>) | undefined;

  /** Environments in order; a supplier sees only those that hold targets of its own. */
  async listEnvironments(by: Principal): Promise<Environment[]> {
    let query = this.deps.database.db.selectFrom('environments').selectAll();
    const scope = supplierScope(by);
    if (scope !== undefined) {
      query = query.where('id', 'in', (eb) =>
        eb.selectFrom('targets').select('environment_id').where('supplier_id', '=', scope),
      );
    }
    return (await query.orderBy('position').orderBy('name').execute()).map(toEnvironment);
  }

  async environment(by: Principal, name: string): Promise<Environment> {
    let query = this.deps.database.db.selectFrom('environments').selectAll().where('name', '=', name);
    const scope = supplierScope(by);
    if (scope !== undefined) {
      query = query.where('id', 'in', (eb) =>
        eb.selectFrom('targets').select('environment_id').where('supplier_id', '=', scope),
      );
    }
    const row = await query.executeTakeFirst();
    if (!row)
      throw new GantryError('NOT_FOUND', `No environment '${name}'. See \`gantry env list\`.`, { name });
    return toEnvironment(row);
  }

  async createEnvironment(
    by: Principal,
    input: { name: string; position?: number | undefined; standards?: PlatformStandards | undefined },
  ): Promise<Environment> {
    try {
      return await inTransaction(this.deps, actorOf(by), async (uow) => {
        const last = await uow.db
          .selectFrom('environments')
          .select((eb) => eb.fn.max('position').as('p'))
          .executeTakeFirst();
        const row: EnvironmentsTable = {
          id: newSortableId(),
          name: input.name,
          position: input.position ?? Number(last?.p ?? 0) + 10,
          policy: '{}',
          standards: JSON.stringify(input.standards ?? {}),
          created_at: uow.now.toISOString(),
          updated_at: uow.now.toISOString(),
        };
        await uow.db.insertInto('environments').values(row).execute();
        await uow.audit({
          action: 'environment.created',
          subject: `environment:${row.id}`,
          details: { name: row.name, position: row.position, standards: input.standards ?? {} },
        });
        return toEnvironment(row);
      });
    } catch (error) {
      if (isUniqueViolation(error))
        throw new GantryError('CONFLICT', `An environment named '${input.name}' already exists.`, {
          field: '/name',
        });
      throw error;
    }
  }

  async updateEnvironment(
    by: Principal,
    name: string,
    input: {
      position?: number | undefined;
      standards?: PlatformStandards | undefined;
      policy?: Partial<EnvironmentPolicy> | undefined;
    },
  ): Promise<Environment> {
    return inTransaction(this.deps, actorOf(by), async (uow) => {
      // Read inside the transaction: on SQLite a read outside it would wait for it forever.
      const row = await uow.db
        .selectFrom('environments')
        .selectAll()
        .where('name', '=', name)
        .executeTakeFirst();
      if (!row)
        throw new GantryError('NOT_FOUND', `No environment '${name}'. See \`gantry env list\`.`, { name });
      const before = toEnvironment(row);
      await uow.db
        .updateTable('environments')
        .set({
          ...(input.position !== undefined ? { position: input.position } : {}),
          // Standards not named keep their value: changing the Node.js floor does not drop the OS list.
          ...(input.standards !== undefined
            ? { standards: JSON.stringify({ ...before.standards, ...input.standards }) }
            : {}),
          ...(input.policy !== undefined
            ? { policy: JSON.stringify({ ...before.policy, ...input.policy }) }
            : {}),
          updated_at: uow.now.toISOString(),
        })
        .where('id', '=', before.id)
        .execute();
      await uow.audit({
        action: 'environment.updated',
        subject: `environment:${before.id}`,
        details: { name, ...input },
      });
      const after = await uow.db
        .selectFrom('environments')
        .selectAll()
        .where('id', '=', before.id)
        .executeTakeFirstOrThrow();
      return toEnvironment(after);
    });
  }

  async listSuppliers(): Promise<Array<{ id: string; name: string; createdAt: string }>> {
    const rows = await this.deps.database.db.selectFrom('suppliers').selectAll().orderBy('name').execute();
    return rows.map((r) => ({ id: r.id, name: r.name, createdAt: r.created_at }));
  }

  async createSupplier(
    by: Principal,
    name: string,
  ): Promise<{ id: string; name: string; createdAt: string }> {
    try {
      return await inTransaction(this.deps, actorOf(by), async (uow) => {
        const row = { id: newSortableId(), name, created_at: uow.now.toISOString() };
        await uow.db.insertInto('suppliers').values(row).execute();
        await uow.audit({ action: 'supplier.created', subject: `supplier:${row.id}`, details: { name } });
        return { id: row.id, name, createdAt: row.created_at };
      });
    } catch (error) {
      if (isUniqueViolation(error))
        throw new GantryError('CONFLICT', `A supplier named '${name}' already exists.`, { field: '/name' });
      throw error;
    }
  }

  /** Targets the caller may see, optionally in one environment. */
  async listTargets(by: Principal, filter: { environment?: string | undefined }): Promise<Target[]> {
    let query = this.deps.database.db
      .selectFrom('targets')
      .innerJoin('environments', 'environments.id', 'targets.environment_id')
      .selectAll('targets')
      .select(['environments.name as environment_name', 'environments.standards as environment_standards']);
    if (filter.environment !== undefined) query = query.where('environments.name', '=', filter.environment);
    const scope = supplierScope(by);
    if (scope !== undefined) query = query.where('targets.supplier_id', '=', scope);
    const rows = await query.orderBy('environments.position').orderBy('targets.name').execute();
    const now = this.deps.clock.now();
    return rows.map((r) =>
      toTarget(r, r.environment_name, r.environment_standards, now, this.heartbeatSeconds),
    );
  }

  async target(by: Principal, ref: string): Promise<Target> {
    const scope = supplierScope(by);
    let query = this.deps.database.db
      .selectFrom('targets')
      .innerJoin('environments', 'environments.id', 'targets.environment_id')
      .selectAll('targets')
      .select(['environments.name as environment_name', 'environments.standards as environment_standards'])
      .where((eb) => eb.or([eb('targets.id', '=', ref), eb('targets.name', '=', ref)]))
      // An id always wins over a name that happens to look like it.
      .orderBy(sql`case when targets.id = ${ref} then 0 else 1 end`)
      .limit(1);
    if (scope !== undefined) query = query.where('targets.supplier_id', '=', scope);
    const row = await query.executeTakeFirst();
    if (!row) throw new GantryError('NOT_FOUND', `No target '${ref}'. See \`gantry targets list\`.`, { ref });
    return toTarget(
      row,
      row.environment_name,
      row.environment_standards,
      this.deps.clock.now(),
      this.heartbeatSeconds,
    );
  }

  async retireTarget(by: Principal, ref: string): Promise<Target> {
    const target = await this.target(by, ref);
    if (target.state === 'retired') return target;
    // The agents' remembered credentials are forgotten before (a lookup that overlaps the commit is
    // then not remembered) and after it.
    this.onAgentsRevoked?.(target.id);
    await inTransaction(this.deps, actorOf(by), async (uow) => {
      // Only the retirement that changes the row is recorded: two at once write one entry.
      const changed = await uow.db
        .updateTable('targets')
        .set({ retired_at: uow.now.toISOString() })
        .where('id', '=', target.id)
        .where('retired_at', 'is', null)
        .executeTakeFirst();
      if (Number(changed.numUpdatedRows) === 0) return;
      await uow.db
        .updateTable('agents')
        .set({ revoked_at: uow.now.toISOString() })
        .where('target_id', '=', target.id)
        .where('revoked_at', 'is', null)
        .execute();
      await this.announceAgentsRevoked?.(uow, target.id);
      await uow.audit({
        action: 'target.retired',
        subject: `target:${target.id}`,
        details: { name: target.name },
      });
    }).finally(() => this.onAgentsRevoked?.(target.id));
    return this.target(by, ref);
  }
}

/** The id of the supplier named `name`, or NOT_FOUND saying how to make one. */
export async function supplierIdByName(db: Kysely<Tables>, name: string): Promise<string> {
  const supplier = await db.selectFrom('suppliers').select('id').where('name', '=', name).executeTakeFirst();
  if (!supplier) {
    throw new GantryError(
      'NOT_FOUND',
      `No supplier '${name}'. See \`gantry suppliers list\`, or create it with \`gantry suppliers create\`.`,
      {
        field: '/supplier',
      },
    );
  }
  return supplier.id;
}

/** The supplier a caller is confined to, or undefined for callers who see everything. */
export function supplierScope(by: Principal): string | undefined {
  if (by.user.role !== 'supplier') return undefined;
  // A supplier user with no supplier sees nothing: an id no row has.
  return by.user.supplierId ?? `no-supplier:${by.user.id}`;
}

function toEnvironment(row: EnvironmentsTable): Environment {
  return {
    id: row.id,
    name: row.name,
    position: Number(row.position),
    policy: policyOf(JSON.parse(row.policy) as Record<string, unknown>),
    standards: JSON.parse(row.standards) as PlatformStandards,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function toTarget(
  row: TargetsTable,
  environment: string,
  standardsJson: string,
  now: Date,
  heartbeatSeconds: number,
): Target {
  const facts = JSON.parse(row.facts) as HostFacts;
  return {
    id: row.id,
    name: row.name,
    environment,
    labels: JSON.parse(row.labels) as Labels,
    supplierId: row.supplier_id,
    facts,
    state: row.retired_at
      ? 'retired'
      : liveness(row.last_seen_at ? new Date(row.last_seen_at) : null, now, heartbeatSeconds),
    lastSeenAt: row.last_seen_at,
    standardsProblems: standardsProblems(JSON.parse(standardsJson) as PlatformStandards, facts),
    createdAt: row.created_at,
  };
}
