/**
 * Continuous delivery: a pipeline names environments in order, each with its strategy, the soak
 * time after it succeeds, the change template that lets it run as a standard change, and whether
 * the release's evidence must have passed. A run carries one release through the stages by
 * itself; where an environment needs an approved change and the stage has no template, the run
 * stops at that door until a person names an approved change.
 */
import type { Kysely } from 'kysely';
import { policyOf } from '../../core/changes.ts';
import { GantryError, isGantryError } from '../../core/errors.ts';
import { optionsProblem, type Strategy, type StrategyOptions } from '../../core/strategies.ts';
import { actorOf, type Principal } from '../auth/principal.ts';
import { type ChangeService, findChange } from '../changes/change-service.ts';
import { isUniqueViolation } from '../db/db-errors.ts';
import type { PipelineRunsTable, PipelinesTable, Tables } from '../db/schema.ts';
import { EventLog } from '../events/event-log.ts';
import { newSortableId } from '../ids.ts';
import { environmentByName, findRelease, type ReleaseService } from '../releases/release-service.ts';
import { inTransaction, type TransactionDeps } from '../unit-of-work.ts';
import { UserStore } from '../users/user-store.ts';
import type { DeploymentService } from './deployment-service.ts';

export interface Stage {
  environment: string;
  strategy: Strategy;
  options?: StrategyOptions | undefined;
  /** Seconds the release must run well here before the next stage starts. */
  soakSeconds?: number | undefined;
  /** The change template that makes this stage a standard change (pre-approved). */
  template?: string | undefined;
  /** The release's evidence must have passed before this stage deploys. */
  requireEvidence?: boolean | undefined;
}

/** States the driver moves on; `waiting_change` moves only when a person names a change. */
const OPEN = ['running', 'deploying', 'soaking', 'blocked'];
/** How long a change a pipeline raises for a standard stage stays open. */
const STANDARD_WINDOW_MS = 6 * 3_600_000;

export class PipelineService {
  constructor(
    private readonly deps: TransactionDeps & {
      changes: ChangeService;
      releases: ReleaseService;
      deployments: DeploymentService;
    },
  ) {}

  async create(
    by: Principal,
    input: { name: string; releaseName: string; stages: Stage[]; autoStart?: boolean | undefined },
  ) {
    const problems: Array<{ path: string; message: string }> = [];
    const db = this.deps.database.db;
    for (const [i, stage] of input.stages.entries()) {
      const misfit = optionsProblem(stage.strategy, stage.options ?? {});
      if (misfit) problems.push({ path: `/stages/${i}/options`, message: `${stage.environment}: ${misfit}` });
      if (stage.options?.serving !== undefined)
        problems.push({
          path: `/stages/${i}/options/serving`,
          message: `${stage.environment}: serving is said once, for one deployment, not for every run of a pipeline`,
        });
      if (
        !(await db
          .selectFrom('environments')
          .select('id')
          .where('name', '=', stage.environment)
          .executeTakeFirst())
      )
        problems.push({ path: `/stages/${i}/environment`, message: `no environment '${stage.environment}'` });
      if (stage.template) {
        const t = await db
          .selectFrom('change_templates')
          .select(['retired_at'])
          .where('name', '=', stage.template)
          .executeTakeFirst();
        if (!t || t.retired_at)
          problems.push({
            path: `/stages/${i}/template`,
            message: `no active change template '${stage.template}'`,
          });
      }
    }
    if (new Set(input.stages.map((s) => s.environment)).size !== input.stages.length)
      problems.push({ path: '/stages', message: 'each environment appears once' });
    if (problems.length > 0)
      throw new GantryError(
        'VALIDATION',
        `The pipeline is not valid: ${problems.map((p) => p.message).join('; ')}.`,
        problems,
      );
    try {
      return await inTransaction(this.deps, actorOf(by), async (uow) => {
        const now = uow.now.toISOString();
        const row: PipelinesTable = {
          id: newSortableId(),
          name: input.name,
          release_name: input.releaseName,
          stages: JSON.stringify(input.stages),
          auto_start: input.autoStart === false ? 0 : 1,
          created_by: actorOf(by).actor,
          created_by_id: by.user.id,
          created_at: now,
          updated_at: now,
        };
        await uow.db.insertInto('pipelines').values(row).execute();
        await uow.audit({
          action: 'pipeline.created',
          subject: `pipeline:${row.id}`,
          details: {
            name: row.name,
            releaseName: row.release_name,
            stages: input.stages,
            autoStart: row.auto_start === 1,
          },
        });
        return this.view(uow.db, row);
      });
    } catch (error) {
      if (isUniqueViolation(error))
        throw new GantryError('CONFLICT', `A pipeline named '${input.name}' already exists.`, {
          field: '/name',
        });
      throw error;
    }
  }

