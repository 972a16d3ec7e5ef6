/**
 * The ledger: for every target and component, what version is active, what was before, since
 * when, and what put it there — a deployment, or an external record for work done outside Gantry
 * (a supplier installing firmware). Agents report what they actually run; a version the ledger
 * does not expect is drift, kept and announced as a warning event until it is resolved.
 */

import { type Kysely, sql } from 'kysely';
import { GantryError } from '../../core/errors.ts';
import { actorOf, type Principal } from '../auth/principal.ts';
import type { LedgerEntriesTable, Tables } from '../db/schema.ts';
import { EventLog } from '../events/event-log.ts';
import { newSortableId } from '../ids.ts';
import { inTransaction, type TransactionDeps } from '../unit-of-work.ts';
import type { AgentIdentity } from './enrollment-service.ts';
import { type InventoryService, supplierScope } from './inventory-service.ts';

export interface LedgerEntry {
  id: string;
  target: string;
  component: string;
  version: string;
  digest: string | null;
  previousVersion: string | null;
  source: string;
  reference: string | null;
  note: string | null;
  recordedBy: string;
  at: string;
}

export interface LedgerPosition extends LedgerEntry {
  environment: string;
  /** What the agent reports instead, when it differs. */
  drift: { reportedVersion: string; since: string } | null;
}

export class LedgerService {
  constructor(
    private readonly deps: TransactionDeps,
    private readonly inventory: InventoryService,
  ) {}

  /** What runs where now, for the targets the caller may see. */
  async current(
    by: Principal,
    filter: { environment?: string | undefined; component?: string | undefined; target?: string | undefined },
  ): Promise<LedgerPosition[]> {
    let query = this.deps.database.db
      .selectFrom('ledger_entries as e')
      .innerJoin('targets as t', 't.id', 'e.target_id')
      .innerJoin('environments as env', 'env.id', 't.environment_id')
      .leftJoin('drift as d', (join) =>
        join.onRef('d.target_id', '=', 'e.target_id').onRef('d.component', '=', 'e.component'),
      )
      .selectAll('e')
      .select([
        't.name as target_name',
        'env.name as environment_name',
        'd.reported_version as drift_version',
        'd.since as drift_since',
      ])
      .where('e.id', '=', (eb) =>
        eb
          .selectFrom('ledger_entries as e2')
          .select((eb2) => eb2.fn.max('e2.id').as('m'))
          .whereRef('e2.target_id', '=', 'e.target_id')
          .whereRef('e2.component', '=', 'e.component'),
      );
    if (filter.environment !== undefined) query = query.where('env.name', '=', filter.environment);
    if (filter.component !== undefined) query = query.where('e.component', '=', filter.component);
    if (filter.target !== undefined) query = query.where('t.name', '=', filter.target);
    const scope = supplierScope(by);
    if (scope !== undefined) query = query.where('t.supplier_id', '=', scope);
    const rows = await query.orderBy('env.name').orderBy('t.name').orderBy('e.component').execute();
    return rows.map((r) => ({
      ...toEntry(r, r.target_name),
      environment: r.environment_name,
      drift: r.drift_version ? { reportedVersion: r.drift_version, since: r.drift_since as string } : null,
    }));
  }

  /** Every change on one target, oldest first. */
  async history(by: Principal, targetRef: string, component?: string): Promise<LedgerEntry[]> {
    const target = await this.inventory.target(by, targetRef);
    let query = this.deps.database.db
      .selectFrom('ledger_entries')
      .selectAll()
      .where('target_id', '=', target.id);
    if (component !== undefined) query = query.where('component', '=', component);
    return (await query.orderBy('id').execute()).map((r) => toEntry(r, target.name));
  }

  /** Records a change made outside Gantry (a supplier's firmware update, a hand fix). */
  async recordExternal(
    by: Principal,
    input: {
      target: string;
      component: string;
      version: string;
      digest?: string | undefined;
      reference: string;
      note?: string | undefined;
    },
  ): Promise<LedgerEntry> {
    const target = await this.inventory.target(by, input.target);
    if (target.state === 'retired')
      throw new GantryError('CONFLICT', `Target '${target.name}' is retired; nothing runs there any more.`);
    return inTransaction(this.deps, actorOf(by), async (uow) => {
      const previous = await activeVersion(uow.db, target.id, input.component);
      const row: LedgerEntriesTable = {
        id: newSortableId(),
        target_id: target.id,
        component: input.component,
        version: input.version,
        digest: input.digest ?? null,
        previous_version: previous,
        source: 'external',
        reference: input.reference,
        note: input.note ?? null,
        recorded_by: actorOf(by).actor,
        at: uow.now.toISOString(),
      };
      await uow.db.insertInto('ledger_entries').values(row).execute();
      await uow.audit({
        action: 'ledger.external_recorded',
        subject: `target:${target.id}`,
        details: {
          target: target.name,
          component: input.component,
          version: input.version,
          previous: row.previous_version,
          reference: input.reference,
        },
      });
      // A recorded change that matches what the agent reports resolves the drift.
      const drift = await uow.db
        .selectFrom('drift')
        .selectAll()
        .where('target_id', '=', target.id)
        .where('component', '=', input.component)
        .executeTakeFirst();
      if (drift && drift.reported_version === input.version) {
        await uow.db
          .deleteFrom('drift')
          .where('target_id', '=', target.id)
          .where('component', '=', input.component)
          .execute();
      }
      return toEntry(row, target.name);
    });
  }

