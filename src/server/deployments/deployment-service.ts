/**
 * Deployments: a release moved to the targets of one environment by a strategy. Creating one
 * checks every gate, plans the waves (a pure strategy function), and stores the plan before
 * anything runs; the engine (`engine.ts`) then drives it. People act on it: pause, resume, abort,
 * approve the next wave, retry failed targets, roll back — each one audited.
 */
import type { ExpressionBuilder, Kysely } from 'kysely';
import { type ChangeState, transition } from '../../core/changes.ts';
import {
  ACTIVE_DEPLOYMENT_STATES,
  DEFAULT_HALT_RULE,
  type DeploymentState,
  FINAL_DEPLOYMENT_STATES,
  type HaltRule,
  type OnFailure,
  routerMayHaveMoved,
} from '../../core/deployments.ts';
import { GantryError } from '../../core/errors.ts';
import { type Labels, standardsProblems } from '../../core/inventory.ts';
import {
  type GroupName,
  type GroupPlan,
  plan,
  type StoredOptions,
  type Strategy,
  type StrategyOptions,
} from '../../core/strategies.ts';
import { actorOf, type Principal } from '../auth/principal.ts';
import type { ChangeService } from '../changes/change-service.ts';
import { findChange, instantsOf } from '../changes/change-service.ts';
import { inChunks } from '../db/chunks.ts';
import type { DeploymentsTable, Tables } from '../db/schema.ts';
import { newSortableId } from '../ids.ts';
import { supplierScope } from '../inventory/inventory-service.ts';
import { activeVersions } from '../inventory/ledger-service.ts';
import { cancelHeld } from '../inventory/step-service.ts';
import type { ReleaseService } from '../releases/release-service.ts';
import { environmentByName } from '../releases/release-service.ts';
import { inTransaction, type TransactionDeps, type UnitOfWork } from '../unit-of-work.ts';

export interface DeploymentServiceDeps extends TransactionDeps {
  changes: ChangeService;
  releases: ReleaseService;
  /** Told when a deployment needs the engine's attention now. */
  kick: (deploymentId: string) => void;
  /** Told when a person changed a deployment (the live progress stream listens). */
  changed?: ((deploymentId: string) => void) | undefined;
}

export interface CreateDeployment {
  release: string;
  environment: string;
  change?: string | undefined;
  strategy: Strategy;
  options?: StrategyOptions | undefined;
  haltRule?: Partial<HaltRule> | undefined;
  onFailure?: OnFailure | undefined;
  /** `window`: wait for the change's next window to open instead of starting now. */
  start?: 'now' | 'window' | undefined;
}

export type DeploymentAction = 'pause' | 'resume' | 'abort' | 'approve-wave' | 'retry-failed' | 'rollback';

export interface DeploymentView {
  id: string;
  number: string;
  release: { id: string; name: string; version: string };
  environment: string;
  change: string | null;
  strategy: string;
  options: StrategyOptions;
  haltRule: HaltRule;
  onFailure: OnFailure;
  state: DeploymentState;
  reason: string | null;
  scheduledFor: string | null;
  excluded: Array<{ target: string; reason: string }>;
  createdBy: string;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  waves: Array<{
    index: number;
    name: string;
    gate: string;
    canary: boolean;
    bakeSeconds: number;
    state: string;
    bakeUntil: string | null;
    approvedBy: string | null;
    startedAt: string | null;
    finishedAt: string | null;
    targets: Array<{
      name: string;
      state: string;
      message: string | null;
      before: Record<string, string | null>;
    }>;
  }>;
  counts: Record<string, number>;
}

export class DeploymentService {
  constructor(private readonly deps: DeploymentServiceDeps) {}

