/**
 * Releases: a named, versioned set of component → artifact digest, with notes and evidence. A
 * release is frozen the moment a submitted change names it, so what is approved is what runs.
 * Making a release available in an environment (switching its flags on, telling subscribers) is
 * a separate act from deploying it.
 */
import type { Kysely } from 'kysely';
import { policyOf } from '../../core/changes.ts';
import { GantryError } from '../../core/errors.ts';
import type { CreateReleaseRequest } from '../../protocol/releases.ts';
import { actorOf, type Principal } from '../auth/principal.ts';
import { findChange } from '../changes/change-service.ts';
import { isUniqueViolation } from '../db/db-errors.ts';
import type { ReleasesTable, Tables } from '../db/schema.ts';
import { withDigestPrefix } from '../dml/artifact-service.ts';
import { newSortableId } from '../ids.ts';
import { inTransaction, type TransactionDeps, type UnitOfWork } from '../unit-of-work.ts';

export interface ReleasePiece {
  component: string;
  version: string;
  digest: string;
}

export interface Evidence {
  id: string;
  name: string;
  kind: 'test-report' | 'scan' | 'other';
  digest: string;
  passed: boolean;
  summary: string;
  addedBy: string;
  addedAt: string;
}

export interface Outcome {
  id: string;
  environment: string;
  outcome: 'succeeded' | 'failed';
  deploymentId: string | null;
  changeId: string | null;
  source: string;
  note: string | null;
  recordedBy: string;
  at: string;
}

export interface Release {
  id: string;
  name: string;
  version: string;
  notes: string;
  components: ReleasePiece[];
  flags: string[];
  createdBy: string;
  createdAt: string;
  updatedAt: string;
  lockedAt: string | null;
  evidence: Evidence[];
  evidenceSummary: 'passed' | 'failed' | 'none';
  lifecycle: Outcome[];
  availableIn: Array<{ environment: string; at: string; by: string }>;
}

export interface Lifecycle {
  id: string;
  name: string;
  releaseName: string;
  phases: string[];
  createdAt: string;
  updatedAt: string;
}

type ComponentInput = CreateReleaseRequest['components'][number];

export class ReleaseService {
  constructor(private readonly deps: TransactionDeps) {}

  /** Told after a release is made (pipelines start their runs). */
  onCreated: ((releaseId: string) => void) | undefined;

  async list(filter: { name?: string | undefined }): Promise<Release[]> {
    let query = this.deps.database.db.selectFrom('releases').selectAll();
    if (filter.name) query = query.where('name', '=', filter.name);
    const rows = await query.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(500).execute();
    return Promise.all(rows.map((r) => this.hydrate(r)));
  }

  /** By id or `name@version`. */
  async get(ref: string, db: Kysely<Tables> = this.deps.database.db): Promise<Release> {
    return this.hydrate(await findRelease(db, ref), db);
  }

  async create(by: Principal, input: CreateReleaseRequest): Promise<Release> {
    try {
      const made = await inTransaction(this.deps, actorOf(by), async (uow) => {
        const components = await resolvePieces(uow.db, input.components);
        const now = uow.now.toISOString();
        const row: ReleasesTable = {
          id: newSortableId(),
          name: input.name,
          version: input.version,
          notes: input.notes ?? '',
          components: JSON.stringify(components),
          flags: JSON.stringify(input.flags ?? []),
          created_by: actorOf(by).actor,
          created_at: now,
          updated_at: now,
          locked_at: null,
        };
        await uow.db.insertInto('releases').values(row).execute();
        await uow.audit({
          action: 'release.created',
          subject: `release:${row.id}`,
          details: { name: row.name, version: row.version, components, flags: input.flags ?? [] },
        });
        return this.hydrate(row, uow.db);
      });
      this.onCreated?.(made.id);
      return made;
    } catch (error) {
      if (isUniqueViolation(error))
        throw new GantryError(
          'IMMUTABLE_VERSION',
          `Release ${input.name}@${input.version} already exists; releases are immutable once made — give a new version.`,
          { field: '/version' },
        );
      throw error;
    }
  }

