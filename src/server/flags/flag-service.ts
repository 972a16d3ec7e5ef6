/**
 * Feature flags per environment, and their evaluation for applications. Evaluation answers every
 * flag of an environment for one subject in one call, with an ETag over the environment's flag
 * revisions, so applications can poll cheaply.
 */
import { createHash } from 'node:crypto';
import { policyOf } from '../../core/changes.ts';
import { GantryError } from '../../core/errors.ts';
import { type Evaluation, evaluateFlag, type FlagDefinition, type FlagRule } from '../../core/flags.ts';
import { actorOf, type Principal } from '../auth/principal.ts';
import type { FlagsTable } from '../db/schema.ts';
import { newSortableId } from '../ids.ts';
import { environmentByName } from '../releases/release-service.ts';
import { inTransaction, type TransactionDeps, type UnitOfWork } from '../unit-of-work.ts';

export interface FlagInput {
  enabled?: boolean | undefined;
  description?: string | undefined;
  percentage?: number | null | undefined;
  rules?: FlagRule[] | undefined;
  change?: string | undefined;
}

/** Asked before a flag changes in an environment that keeps flag changes under change control. */
export type FlagChangeCheck = (
  uow: UnitOfWork,
  environment: string,
  change: string | undefined,
) => Promise<void>;

/** A subject's bucket for a flag, 0–9999, the same on every server and every run. */
export function bucketOf(flagKey: string, subjectId: string): number {
  return createHash('sha256').update(`${flagKey}\u0000${subjectId}`).digest().readUInt32BE(0) % 10_000;
}

export class FlagService {
  constructor(
    private readonly deps: TransactionDeps,
    private readonly checkChange: FlagChangeCheck,
  ) {}

  async list(environment: string) {
    const env = await environmentByName(this.deps.database.db, environment);
    const rows = await this.deps.database.db
      .selectFrom('flags')
      .selectAll()
      .where('environment_id', '=', env.id)
      .orderBy('key')
      .execute();
    return rows.map((r) => flagView(r, env.name));
  }

  async get(environment: string, key: string) {
    const env = await environmentByName(this.deps.database.db, environment);
    const row = await this.deps.database.db
      .selectFrom('flags')
      .selectAll()
      .where('environment_id', '=', env.id)
      .where('key', '=', key)
      .executeTakeFirst();
    if (!row)
      throw new GantryError(
        'NOT_FOUND',
        `No flag '${key}' in ${environment}. See \`gantry flag list --env ${environment}\`.`,
      );
    return flagView(row, env.name);
  }

  /** Creates or changes a flag; only the fields given change. */
  async set(by: Principal, environment: string, key: string, input: FlagInput) {
    return inTransaction(this.deps, actorOf(by), async (uow) => {
      const env = await environmentByName(uow.db, environment);
      if (policyOf(JSON.parse(env.policy) as Record<string, unknown>).flagsUnderChange)
        await this.checkChange(uow, env.name, input.change);
      const now = uow.now.toISOString();
      const actor = actorOf(by).actor;
      const before = await uow.db
        .selectFrom('flags')
        .selectAll()
        .where('environment_id', '=', env.id)
        .where('key', '=', key)
        .executeTakeFirst();
      let row: FlagsTable;
      if (before) {
        row = {
          ...before,
          enabled: input.enabled === undefined ? before.enabled : input.enabled ? 1 : 0,
          description: input.description ?? before.description,
          percentage: input.percentage === undefined ? before.percentage : input.percentage,
          rules: input.rules ? JSON.stringify(input.rules) : before.rules,
          revision: before.revision + 1,
          updated_by: actor,
          updated_at: now,
        };
        const { id, ...changes } = row;
        await uow.db.updateTable('flags').set(changes).where('id', '=', id).execute();
      } else {
        row = {
          id: newSortableId(),
          environment_id: env.id,
          key,
          description: input.description ?? '',
          enabled: input.enabled ? 1 : 0,
          percentage: input.percentage ?? null,
          rules: JSON.stringify(input.rules ?? []),
          revision: 1,
          updated_by: actor,
          created_at: now,
          updated_at: now,
        };
        await uow.db.insertInto('flags').values(row).execute();
      }
      await uow.audit({
        action: before ? 'flag.changed' : 'flag.created',
        subject: `flag:${env.name}/${key}`,
        details: {
          enabled: row.enabled === 1,
          percentage: row.percentage,
          rules: JSON.parse(row.rules) as unknown,
          change: input.change ?? null,
          was: before
            ? {
                enabled: before.enabled === 1,
                percentage: before.percentage,
                rules: JSON.parse(before.rules) as unknown,
              }
            : null,
        },
      });
      return flagView(row, env.name);
    });
  }

  /**
   * Every flag of the environment for one subject, with an ETag that changes when any flag there
   * changes (and differs per subject and attributes).
   */
  async evaluate(
    environment: string,
    subject: { id: string; attributes: Record<string, string> },
  ): Promise<{ etag: string; result: { environment: string; subject: string; flags: Evaluation[] } }> {
    const env = await environmentByName(this.deps.database.db, environment);
    const rows = await this.deps.database.db
      .selectFrom('flags')
      .selectAll()
      .where('environment_id', '=', env.id)
      .orderBy('key')
      .execute();
    const flags = rows.map((r) => evaluateFlag(definitionOf(r), subject, bucketOf));
    const etag = `"${createHash('sha256')
      .update(JSON.stringify([env.id, subject, rows.map((r) => [r.key, r.revision])]))
      .digest('base64url')
      .slice(0, 27)}"`;
    return { etag, result: { environment: env.name, subject: subject.id, flags } };
  }
}

function definitionOf(row: FlagsTable): FlagDefinition {
  return {
    key: row.key,
    enabled: row.enabled === 1,
    percentage: row.percentage,
    rules: JSON.parse(row.rules) as FlagRule[],
  };
}

function flagView(row: FlagsTable, environment: string) {
  return {
    key: row.key,
    environment,
    description: row.description,
    enabled: row.enabled === 1,
    percentage: row.percentage,
    rules: JSON.parse(row.rules) as FlagRule[],
    revision: row.revision,
    updatedBy: row.updated_by,
    updatedAt: row.updated_at,
  };
}