  async create(by: Principal, input: CreateDeployment): Promise<DeploymentView> {
    const db = this.deps.database.db;
    const verdict = await this.deps.changes.checkGate(by, {
      release: input.release,
      environment: input.environment,
      change: input.change,
      strategy: input.strategy,
    });
    let scheduledFor: string | null = null;
    if (input.start === 'window') {
      if (!input.change)
        throw new GantryError(
          'VALIDATION',
          'Only a deployment under a change can wait for its window (--change).',
          [{ path: '/start', message: 'needs a change' }],
        );
      const now = this.deps.clock.now().getTime();
      const next = instantsOf(await findChange(db, input.change, supplierScope(by)))
        .filter((w) => w.start.getTime() > now)
        .sort((a, b) => a.start.getTime() - b.start.getTime())[0];
      if (!next)
        throw new GantryError(
          'CONFLICT',
          `Change ${input.change} has no window that starts later; start now or add a window.`,
        );
      scheduledFor = next.start.toISOString();
    }
    const blocking = verdict.reasons.filter((r) => !(scheduledFor !== null && r.code === 'outside_window'));
    if (blocking.length > 0)
      throw new GantryError(
        'GATE_REFUSED',
        `The deployment may not run: ${blocking.map((r) => r.message).join('; ')}.`,
        { reasons: blocking, notes: verdict.notes },
      );

    const release = await this.deps.releases.get(input.release);
    const env = await environmentByName(db, input.environment);
    const packages = await packagesOf(db, release.components);
    if (packages.length === 0)
      throw new GantryError(
        'VALIDATION',
        `Release ${release.name}@${release.version} has no package to install on targets.`,
      );
    const changeRow = input.change ? await findChange(db, input.change, supplierScope(by)) : null;
    const selector = changeRow ? (JSON.parse(changeRow.target_selector) as Labels) : {};
    const standards = JSON.parse(env.standards) as Record<string, unknown>;
    const candidates = (
      await db
        .selectFrom('targets')
        .selectAll()
        .where('environment_id', '=', env.id)
        .where('retired_at', 'is', null)
        .orderBy('name')
        .execute()
    ).filter((t) => Object.entries(selector).every(([k, v]) => (JSON.parse(t.labels) as Labels)[k] === v));
    const excluded: Array<{ target: string; reason: string }> = [];
    const eligible = candidates.filter((t) => {
      const problems = standardsProblems(standards, JSON.parse(t.facts));
      if (problems.length > 0)
        excluded.push({ target: t.name, reason: `platform standards: ${problems.join('; ')}` });
      return problems.length === 0;
    });
    const groupLabel = input.strategy === 'blue-green' ? input.options?.groupLabel : undefined;
    const asserted = input.options?.serving;
    // Where traffic goes now: as the last deployment left it, or as a person says it goes.
    const serving = async (on: Kysely<Tables>) =>
      !groupLabel
        ? null
        : asserted
          ? {
              group: asserted,
              targets: eligible
                .filter((t) => (JSON.parse(t.labels) as Labels)[groupLabel] === asserted)
                .map((t) => t.name),
            }
          : await servingTraffic(on, env, groupLabel, release.name);
    const servingNow = await serving(db);
    const planned = plan(
      input.strategy,
      eligible.map((t) => ({ id: t.id, name: t.name, labels: JSON.parse(t.labels) as Labels })),
      input.options ?? {},
      { serving: servingNow },
    );
    if ('problem' in planned)
      throw new GantryError(
        'VALIDATION',
        `Cannot plan a ${input.strategy} deployment to ${env.name}: ${planned.problem}${excluded.length ? ` (${excluded.length} target(s) left out for platform standards)` : ''}.`,
        { excluded },
      );
    const haltRule = { ...DEFAULT_HALT_RULE, ...(input.haltRule ?? {}) };

    const id = await inTransaction(this.deps, actorOf(by), async (uow) => {
      // Blue-green by groups: a deployment that ended since the plan may have moved the traffic.
      if (groupLabel && JSON.stringify(await serving(uow.db)) !== JSON.stringify(servingNow))
        throw new GantryError(
          'CONFLICT',
          `Traffic in ${env.name} moved to another group while this deployment was planned; create it again.`,
        );
      const targetIds = planned.ok.flatMap((w) => w.targets.map((t) => t.id));
      const busy = await uow.db
        .selectFrom('deployment_targets as dt')
        .innerJoin('deployments as d', 'd.id', 'dt.deployment_id')
        .select(['d.number', 'dt.target_name'])
        .where('d.state', 'in', [...ACTIVE_DEPLOYMENT_STATES])
        .where('dt.target_id', 'in', targetIds)
        .execute();
      if (busy.length > 0)
        throw new GantryError(
          'CONFLICT',
          `DEP-${busy[0]?.number} is still working on ${[...new Set(busy.map((b) => b.target_name))].slice(0, 5).join(', ')}; one deployment at a time per target.`,
          { deployments: [...new Set(busy.map((b) => `DEP-${b.number}`))] },
        );
      if (changeRow) {
        // Re-read inside the transaction: the change may have moved since the gate was checked.
        const fresh = await findChange(uow.db, changeRow.id, undefined);
        if (!['approved', 'scheduled', 'implementing'].includes(fresh.state))
          throw new GantryError('GATE_REFUSED', `Change CHG-${fresh.number} is ${fresh.state} now.`, {
            reasons: [{ code: 'not_approved', message: `CHG-${fresh.number} is ${fresh.state}` }],
          });
        const action =
          scheduledFor && fresh.state === 'approved' ? 'schedule' : scheduledFor ? null : 'start';
        if (action && fresh.state !== 'implementing')
          await changeTransition(
            uow,
            fresh.id,
            action,
            `for a deployment of ${release.name}@${release.version}`,
          );
      }
      const last = await uow.db
        .selectFrom('deployments')
        .select((eb) => eb.fn.max('number').as('n'))
        .executeTakeFirst();
      const now = uow.now.toISOString();
      const row: DeploymentsTable = {
        id: newSortableId(),
        number: Math.max(100, Number(last?.n ?? 0)) + 1,
        release_id: release.id,
        environment_id: env.id,
        change_id: changeRow?.id ?? null,
        strategy: input.strategy,
        options: JSON.stringify({
          ...(input.options ?? {}),
          ...(planned.groups ? { groups: planned.groups } : {}),
        } satisfies StoredOptions),
        halt_rule: JSON.stringify(haltRule),
        on_failure: input.onFailure ?? 'rollback',
        state: scheduledFor ? 'scheduled' : 'running',
        reason: null,
        scheduled_for: scheduledFor,
        excluded: JSON.stringify(excluded),
        created_by: actorOf(by).actor,
        created_by_id: by.user.id,
        created_at: now,
        updated_at: now,
        started_at: scheduledFor ? null : now,
        finished_at: null,
        lease_owner: null,
        lease_until: null,
        fencing: 0,
      };
      await uow.db.insertInto('deployments').values(row).execute();
      for (const w of planned.ok) {
        await uow.db
          .insertInto('deployment_waves')
          .values({
            deployment_id: row.id,
            wave_index: w.index,
            name: w.name,
            gate: w.gate,
            canary: w.canary ? 1 : 0,
            bake_seconds: w.bakeSeconds,
            state: 'pending',
            bake_until: null,
            approved_by: null,
            started_at: null,
            finished_at: null,
          })
          .execute();
      }
      // What each target runs now, by the ledger: what a rollback puts back. One query for all.
      const active = await activeVersions(
        uow.db,
        packages.map((p) => p.component),
      );
      const targets = planned.ok.flatMap((w) =>
        w.targets.map((t) => ({
          deployment_id: row.id,
          target_id: t.id,
          target_name: t.name,
          wave_index: w.index,
          state: 'pending',
          progress: 0,
          step_id: null,
          before: JSON.stringify(
            Object.fromEntries(
              packages.map((p) => [p.component, active.get(t.id)?.get(p.component) ?? null]),
            ),
          ),
          activated: '[]',
          message: null,
          updated_at: now,
        })),
      );
      for (const chunk of inChunks(targets))
        await uow.db.insertInto('deployment_targets').values(chunk).execute();
      await uow.audit({
        action: 'deployment.created',
        subject: `deployment:${row.id}`,
        details: {
          number: `DEP-${row.number}`,
          release: `${release.name}@${release.version}`,
          environment: env.name,
          change: changeRow ? `CHG-${changeRow.number}` : null,
          strategy: input.strategy,
          waves: planned.ok.map((w) => ({ name: w.name, targets: w.targets.map((t) => t.name) })),
          excluded,
          scheduledFor,
          gateNotes: verdict.notes,
        },
      });
      return row.id;
    });
    this.deps.kick(id);
    return this.get(by, id);
  }

