/**
 * Change requests: create, edit, submit, approve, reject, schedule, implement, review, close,
 * cancel. The rules are in `core/changes.ts`; this shell loads the change, asks them, and writes
 * the new state, the history row and the audit entry in one transaction. Approvals are bound to
 * a digest of the change's content, so an edit after approval voids them.
 */
import { createHash } from 'node:crypto';
import { type Kysely, sql } from 'kysely';
import { canonicalJson } from '../../core/canonical-json.ts';
import {
  ACTIVE_STATES,
  approvalsRequired,
  approverRoles,
  assessRisk,
  type ChangeAction,
  type ChangeState,
  type ChangeType,
  decisionProblem,
  type EnvironmentPolicy,
  legalActions,
  policyOf,
  type RiskAnswers,
  transition,
  validApprovals,
} from '../../core/changes.ts';
import { GantryError } from '../../core/errors.ts';
import { evaluateGate, type GateVerdict } from '../../core/gates.ts';
import type { Labels } from '../../core/inventory.ts';
import {
  type FreezeSchedule,
  type Instant,
  overlaps,
  resolveSpan,
  type ZonedSpan,
} from '../../core/schedule.ts';
import type { ChangeView, CreateChangeRequest, UpdateChangeRequest } from '../../protocol/changes.ts';
import { actorOf, type Principal } from '../auth/principal.ts';
import { isUniqueViolation } from '../db/db-errors.ts';
import type { ChangesTable, FreezesTable, Tables } from '../db/schema.ts';
import type { ArtifactService } from '../dml/artifact-service.ts';
import { newSortableId } from '../ids.ts';
import { supplierScope } from '../inventory/inventory-service.ts';
import { environmentByName, findRelease, type ReleaseService } from '../releases/release-service.ts';
import { inTransaction, type TransactionDeps, type UnitOfWork } from '../unit-of-work.ts';

export interface ChangeServiceDeps extends TransactionDeps {
  artifacts: ArtifactService;
  releases: ReleaseService;
}

interface StoredWindow extends ZonedSpan {
  timeZone: string;
  startAt: string;
  endAt: string;
}

const LOW_RISK_ANSWERS: RiskAnswers = {
  userImpact: 'none',
  doneBefore: true,
  backoutTested: true,
  changesData: false,
};
const REASON_REQUIRED: readonly ChangeAction[] = ['reject', 'cancel', 'fail', 'back-out'];
const FIRST_NUMBER = 1001;
const DONE: Record<Exclude<ChangeAction, 'edit'>, string> = {
  submit: 'submitted',
  approve: 'approved',
  reject: 'rejected',
  schedule: 'scheduled',
  start: 'started',
  complete: 'completed',
  fail: 'failed',
  'back-out': 'backed_out',
  review: 'reviewed',
  close: 'closed',
  cancel: 'cancelled',
};

export class ChangeService {
  constructor(private readonly deps: ChangeServiceDeps) {}

  async list(
    by: Principal,
    filter: {
      state?: ChangeState | undefined;
      environment?: string | undefined;
      type?: ChangeType | undefined;
    },
  ): Promise<ChangeView[]> {
    let query = this.deps.database.db.selectFrom('changes').selectAll();
    const scope = supplierScope(by);
    if (scope !== undefined) query = query.where('supplier_id', '=', scope);
    if (filter.state) query = query.where('state', '=', filter.state);
    if (filter.type) query = query.where('type', '=', filter.type);
    if (filter.environment) query = query.where(namesEnvironment('environments', filter.environment));
    const rows = await query.orderBy('number', 'desc').limit(500).execute();
    return Promise.all(rows.map((r) => this.view(this.deps.database.db, r)));
  }

  async get(by: Principal, ref: string): Promise<ChangeView> {
    const db = this.deps.database.db;
    return this.view(db, await findChange(db, ref, supplierScope(by)));
  }