  async update(
    by: Principal,
    ref: string,
    input: {
      notes?: string | undefined;
      components?: ComponentInput[] | undefined;
      flags?: string[] | undefined;
    },
  ): Promise<Release> {
    return inTransaction(this.deps, actorOf(by), async (uow) => {
      const row = await findRelease(uow.db, ref);
      if (row.locked_at !== null) {
        const changes = await uow.db
          .selectFrom('changes')
          .select('number')
          .where('release_id', '=', row.id)
          .where('state', '!=', 'draft')
          .execute();
        throw new GantryError(
          'IMMUTABLE_VERSION',
          `Release ${row.name}@${row.version} cannot change: ${changes.map((c) => `CHG-${c.number}`).join(', ') || 'a submitted change'} refers to it. Make a new version.`,
          { changes: changes.map((c) => `CHG-${c.number}`) },
        );
      }
      const components = input.components ? await resolvePieces(uow.db, input.components) : undefined;
      await uow.db
        .updateTable('releases')
        .set({
          ...(input.notes !== undefined ? { notes: input.notes } : {}),
          ...(components ? { components: JSON.stringify(components) } : {}),
          ...(input.flags ? { flags: JSON.stringify(input.flags) } : {}),
          updated_at: uow.now.toISOString(),
        })
        .where('id', '=', row.id)
        .execute();
      await uow.audit({
        action: 'release.updated',
        subject: `release:${row.id}`,
        details: {
          name: row.name,
          version: row.version,
          components: components ?? null,
          flags: input.flags ?? null,
        },
      });
      return this.get(row.id, uow.db);
    });
  }

  async addEvidence(
    by: Principal,
    ref: string,
    input: {
      name: string;
      kind: Evidence['kind'];
      digest: string;
      passed: boolean;
      summary?: string | undefined;
    },
  ): Promise<Release> {
    return inTransaction(this.deps, actorOf(by), async (uow) => {
      const release = await findRelease(uow.db, ref);
      const document = await uow.db
        .selectFrom('artifacts')
        .select(['component', 'version', 'kind'])
        .where('digest', '=', input.digest.replace(/^sha256:/, ''))
        .executeTakeFirst();
      if (!document)
        throw new GantryError(
          'VALIDATION',
          `No artifact with digest ${input.digest} is in the media library: push the report first (gantry artifact push REPORT --kind document).`,
          [{ path: '/digest', message: 'not in the media library' }],
        );
      const id = newSortableId();
      await uow.db
        .insertInto('release_evidence')
        .values({
          id,
          release_id: release.id,
          name: input.name,
          kind: input.kind,
          digest: input.digest,
          passed: input.passed ? 1 : 0,
          summary: input.summary ?? '',
          added_by: actorOf(by).actor,
          added_at: uow.now.toISOString(),
        })
        .execute();
      await uow.audit({
        action: 'release.evidence_added',
        subject: `release:${release.id}`,
        details: {
          evidence: id,
          name: input.name,
          kind: input.kind,
          digest: input.digest,
          passed: input.passed,
        },
      });
      return this.get(release.id, uow.db);
    });
  }

  /**
   * Records how a release fared in an environment. The deployment engine records its own
   * deployments; this records work done outside Gantry (source `recorded`).
   */
  async recordOutcome(
    by: Principal,
    ref: string,
    input: {
      environment: string;
      outcome: 'succeeded' | 'failed';
      changeId?: string | undefined;
      note?: string | undefined;
      deploymentId?: string | undefined;
    },
    source = 'recorded',
  ): Promise<Release> {
    return inTransaction(this.deps, actorOf(by), async (uow) => {
      const release = await findRelease(uow.db, ref);
      const env = await environmentByName(uow.db, input.environment);
      let changeId: string | null = null;
      if (input.changeId !== undefined) {
        // The change must exist, be for this release and cover the environment.
        const change = await findChange(uow.db, input.changeId, undefined);
        if (
          change.release_id !== release.id ||
          !(JSON.parse(change.environments) as string[]).includes(env.name)
        )
          throw new GantryError(
            'CONFLICT',
            `CHG-${change.number} is not a change of ${release.name}@${release.version} in ${env.name}.`,
          );
        changeId = change.id;
      }
      await uow.db
        .insertInto('release_outcomes')
        .values({
          id: newSortableId(),
          release_id: release.id,
          environment_id: env.id,
          outcome: input.outcome,
          deployment_id: input.deploymentId ?? null,
          change_id: changeId,
          source,
          note: input.note ?? null,
          recorded_by: actorOf(by).actor,
          at: uow.now.toISOString(),
        })
        .execute();
      await uow.audit({
        action: 'release.outcome_recorded',
        subject: `release:${release.id}`,
        details: { environment: env.name, outcome: input.outcome, source, changeId },
      });
      return this.get(release.id, uow.db);
    });
  }

