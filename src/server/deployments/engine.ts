/**
 * The deployment engine: a reconciler that drives every active deployment from durable state.
 * Each pass reads one deployment, brings its targets up to date with their agents' step results,
 * asks the pure `decide` for the next transition and writes it — in one transaction with its audit
 * entry — then asks again until there is nothing to do. Killed at any point, it resumes after a
 * restart from what was committed; a step is queued in the same transaction that records it, so
 * none is queued twice.
 *
 * Several replicas may share one PostgreSQL: a deployment is driven by the replica holding its
 * lease. Taking an expired lease raises the deployment's fencing number, and every pass checks,
 * under the audit-chain lock every write transaction holds, that the number is still its own — so
 * a paused old holder that wakes up cannot write.
 */
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import {
  type Decision,
  decide,
  type HaltRule,
  type OnFailure,
  routerMayHaveMoved,
  type Snapshot,
  type TargetState,
} from '../../core/deployments.ts';
import type { GroupPlan, StoredOptions } from '../../core/strategies.ts';
import type { AuditRecord } from '../audit/audit-log.ts';
import type { ChangeService } from '../changes/change-service.ts';
import type { Clock } from '../clock.ts';
import { inChunks } from '../db/chunks.ts';
import type { Database } from '../db/database.ts';
import type { DeploymentsTable, DeploymentTargetsTable } from '../db/schema.ts';
import { EventLog } from '../events/event-log.ts';
import { newSortableId } from '../ids.ts';
import { activeVersions } from '../inventory/ledger-service.ts';
import type { EnqueueInput, StepKind, StepService } from '../inventory/step-service.ts';
import { inTransaction, type UnitOfWork } from '../unit-of-work.ts';
import { UserStore } from '../users/user-store.ts';
import {
  BAKE_EXCEPTION,
  cancelHeldSteps,
  changeTransition,
  heldSteps,
  packagesOf,
} from './deployment-service.ts';

export interface EngineDeps {
  database: Database;
  clock: Clock;
  auditSink?: import('../audit/audit-sink.ts').AuditSink | undefined;
  steps: StepService;
  changes: ChangeService;
  /** How long a lease lasts; a replica renews it on every pass. */
  leaseMs?: number | undefined;
  /** How often every active deployment is looked at, whatever happened. */
  intervalMs?: number | undefined;
  failpoints?: import('../../support/failpoints.ts').Failpoints | undefined;
}

class LeaseLost extends Error {}

const ACTIVE = ['scheduled', 'running', 'paused', 'rolling_back'];
/** The least time between two passes when one was asked for during the last. */
const MIN_GAP_MS = 20;
/** The most a pass waits for more results: the last result of a wave is synced at most this late. */
const MAX_GAP_MS = 100;
const IN_FLIGHT: readonly string[] = [
  'installing',
  'activating',
  'staging',
  'switching',
  'rolling_back',
  'retry',
];
/** The target state while a step of this kind runs. */
/** Strategies whose next wave installs while the wave before it bakes. */
const INSTALL_AHEAD: readonly string[] = ['phased', 'rolling', 'canary'];

const RUNNING_STATE = {
  install: 'installing',
  activate: 'activating',
  stage: 'staging',
  switch: 'switching',
  route: 'switching',
} as const;

export class DeploymentEngine {
  readonly owner = `replica-${randomUUID().slice(0, 8)}`;
  /** Emits the deployment id whenever one changed (the live progress stream listens). */
  readonly changed = new EventEmitter();
  private readonly fencing = new Map<string, number>();
  /** When each lease this replica holds runs out, as last written. */
  private readonly leaseUntil = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  /** A `now` kick came: the next pass does not wait for more results. */
  private urgent = false;
  private stopped = false;
  private lastPassEnded = Number.NEGATIVE_INFINITY;

  constructor(private readonly deps: EngineDeps) {
    this.changed.setMaxListeners(0);
  }

  start(): void {
    this.timer = setInterval(() => this.kick(), this.deps.intervalMs ?? 1000);
    this.timer.unref();
    this.kick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }

  /**
   * Runs a pass soon; passes never overlap, and a kick during one runs another after it. A step
   * result is `soon` (the next pass waits a little, so results that arrive together are synced
   * together); a person's act or a bake's end is `now` (no wait beyond MIN_GAP_MS).
   */
  kick(when: 'soon' | 'now' = 'soon'): void {
    if (this.stopped) return;
    if (when === 'now') this.urgent = true;
    if (this.running) {
      this.again = true;
      return;
    }
    // Not sooner than MIN_GAP_MS after the last pass: a burst of results is synced in one pass.
    const wait = this.lastPassEnded + MIN_GAP_MS - performance.now();
    this.running = (wait > 0 ? new Promise((resolve) => setTimeout(resolve, wait)) : Promise.resolve())
      .then(() => this.passes())
      .finally(() => {
        this.running = undefined;
        this.lastPassEnded = performance.now();
      });
  }

  /** A pass when a bake ends, rather than at the next interval (up to `intervalMs` later). */
  private kickAt(at: Date): void {
    const ms = Math.min(2 ** 31 - 1, Math.max(0, at.getTime() - this.deps.clock.now().getTime()) + 5);
    setTimeout(() => this.kick('now'), ms).unref();
  }