  async create(by: Principal, input: CreateChangeRequest): Promise<ChangeView> {
    if (input.type !== 'standard' && !input.riskAnswers)
      throw new GantryError(
        'VALIDATION',
        'Answer the risk questionnaire (riskAnswers) for a normal or emergency change.',
        [{ path: '/riskAnswers', message: 'required' }],
      );
    return inTransaction(this.deps, actorOf(by), async (uow) => {
      const release = await findRelease(uow.db, input.release);
      const checked = await this.checkContent(uow.db, {
        type: input.type,
        template: input.template,
        releaseComponents: JSON.parse(release.components) as Array<{ component: string }>,
        environments: input.environments,
        windows: input.windows,
        freezeOverrideReason: input.freezeOverrideReason,
      });
      const answers = input.riskAnswers ?? LOW_RISK_ANSWERS;
      // Taken under the audit-chain lock every write holds: two creates never get one number.
      const last = await uow.db
        .selectFrom('changes')
        .select((eb) => eb.fn.max('number').as('n'))
        .executeTakeFirst();
      const now = uow.now.toISOString();
      const row: ChangesTable = {
        id: newSortableId(),
        number: Math.max(FIRST_NUMBER - 1, Number(last?.n ?? 0)) + 1,
        type: input.type,
        state: 'draft',
        title: input.title,
        description: input.description ?? '',
        risk: assessRisk(answers).risk,
        risk_answers: JSON.stringify(answers),
        release_id: release.id,
        environments: JSON.stringify(input.environments),
        target_selector: JSON.stringify(input.targetSelector ?? {}),
        windows: JSON.stringify(checked.windows),
        window_start: checked.windowStart,
        window_end: checked.windowEnd,
        backout_plan: input.backoutPlan ?? '',
        links: JSON.stringify(input.links ?? []),
        template_id: checked.templateId,
        requester_id: by.user.id,
        requester_name: by.user.username,
        supplier_id: by.user.supplierId,
        content_digest: '',
        revision: 1,
        freeze_override_reason: input.freezeOverrideReason ?? null,
        created_at: now,
        updated_at: now,
      };
      row.content_digest = contentDigest(row, release.components);
      await uow.db.insertInto('changes').values(row).execute();
      await history(uow, row.id, actorOf(by).actor, 'create', 'draft', 'draft', null);
      await uow.audit({
        action: 'change.created',
        subject: `change:${row.id}`,
        details: {
          number: `CHG-${row.number}`,
          type: row.type,
          title: row.title,
          release: `${release.name}@${release.version}`,
          environments: input.environments,
          risk: row.risk,
          windows: checked.windows,
        },
      });
      return this.view(uow.db, row);
    });
  }

  async update(by: Principal, ref: string, input: UpdateChangeRequest): Promise<ChangeView> {
    return inTransaction(this.deps, actorOf(by), async (uow) => {
      const row = await findChange(uow.db, ref, supplierScope(by));
      checkRevision(row, input.expectedRevision);
      const moved = transition(row.state as ChangeState, 'edit');
      if (!moved.ok) throw illegal(row, moved.problem);
      const release = input.release
        ? await findRelease(uow.db, input.release)
        : await findRelease(uow.db, row.release_id);
      const windows = input.windows ?? (JSON.parse(row.windows) as StoredWindow[]);
      const environments = input.environments ?? (JSON.parse(row.environments) as string[]);
      const template = row.template_id
        ? (
            await uow.db
              .selectFrom('change_templates')
              .select('name')
              .where('id', '=', row.template_id)
              .executeTakeFirst()
          )?.name
        : undefined;
      const checked = await this.checkContent(uow.db, {
        type: row.type as ChangeType,
        template,
        releaseComponents: JSON.parse(release.components) as Array<{ component: string }>,
        environments,
        windows,
        freezeOverrideReason: input.freezeOverrideReason ?? row.freeze_override_reason ?? undefined,
      });
      const answers = input.riskAnswers ?? (JSON.parse(row.risk_answers) as RiskAnswers);
      const next: ChangesTable = {
        ...row,
        title: input.title ?? row.title,
        description: input.description ?? row.description,
        risk: assessRisk(answers).risk,
        risk_answers: JSON.stringify(answers),
        release_id: release.id,
        environments: JSON.stringify(environments),
        target_selector: input.targetSelector ? JSON.stringify(input.targetSelector) : row.target_selector,
        windows: JSON.stringify(checked.windows),
        window_start: checked.windowStart,
        window_end: checked.windowEnd,
        backout_plan: input.backoutPlan ?? row.backout_plan,
        links: input.links ? JSON.stringify(input.links) : row.links,
        freeze_override_reason: input.freezeOverrideReason ?? row.freeze_override_reason,
        revision: row.revision + 1,
        updated_at: uow.now.toISOString(),
      };
      next.content_digest = contentDigest(next, release.components);
      const contentChanged = next.content_digest !== row.content_digest;
      // Only what an approver judged voids approvals; a typo fixed in the title does not.
      next.state = contentChanged ? moved.to : row.state;
      if (next.state !== 'draft' && release.locked_at === null) await lockRelease(uow, release.id);
      const { id: _id, ...changes } = next;
      await uow.db.updateTable('changes').set(changes).where('id', '=', row.id).execute();
      const voided =
        contentChanged && row.state !== 'draft'
          ? await uow.db
              .selectFrom('change_approvals')
              .select('approver_name')
              .where('change_id', '=', row.id)
              .where('content_digest', '=', row.content_digest)
              .where('decision', '=', 'approved')
              .execute()
          : [];
      await history(
        uow,
        row.id,
        actorOf(by).actor,
        'edit',
        row.state,
        next.state,
        voided.length ? `content changed: ${voided.length} approval(s) no longer count` : null,
      );
      await uow.audit({
        action: 'change.edited',
        subject: `change:${row.id}`,
        details: {
          number: `CHG-${row.number}`,
          from: row.state,
          to: next.state,
          contentDigest: next.content_digest,
          approvalsVoided: voided.map((v) => v.approver_name),
        },
      });
      return this.view(uow.db, next);
    });
  }

