/**
 * Change enablement, the pure part: the change request's state machine, the risk questionnaire,
 * the environment policy and who may approve what. The shell loads state, asks these functions,
 * and writes the answer with its audit entry.
 */
import type { Role } from './roles.ts';

export const CHANGE_TYPES = ['standard', 'normal', 'emergency'] as const;
export type ChangeType = (typeof CHANGE_TYPES)[number];

export const CHANGE_STATES = [
  'draft',
  'submitted',
  'approved',
  'rejected',
  'scheduled',
  'implementing',
  'implemented',
  'failed',
  'backed-out',
  'reviewed',
  'closed',
  'cancelled',
] as const;
export type ChangeState = (typeof CHANGE_STATES)[number];

export const CHANGE_ACTIONS = [
  'edit',
  'submit',
  'approve',
  'reject',
  'schedule',
  'start',
  'complete',
  'fail',
  'back-out',
  'review',
  'close',
  'cancel',
] as const;
export type ChangeAction = (typeof CHANGE_ACTIONS)[number];

/**
 * Every legal transition; anything not listed is refused. `edit` of a submitted, approved or
 * scheduled change sends it back to `submitted` (its approvals no longer match its content);
 * a rejected change may be revised, which makes it a draft again.
 */
const TRANSITIONS: Record<ChangeState, Partial<Record<ChangeAction, ChangeState>>> = {
  draft: { edit: 'draft', submit: 'submitted', cancel: 'cancelled' },
  submitted: { edit: 'submitted', approve: 'approved', reject: 'rejected', cancel: 'cancelled' },
  approved: { edit: 'submitted', schedule: 'scheduled', start: 'implementing', cancel: 'cancelled' },
  rejected: { edit: 'draft', close: 'closed' },
  scheduled: { edit: 'submitted', start: 'implementing', cancel: 'cancelled' },
  implementing: { complete: 'implemented', fail: 'failed', 'back-out': 'backed-out' },
  implemented: { review: 'reviewed' },
  failed: { review: 'reviewed' },
  'backed-out': { review: 'reviewed' },
  reviewed: { close: 'closed' },
  closed: {},
  cancelled: {},
};

export type Transition = { ok: true; to: ChangeState } | { ok: false; problem: string };

export function transition(from: ChangeState, action: ChangeAction): Transition {
  const to = TRANSITIONS[from][action];
  if (to !== undefined) return { ok: true, to };
  const legal = Object.keys(TRANSITIONS[from]);
  return {
    ok: false,
    problem:
      legal.length === 0
        ? `a ${from} change is final: nothing more can be done with it`
        : `a ${from} change cannot ${action}; from ${from} it can ${legal.join(', ')}`,
  };
}

export function legalActions(from: ChangeState): ChangeAction[] {
  return Object.keys(TRANSITIONS[from]) as ChangeAction[];
}

/** States in which a change holds its scope: it may run, or is about to. */
export const ACTIVE_STATES: readonly ChangeState[] = ['approved', 'scheduled', 'implementing'];

// Risk ---------------------------------------------------------------------------------------

export type Risk = 'low' | 'medium' | 'high';

/** The short risk questionnaire; every answer is required, so the risk can always be explained. */
export interface RiskAnswers {
  /** What users notice while it happens: nothing, some slowness or errors, an outage. */
  userImpact: 'none' | 'some' | 'major';
  /** Has this kind of change been done before without trouble? */
  doneBefore: boolean;
  /** Has the backout been tried (in a lower environment)? */
  backoutTested: boolean;
  /** Does it change stored data or a schema (hard to undo)? */
  changesData: boolean;
}

export function assessRisk(answers: RiskAnswers): { risk: Risk; score: number; because: string[] } {
  const because: string[] = [];
  let score = 0;
  if (answers.userImpact === 'some') {
    score += 2;
    because.push('users may notice it (+2)');
  } else if (answers.userImpact === 'major') {
    score += 4;
    because.push('users will notice an outage (+4)');
  }
  if (!answers.doneBefore) {
    score += 1;
    because.push('not done before (+1)');
  }
  if (!answers.backoutTested) {
    score += 2;
    because.push('backout not tested (+2)');
  }
  if (answers.changesData) {
    score += 2;
    because.push('changes stored data (+2)');
  }
  const risk: Risk = score <= 1 ? 'low' : score <= 3 ? 'medium' : 'high';
  return { risk, score, because };
}