  /** Resolves once no pass is running or asked for. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  /** One pass over every active deployment. */
  async tick(): Promise<void> {
    const db = this.deps.database.db;
    const now = this.deps.clock.now().toISOString();
    // Active deployments, and ended ones whose in-flight steps still have to be recorded (aborted or
    // frozen part-way; rolled back or failed while a later wave was installing ahead).
    const rows = await db
      .selectFrom('deployments as d')
      .select(['d.id', 'd.lease_owner', 'd.lease_until'])
      .where((eb) =>
        eb.or([
          eb('d.state', 'in', ACTIVE),
          eb.and([
            eb('d.state', 'in', ['aborted', 'frozen', 'rolled_back', 'failed']),
            eb.exists(
              eb
                .selectFrom('deployment_targets as t')
                .select('t.target_id')
                .whereRef('t.deployment_id', '=', 'd.id')
                .where('t.state', 'in', [...IN_FLIGHT]),
            ),
          ]),
        ]),
      )
      .orderBy('d.number')
      .execute();
    for (const row of rows) {
      if (this.stopped) return;
      if (row.lease_owner !== null && row.lease_owner !== this.owner && (row.lease_until ?? '') > now)
        continue;
      if (!(await this.takeLease(row.id))) continue;
      try {
        // A replica may stall here (a long GC pause, a frozen VM) while its lease runs out.
        await this.deps.failpoints?.hit('deploy.after_lease');
        await this.reconcile(row.id);
      } catch (error) {
        if (error instanceof LeaseLost) this.fencing.delete(row.id);
        else throw error;
      }
    }
  }

  /** Run after every pass (the pipelines move their runs on). */
  afterPass: (() => Promise<void>) | undefined;

  private async passes(): Promise<void> {
    do {
      if (this.stopped) return;
      this.again = false;
      this.urgent = false;
      const started = performance.now();
      try {
        await this.tick();
        await this.afterPass?.();
      } catch {
        // A failed pass (database away) is retried on the next interval.
      }
      // Kicked during the pass (a step result came in): pass again, but only after as long as this
      // one took, up to MAX_GAP_MS. With thousands of targets a pass then handles many results at
      // once, and answering the agents keeps at least half of the time. (Waiting longer, three
      // times as long, halved the rate on PostgreSQL, where a pass mostly waits for the database and
      // the wait only delays every agent's next step. Without the cap, a pass slowed by a busy
      // database — a 10,000-target deployment being created — held the next back by seconds, and
      // a wave's last result waited as long: the cap cut a phased rollout's overhead from 13.2 to
      // 7.5 s and did not lower the big-bang rate.) Kicked `now` (a person's act, a bake's end):
      // only MIN_GAP_MS. At least MIN_GAP_MS always: results that arrive together sync together.
      if (this.again && !this.stopped) {
        const gap = this.urgent
          ? MIN_GAP_MS
          : Math.max(MIN_GAP_MS, Math.min(MAX_GAP_MS, performance.now() - started));
        await new Promise((resolve) => setTimeout(resolve, gap));
      }
    } while (this.again && !this.stopped);
  }

  private async takeLease(id: string): Promise<boolean> {
    const db = this.deps.database.db;
    const now = this.deps.clock.now();
    const until = new Date(now.getTime() + (this.deps.leaseMs ?? 15_000)).toISOString();
    const mine = this.fencing.get(id);
    const leaseMs = this.deps.leaseMs ?? 15_000;
    // Renewed once half of it has run out, not on every pass (the fencing check keeps it safe).
    if (mine !== undefined && (this.leaseUntil.get(id) ?? 0) - now.getTime() > leaseMs / 2) return true;
    if (mine !== undefined) {
      const renewed = await db
        .updateTable('deployments')
        .set({ lease_until: until })
        .where('id', '=', id)
        .where('lease_owner', '=', this.owner)
        .where('fencing', '=', mine)
        .executeTakeFirst();
      if (Number(renewed.numUpdatedRows) === 1) {
        this.leaseUntil.set(id, Date.parse(until));
        return true;
      }
      this.fencing.delete(id);
    }
    // Taken under the audit-chain lock, like every pass: an old holder's pass that began before
    // this commits first; one that begins after sees the new fencing number and writes nothing.
    const fencing = await inTransaction(
      this.deps,
      { actor: 'gantry:deployments', source: this.owner },
      async (uow) => {
        const row = await uow.db
          .selectFrom('deployments')
          .select(['fencing', 'lease_owner', 'lease_until', 'number'])
          .where('id', '=', id)
          .executeTakeFirst();
        if (!row) return undefined;
        const free =
          row.lease_owner === null ||
          row.lease_owner === this.owner ||
          (row.lease_until ?? '') < now.toISOString();
        if (!free) return undefined;
        await uow.db
          .updateTable('deployments')
          .set({ lease_owner: this.owner, lease_until: until, fencing: row.fencing + 1 })
          .where('id', '=', id)
          .execute();
        if (row.lease_owner !== null && row.lease_owner !== this.owner)
          await uow.audit({
            action: 'deployment.lease_taken',
            subject: `deployment:${id}`,
            details: {
              number: `DEP-${row.number}`,
              from: row.lease_owner,
              to: this.owner,
              fencing: row.fencing + 1,
            },
          });
        return row.fencing + 1;
      },
    );
    if (fencing === undefined) return false;
    this.fencing.set(id, fencing);
    this.leaseUntil.set(id, Date.parse(until));
    return true;
  }

  /** Drives one deployment until it has to wait. */
  async reconcile(id: string): Promise<void> {
    for (let i = 0; i < 1000; i++) {
      const outcome = await this.pass(id, null);
      if (outcome.kind === 'needs_gate') {
        const verdict = await this.gate(id);
        const applied = await this.pass(id, verdict);
        if (applied.kind === 'waited' || applied.kind === 'synced') return;
        continue;
      }
      if (outcome.kind === 'waited' || outcome.kind === 'synced') return;
    }
  }