  /** Every state change but `edit`; `reason` is required to reject, cancel, fail or back out. */
  async act(
    by: Principal,
    ref: string,
    action: Exclude<ChangeAction, 'edit'>,
    input: {
      reason?: string | undefined;
      expectedRevision?: number | undefined;
      contentDigest?: string | undefined;
    },
  ): Promise<ChangeView> {
    if (REASON_REQUIRED.includes(action) && !input.reason)
      throw new GantryError('VALIDATION', `Say why (--reason) when you ${action} a change.`, [
        { path: '/reason', message: 'required' },
      ]);
    try {
      return await this.actOnce(by, ref, action, input);
    } catch (error) {
      // The same person approving twice at once: the database's unique key decides.
      if (isUniqueViolation(error))
        throw new GantryError('CONFLICT', 'You have already approved this change; one person counts once.');
      throw error;
    }
  }

  private async actOnce(
    by: Principal,
    ref: string,
    action: Exclude<ChangeAction, 'edit'>,
    input: {
      reason?: string | undefined;
      expectedRevision?: number | undefined;
      contentDigest?: string | undefined;
    },
  ): Promise<ChangeView> {
    return inTransaction(this.deps, actorOf(by), async (uow) => {
      const row = await findChange(uow.db, ref, supplierScope(by));
      checkRevision(row, input.expectedRevision);
      const from = row.state as ChangeState;
      const moved = transition(from, action);
      if (!moved.ok) throw illegal(row, moved.problem);
      const actor = actorOf(by).actor;
      let to: ChangeState = moved.to;
      let note: string | null = input.reason ?? null;
      const details: Record<string, unknown> = {};

      if (action === 'approve' || action === 'reject') {
        const policies = await policiesOf(uow.db, row);
        const approvals = await approvalsOf(uow.db, row.id);
        const subject = {
          type: row.type as ChangeType,
          risk: row.risk as 'low',
          requesterId: row.requester_id,
        };
        const problem = decisionProblem(
          subject,
          policies,
          { id: by.user.id, role: by.user.role },
          action === 'approve' ? approvals : [],
          row.content_digest,
        );
        if (problem)
          throw new GantryError(problem.code, `You cannot ${action} CHG-${row.number}: ${problem.problem}.`);
        if (input.contentDigest !== undefined && input.contentDigest !== row.content_digest)
          throw new GantryError(
            'CONFLICT',
            `CHG-${row.number} changed since you reviewed it (its content digest is now ${row.content_digest}); review it again.`,
            { contentDigest: row.content_digest },
          );
        if (action === 'approve') {
          await this.requireEvidence(uow.db, row, policies);
          await uow.db
            .insertInto('change_approvals')
            .values(approvalRow(row, by, 'approved', input.reason ?? '', false, uow.now))
            .execute();
          const have = validApprovals(
            [...approvals, { approverId: by.user.id, contentDigest: row.content_digest }],
            row.content_digest,
          );
          const need = approvalsRequired(subject, policies);
          details.approvals = `${have} of ${need}`;
          if (have < need) {
            to = from;
            note = `approval ${have} of ${need}${input.reason ? `: ${input.reason}` : ''}`;
          }
        } else {
          await uow.db
            .insertInto('change_approvals')
            .values(approvalRow(row, by, 'rejected', input.reason ?? '', false, uow.now))
            .execute();
        }
      }

      if (action === 'submit') {
        const release = await findRelease(uow.db, row.release_id);
        if (release.locked_at === null) await lockRelease(uow, release.id);
        const automatic = await this.automaticApproval(uow.db, row);
        if (automatic) {
          await uow.db
            .insertInto('change_approvals')
            .values({
              ...approvalRow(row, by, 'approved', automatic.reason, true, uow.now),
              approver_id: automatic.approver,
              approver_name: automatic.approver,
              approver_role: automatic.approver.split(':')[0] ?? 'policy',
            })
            .execute();
          to = 'approved';
          note = automatic.reason;
          details.automaticApproval = automatic;
        }
      }

      await uow.db
        .updateTable('changes')
        .set({ state: to, revision: row.revision + 1, updated_at: uow.now.toISOString() })
        .where('id', '=', row.id)
        .execute();
      await history(uow, row.id, actor, action, from, to, note);
      await uow.audit({
        action: `change.${action === 'approve' && to === from ? 'approval_recorded' : DONE[action]}`,
        subject: `change:${row.id}`,
        details: { number: `CHG-${row.number}`, from, to, reason: input.reason ?? null, ...details },
      });
      if (action === 'submit' || to === 'approved') await this.flagConflicts(uow, { ...row, state: to });
      return this.view(uow.db, {
        ...row,
        state: to,
        revision: row.revision + 1,
        updated_at: uow.now.toISOString(),
      });
    });
  }