  /**
   * Blue-green by groups: only the newest deployment of a release by a label can be rolled back. A
   * later one — even one that never moved traffic — may have changed the group an older rollback
   * would send traffic to; to go further back, deploy the release wanted (it goes to the idle group).
   */
  private async refuseOlderGroupRollback(db: Kysely<Tables>, d: DeploymentsTable): Promise<void> {
    const groups = (JSON.parse(d.options) as StoredOptions).groups;
    if (!groups) return;
    const release = await db
      .selectFrom('releases')
      .select('name')
      .where('id', '=', d.release_id)
      .executeTakeFirstOrThrow();
    const newest = (await groupDeployments(db, d.environment_id, groups.label, release.name))[0];
    if (newest && newest.id !== d.id)
      throw new GantryError(
        'ILLEGAL_TRANSITION',
        `DEP-${d.number} cannot be rolled back: DEP-${newest.number} is a later blue-green deployment of ${release.name} by ${groups.label}, and may have changed the group it would send traffic to. Deploy the release you want instead; it goes to the idle group.`,
        { state: d.state },
      );
  }

  async list(filter: { state?: string | undefined; environment?: string | undefined }) {
    const db = this.deps.database.db;
    let query = db
      .selectFrom('deployments as d')
      .innerJoin('environments as e', 'e.id', 'd.environment_id')
      .select('d.id');
    if (filter.state) query = query.where('d.state', '=', filter.state);
    if (filter.environment) query = query.where('e.name', '=', filter.environment);
    const rows = await query.orderBy('d.number', 'desc').limit(200).execute();
    return Promise.all(rows.map((r) => this.view(db, r.id)));
  }