  private async gate(id: string) {
    const db = this.deps.database.db;
    const d = await db.selectFrom('deployments').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
    const user = await new UserStore(db).findById(d.created_by_id);
    const env = await db
      .selectFrom('environments')
      .select('name')
      .where('id', '=', d.environment_id)
      .executeTakeFirstOrThrow();
    if (!user)
      return {
        allowed: false,
        reasons: [{ code: 'not_approved', message: `${d.created_by} no longer exists` }],
      };
    return this.deps.changes.checkGate(
      { user, via: 'token', tokenId: null, session: null, source: null },
      {
        release: d.release_id,
        environment: env.name,
        change: d.change_id ?? undefined,
        strategy: d.strategy,
      },
    );
  }

  /**
   * One transaction: sync targets with their steps, decide, apply. A `start_wave` needs the gates
   * first: without a verdict the pass only reports that.
   */
  private async pass(
    id: string,
    verdict: { allowed: boolean; reasons: Array<{ code: string; message: string }> } | null,
  ): Promise<{ kind: 'applied' | 'synced' | 'waited' | 'needs_gate' }> {
    const wake = new Set<string>();
    const result = await inTransaction(
      this.deps,
      { actor: 'gantry:deployments', source: this.owner },
      async (uow) => {
        const d = await uow.db
          .selectFrom('deployments')
          .selectAll()
          .where('id', '=', id)
          .executeTakeFirstOrThrow();
        if (d.lease_owner !== this.owner || d.fencing !== this.fencing.get(id)) throw new LeaseLost();
        const synced =
          (await this.sync(uow, d, wake)) || (d.state === 'running' && (await this.verifyBaking(uow, d)));
        const snapshot = await this.snapshot(uow, d);
        const decision = decide(snapshot);
        // Synced, then nothing to decide: this pass saw its own changes, so another has nothing to do.
        if (decision.kind === 'wait') return synced ? 'synced' : 'waited';
        // A wave starts, or installs ahead, only when the gates pass.
        const gated =
          decision.kind === 'start_wave' ||
          (decision.kind === 'bake_wave' && decision.installAhead !== undefined);
        if (gated && verdict === null) return synced ? 'applied' : 'needs_gate';
        await this.deps.failpoints?.hit('deploy.before_apply');
        await this.apply(uow, d, decision, verdict, wake);
        return 'applied';
      },
    );
    for (const target of wake) this.deps.steps.wake(target);
    if (result === 'applied' || result === 'synced') this.changed.emit('changed', id);
    return { kind: result };
  }

  /**
   * Verification during a bake: an exception event on a target of the baking wave, since the wave
   * started, makes that target `unhealthy` — a failure for the halt rule, rolled back like a success.
   */
  private async verifyBaking(uow: UnitOfWork, d: DeploymentsTable): Promise<boolean> {
    const waves = await uow.db
      .selectFrom('deployment_waves')
      .select(['wave_index', 'started_at'])
      .where('deployment_id', '=', d.id)
      .where('state', '=', 'baking')
      .execute();
    let changed = false;
    for (const w of waves) {
      const targets = await uow.db
        .selectFrom('deployment_targets')
        .select(['target_id', 'target_name'])
        .where('deployment_id', '=', d.id)
        .where('wave_index', '=', w.wave_index)
        .where('state', '=', 'succeeded')
        .execute();
      if (targets.length === 0) continue;
      const events = await uow.db
        .selectFrom('events')
        .select(['subject', 'message'])
        .where('severity', '=', 'exception')
        .where('at', '>=', w.started_at ?? d.created_at)
        .where(
          'subject',
          'in',
          targets.map((t) => `target:${t.target_id}`),
        )
        .orderBy('at')
        .execute();
      for (const t of targets) {
        const event = events.find((e) => e.subject === `target:${t.target_id}`);
        if (!event) continue;
        changed = true;
        await uow.db
          .updateTable('deployment_targets')
          .set({
            state: 'unhealthy',
            message: `${BAKE_EXCEPTION}${event.message}`,
            updated_at: uow.now.toISOString(),
          })
          .where('deployment_id', '=', d.id)
          .where('target_id', '=', t.target_id)
          .execute();
        await uow.audit({
          action: 'deployment.target_unhealthy',
          subject: `deployment:${d.id}`,
          details: { number: `DEP-${d.number}`, target: t.target_name, event: event.message },
        });
      }
    }
    return changed;
  }