  /**
   * Makes a release available in an environment: its flags are switched on there (created when
   * missing) and subscribers get its notes, as one audited act. `checkFlagChange` is asked first
   * when the environment keeps flag changes under change control.
   */
  async makeAvailable(
    by: Principal,
    ref: string,
    environment: string,
    checkFlagChange: (uow: UnitOfWork, envId: string) => Promise<void>,
  ): Promise<Release> {
    return inTransaction(this.deps, actorOf(by), async (uow) => {
      const release = await this.get(ref, uow.db);
      const env = await environmentByName(uow.db, environment);
      const already = await uow.db
        .selectFrom('release_availability')
        .select('at')
        .where('release_id', '=', release.id)
        .where('environment_id', '=', env.id)
        .executeTakeFirst();
      if (already)
        throw new GantryError(
          'CONFLICT',
          `${release.name}@${release.version} has been available in ${environment} since ${already.at}.`,
        );
      if (
        release.flags.length > 0 &&
        policyOf(JSON.parse(env.policy) as Record<string, unknown>).flagsUnderChange
      )
        await checkFlagChange(uow, env.id);
      const now = uow.now.toISOString();
      const actor = actorOf(by).actor;
      for (const key of release.flags) {
        const flag = await uow.db
          .selectFrom('flags')
          .select(['id', 'revision'])
          .where('environment_id', '=', env.id)
          .where('key', '=', key)
          .executeTakeFirst();
        if (flag) {
          await uow.db
            .updateTable('flags')
            .set({ enabled: 1, revision: flag.revision + 1, updated_by: actor, updated_at: now })
            .where('id', '=', flag.id)
            .execute();
        } else {
          await uow.db
            .insertInto('flags')
            .values({
              id: newSortableId(),
              environment_id: env.id,
              key,
              description: `released with ${release.name}@${release.version}`,
              enabled: 1,
              percentage: null,
              rules: '[]',
              revision: 1,
              updated_by: actor,
              created_at: now,
              updated_at: now,
            })
            .execute();
        }
      }
      await uow.db
        .insertInto('release_availability')
        .values({
          id: newSortableId(),
          release_id: release.id,
          environment_id: env.id,
          flags: JSON.stringify(release.flags),
          made_by: actor,
          at: now,
        })
        .execute();
      const subscribers = await uow.db
        .selectFrom('subscriptions')
        .select('id')
        .where('removed_at', 'is', null)
        .where((eb) => eb.or([eb('release_name', 'is', null), eb('release_name', '=', release.name)]))
        .execute();
      const payload = JSON.stringify({
        kind: 'release.available',
        release: { name: release.name, version: release.version, id: release.id },
        environment,
        notes: release.notes,
        components: release.components,
        flags: release.flags,
        at: now,
      });
      for (const s of subscribers) {
        await uow.db
          .insertInto('notifications')
          .values({
            id: newSortableId(),
            subscription_id: s.id,
            kind: 'release.available',
            payload,
            state: 'pending',
            attempts: 0,
            next_attempt_at: now,
            last_error: null,
            created_at: now,
            delivered_at: null,
          })
          .execute();
      }
      await uow.audit({
        action: 'release.made_available',
        subject: `release:${release.id}`,
        details: { environment, flags: release.flags, subscribersNotified: subscribers.length },
      });
      return this.get(release.id, uow.db);
    });
  }

  // Lifecycles -------------------------------------------------------------------------------

  async lifecycles(): Promise<Lifecycle[]> {
    const rows = await this.deps.database.db.selectFrom('lifecycles').selectAll().orderBy('name').execute();
    return rows.map((r) => ({
      id: r.id,
      name: r.name,
      releaseName: r.release_name,
      phases: JSON.parse(r.phases) as string[],
      createdAt: r.created_at,
      updatedAt: r.updated_at,
    }));
  }

