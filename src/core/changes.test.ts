import { describe, expect, it } from 'vitest';
import {
  type ApprovalSubject,
  approvalsRequired,
  approverRoles,
  assessRisk,
  CHANGE_ACTIONS,
  CHANGE_STATES,
  type ChangeAction,
  type ChangeState,
  type CountedApproval,
  DEFAULT_POLICY,
  decisionProblem,
  legalActions,
  policyOf,
  type RiskAnswers,
  transition,
  validApprovals,
} from './changes.ts';

/**
 * Every legal move of a change request, written out by hand (not derived from the module), so a
 * transition added or dropped in the module fails here.
 */
const LEGAL: ReadonlyArray<readonly [ChangeState, ChangeAction, ChangeState]> = [
  ['draft', 'edit', 'draft'],
  ['draft', 'submit', 'submitted'],
  ['draft', 'cancel', 'cancelled'],
  ['submitted', 'edit', 'submitted'],
  ['submitted', 'approve', 'approved'],
  ['submitted', 'reject', 'rejected'],
  ['submitted', 'cancel', 'cancelled'],
  ['approved', 'edit', 'submitted'],
  ['approved', 'schedule', 'scheduled'],
  ['approved', 'start', 'implementing'],
  ['approved', 'cancel', 'cancelled'],
  ['rejected', 'edit', 'draft'],
  ['rejected', 'close', 'closed'],
  ['scheduled', 'edit', 'submitted'],
  ['scheduled', 'start', 'implementing'],
  ['scheduled', 'cancel', 'cancelled'],
  ['implementing', 'complete', 'implemented'],
  ['implementing', 'fail', 'failed'],
  ['implementing', 'back-out', 'backed-out'],
  ['implemented', 'review', 'reviewed'],
  ['failed', 'review', 'reviewed'],
  ['backed-out', 'review', 'reviewed'],
  ['reviewed', 'close', 'closed'],
];

const legalKey = (from: ChangeState, action: ChangeAction) => `${from} --${action}-->`;
const LEGAL_MAP = new Map(LEGAL.map(([from, action, to]) => [legalKey(from, action), to]));

describe('change state machine', () => {
  it('the hand-written table has no duplicate (state, action) pairs', () => {
    expect(LEGAL_MAP.size).toBe(LEGAL.length);
  });

  it.each(LEGAL)('%s --%s--> %s', (from, action, to) => {
    expect(transition(from, action)).toEqual({ ok: true, to });
  });

  it('refuses every (state, action) pair not in the table, naming the state', () => {
    let refused = 0;
    for (const from of CHANGE_STATES) {
      for (const action of CHANGE_ACTIONS) {
        if (LEGAL_MAP.has(legalKey(from, action))) continue;
        const result = transition(from, action);
        expect(result.ok, `${from} --${action}--> should be refused`).toBe(false);
        if (result.ok) continue;
        expect(result.problem).toContain(`a ${from} change`);
        refused++;
      }
    }
    expect(refused).toBe(CHANGE_STATES.length * CHANGE_ACTIONS.length - LEGAL.length);
  });

  it('a refusal of a non-final state names the action and what is legal instead', () => {
    const result = transition('implementing', 'approve');
    expect(result).toEqual({
      ok: false,
      problem: 'a implementing change cannot approve; from implementing it can complete, fail, back-out',
    });
  });

  it('legalActions agrees with the table for every state', () => {
    for (const from of CHANGE_STATES) {
      const expected = LEGAL.filter(([f]) => f === from)
        .map(([, action]) => action)
        .sort();
      expect([...legalActions(from)].sort(), from).toEqual(expected);
    }
  });

  it.each(['closed', 'cancelled'] as const)('%s is final: every action is refused as final', (state) => {
    expect(legalActions(state)).toEqual([]);
    for (const action of CHANGE_ACTIONS) {
      const result = transition(state, action);
      expect(result.ok).toBe(false);
      if (!result.ok)
        expect(result.problem).toBe(`a ${state} change is final: nothing more can be done with it`);
    }
  });

  it('every state can reach a final state (no dead ends other than closed and cancelled)', () => {
    const finals = new Set<ChangeState>(['closed', 'cancelled']);
    for (const start of CHANGE_STATES) {
      const seen = new Set<ChangeState>([start]);
      const queue: ChangeState[] = [start];
      while (queue.length > 0) {
        const at = queue.shift() as ChangeState;
        for (const action of legalActions(at)) {
          const result = transition(at, action);
          if (result.ok && !seen.has(result.to)) {
            seen.add(result.to);
            queue.push(result.to);
          }
        }
      }
      expect(
        [...seen].some((s) => finals.has(s)),
        start,
      ).toBe(true);
    }
  });
});