  /** Brings targets up to date with their steps; queues each target's next step. */
  private async sync(uow: UnitOfWork, d: DeploymentsTable, wake: Set<string>): Promise<boolean> {
    // Only the targets with something to do: to be queued again, or whose step has finished. The
    // database does the matching, so a pass costs what has changed, not the size of the deployment.
    const found = await uow.db
      .selectFrom('deployment_targets as t')
      .leftJoin('steps as s', 's.id', 't.step_id')
      .leftJoin('deployment_waves as w', (join) =>
        join.onRef('w.deployment_id', '=', 't.deployment_id').onRef('w.wave_index', '=', 't.wave_index'),
      )
      .selectAll('t')
      .select(['s.state as step_state', 's.message as step_message', 'w.state as wave_state'])
      .where('t.deployment_id', '=', d.id)
      .where('t.state', 'in', [...IN_FLIGHT])
      .where((eb) => eb.or([eb('t.state', '=', 'retry'), eb('s.state', 'in', ['succeeded', 'failed'])]))
      .execute();
    if (found.length === 0) return false;
    const packages = await packagesFor(uow, d);
    const opsOf = stepsOf(d, packages);
    const routers = storedOptions(d).groups?.routers ?? [];
    const isRouter = (targetId: string) => routers.includes(targetId);
    // Rolling back, aborted or frozen: what is in flight finishes, nothing new starts.
    const stopping = d.state === 'aborted' || d.state === 'frozen' || d.state === 'rolling_back';
    const batch = new TargetBatch(this.deps.steps, uow.now.toISOString());
    const queue = (t: DeploymentTargetsTable, kind: StepKind, op: Package) =>
      batch.step(this.stepInput(d, t, kind, op, wake));
    for (const { step_state: stepState, step_message: stepMessage, wave_state: waveState, ...t } of found) {
      const ops = opsOf(t.target_id);
      let { state, progress, message } = t;
      let stepId: string | null | StepRef = t.step_id;
      let activated = JSON.parse(t.activated) as string[];
      if (state === 'retry') {
        const op = ops[0];
        if (!op) continue;
        stepId = queue(t, op.kind, op);
        state = 'installing';
        progress = 0;
        // What it activated before the retry stays recorded: a rollback still puts that back.
      } else {
        const step = stepState === null ? undefined : { state: stepState, message: stepMessage };
        if (!step || step.state === 'queued' || step.state === 'running' || step.state === 'held') continue;
        if (state === 'rolling_back') {
          const order = [...activated].reverse();
          if (step.state === 'failed') {
            state = 'rollback_failed';
            message = step.message;
            stepId = null;
          } else {
            progress += 1;
            const nextComponent = order[progress];
            const op = ops.find((o) => o.component === nextComponent);
            if (op) stepId = queue(t, 'rollback', op);
            else {
              state = 'rolled_back';
              message = step.message;
              stepId = null;
            }
          }
        } else if (waveState === 'pending' || waveState === 'skipped') {
          // Installing ahead of its wave (not started, or never to start). Installed: it waits
          // here, its last install recorded as the last step done. A failure, or a deployment
          // stopping part-way, puts it back to pending: it installs again when its wave starts
          // (where a failure counts).
          const next = ops[progress + 1];
          if (step.state === 'succeeded' && next && next.kind !== 'install') {
            state = 'installed';
            message = step.message;
            if (next.kind === 'activate' && waveState === 'pending' && !stopping) {
              // Its first activation is queued now and held: starting the wave only releases it.
              progress += 1;
              stepId = batch.step({ ...this.stepInput(d, t, next.kind, next, new Set()), held: true });
            }
          } else if (step.state === 'succeeded' && next && !stopping) {
            progress += 1;
            stepId = queue(t, next.kind, next);
          } else {
            state = 'pending';
            progress = 0;
            stepId = null;
            message =
              step.state === 'failed'
                ? `installing ahead failed (${step.message}); it installs again when its wave starts`
                : `stopped installing ahead: the deployment was ${d.state}`;
          }
        } else if (step.state === 'failed') {
          // Changed, then failed — a later component of the release, or a router's later switch: the
          // agent put back only what failed, so the target is rolled back like one that succeeded.
          // A router whose switch failed and could not switch back either: traffic is not known.
          state =
            step.message?.startsWith('failed_needs_attention') && isRouter(t.target_id)
              ? 'rollback_failed'
              : activated.length > 0
                ? 'unhealthy'
                : 'failed';
          message = step.message;
          stepId = null;
        } else {
          const done = ops[progress];
          // A staged version counts as changed: rolling back stops it in its slot.
          if (done && done.kind !== 'install' && !activated.includes(done.component))
            activated = [...activated, done.component];
          progress += 1;
          const op = ops[progress];
          if ((op?.kind === 'switch' || op?.kind === 'route') && done?.kind !== op.kind) {
            // Blue-green: wait here until every target of the wave has staged (`switch_wave`).
            state = 'staged';
            message = step.message;
            stepId = null;
          } else if (op && !stopping) {
            stepId = queue(t, op.kind, op);
            state = RUNNING_STATE[op.kind];
          } else if (op) {
            state = activated.length > 0 ? 'unhealthy' : 'failed';
            message = `stopped: the deployment was ${d.state} before this target finished`;
            stepId = null;
          } else {
            state = 'succeeded';
            message = step.message;
            stepId = null;
          }
        }
      }
      batch.set(t, { state, progress, step_id: stepId, message, activated: JSON.stringify(activated) });
      if (
        state !== t.state &&
        (state === 'succeeded' ||
          state === 'failed' ||
          state === 'unhealthy' ||
          state === 'rolled_back' ||
          state === 'rollback_failed')
      )
        batch.audit({
          action: `deployment.target_${state}`,
          subject: `deployment:${d.id}`,
          details: { number: `DEP-${d.number}`, target: t.target_name, message },
        });
    }
    return batch.write(uow);
  }

  private async snapshot(uow: UnitOfWork, d: DeploymentsTable): Promise<Snapshot> {
    const [waves, targets] = await Promise.all([
      uow.db
        .selectFrom('deployment_waves')
        .selectAll()
        .where('deployment_id', '=', d.id)
        .orderBy('wave_index')
        .execute(),
      // Counts per wave and state, not the targets themselves: a pass stays cheap at 10,000 targets.
      uow.db
        .selectFrom('deployment_targets')
        .select(['wave_index', 'state', (eb) => eb.fn.countAll<number | string>().as('n')])
        .where('deployment_id', '=', d.id)
        .groupBy(['wave_index', 'state'])
        .execute(),
    ]);
    const groups = await this.groupFacts(uow, d);
    return {
      ...groups,
      state: d.state as Snapshot['state'],
      scheduledFor: d.scheduled_for ? new Date(d.scheduled_for) : null,
      haltRule: JSON.parse(d.halt_rule) as HaltRule,
      installAhead: INSTALL_AHEAD.includes(d.strategy) && storedOptions(d).installAhead !== false,
      waves: waves.map((w) => ({
        index: w.wave_index,
        state: w.state as Snapshot['waves'][number]['state'],
        gate: w.gate as 'auto' | 'manual',
        canary: w.canary === 1,
        bakeSeconds: w.bake_seconds,
        bakeUntil: w.bake_until ? new Date(w.bake_until) : null,
        approved: w.approved_by !== null,
      })),
      targets: targets.map((t) => ({
        wave: t.wave_index,
        state: (t.state === 'retry' ? 'installing' : t.state) as TargetState,
        count: Number(t.n),
      })),
      now: uow.now,
    };
  }