  /**
   * May `release` run in `environment` now, under `change` if given? Every reason it may not;
   * the deployment engine asks the same before it creates a deployment and before every wave.
   */
  async checkGate(
    by: Principal,
    input: {
      release?: string | undefined;
      environment: string;
      change?: string | undefined;
      strategy?: string | undefined;
    },
    db: Kysely<Tables> = this.deps.database.db,
  ): Promise<GateVerdict & { at: string }> {
    const now = this.deps.clock.now();
    const changeRow = input.change ? await findChange(db, input.change, supplierScope(by)) : null;
    const releaseRef = input.release ?? changeRow?.release_id;
    if (!releaseRef)
      throw new GantryError('VALIDATION', 'Name the release (or a change, whose release is used).', [
        { path: '/release', message: 'required' },
      ]);
    const release = await this.deps.releases.get(releaseRef, db);
    const env = await environmentByName(db, input.environment);
    const policy = policyOf(JSON.parse(env.policy) as Record<string, unknown>);
    const freezes = await activeFreezes(db, env.id);
    const artifacts: Record<string, { state: string; trustedSigners: string[] }> = {};
    for (const piece of release.components) {
      const artifact = await this.deps.artifacts.findPiece(piece.component, piece.digest);
      if (artifact)
        artifacts[piece.digest] = {
          state: artifact.state,
          trustedSigners: artifact.signatures.filter((s) => s.trusted).map((s) => s.keyName ?? s.keyId),
        };
    }
    const selector = changeRow ? (JSON.parse(changeRow.target_selector) as Labels) : {};
    const targets = (
      await db
        .selectFrom('targets')
        .select(['name', 'supplier_id', 'labels'])
        .where('environment_id', '=', env.id)
        .where('retired_at', 'is', null)
        .execute()
    ).filter((t) => matches(JSON.parse(t.labels) as Labels, selector));
    let gateChange = null;
    if (changeRow) {
      const policies = await policiesOf(db, changeRow);
      const subject = {
        type: changeRow.type as ChangeType,
        risk: changeRow.risk as 'low',
        requesterId: changeRow.requester_id,
      };
      const template = changeRow.template_id
        ? await db
            .selectFrom('change_templates')
            .select('strategies')
            .where('id', '=', changeRow.template_id)
            .executeTakeFirst()
        : undefined;
      gateChange = {
        id: changeRow.id,
        number: `CHG-${changeRow.number}`,
        type: subject.type,
        state: changeRow.state as ChangeState,
        environments: JSON.parse(changeRow.environments) as string[],
        releaseId: changeRow.release_id,
        windows: instantsOf(changeRow),
        validApprovals: validApprovals(await approvalsOf(db, changeRow.id), changeRow.content_digest),
        approvalsRequired: approvalsRequired(subject, policies),
        freezeOverrideReason: changeRow.freeze_override_reason,
        templateStrategies: template ? (JSON.parse(template.strategies) as string[]) : [],
      };
    }
    const lifecycle = await this.deps.releases.lifecycleFor(release.name, db);
    const verdict = evaluateGate({
      now,
      environment: { name: env.name, policy },
      release,
      toRun: release.components,
      artifacts,
      change: gateChange,
      freezes,
      lifecycle,
      succeededIn: release.lifecycle.filter((o) => o.outcome === 'succeeded').map((o) => o.environment),
      actor: { role: by.user.role, supplierId: by.user.supplierId },
      targets: targets.map((t) => ({ name: t.name, supplierId: t.supplier_id })),
      strategy: input.strategy,
    });
    return { ...verdict, at: now.toISOString() };
  }

  /**
   * Refuses unless `ref` names a change that is approved (or running), covers `envName` and is
   * inside one of its windows now: what flag changes and hardware moves in a controlled
   * environment need. `what` says what is being done, for the message.
   */
  async requireActiveChange(
    uow: UnitOfWork,
    envName: string,
    ref: string | undefined,
    what: string,
  ): Promise<void> {
    if (!ref)
      throw new GantryError(
        'FORBIDDEN',
        `${what} in ${envName} needs an approved change that covers ${envName}: name it (--change).`,
        { reasons: [{ code: 'change_required', message: 'no change named' }] },
      );
    const row = await findChange(uow.db, ref, undefined);
    const reasons: Array<{ code: string; message: string }> = [];
    if (!ACTIVE_STATES.includes(row.state as ChangeState))
      reasons.push({ code: 'not_approved', message: `CHG-${row.number} is ${row.state}` });
    if (!(JSON.parse(row.environments) as string[]).includes(envName))
      reasons.push({
        code: 'environment_not_in_change',
        message: `CHG-${row.number} does not cover ${envName}`,
      });
    const now = uow.now.getTime();
    if (!instantsOf(row).some((w) => w.start.getTime() <= now && now < w.end.getTime()))
      reasons.push({ code: 'outside_window', message: `now is outside every window of CHG-${row.number}` });
    if (reasons.length > 0)
      throw new GantryError(
        'FORBIDDEN',
        `CHG-${row.number} does not allow ${what.toLowerCase()} in ${envName} now: ${reasons.map((r) => r.message).join('; ')}.`,
        { reasons },
      );
  }