// Policy -------------------------------------------------------------------------------------

export type ApproverRole = Extract<Role, 'change-authority' | 'emergency-authority' | 'admin'>;

/** What an environment asks of changes and deployments. Every field has a default. */
export interface EnvironmentPolicy {
  /** Deployments here run only inside an approved change. */
  changeRequired: boolean;
  /** Approvals a normal change needs, and from which role. */
  approvals: number;
  approverRole: ApproverRole;
  /** Approvals a high-risk change needs. */
  highRiskApprovals: number;
  /** Every artifact must carry a signature from a trusted publisher key. */
  requireSignature: boolean;
  /** A change can be approved only when its release has evidence and all of it passed. */
  requireEvidence: boolean;
  /** A low-risk normal change whose evidence passed is approved at submit, recorded as such. */
  autoApproveLowRisk: boolean;
  /** Strategies allowed here; empty means any. */
  strategies: string[];
  /** Flag changes here need an approved change that names the environment. */
  flagsUnderChange: boolean;
  /** Teams may book the environment (test cycles). */
  bookable: boolean;
}

export const DEFAULT_POLICY: EnvironmentPolicy = {
  changeRequired: false,
  approvals: 1,
  approverRole: 'change-authority',
  highRiskApprovals: 2,
  requireSignature: false,
  requireEvidence: false,
  autoApproveLowRisk: false,
  strategies: [],
  flagsUnderChange: false,
  bookable: true,
};

export function policyOf(stored: Record<string, unknown>): EnvironmentPolicy {
  return { ...DEFAULT_POLICY, ...(stored as Partial<EnvironmentPolicy>) };
}

// Approvals ----------------------------------------------------------------------------------

export interface ApprovalSubject {
  type: ChangeType;
  risk: Risk;
  requesterId: string;
}

export interface Approver {
  id: string;
  role: Role;
}

export interface CountedApproval {
  approverId: string;
  contentDigest: string;
}

/** How many approvals a change needs: the strictest of the environments it touches. */
export function approvalsRequired(change: ApprovalSubject, policies: readonly EnvironmentPolicy[]): number {
  if (change.type === 'standard') return 0;
  if (change.type === 'emergency') return 1;
  const each = policies.map((p) =>
    change.risk === 'high' ? Math.max(p.highRiskApprovals, p.approvals) : p.approvals,
  );
  return Math.max(1, ...each);
}

/** The roles whose approval counts for this change. */
export function approverRoles(change: ApprovalSubject, policies: readonly EnvironmentPolicy[]): Role[] {
  if (change.type === 'emergency') return ['emergency-authority'];
  const roles = new Set<Role>(['admin', 'emergency-authority']);
  for (const p of policies.length ? policies : [DEFAULT_POLICY]) roles.add(p.approverRole);
  return [...roles];
}

/**
 * Why this person may not decide on this change (approve or reject), or null when they may.
 * The requester never decides on their own change; one person counts once per content.
 */
export function decisionProblem(
  change: ApprovalSubject,
  policies: readonly EnvironmentPolicy[],
  approver: Approver,
  approvals: readonly CountedApproval[],
  contentDigest: string,
): { code: 'FORBIDDEN' | 'CONFLICT'; problem: string } | null {
  if (approver.id === change.requesterId)
    return { code: 'FORBIDDEN', problem: 'the requester of a change cannot approve or reject it' };
  const roles = approverRoles(change, policies);
  if (!roles.includes(approver.role))
    return {
      code: 'FORBIDDEN',
      problem:
        change.type === 'emergency'
          ? 'an emergency change needs an approver with the emergency-authority role'
          : `approvals for this change count only from ${roles.join(', ')}; you are ${approver.role}`,
    };
  if (approvals.some((a) => a.approverId === approver.id && a.contentDigest === contentDigest))
    return { code: 'CONFLICT', problem: 'you have already approved this change; one person counts once' };
  return null;
}

/** Approvals that still count: distinct people, for the change's current content. */
export function validApprovals(approvals: readonly CountedApproval[], contentDigest: string): number {
  return new Set(approvals.filter((a) => a.contentDigest === contentDigest).map((a) => a.approverId)).size;
}