  /**
   * Blue-green by groups: traffic must never be switched to a group with no healthy target, nor be
   * left split or unknown because a router's switch failed — whatever share the halt rule allows.
   */
  private async groupFacts(
    uow: UnitOfWork,
    d: DeploymentsTable,
  ): Promise<Pick<Snapshot, 'mustHalt' | 'routers' | 'trafficMoved'>> {
    const groups = storedOptions(d).groups;
    if (!groups) return {};
    const targets = await uow.db
      .selectFrom('deployment_targets')
      .select(['target_id', 'target_name', 'state', 'message', 'activated'])
      .where('deployment_id', '=', d.id)
      .execute();
    const routers = targets.filter((t) => groups.routers.includes(t.target_id));
    const members = targets.filter((t) => !groups.routers.includes(t.target_id));
    const failed = routers.filter((t) => ['failed', 'unhealthy', 'rollback_failed'].includes(t.state));
    // Traffic has moved, or may have: a router switched, is switching, or could not switch back.
    const moved = routers.some(routerMayHaveMoved);
    const stuck = routers.filter((t) => t.state === 'rollback_failed').map((t) => t.target_name);
    const back = !moved
      ? ''
      : stuck.length > 0
        ? `; ${stuck.join(', ')} could not switch back, so the group is left as it is for a person`
        : groups.previous
          ? `; traffic goes back to the ${groups.previous} group`
          : '; no group served before, so traffic cannot go back: the routers need a person';
    let mustHalt: string | null = null;
    if (failed.length > 0)
      mustHalt = `${failed.map((t) => `router ${t.target_name}: ${t.message ?? 'failed'}`).join('; ')}${back}`;
    else if (members.every((t) => t.state === 'failed' || t.state === 'unhealthy'))
      mustHalt = moved
        ? `every target of the ${groups.group} group failed${back}`
        : `no target of the ${groups.group} group is healthy: traffic stays on ${groups.previous ? `the ${groups.previous} group` : 'what served before'}`;
    return {
      mustHalt,
      // Before any group served, there is nowhere to move traffic back to: the on-failure action holds.
      trafficMoved: moved && groups.previous !== null,
      routers: routers.map((t) => ({
        state: (t.state === 'retry' ? 'installing' : t.state) as TargetState,
        count: 1,
      })),
    };
  }