  // Templates ----------------------------------------------------------------------------------

  async templates() {
    const rows = await this.deps.database.db
      .selectFrom('change_templates')
      .selectAll()
      .orderBy('name')
      .execute();
    return rows.map(templateView);
  }

  async createTemplate(
    by: Principal,
    input: {
      name: string;
      description?: string | undefined;
      components: string[];
      environments: string[];
      strategies?: string[] | undefined;
    },
  ) {
    try {
      return await inTransaction(this.deps, actorOf(by), async (uow) => {
        for (const env of input.environments) await environmentByName(uow.db, env);
        const row = {
          id: newSortableId(),
          name: input.name,
          description: input.description ?? '',
          components: JSON.stringify(input.components),
          environments: JSON.stringify(input.environments),
          strategies: JSON.stringify(input.strategies ?? []),
          created_by: actorOf(by).actor,
          created_at: uow.now.toISOString(),
          retired_at: null,
        };
        await uow.db.insertInto('change_templates').values(row).execute();
        await uow.audit({
          action: 'change_template.created',
          subject: `change_template:${row.id}`,
          details: {
            name: row.name,
            components: input.components,
            environments: input.environments,
            strategies: input.strategies ?? [],
          },
        });
        return templateView(row);
      });
    } catch (error) {
      if (isUniqueViolation(error))
        throw new GantryError('CONFLICT', `A template named '${input.name}' already exists.`, {
          field: '/name',
        });
      throw error;
    }
  }

  async retireTemplate(by: Principal, name: string) {
    return inTransaction(this.deps, actorOf(by), async (uow) => {
      const row = await uow.db
        .selectFrom('change_templates')
        .selectAll()
        .where('name', '=', name)
        .executeTakeFirst();
      if (!row)
        throw new GantryError(
          'NOT_FOUND',
          `No change template '${name}'. See \`gantry change template list\`.`,
        );
      if (row.retired_at) return templateView(row);
      const at = uow.now.toISOString();
      await uow.db.updateTable('change_templates').set({ retired_at: at }).where('id', '=', row.id).execute();
      await uow.audit({
        action: 'change_template.retired',
        subject: `change_template:${row.id}`,
        details: { name },
      });
      return templateView({ ...row, retired_at: at });
    });
  }

  // Internals ----------------------------------------------------------------------------------

  /** Checks what a change names; lists every problem at once. */
  private async checkContent(
    db: Kysely<Tables>,
    input: {
      type: ChangeType;
      template: string | undefined;
      releaseComponents: Array<{ component: string }>;
      environments: string[];
      windows: ZonedSpan[];
      freezeOverrideReason: string | undefined;
    },
  ) {
    const problems: Array<{ path: string; message: string }> = [];
    const known = await db
      .selectFrom('environments')
      .select('name')
      .where('name', 'in', input.environments)
      .execute();
    for (const env of input.environments)
      if (!known.some((k) => k.name === env))
        problems.push({ path: '/environments', message: `no environment '${env}' (see gantry env list)` });
    const windows: StoredWindow[] = [];
    input.windows.forEach((w, i) => {
      const resolved = resolveSpan(w);
      if ('problem' in resolved) problems.push({ path: `/windows/${i}`, message: resolved.problem });
      else
        windows.push({
          start: w.start,
          end: w.end,
          timeZone: w.timeZone ?? 'UTC',
          startAt: resolved.ok.start.toISOString(),
          endAt: resolved.ok.end.toISOString(),
        });
    });
    if (input.freezeOverrideReason && input.type !== 'emergency')
      problems.push({
        path: '/freezeOverrideReason',
        message: 'only an emergency change may override a freeze',
      });
    let templateId: string | null = null;
    if (input.type === 'standard') {
      if (!input.template)
        problems.push({ path: '/template', message: 'a standard change names its pre-approved template' });
      else {
        const template = await db
          .selectFrom('change_templates')
          .selectAll()
          .where('name', '=', input.template)
          .executeTakeFirst();
        if (!template || template.retired_at)
          problems.push({ path: '/template', message: `no active change template '${input.template}'` });
        else {
          templateId = template.id;
          const components = JSON.parse(template.components) as string[];
          const environments = JSON.parse(template.environments) as string[];
          for (const piece of input.releaseComponents)
            if (!components.includes(piece.component))
              problems.push({
                path: '/release',
                message: `template '${template.name}' does not cover component ${piece.component}`,
              });
          for (const env of input.environments)
            if (!environments.includes(env))
              problems.push({
                path: '/environments',
                message: `template '${template.name}' does not cover environment ${env}`,
              });
        }
      }
    } else if (input.template) {
      problems.push({ path: '/template', message: 'only a standard change comes from a template' });
    }
    if (problems.length > 0)
      throw new GantryError(
        'VALIDATION',
        `The change is not valid: ${problems.map((p) => p.message).join('; ')}.`,
        problems,
      );
    const starts = windows.map((w) => w.startAt).sort();
    const ends = windows.map((w) => w.endAt).sort();
    return { windows, templateId, windowStart: starts[0] ?? null, windowEnd: ends[ends.length - 1] ?? null };
  }

