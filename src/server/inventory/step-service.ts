/**
 * Steps: single pieces of work for one target's agent — install a package, activate a version,
 * roll back to the one before, remove an old one. An operator can queue them by hand; the
 * deployment engine will queue them as the waves of a plan. Agents take the oldest queued step
 * (long-polling), and report its result once: a repeated report changes nothing.
 */
import { EventEmitter } from 'node:events';
import { type Kysely, sql } from 'kysely';
import { GantryError } from '../../core/errors.ts';
import { SYSTEM_ACTOR } from '../audit/audit-log.ts';
import { actorOf, type Principal } from '../auth/principal.ts';
import { Coalescer, type Outcome } from '../coalescer.ts';
import { inChunks } from '../db/chunks.ts';
import { TargetAnnouncements } from '../db/notifications.ts';
import type { StepsTable, Tables } from '../db/schema.ts';
import { EventLog } from '../events/event-log.ts';
import { newSortableId } from '../ids.ts';
import { inTransaction, type TransactionDeps, type UnitOfWork } from '../unit-of-work.ts';
import type { AgentIdentity } from './enrollment-service.ts';
import type { InventoryService } from './inventory-service.ts';
import { recordActivation } from './ledger-service.ts';

/** `logs` asks the agent for the last lines of a component's log (its service's output). */
export const STEP_KINDS = [
  'install',
  'activate',
  'rollback',
  'remove',
  'logs',
  'stage',
  'switch',
  'route',
] as const;
export type StepKind = (typeof STEP_KINDS)[number];

export interface Step {
  id: string;
  target: string;
  kind: StepKind;
  component: string;
  version: string | null;
  digest: string | null;
  size: number | null;
  keepSeconds?: number;
  route?: StepRoute;
  /**
   * `held`: queued ahead by a deployment, not to be run until its wave starts (agents do not see
   * it); `cancelled`: held, then the deployment stopped before the wave started.
   */
  state: 'held' | 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
  message: string | null;
  requestedBy: string;
  createdAt: string;
  updatedAt: string;
}

/** Where a target's wakes stood when its agent's look-up began (`StepService.mark`). */
export interface WakeMark {
  all: number;
  one: number;
}

/** Blue-green by groups: where a router's `route` step moves traffic. */
export interface StepRoute {
  /** The group that takes traffic now. */
  slot: 'blue' | 'green';
  /** The group that served before (null before the first switch). */
  previousSlot: 'blue' | 'green' | null;
  /** The names of the group's targets that are healthy, for the switch hook. */
  targets: string[];
  /** The names of the targets of the group that served before (where a rollback sends traffic). */
  previousTargets: string[];
}

export interface EnqueueInput {
  targetId: string;
  targetName: string;
  kind: StepKind;
  component: string;
  version: string | null;
  digest: string | null;
  size: number | null;
  keepSeconds?: number | undefined;
  route?: StepRoute | undefined;
  requestedBy: string;
  reference: string;
  /** Queued ahead, held until `release` (no agent sees it before). */
  held?: boolean | undefined;
}

export class StepService {
  /** Wakes the long-polls of a target's agent when a step is queued for it in this process. */
  private readonly queued = new EventEmitter();

  constructor(
    private readonly deps: TransactionDeps,
    private readonly inventory: InventoryService,
  ) {
    this.queued.setMaxListeners(0);
  }

  /**
   * Where the wakes of `targetId`'s agent stand now: taken before looking for its step, and given
   * to `waitForWork`, so that a step queued while the look-up was on its way is not missed.
   */
  mark(targetId: string): WakeMark {
    return { all: this.wokenAll, one: this.woken.get(targetId) ?? 0 };
  }

  /** Whether a wake for `targetId` came since `since` was marked. */
  wokenSince(targetId: string, since: WakeMark): boolean {
    const now = this.mark(targetId);
    return now.all !== since.all || now.one !== since.one;
  }