  private async apply(
    uow: UnitOfWork,
    d: DeploymentsTable,
    decision: Exclude<Decision, { kind: 'wait' }>,
    verdict: { allowed: boolean; reasons: Array<{ code: string; message: string }> } | null,
    wake: Set<string>,
  ): Promise<void> {
    const now = uow.now.toISOString();
    const number = `DEP-${d.number}`;
    const setState = async (state: string, reason: string | null, extra: Partial<DeploymentsTable> = {}) => {
      await uow.db
        .updateTable('deployments')
        .set({ state, reason, updated_at: now, ...extra })
        .where('id', '=', d.id)
        .execute();
      if (['rolled_back', 'failed', 'frozen', 'rolling_back', 'succeeded'].includes(state))
        await cancelHeldSteps(uow, d, state);
      if (['rolled_back', 'failed', 'frozen', 'rolling_back'].includes(state)) {
        // The plan beside the outcome: waves that ran stop, waves that never started are skipped.
        await uow.db
          .updateTable('deployment_waves')
          .set({ state: 'stopped', finished_at: now })
          .where('deployment_id', '=', d.id)
          .where('state', 'in', ['running', 'baking', 'awaiting_approval'])
          .execute();
        await uow.db
          .updateTable('deployment_waves')
          .set({ state: 'skipped' })
          .where('deployment_id', '=', d.id)
          .where('state', '=', 'pending')
          .execute();
      }
      await uow.audit({
        action: `deployment.${state}`,
        subject: `deployment:${d.id}`,
        details: { number, from: d.state, reason },
      });
    };
    /** The targets of `wave` in state `from` go to `to` (`retry`: `sync` queues their first step). */
    const moveTargets = (wave: number, from: string, to: string) =>
      uow.db
        .updateTable('deployment_targets')
        .set({ state: to, updated_at: now })
        .where('deployment_id', '=', d.id)
        .where('wave_index', '=', wave)
        .where('state', '=', from)
        .execute();
    const env = await uow.db
      .selectFrom('environments')
      .select('name')
      .where('id', '=', d.environment_id)
      .executeTakeFirstOrThrow();
    const events = new EventLog(uow.db);
    switch (decision.kind) {
      case 'start':
        await setState('running', null, { started_at: now });
        if (d.change_id) await changeTransition(uow, d.change_id, 'start', `${number} started`);
        return;
      case 'start_wave': {
        if (verdict && !verdict.allowed) {
          const windowClosed = verdict.reasons.some((r) => r.code === 'outside_window');
          await setState(
            'paused',
            windowClosed ? 'window_closed' : `gate: ${verdict.reasons.map((r) => r.code).join(', ')}`,
          );
          await events.record({
            at: now,
            severity: 'warning',
            kind: 'deployment.paused',
            subject: `deployment:${d.id}`,
            message: `${number} paused before wave ${decision.wave + 1}: ${verdict.reasons.map((r) => r.message).join('; ')}`,
            details: { reasons: verdict.reasons },
          });
          return;
        }
        await uow.db
          .updateTable('deployment_waves')
          .set({ state: 'running', started_at: now })
          .where('deployment_id', '=', d.id)
          .where('wave_index', '=', decision.wave)
          .execute();
        // Installed ahead, their activations held: released to the agents, a few statements.
        const held = await heldSteps(uow.db, d.id, decision.wave);
        const released = await this.deps.steps.release(
          uow,
          held.map((h) => h.stepId),
        );
        for (const target of released) wake.add(target);
        for (const targets of inChunks(released))
          await uow.db
            .updateTable('deployment_targets')
            .set({ state: RUNNING_STATE.activate, updated_at: now })
            .where('deployment_id', '=', d.id)
            .where('target_id', 'in', targets)
            .where('state', '=', 'installed')
            .execute();
        // Each target's first step is queued here; `sync` queues the rest as results arrive.
        await moveTargets(decision.wave, 'pending', 'retry');
        // Installed ahead with nothing held (a deployment from before holding): `sync` takes them
        // up as if their last install had just finished.
        await moveTargets(decision.wave, 'installed', 'installing');
        await uow.audit({
          action: 'deployment.wave_started',
          subject: `deployment:${d.id}`,
          details: {
            number,
            wave: decision.wave + 1,
            ...(released.length ? { released: released.length } : {}),
          },
        });
        await this.sync(uow, d, wake);
        return;
      }
      case 'switch_wave': {
        // Blue-green: every target has staged (or failed): traffic moves on all of them now. By
        // groups, the routers switch it to the group's targets that are healthy.
        const opsOf = stepsOf(d, await packagesFor(uow, d));
        const wave = await uow.db
          .selectFrom('deployment_targets')
          .selectAll()
          .where('deployment_id', '=', d.id)
          .where('wave_index', '=', decision.wave)
          .where('state', 'in', ['staged', 'succeeded'])
          .orderBy('target_name')
          .execute();
        const staged = wave.filter((t) => t.state === 'staged');
        const options = storedOptions(d);
        const groups = options.groups;
        let route: EnqueueInput['route'];
        if (groups) {
          groups.targets = wave
            .filter((t) => !groups.routers.includes(t.target_id))
            .map((t) => t.target_name);
          route = routeOf(groups);
          // Where the routers send traffic is recorded with the deployment: the next one's
          // rollback sends traffic back to exactly these targets.
          await uow.db
            .updateTable('deployments')
            .set({ options: JSON.stringify(options) })
            .where('id', '=', d.id)
            .execute();
        }
        const batch = new TargetBatch(this.deps.steps, now);
        for (const t of staged) {
          const op = opsOf(t.target_id)[t.progress];
          if (op?.kind !== 'switch' && op?.kind !== 'route') continue;
          batch.set(t, {
            state: 'switching',
            step_id: batch.step(this.stepInput(d, t, op.kind, op, wake, route)),
          });
        }
        await batch.write(uow);
        await uow.audit({
          action: 'deployment.switch_started',
          subject: `deployment:${d.id}`,
          details: { number, wave: decision.wave + 1, targets: staged.length },
        });
        return;
      }
      case 'bake_wave':
        await uow.db
          .updateTable('deployment_waves')
          .set({ state: 'baking', bake_until: decision.bakeUntil.toISOString() })
          .where('deployment_id', '=', d.id)
          .where('wave_index', '=', decision.wave)
          .execute();
        this.kickAt(decision.bakeUntil);
        // The next wave's targets install while this one bakes (nothing on them changes until
        // their wave starts). Gates that refuse leave them to `start_wave`, which pauses.
        if (decision.installAhead !== undefined && verdict?.allowed) {
          await moveTargets(decision.installAhead, 'pending', 'retry');
          await uow.audit({
            action: 'deployment.wave_installing_ahead',
            subject: `deployment:${d.id}`,
            details: { number, wave: decision.installAhead + 1 },
          });
          await this.sync(uow, d, wake);
        }
        return;
      case 'await_approval':
        await uow.db
          .updateTable('deployment_waves')
          .set({ state: 'awaiting_approval' })
          .where('deployment_id', '=', d.id)
          .where('wave_index', '=', decision.wave)
          .execute();
        await events.record({
          at: now,
          severity: 'informational',
          kind: 'deployment.awaiting_approval',
          subject: `deployment:${d.id}`,
          message: `${number} waits for a person to approve wave ${decision.wave + 2}`,
          details: {},
        });
        return;
      case 'finish_wave':
        await uow.db
          .updateTable('deployment_waves')
          .set({ state: 'succeeded', finished_at: now })
          .where('deployment_id', '=', d.id)
          .where('wave_index', '=', decision.wave)
          .execute();
        await uow.audit({
          action: 'deployment.wave_succeeded',
          subject: `deployment:${d.id}`,
          details: { number, wave: decision.wave + 1 },
        });
        return;
      case 'complete': {
        // Within the halt rule some targets may have failed: the deployment succeeded, and says so.
        const failed = await uow.db
          .selectFrom('deployment_targets')
          .select('target_name')
          .where('deployment_id', '=', d.id)
          .where('state', 'in', ['failed', 'unhealthy'])
          .execute();
        await setState(
          'succeeded',
          failed.length
            ? `${failed.length} target(s) failed within the halt rule: ${failed.map((f) => f.target_name).join(', ')}`
            : null,
          { finished_at: now },
        );
        await this.recordOutcome(uow, d, 'succeeded');
        if (d.change_id) await changeTransition(uow, d.change_id, 'complete', `${number} succeeded`);
        await this.compareWithApproved(uow, d, number);
        return;
      }
      case 'halt': {
        const onFailure = d.on_failure as OnFailure;
        await events.record({
          at: now,
          severity: 'exception',
          kind: 'deployment.halted',
          subject: `deployment:${d.id}`,
          message: `${number} to ${env.name} halted: ${decision.reason}; ${onFailure === 'rollback' || decision.rollBack ? 'rolling back' : onFailure === 'pause' ? 'paused for a person' : 'frozen as it is'}`,
          details: {
            reason: decision.reason,
            onFailure,
            ...(decision.rollBack ? { rolledBack: 'traffic had moved' } : {}),
          },
        });
        // Traffic that has moved (blue-green by groups) goes back whatever the on-failure action.
        if (onFailure === 'rollback' || decision.rollBack)
          await setState('rolling_back', `halted: ${decision.reason}`);
        else if (onFailure === 'pause') await setState('paused', `halted: ${decision.reason}`);
        else {
          await setState('frozen', `halted: ${decision.reason}`, { finished_at: now });
          await this.recordOutcome(uow, d, 'failed');
          if (d.change_id) await changeTransition(uow, d.change_id, 'fail', `${number} halted and frozen`);
        }
        return;
      }
      case 'roll_back_targets': {
        const packages = await packagesFor(uow, d);
        const groups = storedOptions(d).groups;
        const routers = groups?.routers ?? [];
        const targets = (
          await uow.db
            .selectFrom('deployment_targets')
            .selectAll()
            .where('deployment_id', '=', d.id)
            .where('state', 'in', [...decision.states])
            .execute()
        ).filter((t) => decision.only !== 'routers' || routers.includes(t.target_id));
        const batch = new TargetBatch(this.deps.steps, now);
        for (const t of targets) {
          const activated = JSON.parse(t.activated) as string[];
          const order = [...activated].reverse();
          const first = packages.find((p) => p.component === order[0]);
          const before = JSON.parse(t.before) as Record<string, string | null>;
          if (!first) batch.set(t, { state: 'rolled_back' });
          else if (groups && !routers.includes(t.target_id) && activated.every((c) => !before[c]))
            // By groups, a target of the idle group that ran nothing before has nothing to go back
            // to: traffic has left it (the routers went first), so it stays, idle.
            batch.set(t, {
              state: 'rolled_back',
              message: `nothing ran here before; ${t.target_name} keeps ${activated.join(', ')} of this deployment, idle: traffic stays on the ${groups.previous ?? 'other'} group`,
            });
          else
            batch.set(t, {
              state: 'rolling_back',
              progress: 0,
              step_id: batch.step(this.stepInput(d, t, 'rollback', first, wake)),
              message: null,
            });
        }
        await batch.write(uow);
        return;
      }
      case 'finish_rollback':
        if (!decision.ok)
          await events.record({
            at: now,
            severity: 'exception',
            kind: 'deployment.rollback_failed',
            subject: `deployment:${d.id}`,
            message: `${number}: the rollback could not put every target back; they need attention`,
            details: {},
          });
        await setState(
          decision.ok ? 'rolled_back' : 'failed',
          decision.ok ? d.reason : `rollback incomplete; ${d.reason ?? ''}`,
          {
            finished_at: now,
          },
        );
        await this.recordOutcome(uow, d, 'failed');
        if (d.change_id)
          await changeTransition(
            uow,
            d.change_id,
            decision.ok ? 'back-out' : 'fail',
            `${number} rolled back`,
          );
        return;
    }
  }