  async get(
    _by: Principal,
    ref: string,
    db: Kysely<Tables> = this.deps.database.db,
  ): Promise<DeploymentView> {
    return this.view(db, (await findDeployment(db, ref)).id);
  }

  async act(
    by: Principal,
    ref: string,
    action: DeploymentAction,
    reason: string | undefined,
  ): Promise<DeploymentView> {
    const id = await inTransaction(this.deps, actorOf(by), async (uow) => {
      const d = await findDeployment(uow.db, ref);
      const state = d.state as DeploymentState;
      const refuse = (why: string) =>
        new GantryError('ILLEGAL_TRANSITION', `DEP-${d.number} is ${state}: ${why}.`, { state });
      const now = uow.now.toISOString();
      let next: DeploymentState = state;
      let newReason = d.reason;
      switch (action) {
        case 'pause':
          if (state !== 'running' && state !== 'scheduled')
            throw refuse('only a running or scheduled deployment can be paused');
          next = 'paused';
          newReason = `paused by ${actorOf(by).actor}${reason ? `: ${reason}` : ''}`;
          break;
        case 'resume':
          if (state !== 'paused') throw refuse('only a paused deployment can be resumed');
          next = d.started_at ? 'running' : 'scheduled';
          newReason = null;
          break;
        case 'abort':
          if (FINAL_DEPLOYMENT_STATES.includes(state)) throw refuse('it has already ended');
          next = 'aborted';
          newReason = `aborted by ${actorOf(by).actor}${reason ? `: ${reason}` : ''}`;
          break;
        case 'rollback':
          if (state === 'rolling_back' || state === 'rolled_back' || state === 'aborted')
            throw refuse('there is nothing to roll back');
          await this.refuseOlderGroupRollback(uow.db, d);
          next = 'rolling_back';
          newReason = `rollback requested by ${actorOf(by).actor}${reason ? `: ${reason}` : ''}`;
          break;
        case 'approve-wave': {
          const wave = await uow.db
            .selectFrom('deployment_waves')
            .selectAll()
            .where('deployment_id', '=', d.id)
            .where('state', '!=', 'succeeded')
            .orderBy('wave_index')
            .executeTakeFirst();
          // A manual gate may be approved while its wave bakes or once it waits, not before.
          if (
            wave?.gate !== 'manual' ||
            wave.approved_by ||
            (wave.state !== 'baking' && wave.state !== 'awaiting_approval')
          )
            throw refuse('no wave is waiting for approval (a manual gate opens once its wave has run)');
          await uow.db
            .updateTable('deployment_waves')
            .set({ approved_by: actorOf(by).actor })
            .where('deployment_id', '=', d.id)
            .where('wave_index', '=', wave.wave_index)
            .execute();
          newReason = d.reason;
          break;
        }
        case 'retry-failed': {
          if (state !== 'running' && state !== 'paused')
            throw refuse('only a running or paused deployment can retry targets');
          const failed = await uow.db
            .selectFrom('deployment_targets')
            .select('target_id')
            .where('deployment_id', '=', d.id)
            .where(retryable)
            .execute();
          if (failed.length === 0) throw refuse('no target has failed');
          const groups = (JSON.parse(d.options) as StoredOptions).groups;
          const routers = groups
            ? await uow.db
                .selectFrom('deployment_targets')
                .select(['state', 'activated'])
                .where('deployment_id', '=', d.id)
                .where('target_id', 'in', groups.routers)
                .execute()
            : [];
          if (routers.some(routerMayHaveMoved))
            throw refuse(
              'its routers have moved traffic, and a target retried now would not get any; roll it back and deploy again',
            );
          await uow.db
            .updateTable('deployment_targets')
            .set({ state: 'retry', progress: 0, step_id: null, message: null, updated_at: now })
            .where('deployment_id', '=', d.id)
            .where(retryable)
            .execute();
          next = 'running';
          newReason = null;
          break;
        }
      }
      await uow.db
        .updateTable('deployments')
        .set({
          state: next,
          reason: newReason,
          updated_at: now,
          ...(FINAL_DEPLOYMENT_STATES.includes(next) ? { finished_at: now } : {}),
        })
        .where('id', '=', d.id)
        .execute();
      // Waves that will not start now: the activations held for them are cancelled.
      if (next === 'aborted' || next === 'rolling_back') await cancelHeldSteps(uow, d, next);
      await uow.audit({
        action: `deployment.${action.replace('-', '_')}`,
        subject: `deployment:${d.id}`,
        details: { number: `DEP-${d.number}`, from: state, to: next, reason: reason ?? null },
      });
      return d.id;
    });
    this.deps.kick(id);
    this.deps.changed?.(id);
    return this.view(this.deps.database.db, id);
  }