  /**
   * Resolves when a step may have been queued for `targetId`: at once when this process queues
   * one (or queued one since `since` was marked), and after `recheckMs` at the latest (another
   * replica may have queued it).
   */
  waitForWork(
    targetId: string,
    recheckMs: number,
    signal: AbortSignal,
    since?: WakeMark,
  ): Promise<StepsTable | undefined> {
    if (since && this.wokenSince(targetId, since)) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const done = (queued?: StepsTable) => {
        clearTimeout(timer);
        this.queued.off(targetId, done);
        signal.removeEventListener('abort', onAbort);
        resolve(queued);
      };
      const onAbort = () => done();
      const timer = setTimeout(done, recheckMs);
      this.queued.on(targetId, done);
      signal.addEventListener('abort', onAbort);
    });
  }

  async queue(
    by: Principal,
    targetRef: string,
    input: { kind: StepKind; component: string; version?: string | undefined },
  ): Promise<Step> {
    const target = await this.inventory.target(by, targetRef);
    if (target.state === 'retired') throw new GantryError('CONFLICT', `Target '${target.name}' is retired.`);
    if (input.kind !== 'rollback' && input.kind !== 'logs' && input.version === undefined) {
      throw new GantryError('VALIDATION', `A ${input.kind} step needs a version.`, [
        { path: '/version', message: 'required' },
      ]);
    }
    let digest: string | null = null;
    let size: number | null = null;
    if (input.kind === 'install') {
      const artifact = await this.deps.database.db
        .selectFrom('artifacts')
        .select(['digest', 'kind', 'state', 'size'])
        .where('component', '=', input.component)
        .where('version', '=', input.version as string)
        .executeTakeFirst();
      if (!artifact)
        throw new GantryError(
          'NOT_FOUND',
          `No artifact ${input.component} ${input.version} in the media library.`,
        );
      if (artifact.kind !== 'package')
        throw new GantryError(
          'CONFLICT',
          `${input.component} ${input.version} is a ${artifact.kind}, not a package; only packages are installed.`,
        );
      if (artifact.state !== 'available')
        throw new GantryError(
          'QUARANTINED',
          `${input.component} ${input.version} is quarantined and cannot be installed.`,
        );
      digest = artifact.digest;
      size = Number(artifact.size);
    }
    const step = await inTransaction(this.deps, actorOf(by), async (uow) => {
      const row: StepsTable = {
        id: newSortableId(),
        target_id: target.id,
        kind: input.kind,
        component: input.component,
        version: input.version ?? null,
        digest,
        size,
        state: 'queued',
        message: null,
        requested_by: actorOf(by).actor,
        created_at: uow.now.toISOString(),
        updated_at: uow.now.toISOString(),
      };
      await uow.db.insertInto('steps').values(row).execute();
      await this.announce(uow, [target.id]);
      await uow.audit({
        action: 'step.queued',
        subject: `step:${row.id}`,
        details: { target: target.name, kind: input.kind, component: input.component, version: row.version },
      });
      return toStep(row, target.name);
    });
    this.signal(target.id);
    return step;
  }

  /**
   * Queues a step inside the caller's transaction (the deployment engine's); the caller calls
   * `wake(targetId)` after the commit so the agent's long-poll answers at once.
   */
  async enqueue(uow: UnitOfWork, input: EnqueueInput): Promise<string> {
    const [id] = await this.enqueueMany(uow, [input]);
    return id as string;
  }

  /** Queues many steps in the caller's transaction with few statements; their ids, in order. */
  async enqueueMany(uow: UnitOfWork, inputs: readonly EnqueueInput[]): Promise<string[]> {
    const now = uow.now.toISOString();
    const rows: StepsTable[] = inputs.map((input) => ({
      id: newSortableId(),
      target_id: input.targetId,
      kind: input.kind,
      component: input.component,
      version: input.version,
      digest: input.digest,
      size: input.size,
      keep_seconds: input.keepSeconds ?? null,
      route: input.route ? JSON.stringify(input.route) : null,
      state: input.held ? 'held' : 'queued',
      message: null,
      requested_by: input.requestedBy,
      created_at: now,
      updated_at: now,
    }));
    for (const chunk of inChunks(rows)) await uow.db.insertInto('steps').values(chunk).execute();
    const ready = rows.filter((r) => r.state === 'queued');
    for (const row of ready) this.justQueued.set(row.target_id, row);
    await this.announce(
      uow,
      ready.map((r) => r.target_id),
    );
    for (const [i, input] of inputs.entries()) {
      await uow.audit({
        action: 'step.queued',
        subject: `step:${(rows[i] as StepsTable).id}`,
        details: {
          target: input.targetName,
          kind: input.kind,
          component: input.component,
          version: input.version,
          for: input.reference,
          ...(input.held ? { held: true } : {}),
        },
      });
    }
    return rows.map((r) => r.id);
  }

  /**
   * Releases held steps to their agents, in the caller's transaction (the caller audits the
   * release and calls `wake` for each target after the commit); the targets of those released.
   */
  async release(uow: UnitOfWork, stepIds: readonly string[]): Promise<string[]> {
    const targets: string[] = [];
    for (const ids of inChunks([...stepIds])) {
      const rows = await uow.db
        .updateTable('steps')
        .set({ state: 'queued', updated_at: uow.now.toISOString() })
        .where('id', 'in', ids)
        .where('state', '=', 'held')
        .returningAll()
        .execute();
      for (const row of rows) {
        this.justQueued.set(row.target_id, row);
        targets.push(row.target_id);
      }
    }
    await this.announce(uow, targets);
    return targets;
  }

  /**
   * How long a waiting long-poll goes before asking the database again. Only another replica's
   * queueing can go unheard here, and only PostgreSQL has replicas: there, while this replica
   * listens for the others' announcements, a wait is re-checked only every minute (a safety net);
   * while its listening connection is down, every 5 s. On SQLite a wait is never re-checked,
   * which keeps 10,000 waiting agents cheap.
   */
  get recheckMs(): number {
    if (this.deps.database.dialect !== 'postgres') return Number.POSITIVE_INFINITY;
    return this.announcements?.connected ? 60_000 : 5000;
  }

  /**
   * PostgreSQL: listens for the steps other replicas queue (LISTEN/NOTIFY) and wakes the
   * long-polls this replica holds for their targets; announces its own the same way.
   */
  listen(): Promise<void> {
    if (this.announcements) return this.announcements.ready;
    if (!this.deps.database.listener) return Promise.resolve();
    this.announcements = new TargetAnnouncements(
      this.deps.database.listener,
      'gantry_steps',
      (targets) => {
        for (const target of targets) this.signal(target);
      },
      // Announcements sent while the connection was down are lost: every waiting poll looks
      // again, and so does every look-up on its way.
      () => {
        this.wokenAll += 1;
        for (const target of this.queued.eventNames()) this.queued.emit(target);
      },
    );
    return this.announcements.ready;
  }

  async close(): Promise<void> {
    await this.announcements?.close();
    this.announcements = undefined;
  }

  private announcements: TargetAnnouncements | undefined;

  /** Tells the other replicas, when the transaction commits, that these targets have new steps. */
  private async announce(uow: UnitOfWork, targetIds: Iterable<string>): Promise<void> {
    await this.announcements?.announce(uow.db, targetIds);
  }

  /**
   * Wakes the agent's waiting long-poll, handing it the step just queued for it so that it need
   * not look it up. (Handed over only as a hint: taking it checks that it is still queued and that
   * nothing older is open for the target.)
   */
  wake(targetId: string): void {
    const row = this.justQueued.get(targetId);
    this.justQueued.delete(targetId);
    this.signal(targetId, row);
  }

  /** Counts the wake (see `mark`) and hands it to the target's waiting long-polls. */
  private signal(targetId: string, row?: StepsTable): void {
    this.woken.set(targetId, (this.woken.get(targetId) ?? 0) + 1);
    this.queued.emit(targetId, row);
  }

  /** Wakes per target in this process, and wakes of every target at once (see `mark`). */
  private readonly woken = new Map<string, number>();
  private wokenAll = 0;

  /** The last step `enqueueMany` queued per target, until `wake` hands it on. */
  private readonly justQueued = new Map<string, StepsTable>();

  /** Told after every step result is recorded (the deployment engine listens). */
  onSettled: ((stepId: string) => void) | undefined;

  async list(by: Principal, targetRef: string): Promise<Step[]> {
    const target = await this.inventory.target(by, targetRef);
    const rows = await this.deps.database.db
      .selectFrom('steps')
      .selectAll()
      .where('target_id', '=', target.id)
      .orderBy('id')
      .execute();
    return rows.map((r) => toStep(r, target.name));
  }

  /**
   * The step the agent should run now: one it was already given and has not finished (after a
   * restart it continues there), or else the oldest queued one, which becomes running.
   */
  async next(agent: AgentIdentity, hint?: StepsTable): Promise<Step | null> {
    // Handed the step just queued for it by `wake`: straight to taking it.
    if (hint && hint.target_id === agent.targetId && hint.state === 'queued')
      return this.takes.submit({ agent, found: hint });
    // Most asks find nothing (a long-poll waking to look again), and one that finds a step it
    // was already given changes nothing: both are answered without a write transaction, which
    // would take the audit-chain lock every writer in every replica waits for.
    const found = await this.lookups.submit(agent.targetId);
    if (!found) return null;
    if (found.state === 'running') return toStep(found, agent.targetName);
    return this.takes.submit({ agent, found });
  }

  /** Records a step's outcome, once; when it changed what is active, the ledger says so. */
  async report(agent: AgentIdentity, stepId: string, input: StepReport): Promise<Step> {
    const settled = await this.reports.submit({ agent, stepId, input });
    this.onSettled?.(stepId);
    return settled;
  }

  /**
   * Agents' look-ups, made together: one SELECT finds the step to run for every target that asked
   * meanwhile (10,000 agents polling after their results are a few dozen statements, not 10,000).
   */
  private readonly lookups = new Coalescer<string, StepsTable | undefined>(async (targetIds) => {
    const found = new Map<string, StepsTable>();
    for (const chunk of inChunks([...new Set(targetIds)]))
      for (const row of await firstOpenSteps(this.deps.database.db, chunk)) found.set(row.target_id, row);
    return targetIds.map((id) => ({ ok: true, value: found.get(id) }));
  });

  /** Agents' asks that found a queued step, taken together: one transaction, one UPDATE for all. */
  private readonly takes = new Coalescer<TakeRequest, Step | null>((items) =>
    inTransaction(this.deps, SYSTEM_ACTOR, (uow) => this.takeMany(uow, items)),
  );

  /** Agents' results, recorded together: one transaction, a few statements for all. */
  private readonly reports = new Coalescer<ReportRequest, Step>((items) =>
    inTransaction(this.deps, SYSTEM_ACTOR, (uow) => this.recordMany(uow, items)),
  );

  private async takeMany(uow: UnitOfWork, items: TakeRequest[]): Promise<Array<Outcome<Step | null>>> {
    const now = uow.now.toISOString();
    const taken = new Map<string, StepsTable>();
    for (const ids of inChunks([...new Set(items.map((i) => i.found.id))])) {
      // Only a step that is still queued, with nothing running or queued before it for the target.
      const rows = await uow.db
        .updateTable('steps')
        .set({ state: 'running', updated_at: now })
        .where('id', 'in', ids)
        .where('state', '=', 'queued')
        .where(({ not, exists, selectFrom }) =>
          not(
            exists(
              selectFrom('steps as older')
                .select('older.id')
                .whereRef('older.target_id', '=', 'steps.target_id')
                .where((eb) =>
                  eb.or([
                    eb('older.state', '=', 'running'),
                    eb.and([eb('older.state', '=', 'queued'), eb('older.id', '<', eb.ref('steps.id'))]),
                  ]),
                ),
            ),
          ),
        )
        .returningAll()
        .execute();
      for (const row of rows) taken.set(row.id, row);
    }
    const outcomes: Array<Outcome<Step | null>> = [];
    const started = new Set<string>();
    for (const { agent, found } of items) {
      const row = taken.get(found.id);
      if (!row) {
        // Changed since it was read, or not the one to run first: look again, the careful way.
        outcomes.push({ ok: true, value: await this.takeOne(uow, agent) });
        continue;
      }
      if (!started.has(row.id)) {
        started.add(row.id);
        await auditStarted(uow, agent, row);
      }
      outcomes.push({ ok: true, value: toStep(row, agent.targetName) });
    }
    return outcomes;
  }

  /** One agent's ask, the careful way: the step it was given, else the oldest queued one. */
  private async takeOne(uow: UnitOfWork, agent: AgentIdentity): Promise<Step | null> {
    const step = await firstOpenStep(uow.db, agent.targetId);
    if (!step) return null;
    if (step.state === 'running') return toStep(step, agent.targetName);
    await uow.db
      .updateTable('steps')
      .set({ state: 'running', updated_at: uow.now.toISOString() })
      .where('id', '=', step.id)
      .execute();
    await auditStarted(uow, agent, step);
    return toStep({ ...step, state: 'running' }, agent.targetName);
  }

  private async recordMany(uow: UnitOfWork, items: ReportRequest[]): Promise<Array<Outcome<Step>>> {
    const now = uow.now.toISOString();
    // Each step once in the statement; a second report of it in the same batch is judged after.
    // (Keyed by step and agent: another agent naming the step must not push its own agent's
    // report out of the statement.)
    const key = (item: ReportRequest) => `${item.stepId} ${item.agent.targetId}`;
    const first = new Map<string, number>();
    for (const [i, item] of items.entries()) if (!first.has(key(item))) first.set(key(item), i);
    const recorded = new Map<string, StepsTable>();
    for (const chunk of inChunks([...first.values()].map((i) => items[i] as ReportRequest))) {
      const values = sql.join(
        chunk.map(
          (r) => sql`(${r.stepId}, ${r.agent.targetId}, ${r.input.outcome}, ${r.input.message ?? null})`,
        ),
      );
      // Only a step of this agent's that is still open is recorded.
      const result = await sql<StepsTable>`
        with v(id, target_id, state, message) as (values ${values})
        update steps set state = v.state, message = v.message, updated_at = ${now}
        from v
        where steps.id = v.id and steps.target_id = v.target_id and steps.state in ('queued', 'running')
        returning ${STEP_COLUMNS}`.execute(uow.db);
      for (const row of result.rows) recorded.set(row.id, row);
    }
    const outcomes: Array<Outcome<Step>> = [];
    const activations: Array<{ item: ReportRequest; kind: string }> = [];
    for (const [i, item] of items.entries()) {
      const { agent, stepId, input } = item;
      const candidate = first.get(key(item)) === i ? recorded.get(stepId) : undefined;
      const step = candidate?.target_id === agent.targetId ? candidate : undefined;
      if (!step) {
        // Not open (already reported, or not this agent's): say why, or that it changes nothing.
        const settled = await uow.db
          .selectFrom('steps')
          .selectAll()
          .where('id', '=', stepId)
          .where('target_id', '=', agent.targetId)
          .executeTakeFirst();
        if (!settled)
          outcomes.push({
            ok: false,
            error: new GantryError('NOT_FOUND', `No step '${stepId}' for this agent.`),
          });
        else if (settled.state === 'held' || settled.state === 'cancelled')
          outcomes.push({
            ok: false,
            error: new GantryError(
              'CONFLICT',
              `Step ${stepId} is ${settled.state === 'held' ? 'held until its wave starts' : 'cancelled'}: it was not given to the agent.`,
            ),
          });
        else if (settled.state === input.outcome)
          outcomes.push({ ok: true, value: toStep(settled, agent.targetName) });
        else
          outcomes.push({
            ok: false,
            error: new GantryError('CONFLICT', `Step ${stepId} was already reported as ${settled.state}.`),
          });
        continue;
      }
      const message = input.message ?? null;
      await uow.audit({
        by: agentActor(agent),
        action: `step.${input.outcome}`,
        subject: `step:${stepId}`,
        details: {
          target: agent.targetName,
          kind: step.kind,
          component: step.component,
          version: step.version,
          message,
        },
      });
      if (input.outcome === 'failed' && message?.startsWith('failed_needs_attention')) {
        // The target could not be put back (row F06): a person has to look, now.
        await new EventLog(uow.db).record({
          at: now,
          severity: 'exception',
          kind: 'target.needs_attention',
          subject: `target:${agent.targetId}`,
          message: `${agent.targetName}: ${message}`,
          details: { step: stepId, kind: step.kind, component: step.component },
        });
      }
      if (input.outcome === 'succeeded' && input.active) activations.push({ item, kind: step.kind });
      outcomes.push({ ok: true, value: toStep(step, agent.targetName) });
    }
    await this.recordActivations(uow, activations);
    return outcomes;
  }

  /** The ledger entries of the activations in a batch of results, and the drift they clear. */
  private async recordActivations(
    uow: UnitOfWork,
    activations: Array<{ item: ReportRequest; kind: string }>,
  ): Promise<void> {
    const now = uow.now.toISOString();
    const entry = ({ item, kind }: { item: ReportRequest; kind: string }) => ({
      targetId: item.agent.targetId,
      component: item.input.active?.component as string,
      version: item.input.active?.version as string,
      reference: item.stepId,
      note: `${kind} by the agent`,
      recordedBy: `agent:${item.agent.targetName}`,
      at: now,
    });
    // One statement compares each with the ledger as it was: a component twice (one agent's two
    // results in one batch) is recorded the careful way, in order, after the others.
    const seen = new Set<string>();
    const together: Array<ReturnType<typeof entry>> = [];
    const after: Array<ReturnType<typeof entry>> = [];
    for (const a of activations) {
      const e = entry(a);
      const key = JSON.stringify([e.targetId, e.component]);
      (seen.has(key) ? after : together).push(e);
      seen.add(key);
    }
    const cleared: Array<{ targetId: string; component: string }> = [];
    for (const chunk of inChunks(together)) {
      const values = sql.join(
        chunk.map(
          (e) =>
            sql`(${newSortableId()}, ${e.targetId}, ${e.component}, ${e.version}, ${e.reference}, ${e.note}, ${e.recordedBy}, ${e.at})`,
        ),
      );
      // Each added unless the ledger already says that version is active; it names the one before.
      const result = await sql<{ target_id: string; component: string }>`
        with v(id, target_id, component, version, reference, note, recorded_by, at) as (values ${values})
        insert into ledger_entries
          (id, target_id, component, version, digest, previous_version, source, reference, note, recorded_by, at)
        select x.id, x.target_id, x.component, x.version,
          (select 'sha256:' || a.digest from artifacts a where a.component = x.component and a.version = x.version),
          x.previous, 'step', x.reference, x.note, x.recorded_by, x.at
        from (
          select v.*, (
            select l.version from ledger_entries l
            where l.target_id = v.target_id and l.component = v.component
            order by l.id desc limit 1
          ) as previous
          from v
        ) x
        where x.previous is null or x.previous <> x.version
        returning target_id, component`.execute(uow.db);
      for (const row of result.rows) cleared.push({ targetId: row.target_id, component: row.component });
    }
    for (const e of after) if (await recordActivation(uow.db, e)) cleared.push(e);
    for (const chunk of inChunks(cleared)) {
      await uow.db
        .deleteFrom('drift')
        .where((eb) =>
          eb.or(
            chunk.map((c) => eb.and([eb('target_id', '=', c.targetId), eb('component', '=', c.component)])),
          ),
        )
        .execute();
    }
  }
}