  /**
   * Compares what an agent reports running with what the ledger expects. A new difference is
   * kept and announced once as a warning event; a difference that goes away is cleared.
   */
  async reportInstalled(
    agent: AgentIdentity,
    installed: ReadonlyArray<{ component: string; version: string }>,
  ): Promise<void> {
    if (installed.length === 0) return;
    const db = this.deps.database.db;
    for (const item of installed) {
      const expected = await activeVersion(db, agent.targetId, item.component);
      const known = await db
        .selectFrom('drift')
        .selectAll()
        .where('target_id', '=', agent.targetId)
        .where('component', '=', item.component)
        .executeTakeFirst();
      const now = this.deps.clock.now().toISOString();
      if (expected === item.version) {
        if (known)
          await db
            .deleteFrom('drift')
            .where('target_id', '=', agent.targetId)
            .where('component', '=', item.component)
            .execute();
        continue;
      }
      if (known?.reported_version === item.version) continue;
      await db.transaction().execute(async (trx) => {
        await trx
          .deleteFrom('drift')
          .where('target_id', '=', agent.targetId)
          .where('component', '=', item.component)
          .execute();
        await trx
          .insertInto('drift')
          .values({
            target_id: agent.targetId,
            component: item.component,
            expected_version: expected ?? null,
            reported_version: item.version,
            since: now,
          })
          .execute();
        await new EventLog(trx).record({
          at: now,
          severity: 'warning',
          kind: 'inventory.drift',
          subject: `target:${agent.targetId}`,
          message: `${agent.targetName} runs ${item.component} ${item.version}, but the ledger expects ${expected ?? 'nothing'}`,
          details: {
            target: agent.targetName,
            component: item.component,
            expected: expected ?? null,
            reported: item.version,
          },
        });
      });
    }
  }
}

/** The version the ledger says is active for a component on a target, or null. */
export async function activeVersion(
  db: Kysely<Tables>,
  targetId: string,
  component: string,
): Promise<string | null> {
  const row = await db
    .selectFrom('ledger_entries')
    .select('version')
    .where('target_id', '=', targetId)
    .where('component', '=', component)
    .orderBy('id', 'desc')
    .limit(1)
    .executeTakeFirst();
  return row?.version ?? null;
}

/**
 * The version the ledger says is active for each of `components` on every target that has one:
 * target id → component → version, from one query (the newest entry per target and component).
 */
export async function activeVersions(
  db: Kysely<Tables>,
  components: readonly string[],
): Promise<Map<string, Map<string, string>>> {
  const result = new Map<string, Map<string, string>>();
  if (components.length === 0) return result;
  const rows = await db
    .selectFrom('ledger_entries as l')
    .innerJoin(
      (eb) =>
        eb
          .selectFrom('ledger_entries')
          .select(['target_id', 'component', (e) => e.fn.max('id').as('newest')])
          .where('component', 'in', components)
          .groupBy(['target_id', 'component'])
          .as('m'),
      (join) => join.onRef('m.newest', '=', 'l.id'),
    )
    .select(['l.target_id', 'l.component', 'l.version'])
    .execute();
  for (const row of rows) {
    const forTarget = result.get(row.target_id) ?? new Map<string, string>();
    forTarget.set(row.component, row.version);
    result.set(row.target_id, forTarget);
  }
  return result;
}

/**
 * Records in the ledger that an agent made `version` of `component` active on a target, unless
 * the ledger says so already; the digest is the media library's for that version, and the entry
 * names the version before. One statement, read and write together; true when an entry was added.
 */
export async function recordActivation(
  db: Kysely<Tables>,
  entry: {
    targetId: string;
    component: string;
    version: string;
    reference: string;
    note: string;
    recordedBy: string;
    at: string;
  },
): Promise<boolean> {
  const { targetId, component, version } = entry;
  const result = await sql`
    insert into ledger_entries
      (id, target_id, component, version, digest, previous_version, source, reference, note, recorded_by, at)
    select ${newSortableId()}, ${targetId}, ${component}, ${version},
      (select 'sha256:' || digest from artifacts where component = ${component} and version = ${version}),
      p.version, 'step', ${entry.reference}, ${entry.note}, ${entry.recordedBy}, ${entry.at}
    from (
      select (
        select version from ledger_entries
        where target_id = ${targetId} and component = ${component}
        order by id desc limit 1
      ) as version
    ) p
    where p.version is null or p.version <> ${version}`.execute(db);
  return Number(result.numAffectedRows ?? 0) > 0;
}

function toEntry(row: LedgerEntriesTable, target: string): LedgerEntry {
  return {
    id: row.id,
    target,
    component: row.component,
    version: row.version,
    digest: row.digest,
    previousVersion: row.previous_version,
    source: row.source,
    reference: row.reference,
    note: row.note,
    recordedBy: row.recorded_by,
    at: row.at,
  };
}