  async view(db: Kysely<Tables>, id: string): Promise<DeploymentView> {
    const d = await db.selectFrom('deployments').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
    const [release, env, change, waves, targets] = await Promise.all([
      db
        .selectFrom('releases')
        .select(['id', 'name', 'version'])
        .where('id', '=', d.release_id)
        .executeTakeFirstOrThrow(),
      db
        .selectFrom('environments')
        .select('name')
        .where('id', '=', d.environment_id)
        .executeTakeFirstOrThrow(),
      d.change_id
        ? db.selectFrom('changes').select('number').where('id', '=', d.change_id).executeTakeFirst()
        : undefined,
      db
        .selectFrom('deployment_waves')
        .selectAll()
        .where('deployment_id', '=', id)
        .orderBy('wave_index')
        .execute(),
      db
        .selectFrom('deployment_targets')
        .selectAll()
        .where('deployment_id', '=', id)
        .orderBy('target_name')
        .execute(),
    ]);
    const counts: Record<string, number> = {};
    for (const t of targets) counts[t.state] = (counts[t.state] ?? 0) + 1;
    return {
      id: d.id,
      number: `DEP-${d.number}`,
      release,
      environment: env.name,
      change: change ? `CHG-${change.number}` : null,
      strategy: d.strategy,
      options: JSON.parse(d.options) as StoredOptions,
      haltRule: JSON.parse(d.halt_rule) as HaltRule,
      onFailure: d.on_failure as OnFailure,
      state: d.state as DeploymentState,
      reason: d.reason,
      scheduledFor: d.scheduled_for,
      excluded: JSON.parse(d.excluded) as Array<{ target: string; reason: string }>,
      createdBy: d.created_by,
      createdAt: d.created_at,
      startedAt: d.started_at,
      finishedAt: d.finished_at,
      waves: waves.map((w) => ({
        index: w.wave_index,
        name: w.name,
        gate: w.gate,
        canary: w.canary === 1,
        bakeSeconds: w.bake_seconds,
        state: w.state,
        bakeUntil: w.bake_until,
        approvedBy: w.approved_by,
        startedAt: w.started_at,
        finishedAt: w.finished_at,
        targets: targets
          .filter((t) => t.wave_index === w.wave_index)
          .map((t) => ({
            name: t.target_name,
            state: t.state,
            message: t.message,
            before: JSON.parse(t.before) as Record<string, string | null>,
          })),
      })),
      counts,
    };
  }
}

export async function findDeployment(db: Kysely<Tables>, ref: string): Promise<DeploymentsTable> {
  const number = /^(?:DEP-)?(\d{1,9})$/i.exec(ref)?.[1];
  const query = db.selectFrom('deployments').selectAll();
  const row = await (number !== undefined
    ? query.where('number', '=', Number(number))
    : query.where('id', '=', ref)
  ).executeTakeFirst();
  if (!row)
    throw new GantryError('NOT_FOUND', `No deployment '${ref}'. See \`gantry deployments list\`.`, { ref });
  return row;
}