interface StepReport {
  outcome: 'succeeded' | 'failed';
  message?: string | undefined;
  active?: { component: string; version: string } | undefined;
}

interface TakeRequest {
  agent: AgentIdentity;
  /** The queued step the agent's ask found. */
  found: StepsTable;
}

interface ReportRequest {
  agent: AgentIdentity;
  stepId: string;
  input: StepReport;
}

/** Cancels held steps that will never run, each audited, in the caller's transaction. */
export async function cancelHeld(uow: UnitOfWork, stepIds: readonly string[], why: string): Promise<number> {
  let cancelled = 0;
  for (const ids of inChunks([...stepIds])) {
    const rows = await uow.db
      .updateTable('steps')
      .set({ state: 'cancelled', message: why, updated_at: uow.now.toISOString() })
      .where('id', 'in', ids)
      .where('state', '=', 'held')
      .returning(['id', 'kind', 'component', 'version'])
      .execute();
    for (const row of rows)
      await uow.audit({
        action: 'step.cancelled',
        subject: `step:${row.id}`,
        details: { kind: row.kind, component: row.component, version: row.version, message: why },
      });
    cancelled += rows.length;
  }
  return cancelled;
}

/** Every column of a step, named for RETURNING (SQLite takes no `steps.*` there). */
const STEP_COLUMNS = sql.raw(
  [
    'id',
    'target_id',
    'kind',
    'component',
    'version',
    'digest',
    'size',
    'keep_seconds',
    'route',
    'state',
    'message',
    'requested_by',
    'created_at',
    'updated_at',
  ]
    .map((c) => `steps.${c}`)
    .join(', '),
);