  /** Creates or replaces the lifecycle `name`, which applies to releases called `releaseName`. */
  async putLifecycle(by: Principal, name: string, input: { releaseName: string; phases: string[] }) {
    if (new Set(input.phases).size !== input.phases.length)
      throw new GantryError('VALIDATION', 'A lifecycle names each environment once.', [
        { path: '/phases', message: 'repeated environment' },
      ]);
    try {
      return await inTransaction(this.deps, actorOf(by), async (uow) => {
        for (const phase of input.phases) await environmentByName(uow.db, phase);
        const now = uow.now.toISOString();
        const existing = await uow.db
          .selectFrom('lifecycles')
          .select('id')
          .where('name', '=', name)
          .executeTakeFirst();
        if (existing) {
          await uow.db
            .updateTable('lifecycles')
            .set({ release_name: input.releaseName, phases: JSON.stringify(input.phases), updated_at: now })
            .where('id', '=', existing.id)
            .execute();
        } else {
          await uow.db
            .insertInto('lifecycles')
            .values({
              id: newSortableId(),
              name,
              release_name: input.releaseName,
              phases: JSON.stringify(input.phases),
              created_at: now,
              updated_at: now,
            })
            .execute();
        }
        await uow.audit({
          action: 'lifecycle.set',
          subject: `lifecycle:${name}`,
          details: { releaseName: input.releaseName, phases: input.phases },
        });
        const all = await uow.db
          .selectFrom('lifecycles')
          .selectAll()
          .where('name', '=', name)
          .executeTakeFirstOrThrow();
        return {
          id: all.id,
          name: all.name,
          releaseName: all.release_name,
          phases: input.phases,
          createdAt: all.created_at,
          updatedAt: all.updated_at,
        };
      });
    } catch (error) {
      if (isUniqueViolation(error))
        throw new GantryError(
          'CONFLICT',
          `Another lifecycle already applies to releases named '${input.releaseName}'.`,
          {
            field: '/releaseName',
          },
        );
      throw error;
    }
  }

  async lifecycleFor(releaseName: string, db: Kysely<Tables> = this.deps.database.db) {
    const row = await db
      .selectFrom('lifecycles')
      .selectAll()
      .where('release_name', '=', releaseName)
      .executeTakeFirst();
    return row ? { name: row.name, phases: JSON.parse(row.phases) as string[] } : null;
  }

  // Subscriptions ----------------------------------------------------------------------------

  async subscriptions() {
    const rows = await this.deps.database.db
      .selectFrom('subscriptions')
      .selectAll()
      .where('removed_at', 'is', null)
      .orderBy('created_at')
      .execute();
    return rows.map((r) => ({
      id: r.id,
      url: r.url,
      releaseName: r.release_name,
      createdBy: r.created_by,
      createdAt: r.created_at,
    }));
  }

  async subscribe(by: Principal, input: { url: string; releaseName?: string | undefined }) {
    return inTransaction(this.deps, actorOf(by), async (uow) => {
      const row = {
        id: newSortableId(),
        url: input.url,
        release_name: input.releaseName ?? null,
        secret_hash: null,
        created_by: actorOf(by).actor,
        created_at: uow.now.toISOString(),
        removed_at: null,
      };
      await uow.db.insertInto('subscriptions').values(row).execute();
      await uow.audit({
        action: 'subscription.created',
        subject: `subscription:${row.id}`,
        details: { url: input.url, releaseName: row.release_name },
      });
      return {
        id: row.id,
        url: row.url,
        releaseName: row.release_name,
        createdBy: row.created_by,
        createdAt: row.created_at,
      };
    });
  }

  async unsubscribe(by: Principal, id: string): Promise<void> {
    await inTransaction(this.deps, actorOf(by), async (uow) => {
      const result = await uow.db
        .updateTable('subscriptions')
        .set({ removed_at: uow.now.toISOString() })
        .where('id', '=', id)
        .where('removed_at', 'is', null)
        .executeTakeFirst();
      if (Number(result.numUpdatedRows) === 0)
        throw new GantryError('NOT_FOUND', `No subscription '${id}'. See \`gantry release subscriptions\`.`);
      await uow.audit({ action: 'subscription.removed', subject: `subscription:${id}`, details: {} });
    });
  }