  /** One step of this deployment for target `t`, its agent to be woken after the commit. */
  private stepInput(
    d: DeploymentsTable,
    t: { target_id: string; target_name: string },
    kind: StepKind,
    op: Package,
    wake: Set<string>,
    route?: EnqueueInput['route'],
  ): EnqueueInput {
    const options = storedOptions(d);
    const groups = options.groups;
    wake.add(t.target_id);
    return {
      targetId: t.target_id,
      targetName: t.target_name,
      kind,
      component: op.component,
      // A rollback names the version it undoes (a blue-green agent stops it if it was only staged).
      version: op.version,
      digest: kind === 'install' ? op.digest : null,
      size: kind === 'install' ? op.size : null,
      ...(kind === 'switch' ? { keepSeconds: options.keepSeconds } : {}),
      ...(kind === 'route' ? { route } : {}),
      // A router's rollback names the route it undoes: the agent moves traffic back only from there.
      ...(kind === 'rollback' && groups?.routers.includes(t.target_id) ? { route: routeOf(groups) } : {}),
      requestedBy: `deployment:DEP-${d.number}`,
      reference: `deployment:${d.id}`,
    };
  }

  private async recordOutcome(uow: UnitOfWork, d: DeploymentsTable, outcome: 'succeeded' | 'failed') {
    await uow.db
      .insertInto('release_outcomes')
      .values({
        id: newSortableId(),
        release_id: d.release_id,
        environment_id: d.environment_id,
        outcome,
        deployment_id: d.id,
        change_id: d.change_id,
        source: 'deployment',
        note: `DEP-${d.number}`,
        recorded_by: 'gantry:deployments',
        at: uow.now.toISOString(),
      })
      .execute();
  }