/** The release's packages with what an agent needs to fetch each (digest as hex, size). */
export async function packagesOf(
  db: Kysely<Tables>,
  components: ReadonlyArray<{ component: string; version: string; digest: string }>,
) {
  const out: Array<{ component: string; version: string; digest: string; size: number }> = [];
  for (const c of components) {
    const a = await db
      .selectFrom('artifacts')
      .select(['kind', 'size'])
      .where('component', '=', c.component)
      .where('digest', '=', c.digest.replace(/^sha256:/, ''))
      .executeTakeFirst();
    if (a?.kind === 'package')
      out.push({
        component: c.component,
        version: c.version,
        digest: c.digest.replace(/^sha256:/, ''),
        size: Number(a.size),
      });
  }
  return out;
}

/** Moves a change by one action as part of a deployment, with its history and audit entry. */
export async function changeTransition(
  uow: UnitOfWork,
  changeId: string,
  action: 'schedule' | 'start' | 'complete' | 'back-out' | 'fail',
  reason: string,
): Promise<void> {
  const row = await uow.db
    .selectFrom('changes')
    .selectAll()
    .where('id', '=', changeId)
    .executeTakeFirstOrThrow();
  const moved = transition(row.state as ChangeState, action);
  if (!moved.ok) return; // someone moved it already (e.g. cancelled, or a second deployment)
  await uow.db
    .updateTable('changes')
    .set({ state: moved.to, revision: row.revision + 1, updated_at: uow.now.toISOString() })
    .where('id', '=', changeId)
    .execute();
  await uow.db
    .insertInto('change_history')
    .values({
      id: newSortableId(),
      change_id: changeId,
      at: uow.now.toISOString(),
      actor: 'gantry:deployments',
      action,
      from_state: row.state,
      to_state: moved.to,
      reason,
    })
    .execute();
  await uow.audit({
    action: `change.${{ schedule: 'scheduled', start: 'started', complete: 'completed', 'back-out': 'backed_out', fail: 'failed' }[action]}`,
    subject: `change:${changeId}`,
    details: { number: `CHG-${row.number}`, from: row.state, to: moved.to, reason },
  });
}

/** The targets installed ahead whose activation is held, and those steps: of one wave, or all. */
export async function heldSteps(
  db: Kysely<Tables>,
  deploymentId: string,
  wave?: number,
): Promise<Array<{ targetId: string; stepId: string }>> {
  let query = db
    .selectFrom('deployment_targets as t')
    .innerJoin('steps as s', 's.id', 't.step_id')
    .select(['t.target_id', 's.id as step_id'])
    .where('t.deployment_id', '=', deploymentId)
    .where('t.state', '=', 'installed')
    .where('s.state', '=', 'held');
  if (wave !== undefined) query = query.where('t.wave_index', '=', wave);
  return (await query.execute()).map((r) => ({ targetId: r.target_id, stepId: r.step_id }));
}

/** How a stopped deployment's held steps say why they were cancelled. */
const STOPPED_AS: Record<string, string> = {
  aborted: 'was aborted',
  rolling_back: 'was rolled back',
  rolled_back: 'was rolled back',
  frozen: 'was frozen',
  failed: 'failed',
  succeeded: 'ended',
};

/**
 * The activations held for waves that will not start now (the deployment stopped): cancelled,
 * each audited. The targets stay `installed`: nothing on them changed.
 */
export async function cancelHeldSteps(
  uow: UnitOfWork,
  d: Pick<DeploymentsTable, 'id' | 'number'>,
  state: string,
): Promise<void> {
  const held = await heldSteps(uow.db, d.id);
  if (held.length === 0) return;
  await cancelHeld(
    uow,
    held.map((h) => h.stepId),
    `DEP-${d.number} ${STOPPED_AS[state] ?? `was ${state}`} before this target's wave started`,
  );
}

/** How the engine's message begins when an exception event makes a target unhealthy in a bake. */
export const BAKE_EXCEPTION = 'exception during the bake: ';

/**
 * The targets `retry-failed` takes: those whose step failed, also after one of their components was
 * activated (`unhealthy`) — not those an exception event made unhealthy during a bake, which running
 * the same steps again would not change.
 */