  private async requireEvidence(db: Kysely<Tables>, row: ChangesTable, policies: EnvironmentPolicy[]) {
    if (!policies.some((p) => p.requireEvidence)) return;
    const release = await this.deps.releases.get(row.release_id, db);
    if (release.evidenceSummary !== 'passed')
      throw new GantryError(
        'CONFLICT',
        `CHG-${row.number} cannot be approved yet: its environments require passing evidence, and release ${release.name}@${release.version} has ${release.evidenceSummary === 'none' ? 'none' : 'failing evidence'}.`,
        { evidence: release.evidenceSummary },
      );
  }

  /** A standard change is pre-approved by its template; a low-risk normal one by policy, when allowed. */
  private async automaticApproval(
    db: Kysely<Tables>,
    row: ChangesTable,
  ): Promise<{ approver: string; reason: string } | null> {
    if (row.type === 'standard') {
      const template = await db
        .selectFrom('change_templates')
        .selectAll()
        .where('id', '=', row.template_id ?? '')
        .executeTakeFirst();
      if (!template || template.retired_at)
        throw new GantryError(
          'CONFLICT',
          `CHG-${row.number}'s template is retired: raise a normal change instead.`,
        );
      return {
        approver: `template:${template.name}`,
        reason: `standard change, pre-approved by template '${template.name}'`,
      };
    }
    if (row.type !== 'normal' || row.risk !== 'low') return null;
    const policies = await policiesOf(db, row);
    if (!policies.every((p) => p.autoApproveLowRisk)) return null;
    const release = await this.deps.releases.get(row.release_id, db);
    if (release.evidenceSummary !== 'passed') return null;
    return {
      approver: 'policy:risk-based',
      reason: `risk-based approval: low risk and all ${release.evidence.length} piece(s) of evidence passed`,
    };
  }

  /** Flags, on both, every active change touching the same components or targets in an overlapping window. */
  private async flagConflicts(uow: UnitOfWork, row: ChangesTable): Promise<void> {
    if (!row.window_start || !row.window_end) return;
    const others = await uow.db
      .selectFrom('changes')
      .selectAll()
      .where('id', '!=', row.id)
      .where('state', 'in', [...ACTIVE_STATES])
      .where('window_start', '<', row.window_end)
      .where('window_end', '>', row.window_start)
      .execute();
    if (others.length === 0) return;
    const mine = await pieceNames(uow.db, row.release_id);
    const myEnvs = JSON.parse(row.environments) as string[];
    const mySelector = JSON.parse(row.target_selector) as Labels;
    for (const other of others) {
      if (!instantsOf(row).some((a) => instantsOf(other).some((b) => overlaps(a, b)))) continue;
      const sharedEnvs = (JSON.parse(other.environments) as string[]).filter((e) => myEnvs.includes(e));
      if (sharedEnvs.length === 0) continue;
      const theirs = await pieceNames(uow.db, other.release_id);
      const sharedComponents = mine.filter((c) => theirs.includes(c));
      const reasons: string[] = [];
      if (sharedComponents.length) reasons.push(`both change ${sharedComponents.join(', ')}`);
      if (compatible(mySelector, JSON.parse(other.target_selector) as Labels))
        reasons.push(`both may touch the same targets in ${sharedEnvs.join(', ')}`);
      if (reasons.length === 0) continue;
      const reason = `${reasons.join('; ')}, in overlapping windows`;
      for (const [a, b] of [
        [row.id, other.id],
        [other.id, row.id],
      ] as const) {
        const existing = await uow.db
          .selectFrom('change_conflicts')
          .select('change_id')
          .where('change_id', '=', a)
          .where('other_id', '=', b)
          .executeTakeFirst();
        if (existing)
          await uow.db
            .updateTable('change_conflicts')
            .set({ reason })
            .where('change_id', '=', a)
            .where('other_id', '=', b)
            .execute();
        else
          await uow.db
            .insertInto('change_conflicts')
            .values({ change_id: a, other_id: b, reason, detected_at: uow.now.toISOString() })
            .execute();
      }
      await uow.audit({
        action: 'change.conflict_flagged',
        subject: `change:${row.id}`,
        details: { number: `CHG-${row.number}`, other: `CHG-${other.number}`, reason },
      });
    }
  }