describe('risk questionnaire', () => {
  const safest: RiskAnswers = {
    userImpact: 'none',
    doneBefore: true,
    backoutTested: true,
    changesData: false,
  };

  it('scores nothing and gives low risk with no reasons when every answer is the safe one', () => {
    expect(assessRisk(safest)).toEqual({ risk: 'low', score: 0, because: [] });
  });

  it('score 1 is still low (upper boundary of low)', () => {
    expect(assessRisk({ ...safest, doneBefore: false })).toEqual({
      risk: 'low',
      score: 1,
      because: ['not done before (+1)'],
    });
  });

  it('score 2 is medium (lower boundary of medium)', () => {
    expect(assessRisk({ ...safest, backoutTested: false })).toEqual({
      risk: 'medium',
      score: 2,
      because: ['backout not tested (+2)'],
    });
    expect(assessRisk({ ...safest, userImpact: 'some' })).toEqual({
      risk: 'medium',
      score: 2,
      because: ['users may notice it (+2)'],
    });
  });

  it('score 3 is medium (upper boundary of medium)', () => {
    expect(assessRisk({ ...safest, changesData: true, doneBefore: false })).toEqual({
      risk: 'medium',
      score: 3,
      because: ['not done before (+1)', 'changes stored data (+2)'],
    });
  });

  it('score 4 is high (lower boundary of high)', () => {
    expect(assessRisk({ ...safest, userImpact: 'major' })).toEqual({
      risk: 'high',
      score: 4,
      because: ['users will notice an outage (+4)'],
    });
    expect(assessRisk({ ...safest, backoutTested: false, changesData: true })).toMatchObject({
      risk: 'high',
      score: 4,
    });
  });

  it('the worst answers add up and every one is explained', () => {
    const worst = assessRisk({
      userImpact: 'major',
      doneBefore: false,
      backoutTested: false,
      changesData: true,
    });
    expect(worst.risk).toBe('high');
    expect(worst.score).toBe(9);
    expect(worst.because).toEqual([
      'users will notice an outage (+4)',
      'not done before (+1)',
      'backout not tested (+2)',
      'changes stored data (+2)',
    ]);
  });
});

describe('environment policy', () => {
  it('fills every missing field from the defaults', () => {
    expect(policyOf({})).toEqual(DEFAULT_POLICY);
  });

  it('keeps stored fields over the defaults', () => {
    const policy = policyOf({ approvals: 3, changeRequired: true });
    expect(policy.approvals).toBe(3);
    expect(policy.changeRequired).toBe(true);
    expect(policy.highRiskApprovals).toBe(DEFAULT_POLICY.highRiskApprovals);
    expect(policy.approverRole).toBe('change-authority');
  });
});

describe('approvals required', () => {
  const strict = policyOf({ approvals: 3, highRiskApprovals: 4 });
  const lenient = policyOf({ approvals: 1, highRiskApprovals: 2 });
  const subject = (type: ApprovalSubject['type'], risk: ApprovalSubject['risk']): ApprovalSubject => ({
    type,
    risk,
    requesterId: 'u-requester',
  });

  it('a standard change needs none, whatever the environments ask', () => {
    expect(approvalsRequired(subject('standard', 'high'), [strict])).toBe(0);
  });

  it('an emergency change needs exactly one, whatever the environments ask', () => {
    expect(approvalsRequired(subject('emergency', 'high'), [strict])).toBe(1);
    expect(approvalsRequired(subject('emergency', 'low'), [lenient])).toBe(1);
  });

  it('a normal change uses the strictest environment it touches', () => {
    expect(approvalsRequired(subject('normal', 'low'), [lenient])).toBe(1);
    expect(approvalsRequired(subject('normal', 'low'), [lenient, strict])).toBe(3);
    expect(approvalsRequired(subject('normal', 'medium'), [strict, lenient])).toBe(3);
  });

  it('a normal change needs at least one even when no environment or a zero policy is given', () => {
    expect(approvalsRequired(subject('normal', 'low'), [])).toBe(1);
    expect(approvalsRequired(subject('normal', 'low'), [policyOf({ approvals: 0 })])).toBe(1);
  });

  it('a high-risk normal change uses highRiskApprovals', () => {
    expect(approvalsRequired(subject('normal', 'high'), [lenient])).toBe(2);
    expect(approvalsRequired(subject('normal', 'high'), [lenient, strict])).toBe(4);
    // Medium risk does not.
    expect(approvalsRequired(subject('normal', 'medium'), [lenient])).toBe(1);
  });

  it('a high-risk change never needs fewer than the ordinary count', () => {
    const odd = policyOf({ approvals: 3, highRiskApprovals: 1 });
    expect(approvalsRequired(subject('normal', 'high'), [odd])).toBe(3);
  });
});

