/**
 * Steps: single pieces of work for one target's agent — install a package, activate a version,
 * roll back to the one before, remove an old one. An operator can queue them by hand; the
 * deployment engine will queue them as the waves of a plan. Agents take the oldest queued step
 * (long-polling), and report its result once: a repeated report changes nothing.
 */
import { EventEmitter } from 'node:events';
import { sql } from 'kysely';
import { GantryError } from '../../core/errors.ts';
import { actorOf, type Principal } from '../auth/principal.ts';
import type { StepsTable } from '../db/schema.ts';
import { EventLog } from '../events/event-log.ts';
import { newSortableId } from '../ids.ts';
import { inTransaction, type TransactionDeps, type UnitOfWork } from '../unit-of-work.ts';
import type { AgentIdentity } from './enrollment-service.ts';
import type { InventoryService } from './inventory-service.ts';
import { activeVersion } from './ledger-service.ts';

/** `logs` asks the agent for the last lines of a component's log (its service's output). */
export const STEP_KINDS = ['install', 'activate', 'rollback', 'remove', 'logs', 'stage', 'switch'] as const;
export type StepKind = (typeof STEP_KINDS)[number];

export interface Step {
  id: string;
  target: string;
  kind: StepKind;
  component: string;
  version: string | null;
  digest: string | null;
  size: number | null;
  state: 'queued' | 'running' | 'succeeded' | 'failed';
  message: string | null;
  requestedBy: string;
  createdAt: string;
  updatedAt: string;
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
   * Resolves when a step may have been queued for `targetId`: at once when this process queues
   * one, and after `recheckMs` at the latest (another replica may have queued it).
   */
  waitForWork(targetId: string, recheckMs: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.queued.off(targetId, done);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, recheckMs);
      this.queued.on(targetId, done);
      signal.addEventListener('abort', done);
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
      await uow.audit({
        action: 'step.queued',
        subject: `step:${row.id}`,
        details: { target: target.name, kind: input.kind, component: input.component, version: row.version },
      });
      return toStep(row, target.name);
    });
    this.queued.emit(target.id);
    return step;
  }

  /**
   * Queues a step inside the caller's transaction (the deployment engine's); the caller calls
   * `wake(targetId)` after the commit so the agent's long-poll answers at once.
   */
  async enqueue(
    uow: UnitOfWork,
    input: {
      targetId: string;
      targetName: string;
      kind: StepKind;
      component: string;
      version: string | null;
      digest: string | null;
      size: number | null;
      keepSeconds?: number | undefined;
      requestedBy: string;
      reference: string;
    },
  ): Promise<string> {
    const row: StepsTable = {
      id: newSortableId(),
      target_id: input.targetId,
      kind: input.kind,
      component: input.component,
      version: input.version,
      digest: input.digest,
      size: input.size,
      ...(input.keepSeconds !== undefined ? { keep_seconds: input.keepSeconds } : {}),
      state: 'queued',
      message: null,
      requested_by: input.requestedBy,
      created_at: uow.now.toISOString(),
      updated_at: uow.now.toISOString(),
    };
    await uow.db.insertInto('steps').values(row).execute();
    await uow.audit({
      action: 'step.queued',
      subject: `step:${row.id}`,
      details: {
        target: input.targetName,
        kind: input.kind,
        component: input.component,
        version: input.version,
        for: input.reference,
      },
    });
    return row.id;
  }

  /**
   * How long a waiting long-poll goes before asking the database again. Only another replica's
   * queueing goes unheard here, and only PostgreSQL has replicas: on SQLite a wait is never
   * re-checked, which keeps 10,000 waiting agents cheap.
   */
  get recheckMs(): number {
    return this.deps.database.dialect === 'postgres' ? 5000 : Number.POSITIVE_INFINITY;
  }

  wake(targetId: string): void {
    this.queued.emit(targetId);
  }

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
  async next(agent: AgentIdentity): Promise<Step | null> {
    // Most asks find nothing (a long-poll waking to look again): look first without a write
    // transaction, which would take the audit-chain lock every writer in every replica waits for.
    const any = await this.deps.database.db
      .selectFrom('steps')
      .select('id')
      .where('target_id', '=', agent.targetId)
      .where('state', 'in', ['queued', 'running'])
      .limit(1)
      .executeTakeFirst();
    if (!any) return null;
    return inTransaction(this.deps, { actor: `agent:${agent.targetName}`, source: null }, async (uow) => {
      // One it was given and has not finished comes first, else the oldest queued (one query).
      const queued = await uow.db
        .selectFrom('steps')
        .selectAll()
        .where('target_id', '=', agent.targetId)
        .where('state', 'in', ['running', 'queued'])
        .orderBy(sql`case when state = 'running' then 0 else 1 end`)
        .orderBy('id')
        .executeTakeFirst();
      if (!queued) return null;
      if (queued.state === 'running') return toStep(queued, agent.targetName);
      await uow.db
        .updateTable('steps')
        .set({ state: 'running', updated_at: uow.now.toISOString() })
        .where('id', '=', queued.id)
        .execute();
      await uow.audit({
        action: 'step.started',
        subject: `step:${queued.id}`,
        details: {
          target: agent.targetName,
          kind: queued.kind,
          component: queued.component,
          version: queued.version,
        },
      });
      return toStep({ ...queued, state: 'running' }, agent.targetName);
    });
  }

  /** Records a step's outcome, once; when it changed what is active, the ledger says so. */
  async report(
    agent: AgentIdentity,
    stepId: string,
    input: {
      outcome: 'succeeded' | 'failed';
      message?: string | undefined;
      active?: { component: string; version: string } | undefined;
    },
  ): Promise<Step> {
    const settled = await this.record(agent, stepId, input);
    this.onSettled?.(stepId);
    return settled;
  }

  private async record(
    agent: AgentIdentity,
    stepId: string,
    input: {
      outcome: 'succeeded' | 'failed';
      message?: string | undefined;
      active?: { component: string; version: string } | undefined;
    },
  ): Promise<Step> {
    return inTransaction(this.deps, { actor: `agent:${agent.targetName}`, source: null }, async (uow) => {
      const message = input.message ?? null;
      // Recorded in one statement when the step is still open (as nearly always); only otherwise
      // is it read to say why not.
      const step = await uow.db
        .updateTable('steps')
        .set({ state: input.outcome, message, updated_at: uow.now.toISOString() })
        .where('id', '=', stepId)
        .where('target_id', '=', agent.targetId)
        .where('state', 'in', ['queued', 'running'])
        .returningAll()
        .executeTakeFirst();
      if (!step) {
        const settled = await uow.db
          .selectFrom('steps')
          .selectAll()
          .where('id', '=', stepId)
          .where('target_id', '=', agent.targetId)
          .executeTakeFirst();
        if (!settled) throw new GantryError('NOT_FOUND', `No step '${stepId}' for this agent.`);
        if (settled.state === input.outcome) return toStep(settled, agent.targetName);
        throw new GantryError('CONFLICT', `Step ${stepId} was already reported as ${settled.state}.`);
      }
      await uow.audit({
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
          at: uow.now.toISOString(),
          severity: 'exception',
          kind: 'target.needs_attention',
          subject: `target:${agent.targetId}`,
          message: `${agent.targetName}: ${message}`,
          details: { step: stepId, kind: step.kind, component: step.component },
        });
      }
      if (input.outcome === 'succeeded' && input.active) {
        const previous = await activeVersion(uow.db, agent.targetId, input.active.component);
        if (previous !== input.active.version) {
          // The digest of what now runs, so the media library can say which targets run an artifact.
          const artifact = await uow.db
            .selectFrom('artifacts')
            .select('digest')
            .where('component', '=', input.active.component)
            .where('version', '=', input.active.version)
            .executeTakeFirst();
          await uow.db
            .insertInto('ledger_entries')
            .values({
              id: newSortableId(),
              target_id: agent.targetId,
              component: input.active.component,
              version: input.active.version,
              digest: artifact ? `sha256:${artifact.digest}` : null,
              previous_version: previous,
              source: 'step',
              reference: stepId,
              note: `${step.kind} by the agent`,
              recorded_by: `agent:${agent.targetName}`,
              at: uow.now.toISOString(),
            })
            .execute();
          await uow.db
            .deleteFrom('drift')
            .where('target_id', '=', agent.targetId)
            .where('component', '=', input.active.component)
            .execute();
        }
      }
      return toStep({ ...step, state: input.outcome, message }, agent.targetName);
    });
  }
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
    state: row.state as Step['state'],
    message: row.message,
    requestedBy: row.requested_by,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}