  private async view(db: Kysely<Tables>, row: ChangesTable): Promise<ChangeView> {
    const release = await db
      .selectFrom('releases')
      .select(['id', 'name', 'version'])
      .where('id', '=', row.release_id)
      .executeTakeFirstOrThrow();
    const [approvals, hist, conflicts, policies, template] = await Promise.all([
      db
        .selectFrom('change_approvals')
        .selectAll()
        .where('change_id', '=', row.id)
        .orderBy('at')
        .orderBy('id')
        .execute(),
      db
        .selectFrom('change_history')
        .selectAll()
        .where('change_id', '=', row.id)
        .orderBy('at')
        .orderBy('id')
        .execute(),
      db
        .selectFrom('change_conflicts as c')
        .innerJoin('changes as o', 'o.id', 'c.other_id')
        .select(['o.number', 'o.title', 'c.reason'])
        .where('c.change_id', '=', row.id)
        .execute(),
      policiesOf(db, row),
      row.template_id
        ? db
            .selectFrom('change_templates')
            .select('name')
            .where('id', '=', row.template_id)
            .executeTakeFirst()
        : Promise.resolve(undefined),
    ]);
    const answers = JSON.parse(row.risk_answers) as RiskAnswers;
    const subject = { type: row.type as ChangeType, risk: row.risk as 'low', requesterId: row.requester_id };
    return {
      id: row.id,
      number: `CHG-${row.number}`,
      type: subject.type,
      state: row.state as ChangeState,
      title: row.title,
      description: row.description,
      risk: row.risk as ChangeView['risk'],
      riskAnswers: answers,
      riskBecause: assessRisk(answers).because,
      release,
      environments: JSON.parse(row.environments) as string[],
      targetSelector: JSON.parse(row.target_selector) as Labels,
      windows: JSON.parse(row.windows) as StoredWindow[],
      backoutPlan: row.backout_plan,
      links: JSON.parse(row.links) as string[],
      template: template?.name ?? null,
      requester: row.requester_name,
      contentDigest: row.content_digest,
      revision: row.revision,
      freezeOverrideReason: row.freeze_override_reason,
      approvalsRequired: approvalsRequired(subject, policies),
      approvalsValid: validApprovals(
        approvals
          .filter((a) => a.decision === 'approved')
          .map((a) => ({ approverId: a.approver_id, contentDigest: a.content_digest })),
        row.content_digest,
      ),
      approverRoles: approverRoles(subject, policies),
      approvals: approvals.map((a) => ({
        approver: a.approver_name,
        role: a.approver_role,
        decision: a.decision as 'approved',
        reason: a.reason,
        automatic: a.automatic === 1,
        current: a.content_digest === row.content_digest,
        at: a.at,
      })),
      history: hist.map((h) => ({
        at: h.at,
        actor: h.actor,
        action: h.action,
        from: h.from_state,
        to: h.to_state,
        reason: h.reason,
      })),
      conflicts: conflicts.map((c) => ({ change: `CHG-${c.number}`, title: c.title, reason: c.reason })),
      actions: legalActions(row.state as ChangeState),
      createdAt: row.created_at,
      updatedAt: row.updated_at,
    };
  }
}

// Helpers --------------------------------------------------------------------------------------

/** By id, `CHG-1001` or `1001`; a supplier finds only its own people's changes. */
export async function findChange(
  db: Kysely<Tables>,
  ref: string,
  scope: string | undefined,
): Promise<ChangesTable> {
  const number = /^(?:CHG-)?(\d{1,9})$/i.exec(ref)?.[1];
  let query = db.selectFrom('changes').selectAll();
  query = number !== undefined ? query.where('number', '=', Number(number)) : query.where('id', '=', ref);
  if (scope !== undefined) query = query.where('supplier_id', '=', scope);
  const row = await query.executeTakeFirst();
  if (!row) throw new GantryError('NOT_FOUND', `No change '${ref}'. See \`gantry change list\`.`, { ref });
  return row;
}

export function instantsOf(row: Pick<ChangesTable, 'windows'>): Instant[] {
  return (JSON.parse(row.windows) as StoredWindow[]).map((w) => ({
    start: new Date(w.startAt),
    end: new Date(w.endAt),
  }));
}

export async function activeFreezes(db: Kysely<Tables>, environmentId: string) {
  const rows = await db
    .selectFrom('freezes')
    .selectAll()
    .where('environment_id', '=', environmentId)
    .where('removed_at', 'is', null)
    .execute();
  return rows.map((r) => ({ name: r.name, schedule: scheduleOf(r) }));
}