describe('who may decide', () => {
  const normal: ApprovalSubject = { type: 'normal', risk: 'medium', requesterId: 'u-req' };
  const emergency: ApprovalSubject = { type: 'emergency', risk: 'high', requesterId: 'u-req' };
  const policies = [DEFAULT_POLICY];
  const digest = 'sha256:aaaa';

  it('counts admin, emergency-authority and the policy approver role for a normal change', () => {
    expect(approverRoles(normal, policies).sort()).toEqual([
      'admin',
      'change-authority',
      'emergency-authority',
    ]);
    expect(approverRoles(normal, [policyOf({ approverRole: 'release-manager' })]).sort()).toEqual([
      'admin',
      'emergency-authority',
      'release-manager',
    ]);
  });

  it('counts only emergency-authority for an emergency change', () => {
    expect(approverRoles(emergency, policies)).toEqual(['emergency-authority']);
  });

  it('lets a change authority who is not the requester decide a normal change', () => {
    expect(
      decisionProblem(normal, policies, { id: 'u-ca', role: 'change-authority' }, [], digest),
    ).toBeNull();
    expect(decisionProblem(normal, policies, { id: 'u-admin', role: 'admin' }, [], digest)).toBeNull();
  });

  it('refuses the requester, even with an approving role', () => {
    for (const role of ['change-authority', 'admin', 'emergency-authority'] as const) {
      expect(decisionProblem(normal, policies, { id: 'u-req', role }, [], digest)).toEqual({
        code: 'FORBIDDEN',
        problem: 'the requester of a change cannot approve or reject it',
      });
    }
    expect(
      decisionProblem(emergency, policies, { id: 'u-req', role: 'emergency-authority' }, [], digest),
    ).toEqual({ code: 'FORBIDDEN', problem: 'the requester of a change cannot approve or reject it' });
  });

  it('refuses a role that does not count, naming the roles that do', () => {
    const problem = decisionProblem(normal, policies, { id: 'u-dep', role: 'deployer' }, [], digest);
    expect(problem?.code).toBe('FORBIDDEN');
    expect(problem?.problem).toContain('you are deployer');
    expect(problem?.problem).toContain('change-authority');
  });

  it('an emergency change needs emergency-authority: admin and change-authority are refused', () => {
    for (const role of ['admin', 'change-authority'] as const) {
      expect(decisionProblem(emergency, policies, { id: `u-${role}`, role }, [], digest)).toEqual({
        code: 'FORBIDDEN',
        problem: 'an emergency change needs an approver with the emergency-authority role',
      });
    }
    expect(
      decisionProblem(emergency, policies, { id: 'u-ea', role: 'emergency-authority' }, [], digest),
    ).toBeNull();
  });

  it('refuses the same person twice for the same content as CONFLICT', () => {
    const approvals: CountedApproval[] = [{ approverId: 'u-ca', contentDigest: digest }];
    expect(
      decisionProblem(normal, policies, { id: 'u-ca', role: 'change-authority' }, approvals, digest),
    ).toEqual({
      code: 'CONFLICT',
      problem: 'you have already approved this change; one person counts once',
    });
  });

  it('lets the same person approve again once the content digest changed', () => {
    const approvals: CountedApproval[] = [{ approverId: 'u-ca', contentDigest: digest }];
    expect(
      decisionProblem(normal, policies, { id: 'u-ca', role: 'change-authority' }, approvals, 'sha256:bbbb'),
    ).toBeNull();
  });

  it("another person's approval of the same content does not block a second approver", () => {
    const approvals: CountedApproval[] = [{ approverId: 'u-other', contentDigest: digest }];
    expect(
      decisionProblem(normal, policies, { id: 'u-ca', role: 'change-authority' }, approvals, digest),
    ).toBeNull();
  });
});

describe('valid approvals', () => {
  const approvals: CountedApproval[] = [
    { approverId: 'alice', contentDigest: 'd1' },
    { approverId: 'alice', contentDigest: 'd1' },
    { approverId: 'bob', contentDigest: 'd1' },
    { approverId: 'carol', contentDigest: 'd0' },
    { approverId: 'alice', contentDigest: 'd0' },
  ];

  it('counts distinct people for the current digest only', () => {
    expect(validApprovals(approvals, 'd1')).toBe(2);
    expect(validApprovals(approvals, 'd0')).toBe(2);
    expect(validApprovals(approvals, 'd2')).toBe(0);
    expect(validApprovals([], 'd1')).toBe(0);
  });
});