const agentActor = (agent: AgentIdentity) => ({ actor: `agent:${agent.targetName}`, source: null });

/** The step a target's agent should run now: one it was given and has not finished, else the oldest queued. */
async function firstOpenStep(db: Kysely<Tables>, targetId: string): Promise<StepsTable | undefined> {
  return (await firstOpenSteps(db, [targetId]))[0];
}

/** The step each of many targets' agents should run now (see `firstOpenStep`), in one statement. */
async function firstOpenSteps(db: Kysely<Tables>, targetIds: readonly string[]): Promise<StepsTable[]> {
  const result = await sql<StepsTable>`
    select ${STEP_COLUMNS} from (
      select steps.*, row_number() over (
        partition by target_id order by case when state = 'running' then 0 else 1 end, id
      ) as n
      from steps
      where target_id in (${sql.join(targetIds)}) and state in ('running', 'queued')
    ) as steps
    where n = 1`.execute(db);
  return result.rows;
}

function auditStarted(uow: UnitOfWork, agent: AgentIdentity, step: StepsTable): Promise<void> {
  return uow.audit({
    by: agentActor(agent),
    action: 'step.started',
    subject: `step:${step.id}`,
    details: { target: agent.targetName, kind: step.kind, component: step.component, version: step.version },
  });
}

function toStep(row: StepsTable, target: string): Step {
  return {
    id: row.id,
    target,
    kind: row.kind as StepKind,
    component: row.component,
    version: row.version,
    digest: row.digest,
    size: row.size === null ? null : Number(row.size),
    ...(row.keep_seconds !== null && row.keep_seconds !== undefined
      ? { keepSeconds: Number(row.keep_seconds) }
      : {}),
    ...(row.route ? { route: JSON.parse(row.route) as StepRoute } : {}),
    state: row.state as Step['state'],
    message: row.message,
    requestedBy: row.requested_by,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