  /**
   * Executed vs approved: what each target runs now (per the ledger its agent wrote) against what
   * the change approved. Any difference is an unauthorised change, an exception event on the change.
   */
  private async compareWithApproved(uow: UnitOfWork, d: DeploymentsTable, number: string) {
    const packages = await packagesFor(uow, d);
    const targets = await uow.db
      .selectFrom('deployment_targets')
      .select(['target_id', 'target_name'])
      .where('deployment_id', '=', d.id)
      .execute();
    const differences: string[] = [];
    const versions = await activeVersions(
      uow.db,
      packages.map((p) => p.component),
    );
    for (const t of targets)
      for (const p of packages) {
        const active = versions.get(t.target_id)?.get(p.component) ?? null;
        if (active !== p.version)
          differences.push(
            `${t.target_name} runs ${p.component} ${active ?? 'nothing'}, approved ${p.version}`,
          );
      }
    if (differences.length > 0 && d.change_id)
      await new EventLog(uow.db).record({
        at: uow.now.toISOString(),
        severity: 'exception',
        kind: 'change.unauthorised_change',
        subject: `change:${d.change_id}`,
        message: `After ${number}, ${differences.length} target(s) run something the change did not approve: ${differences.slice(0, 5).join('; ')}`,
        details: { deployment: d.id, differences },
      });
  }
}

type Package = Awaited<ReturnType<typeof packagesOf>>[number];

/** The packages of the deployment's release, in the release's order. */
async function packagesFor(uow: UnitOfWork, d: Pick<DeploymentsTable, 'release_id'>): Promise<Package[]> {
  const release = await uow.db
    .selectFrom('releases')
    .select('components')
    .where('id', '=', d.release_id)
    .executeTakeFirstOrThrow();
  return packagesOf(uow.db, JSON.parse(release.components));
}

function storedOptions(d: Pick<DeploymentsTable, 'options'>): StoredOptions {
  return JSON.parse(d.options) as StoredOptions;
}

/** Blue-green by groups: where this deployment's routers move traffic, and from where. */
function routeOf(groups: GroupPlan): NonNullable<EnqueueInput['route']> {
  return {
    slot: groups.group,
    previousSlot: groups.previous,
    targets: groups.targets ?? [],
    previousTargets: groups.previousTargets,
  };
}

type Op = { kind: 'install' | 'activate' | 'stage' | 'switch' | 'route' } & Package;

/**
 * The steps a target runs, in order, by its id: every package installed, then activated — or,
 * blue-green, installed, staged in the idle slot, and (once every target has staged) switched. By
 * groups, the idle group's targets install and activate; the routers install, then (once every
 * target of the group has finished) run the package's switch hook.
 */
function stepsOf(
  d: Pick<DeploymentsTable, 'strategy' | 'options'>,
  packages: Package[],
): (targetId: string) => Op[] {
  const each = (kind: Op['kind']) => packages.map((p) => ({ kind, ...p }));
  const groups = d.strategy === 'blue-green' ? storedOptions(d).groups : undefined;
  const plain = [...each('install'), ...each('activate')];
  if (groups) {
    const router = [...each('install'), ...each('route')];
    return (targetId) => (groups.routers.includes(targetId) ? router : plain);
  }
  const ops = d.strategy === 'blue-green' ? [...each('install'), ...each('stage'), ...each('switch')] : plain;
  return () => ops;
}

/** A step queued in a `TargetBatch`, by its place there; its id is known once the batch is written. */
class StepRef {
  constructor(readonly index: number) {}
}

/**
 * What one pass changes on many targets of a deployment — the steps it queues, the targets' new
 * states, the audit entries — written at the end with a few multi-row statements rather than two
 * statements per target.
 */
class TargetBatch {
  private readonly steps: EnqueueInput[] = [];
  private readonly rows = new Map<
    string,
    Omit<DeploymentTargetsTable, 'step_id'> & { step_id: string | null | StepRef }
  >();
  private readonly audits: AuditRecord[] = [];

  constructor(
    private readonly stepService: StepService,
    private readonly now: string,
  ) {}

  step(input: EnqueueInput): StepRef {
    return new StepRef(this.steps.push(input) - 1);
  }

  set(
    row: DeploymentTargetsTable,
    change: Partial<Omit<DeploymentTargetsTable, 'step_id'>> & { step_id?: string | null | StepRef },
  ): void {
    this.rows.set(row.target_id, { ...row, ...change, updated_at: this.now });
  }

  audit(record: AuditRecord): void {
    this.audits.push(record);
  }

  /** Writes it all; true when anything changed. */
  async write(uow: UnitOfWork): Promise<boolean> {
    const ids = this.steps.length > 0 ? await this.stepService.enqueueMany(uow, this.steps) : [];
    const rows = [...this.rows.values()].map((r) => ({
      ...r,
      step_id: r.step_id instanceof StepRef ? (ids[r.step_id.index] as string) : r.step_id,
    }));
    // Every row exists already: the insert always meets its key and updates what a pass changes.
    for (const chunk of inChunks(rows)) {
      await uow.db
        .insertInto('deployment_targets')
        .values(chunk)
        .onConflict((oc) =>
          oc.columns(['deployment_id', 'target_id']).doUpdateSet((eb) => ({
            state: eb.ref('excluded.state'),
            progress: eb.ref('excluded.progress'),
            step_id: eb.ref('excluded.step_id'),
            message: eb.ref('excluded.message'),
            activated: eb.ref('excluded.activated'),
            updated_at: eb.ref('excluded.updated_at'),
          })),
        )
        .execute();
    }
    for (const record of this.audits) await uow.audit(record);
    return rows.length > 0;
  }
}