  private async hydrate(row: ReleasesTable, db: Kysely<Tables> = this.deps.database.db): Promise<Release> {
    const [evidence, outcomes, availability] = await Promise.all([
      db
        .selectFrom('release_evidence')
        .selectAll()
        .where('release_id', '=', row.id)
        .orderBy('added_at')
        .execute(),
      db
        .selectFrom('release_outcomes as o')
        .innerJoin('environments as e', 'e.id', 'o.environment_id')
        .selectAll('o')
        .select('e.name as environment')
        .where('o.release_id', '=', row.id)
        .orderBy('o.at')
        .execute(),
      db
        .selectFrom('release_availability as a')
        .innerJoin('environments as e', 'e.id', 'a.environment_id')
        .select(['e.name as environment', 'a.at', 'a.made_by'])
        .where('a.release_id', '=', row.id)
        .orderBy('a.at')
        .execute(),
    ]);
    const ev: Evidence[] = evidence.map((e) => ({
      id: e.id,
      name: e.name,
      kind: e.kind as Evidence['kind'],
      digest: e.digest,
      passed: e.passed === 1,
      summary: e.summary,
      addedBy: e.added_by,
      addedAt: e.added_at,
    }));
    return {
      id: row.id,
      name: row.name,
      version: row.version,
      notes: row.notes,
      components: JSON.parse(row.components) as ReleasePiece[],
      flags: JSON.parse(row.flags) as string[],
      createdBy: row.created_by,
      createdAt: row.created_at,
      updatedAt: row.updated_at,
      lockedAt: row.locked_at,
      evidence: ev,
      evidenceSummary: ev.length === 0 ? 'none' : ev.every((e) => e.passed) ? 'passed' : 'failed',
      lifecycle: outcomes.map((o) => ({
        id: o.id,
        environment: o.environment,
        outcome: o.outcome as Outcome['outcome'],
        deploymentId: o.deployment_id,
        changeId: o.change_id,
        source: o.source,
        note: o.note,
        recordedBy: o.recorded_by,
        at: o.at,
      })),
      availableIn: availability.map((a) => ({ environment: a.environment, at: a.at, by: a.made_by })),
    };
  }
}

export async function findRelease(db: Kysely<Tables>, ref: string): Promise<ReleasesTable> {
  const at = ref.lastIndexOf('@');
  let query = db.selectFrom('releases').selectAll();
  query =
    at > 0
      ? query.where('name', '=', ref.slice(0, at)).where('version', '=', ref.slice(at + 1))
      : query.where('id', '=', ref);
  const row = await query.executeTakeFirst();
  if (!row)
    throw new GantryError(
      'NOT_FOUND',
      `No release '${ref}' (give its id or name@version). See \`gantry release list\`.`,
      {
        ref,
      },
    );
  return row;
}

export async function environmentByName(db: Kysely<Tables>, name: string) {
  const env = await db.selectFrom('environments').selectAll().where('name', '=', name).executeTakeFirst();
  if (!env)
    throw new GantryError('NOT_FOUND', `No environment '${name}'. See \`gantry env list\`.`, { name });
  return env;
}

/**
 * Resolves each component to exactly one artifact in the media library, by digest or version.
 * Every problem is listed; nothing is written when any is found.
 */
async function resolvePieces(db: Kysely<Tables>, inputs: ComponentInput[]): Promise<ReleasePiece[]> {
  const problems: Array<{ path: string; message: string }> = [];
  const pieces: ReleasePiece[] = [];
  const seen = new Set<string>();
  for (const [i, input] of inputs.entries()) {
    const path = `/components/${i}`;
    if (seen.has(input.component)) {
      problems.push({ path, message: `${input.component} is named twice` });
      continue;
    }
    seen.add(input.component);
    if (input.digest === undefined && input.version === undefined) {
      problems.push({ path, message: `give ${input.component}'s digest or version` });
      continue;
    }
    let query = db
      .selectFrom('artifacts')
      .select(['version', 'digest', 'state'])
      .where('component', '=', input.component);
    if (input.digest !== undefined) query = query.where('digest', '=', input.digest.replace(/^sha256:/, ''));
    if (input.version !== undefined) query = query.where('version', '=', input.version);
    const artifact = await query.executeTakeFirst();
    const what = `${input.component} ${input.version ?? input.digest}`;
    if (!artifact) {
      problems.push({
        path,
        message: `${what} is not in the media library (push it first: gantry artifact push)`,
      });
      continue;
    }
    if (artifact.state === 'quarantined') {
      problems.push({ path, message: `${what} is quarantined: its stored bytes failed verification` });
      continue;
    }
    pieces.push({
      component: input.component,
      version: artifact.version,
      digest: withDigestPrefix(artifact.digest),
    });
  }
  if (problems.length > 0)
    throw new GantryError(
      'VALIDATION',
      `The release cannot be made: ${problems.map((p) => p.message).join('; ')}.`,
      problems,
    );
  return pieces;
}