  async list() {
    const db = this.deps.database.db;
    const rows = await db.selectFrom('pipelines').selectAll().orderBy('name').execute();
    return Promise.all(rows.map((r) => this.view(db, r)));
  }

  async get(name: string) {
    const db = this.deps.database.db;
    return this.view(db, await findPipeline(db, name));
  }

  /** Starts carrying a release through the pipeline (CI calls this, or it starts on release creation). */
  async start(by: Principal, name: string, releaseRef: string) {
    try {
      return await inTransaction(this.deps, actorOf(by), async (uow) => {
        const pipeline = await findPipeline(uow.db, name);
        const release = await findRelease(uow.db, releaseRef);
        if (release.name !== pipeline.release_name)
          throw new GantryError(
            'VALIDATION',
            `Pipeline ${name} carries releases named ${pipeline.release_name}, not ${release.name}.`,
          );
        const now = uow.now.toISOString();
        const run: PipelineRunsTable = {
          id: newSortableId(),
          pipeline_id: pipeline.id,
          release_id: release.id,
          stage: 0,
          state: 'running',
          deployment_id: null,
          change_id: null,
          soak_until: null,
          reason: null,
          history: JSON.stringify([
            { at: now, stage: 0, event: 'started', detail: `${release.name}@${release.version}` },
          ]),
          created_at: now,
          updated_at: now,
        };
        await uow.db.insertInto('pipeline_runs').values(run).execute();
        await uow.audit({
          action: 'pipeline.run_started',
          subject: `pipeline:${pipeline.id}`,
          details: { run: run.id, release: `${release.name}@${release.version}` },
        });
        return runView(run, pipeline, `${release.name}@${release.version}`);
      });
    } catch (error) {
      if (isUniqueViolation(error))
        throw new GantryError('CONFLICT', `Pipeline ${name} is already carrying ${releaseRef}.`);
      throw error;
    }
  }

  /** Opens the door a run waits at: the approved change it may deploy under. */
  async approve(by: Principal, runId: string, changeRef: string) {
    return inTransaction(this.deps, actorOf(by), async (uow) => {
      const run = await uow.db
        .selectFrom('pipeline_runs')
        .selectAll()
        .where('id', '=', runId)
        .executeTakeFirst();
      if (!run)
        throw new GantryError('NOT_FOUND', `No pipeline run '${runId}'. See \`gantry pipeline show NAME\`.`);
      if (run.state !== 'waiting_change')
        throw new GantryError('ILLEGAL_TRANSITION', `The run is ${run.state}, not waiting for a change.`);
      const change = await findChange(uow.db, changeRef, undefined);
      const history = [
        ...JSON.parse(run.history),
        {
          at: uow.now.toISOString(),
          stage: run.stage,
          event: 'change_given',
          detail: `CHG-${change.number} by ${actorOf(by).actor}`,
        },
      ];
      await uow.db
        .updateTable('pipeline_runs')
        .set({
          state: 'running',
          change_id: change.id,
          reason: null,
          history: JSON.stringify(history),
          updated_at: uow.now.toISOString(),
        })
        .where('id', '=', run.id)
        .execute();
      await uow.audit({
        action: 'pipeline.run_change_given',
        subject: `pipeline:${run.pipeline_id}`,
        details: { run: run.id, change: `CHG-${change.number}` },
      });
    });
  }

  /** Starts runs for a new release on every pipeline that carries its name automatically. */
  async releaseCreated(releaseId: string): Promise<void> {
    const db = this.deps.database.db;
    const release = await db
      .selectFrom('releases')
      .select(['name', 'version'])
      .where('id', '=', releaseId)
      .executeTakeFirst();
    if (!release) return;
    const pipelines = await db
      .selectFrom('pipelines')
      .selectAll()
      .where('release_name', '=', release.name)
      .where('auto_start', '=', 1)
      .execute();
    for (const p of pipelines) {
      const by = await this.principalOf(p);
      if (by) await this.start(by, p.name, releaseId).catch(() => undefined);
    }
  }

  /** Moves every open run one step if it can; the engine's loop calls this. */
  async advance(): Promise<void> {
    const db = this.deps.database.db;
    const runs = await db
      .selectFrom('pipeline_runs')
      .selectAll()
      .where('state', 'in', OPEN)
      .orderBy('created_at')
      .execute();
    const key = (r: PipelineRunsTable) => JSON.stringify([r.state, r.stage, r.deployment_id, r.change_id]);
    for (const run of runs) {
      // Each run goes on as far as it can now (soaked → next stage → its deployment).
      let current = run;
      for (let i = 0; i < 5; i++) {
        await this.advanceOne(current).catch(() => undefined);
        const after = await db
          .selectFrom('pipeline_runs')
          .selectAll()
          .where('id', '=', run.id)
          .executeTakeFirst();
        if (!after || key(after) === key(current) || !OPEN.includes(after.state) || after.state === 'blocked')
          break;
        current = after;
      }
    }
  }