const retryable = (eb: ExpressionBuilder<Tables, 'deployment_targets'>) =>
  eb.or([
    eb('state', '=', 'failed'),
    eb.and([eb('state', '=', 'unhealthy'), eb('message', 'not like', `${BAKE_EXCEPTION}%`)]),
  ]);

/** Blue-green deployments of `releaseName` in an environment by `label`, the newest first. */
async function groupDeployments(
  db: Kysely<Tables>,
  environmentId: string,
  label: string,
  releaseName: string,
) {
  const rows = await db
    .selectFrom('deployments as d')
    .innerJoin('releases as r', 'r.id', 'd.release_id')
    .select(['d.id', 'd.number', 'd.state', 'd.options'])
    .where('d.environment_id', '=', environmentId)
    .where('d.strategy', '=', 'blue-green')
    .where('r.name', '=', releaseName)
    .orderBy('d.number', 'desc')
    .execute();
  return rows.flatMap((r) => {
    const groups = (JSON.parse(r.options) as StoredOptions).groups;
    return groups?.label === label ? [{ ...r, groups }] : [];
  });
}

/**
 * Blue-green by groups: what the routers of deployment `d` did with traffic — moved it to its group
 * and kept it there, never moved it (or moved it back), or something not known for sure (one still
 * switching, one that failed to switch back, routers that disagree), described for a person.
 */
async function routersDid(
  db: Kysely<Tables>,
  d: { id: string; number: number; groups: GroupPlan },
): Promise<'moved' | 'not_moved' | { unknown: string; wait: boolean }> {
  const routers = await db
    .selectFrom('deployment_targets')
    .select(['target_name', 'state', 'activated', 'message'])
    .where('deployment_id', '=', d.id)
    .where('target_id', 'in', d.groups.routers.length > 0 ? d.groups.routers : [''])
    .execute();
  const moved = (t: (typeof routers)[number]) => t.activated !== '[]';
  const on = routers.filter((t) => t.state === 'succeeded');
  const off = routers.filter((t) =>
    moved(t)
      ? t.state === 'rolled_back'
      : !['switching', 'rolling_back', 'rollback_failed'].includes(t.state) &&
        // A switch that failed and could not switch back either leaves traffic unknown.
        !t.message?.startsWith('failed_needs_attention'),
  );
  if (on.length + off.length === routers.length && (on.length === 0 || off.length === 0))
    return on.length > 0 ? 'moved' : 'not_moved';
  const odd = routers
    .filter((t) => !on.includes(t) && !off.includes(t))
    .concat(on.length > 0 && off.length > 0 ? off : []);
  return {
    unknown: odd
      .map((t) => `router ${t.target_name} is ${t.state}${t.message ? ` (${t.message})` : ''}`)
      .join('; '),
    wait: odd.every((t) => t.state === 'switching' || t.state === 'rolling_back'),
  };
}

/**
 * Blue-green by groups: where traffic for `releaseName` in the environment goes now — the group and
 * the targets the last deployment by `label` left it on, by what its routers did — or null before
 * any. Refuses when that is not known for sure, so that no deployment installs into the group that
 * serves; a person who has put the routers right says which group serves (`serving`).
 */
async function servingTraffic(
  db: Kysely<Tables>,
  env: { id: string; name: string },
  label: string,
  releaseName: string,
): Promise<{ group: GroupName; targets: string[] } | null> {
  const last = (await groupDeployments(db, env.id, label, releaseName))[0];
  if (!last) return null;
  const { groups } = last;
  const number = `DEP-${last.number}`;
  if (ACTIVE_DEPLOYMENT_STATES.includes(last.state as DeploymentState))
    throw new GantryError(
      'CONFLICT',
      `${number} is still deploying ${releaseName} to ${env.name} by groups (${label}); wait for it to end, or abort it, first.`,
      { deployments: [number] },
    );
  const did = await routersDid(db, last);
  if (typeof did === 'object')
    throw new GantryError(
      'CONFLICT',
      did.wait
        ? `${number}'s routers are still moving traffic for ${releaseName} in ${env.name} (${did.unknown}); try again in a moment.`
        : `Where traffic for ${releaseName} in ${env.name} goes is not known after ${number}: ${did.unknown}. Put the routers right, then deploy again saying which group serves (--serving blue or green).`,
      { deployments: [number] },
    );
  if (did === 'moved') return { group: groups.group, targets: groups.targets ?? [] };
  return groups.previous ? { group: groups.previous, targets: groups.previousTargets } : null;
}