export function scheduleOf(row: FreezesTable): FreezeSchedule {
  return row.kind === 'once'
    ? { kind: 'once', start: new Date(row.start_at ?? 0), end: new Date(row.end_at ?? 0) }
    : {
        kind: 'recurring',
        cron: row.cron ?? '',
        durationMinutes: row.duration_minutes ?? 0,
        timeZone: row.time_zone,
      };
}

function contentDigest(row: ChangesTable, releaseComponents: string): string {
  const content = {
    type: row.type,
    release: row.release_id,
    components: JSON.parse(releaseComponents) as unknown,
    environments: [...(JSON.parse(row.environments) as string[])].sort(),
    targetSelector: JSON.parse(row.target_selector) as unknown,
    windows: (JSON.parse(row.windows) as StoredWindow[]).map((w) => [w.startAt, w.endAt]),
    riskAnswers: JSON.parse(row.risk_answers) as unknown,
    backoutPlan: row.backout_plan,
    freezeOverrideReason: row.freeze_override_reason,
  };
  return `sha256:${createHash('sha256').update(canonicalJson(content)).digest('hex')}`;
}

function checkRevision(row: ChangesTable, expected: number | undefined): void {
  if (expected !== undefined && expected !== row.revision)
    throw new GantryError(
      'CONFLICT',
      `CHG-${row.number} changed since you read it (revision ${expected}, now ${row.revision}, ${row.state}); look again before deciding.`,
      { revision: row.revision, state: row.state },
    );
}

function illegal(row: ChangesTable, problem: string): GantryError {
  return new GantryError('ILLEGAL_TRANSITION', `CHG-${row.number}: ${problem}.`, {
    state: row.state,
    actions: legalActions(row.state as ChangeState),
  });
}

async function policiesOf(db: Kysely<Tables>, row: ChangesTable): Promise<EnvironmentPolicy[]> {
  const names = JSON.parse(row.environments) as string[];
  const envs = await db.selectFrom('environments').select('policy').where('name', 'in', names).execute();
  return envs.map((e) => policyOf(JSON.parse(e.policy) as Record<string, unknown>));
}

async function approvalsOf(db: Kysely<Tables>, changeId: string) {
  const rows = await db
    .selectFrom('change_approvals')
    .select(['approver_id', 'content_digest'])
    .where('change_id', '=', changeId)
    .where('decision', '=', 'approved')
    .execute();
  return rows.map((r) => ({ approverId: r.approver_id, contentDigest: r.content_digest }));
}

function approvalRow(
  row: ChangesTable,
  by: Principal,
  decision: string,
  reason: string,
  automatic: boolean,
  now: Date,
) {
  return {
    id: newSortableId(),
    change_id: row.id,
    approver_id: by.user.id,
    approver_name: by.user.username,
    approver_role: by.user.role,
    decision,
    reason,
    content_digest: row.content_digest,
    automatic: automatic ? 1 : 0,
    at: now.toISOString(),
  };
}

async function history(
  uow: UnitOfWork,
  changeId: string,
  actor: string,
  action: string,
  from: string,
  to: string,
  reason: string | null,
) {
  await uow.db
    .insertInto('change_history')
    .values({
      id: newSortableId(),
      change_id: changeId,
      at: uow.now.toISOString(),
      actor,
      action,
      from_state: from,
      to_state: to,
      reason,
    })
    .execute();
}

async function lockRelease(uow: UnitOfWork, releaseId: string) {
  await uow.db
    .updateTable('releases')
    .set({ locked_at: uow.now.toISOString() })
    .where('id', '=', releaseId)
    .where('locked_at', 'is', null)
    .execute();
}

async function pieceNames(db: Kysely<Tables>, releaseId: string): Promise<string[]> {
  const r = await db
    .selectFrom('releases')
    .select('components')
    .where('id', '=', releaseId)
    .executeTakeFirstOrThrow();
  return (JSON.parse(r.components) as Array<{ component: string }>).map((p) => p.component);
}

function matches(labels: Labels, selector: Labels): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

/** Two selectors can pick the same target unless they ask one label for different values. */
function compatible(a: Labels, b: Labels): boolean {
  return Object.entries(a).every(([k, v]) => b[k] === undefined || b[k] === v);
}

function templateView(row: Tables['change_templates']) {
  return {
    id: row.id,
    name: row.name,
    description: row.description,
    components: JSON.parse(row.components) as string[],
    environments: JSON.parse(row.environments) as string[],
    strategies: JSON.parse(row.strategies) as string[],
    createdBy: row.created_by,
    createdAt: row.created_at,
    retiredAt: row.retired_at,
  };
}

/**
 * `column` (a JSON list of environment names) names `environment`; LIKE's wildcards in the name
 * (`_` is allowed in names) are escaped.
 */
export function namesEnvironment(column: string, environment: string) {
  const pattern = `%${JSON.stringify(environment).replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
  return sql<boolean>`${sql.ref(column)} like ${pattern} escape '\\'`;
}