  private async advanceOne(run: PipelineRunsTable): Promise<void> {
    const db = this.deps.database.db;
    const pipeline = await db
      .selectFrom('pipelines')
      .selectAll()
      .where('id', '=', run.pipeline_id)
      .executeTakeFirstOrThrow();
    const stages = JSON.parse(pipeline.stages) as Stage[];
    const stage = stages[run.stage];
    const now = this.deps.clock.now();
    if (!stage) return this.update(run, { state: 'succeeded' }, 'succeeded', 'every stage passed');

    if (run.state === 'soaking') {
      if (run.soak_until && now.toISOString() < run.soak_until) return;
      const next = run.stage + 1;
      if (next >= stages.length)
        return this.update(run, { state: 'succeeded', soak_until: null }, 'succeeded', 'every stage passed');
      return this.update(
        run,
        { stage: next, state: 'running', deployment_id: null, change_id: null, soak_until: null },
        'stage_started',
        stages[next]?.environment ?? '',
      );
    }

    if (run.deployment_id) {
      const d = await db
        .selectFrom('deployments')
        .select(['state', 'number', 'reason'])
        .where('id', '=', run.deployment_id)
        .executeTakeFirst();
      if (!d) return;
      if (d.state === 'succeeded') {
        const soakUntil = new Date(now.getTime() + (stage.soakSeconds ?? 0) * 1000).toISOString();
        return this.update(
          run,
          { state: 'soaking', soak_until: soakUntil },
          'deployed',
          `DEP-${d.number} succeeded; soaking until ${soakUntil}`,
        );
      }
      if (['failed', 'rolled_back', 'aborted', 'frozen'].includes(d.state))
        return this.update(
          run,
          { state: 'failed', reason: `DEP-${d.number} ${d.state}: ${d.reason ?? ''}` },
          'failed',
          `DEP-${d.number} ${d.state}`,
        );
      return;
    }

    // A blocked run is tried again every 30 s; a claim left by a replica that died is taken back
    // after 2 minutes.
    const age = now.getTime() - new Date(run.updated_at).getTime();
    if (run.state === 'blocked' && age < 30_000) return;
    if (run.state === 'deploying' && age < 120_000) return;
    // Deploy this stage: claim the run first, so that two replicas never deploy it twice.
    const claimed = await db
      .updateTable('pipeline_runs')
      .set({ state: 'deploying', updated_at: now.toISOString() })
      .where('id', '=', run.id)
      .where('state', '=', run.state)
      .where('updated_at', '=', run.updated_at)
      .executeTakeFirst();
    if (Number(claimed.numUpdatedRows) !== 1) return;
    const claimedRun = { ...run, state: 'deploying', updated_at: now.toISOString() };
    const by = await this.principalOf(pipeline);
    if (!by)
      return this.update(
        claimedRun,
        { state: 'failed', reason: `${pipeline.created_by} no longer exists` },
        'failed',
        'no owner',
      );
    const release = await this.deps.releases.get(run.release_id);
    if (stage.requireEvidence && release.evidenceSummary !== 'passed')
      return this.update(
        claimedRun,
        { state: 'blocked', reason: `waiting for passing evidence (now: ${release.evidenceSummary})` },
        'blocked',
        'evidence',
      );
    const env = await environmentByName(db, stage.environment);
    let changeId = run.change_id;
    if (!changeId && policyOf(JSON.parse(env.policy)).changeRequired) {
      if (!stage.template) {
        await new EventLog(db).record({
          at: now.toISOString(),
          severity: 'informational',
          kind: 'pipeline.waiting_change',
          subject: `pipeline:${pipeline.id}`,
          message: `${release.name}@${release.version} waits at ${env.name}: it needs an approved change`,
          details: { run: run.id },
        });
        return this.update(
          claimedRun,
          {
            state: 'waiting_change',
            reason: `${env.name} needs an approved change: raise one for ${release.name}@${release.version} and give it with \`gantry pipeline approve ${run.id} --change CHG-…\``,
          },
          'waiting_change',
          env.name,
        );
      }
      try {
        const change = await this.deps.changes.create(by, {
          type: 'standard',
          template: stage.template,
          title: `${pipeline.name}: ${release.name}@${release.version} to ${env.name}`,
          release: release.id,
          environments: [env.name],
          windows: [
            { start: now.toISOString(), end: new Date(now.getTime() + STANDARD_WINDOW_MS).toISOString() },
          ],
          backoutPlan: 'roll back the deployment',
        });
        await this.deps.changes.act(by, change.id, 'submit', {
          reason: `raised by pipeline ${pipeline.name}`,
        });
        changeId = change.id;
      } catch (error) {
        return this.update(
          claimedRun,
          { state: 'blocked', reason: messageOf(error) },
          'blocked',
          messageOf(error),
        );
      }
    }
    try {
      const deployment = await this.deps.deployments.create(by, {
        release: release.id,
        environment: env.name,
        change: changeId ?? undefined,
        strategy: stage.strategy,
        options: stage.options,
      });
      await this.update(
        claimedRun,
        { state: 'running', deployment_id: deployment.id, change_id: changeId, reason: null },
        'deploying',
        deployment.number,
      );
    } catch (error) {
      await this.update(
        claimedRun,
        { state: 'blocked', change_id: changeId, reason: messageOf(error) },
        'blocked',
        messageOf(error),
      );
    }
  }

  private async update(
    run: PipelineRunsTable,
    set: Partial<PipelineRunsTable>,
    event: string,
    detail: string,
  ) {
    const db = this.deps.database.db;
    const before = await db
      .selectFrom('pipeline_runs')
      .select(['reason'])
      .where('id', '=', run.id)
      .executeTakeFirst();
    if (event === 'blocked' && before?.reason === set.reason) {
      // Still blocked for the same reason: back to waiting, nothing new to record.
      await db
        .updateTable('pipeline_runs')
        .set({ state: 'blocked', updated_at: this.deps.clock.now().toISOString() })
        .where('id', '=', run.id)
        .execute();
      return;
    }
    await inTransaction(this.deps, { actor: 'gantry:pipelines', source: null }, async (uow) => {
      const history = [
        ...JSON.parse(run.history),
        { at: uow.now.toISOString(), stage: set.stage ?? run.stage, event, detail },
      ];
      await uow.db
        .updateTable('pipeline_runs')
        .set({ ...set, history: JSON.stringify(history), updated_at: uow.now.toISOString() })
        .where('id', '=', run.id)
        .execute();
      await uow.audit({
        action: `pipeline.run_${event}`,
        subject: `pipeline:${run.pipeline_id}`,
        details: { run: run.id, stage: set.stage ?? run.stage, detail },
      });
    });
  }

  private async principalOf(pipeline: PipelinesTable): Promise<Principal | undefined> {
    const user = await new UserStore(this.deps.database.db).findById(pipeline.created_by_id);
    if (!user || user.disabled) return undefined;
    return { user, via: 'token', tokenId: null, session: null, source: `pipeline:${pipeline.name}` };
  }

  private async view(db: Kysely<Tables>, row: PipelinesTable) {
    const runs = await db
      .selectFrom('pipeline_runs as r')
      .innerJoin('releases as rel', 'rel.id', 'r.release_id')
      .selectAll('r')
      .select(['rel.name', 'rel.version'])
      .where('r.pipeline_id', '=', row.id)
      .orderBy('r.created_at', 'desc')
      .limit(20)
      .execute();
    return {
      id: row.id,
      name: row.name,
      releaseName: row.release_name,
      stages: JSON.parse(row.stages) as Stage[],
      autoStart: row.auto_start === 1,
      createdBy: row.created_by,
      createdAt: row.created_at,
      runs: runs.map((r) => runView(r, row, `${r.name}@${r.version}`)),
    };
  }
}

function runView(run: PipelineRunsTable, pipeline: PipelinesTable, release: string) {
  const stages = JSON.parse(pipeline.stages) as Stage[];
  return {
    id: run.id,
    release,
    stage: run.stage,
    environment: stages[run.stage]?.environment ?? null,
    state: run.state,
    deploymentId: run.deployment_id,
    soakUntil: run.soak_until,
    reason: run.reason,
    history: JSON.parse(run.history) as Array<{ at: string; stage: number; event: string; detail: string }>,
    createdAt: run.created_at,
    updatedAt: run.updated_at,
  };
}

async function findPipeline(db: Kysely<Tables>, name: string): Promise<PipelinesTable> {
  const row = await db.selectFrom('pipelines').selectAll().where('name', '=', name).executeTakeFirst();
  if (!row)
    throw new GantryError('NOT_FOUND', `No pipeline '${name}'. See \`gantry pipeline list\`.`, { name });
  return row;
}

function messageOf(error: unknown): string {
  return isGantryError(error) ? error.message : (error as Error).message;
}
