import { describe, expect, it } from 'vitest';
import { policyOf } from './changes.ts';
import { evaluateGate, GATE_CODES, type GateChange, type GateCode, type GateInput } from './gates.ts';

const NOW = new Date('2026-11-24T21:30:00Z');
const WINDOW = { start: new Date('2026-11-24T21:00:00Z'), end: new Date('2026-11-24T22:00:00Z') };
const API = { component: 'api', digest: `sha256:${'a'.repeat(64)}` };
const WEB = { component: 'web', digest: `sha256:${'b'.repeat(64)}` };
const OTHER_API = { component: 'api', digest: `sha256:${'c'.repeat(64)}` };

function change(overrides: Partial<GateChange> = {}): GateChange {
  return {
    id: 'ch-1',
    number: 'CHG-0001',
    type: 'normal',
    state: 'approved',
    environments: ['production'],
    releaseId: 'rel-1',
    windows: [WINDOW],
    validApprovals: 2,
    approvalsRequired: 2,
    freezeOverrideReason: null,
    templateStrategies: [],
    ...overrides,
  };
}

/**
 * Everything allowed, with every check switched on and exercised: change required, signatures
 * required, a strategy list, a freeze that is not in force now, a lifecycle met, a supplier actor
 * touching only its own targets.
 */
function allowedInput(overrides: Partial<GateInput> = {}): GateInput {
  return {
    now: NOW,
    environment: {
      name: 'production',
      policy: policyOf({ changeRequired: true, requireSignature: true, strategies: ['rolling', 'canary'] }),
    },
    release: { id: 'rel-1', name: 'shop', version: '2.4.0', components: [API, WEB] },
    toRun: [API, WEB],
    artifacts: {
      [API.digest]: { state: 'available', trustedSigners: ['publisher-1'] },
      [WEB.digest]: { state: 'available', trustedSigners: ['publisher-1'] },
      [OTHER_API.digest]: { state: 'available', trustedSigners: ['publisher-1'] },
    },
    change: change(),
    freezes: [
      {
        name: 'last year',
        schedule: {
          kind: 'once',
          start: new Date('2025-12-20T00:00:00Z'),
          end: new Date('2026-01-02T00:00:00Z'),
        },
      },
      // Fridays 18:00 Berlin for 62 hours: NOW is a Tuesday evening, outside it.
      {
        name: 'weekend',
        schedule: {
          kind: 'recurring',
          cron: '0 18 * * 5',
          durationMinutes: 62 * 60,
          timeZone: 'Europe/Berlin',
        },
      },
    ],
    lifecycle: { name: 'standard', phases: ['dev', 'test', 'production'] },
    succeededIn: ['dev', 'test'],
    actor: { role: 'supplier', supplierId: 'sup-1' },
    targets: [
      { name: 'web-01', supplierId: 'sup-1' },
      { name: 'web-02', supplierId: 'sup-1' },
    ],
    strategy: 'rolling',
    ...overrides,
  };
}

const codes = (input: GateInput) => evaluateGate(input).reasons.map((r) => r.code);

const activeFreeze = {
  name: 'black friday',
  schedule: {
    kind: 'once' as const,
    start: new Date('2026-11-24T00:00:00Z'),
    end: new Date('2026-11-30T00:00:00Z'),
  },
};

describe('deployment gate', () => {
  it('allows a fully-allowed input with no reasons and no notes', () => {
    expect(evaluateGate(allowedInput())).toEqual({ allowed: true, reasons: [], notes: [] });
  });

  it('allows a deployment without a change where the environment does not require one', () => {
    const input = allowedInput({ change: null, environment: { name: 'production', policy: policyOf({}) } });
    expect(evaluateGate(input).allowed).toBe(true);
  });

  /** For each code, the smallest change to the allowed input that produces exactly that code. */
  const CASES: Record<GateCode, () => GateInput> = {
    change_required: () => allowedInput({ change: null }),
    not_approved: () => allowedInput({ change: change({ state: 'submitted', validApprovals: 1 }) }),
    environment_not_in_change: () => allowedInput({ change: change({ environments: ['test'] }) }),
    release_not_in_change: () => allowedInput({ change: change({ releaseId: 'rel-0' }) }),
    outside_window: () => allowedInput({ now: new Date('2026-11-24T22:30:00Z') }),
    frozen: () => allowedInput({ freezes: [activeFreeze] }),
    artifact_not_in_change: () => allowedInput({ toRun: [OTHER_API, WEB] }),
    artifact_missing: () =>
      allowedInput({ artifacts: { [API.digest]: { state: 'available', trustedSigners: ['publisher-1'] } } }),
    artifact_quarantined: () =>
      allowedInput({
        artifacts: {
          [API.digest]: { state: 'quarantined', trustedSigners: ['publisher-1'] },
          [WEB.digest]: { state: 'available', trustedSigners: ['publisher-1'] },
        },
      }),
    unsigned_artifact: () =>
      allowedInput({
        artifacts: {
          [API.digest]: { state: 'available', trustedSigners: [] },
          [WEB.digest]: { state: 'available', trustedSigners: ['publisher-1'] },
        },
      }),
    lifecycle_not_met: () => allowedInput({ succeededIn: ['dev'] }),
    supplier_out_of_scope: () =>
      allowedInput({
        targets: [
          { name: 'web-01', supplierId: 'sup-1' },
          { name: 'db-01', supplierId: 'sup-2' },
        ],
      }),
    strategy_not_allowed: () => allowedInput({ strategy: 'big-bang' }),
  };

  it('has a case for every gate code', () => {
    expect(Object.keys(CASES).sort()).toEqual([...GATE_CODES].sort());
  });

  it.each(GATE_CODES)('refuses with exactly %s', (code) => {
    const verdict = evaluateGate(CASES[code]());
    expect(verdict.allowed).toBe(false);
    expect(verdict.reasons.map((r) => r.code)).toEqual([code]);
    expect(verdict.reasons[0]?.message.length).toBeGreaterThan(0);
  });

  it('not_approved reports the approvals count of a submitted change', () => {
    const [reason] = evaluateGate(CASES.not_approved()).reasons;
    expect(reason?.message).toBe('change CHG-0001 is submitted (1 of 2 approvals), not approved');
  });

  it('only approved, scheduled and implementing changes may run', () => {
    for (const state of ['draft', 'rejected', 'implemented', 'failed', 'closed', 'cancelled'] as const)
      expect(codes(allowedInput({ change: change({ state }) })), state).toEqual(['not_approved']);
    expect(codes(allowedInput({ change: change({ state: 'scheduled' }) }))).toEqual([]);
    expect(codes(allowedInput({ change: change({ state: 'implementing' }) }))).toEqual([]);
  });

  it('a change with no windows is outside every window', () => {
    const verdict = evaluateGate(allowedInput({ change: change({ windows: [] }) }));
    expect(verdict.reasons.map((r) => r.code)).toEqual(['outside_window']);
    expect(verdict.reasons[0]?.message).toContain('it has none');
  });

  it("refuses a strategy outside a standard change's template", () => {
    const verdict = evaluateGate(allowedInput({ change: change({ templateStrategies: ['canary'] }) }));
    expect(verdict.reasons.map((r) => r.code)).toEqual(['strategy_not_allowed']);
    expect(verdict.reasons[0]?.message).toContain('template allows canary, not rolling');
  });

  it('names every reason when several problems come at once, not just the first', () => {
    const input = allowedInput({
      now: new Date('2026-11-25T03:00:00Z'),
      change: change({ state: 'submitted', environments: ['test'] }),
      freezes: [activeFreeze],
      artifacts: {
        [API.digest]: { state: 'quarantined', trustedSigners: [] },
      },
      succeededIn: [],
      targets: [{ name: 'db-01', supplierId: null }],
      strategy: 'big-bang',
    });
    const verdict = evaluateGate(input);
    expect(verdict.allowed).toBe(false);
    expect(new Set(verdict.reasons.map((r) => r.code))).toEqual(
      new Set<GateCode>([
        'not_approved',
        'environment_not_in_change',
        'outside_window',
        'frozen',
        'artifact_missing',
        'artifact_quarantined',
        'unsigned_artifact',
        'lifecycle_not_met',
        'supplier_out_of_scope',
        'strategy_not_allowed',
      ]),
    );
  });

  describe('freezes', () => {
    it('an emergency change with a reason overrides a freeze, recorded as a note', () => {
      const verdict = evaluateGate(
        allowedInput({
          freezes: [activeFreeze],
          change: change({ type: 'emergency', freezeOverrideReason: 'payment outage' }),
        }),
      );
      expect(verdict.allowed).toBe(true);
      expect(verdict.reasons).toEqual([]);
      const overridden = verdict.notes.find((n) => n.code === 'freeze_overridden');
      expect(overridden?.message).toContain("'black friday'");
      expect(overridden?.message).toContain('payment outage');
      expect(verdict.notes.map((n) => n.code)).toContain('emergency');
    });

    it('an emergency change without a reason is still frozen', () => {
      const verdict = evaluateGate(
        allowedInput({
          freezes: [activeFreeze],
          change: change({ type: 'emergency', freezeOverrideReason: null }),
        }),
      );
      expect(verdict.allowed).toBe(false);
      expect(verdict.reasons.map((r) => r.code)).toEqual(['frozen']);
      expect(verdict.notes.map((n) => n.code)).not.toContain('freeze_overridden');
    });

    it('a normal change with an override reason does not override a freeze', () => {
      const verdict = evaluateGate(
        allowedInput({ freezes: [activeFreeze], change: change({ freezeOverrideReason: 'please' }) }),
      );
      expect(verdict.reasons.map((r) => r.code)).toEqual(['frozen']);
    });

    it('a recurring freeze in force now freezes', () => {
      // Saturday 2026-11-28 12:00 Berlin, inside "Friday 18:00 for 62 hours".
      const saturday = new Date('2026-11-28T11:00:00Z');
      const input = allowedInput({
        now: saturday,
        change: change({
          windows: [{ start: new Date('2026-11-28T10:00:00Z'), end: new Date('2026-11-28T12:00:00Z') }],
        }),
      });
      const verdict = evaluateGate(input);
      expect(verdict.reasons.map((r) => r.code)).toEqual(['frozen']);
      expect(verdict.reasons[0]?.message).toContain("'weekend'");
    });
  });

  describe('F26: clock jumps across a window boundary', () => {
    it('F26: allowed at the window start, inside it, and one millisecond before its end', () => {
      for (const now of [
        WINDOW.start,
        new Date(WINDOW.start.getTime() + 1),
        new Date(WINDOW.end.getTime() - 1),
      ]) {
        expect(evaluateGate(allowedInput({ now })).allowed, now.toISOString()).toBe(true);
      }
    });

    it('F26: refused exactly at the window end (half-open) and just before its start', () => {
      for (const now of [WINDOW.end, new Date(WINDOW.start.getTime() - 1)]) {
        expect(codes(allowedInput({ now })), now.toISOString()).toEqual(['outside_window']);
      }
    });

    it('F26: any one of several windows suffices', () => {
      const later = { start: new Date('2026-11-25T21:00:00Z'), end: new Date('2026-11-25T22:00:00Z') };
      const input = allowedInput({
        now: new Date('2026-11-25T21:59:00Z'),
        change: change({ windows: [WINDOW, later] }),
      });
      expect(evaluateGate(input).allowed).toBe(true);
    });
  });

  describe('lifecycle', () => {
    const lifecycle = { name: 'standard', phases: ['dev', 'test', 'production'] };
    const into = (env: string, succeededIn: string[]) =>
      allowedInput({
        environment: { name: env, policy: policyOf({ changeRequired: true }) },
        change: change({ environments: [env] }),
        lifecycle,
        succeededIn,
      });

    it('the first phase needs nothing', () => {
      expect(codes(into('dev', []))).toEqual([]);
    });

    it('a later phase needs every earlier phase, and names the missing ones', () => {
      const verdict = evaluateGate(into('production', ['dev']));
      expect(verdict.reasons.map((r) => r.code)).toEqual(['lifecycle_not_met']);
      expect(verdict.reasons[0]?.message).toBe(
        "lifecycle 'standard' needs shop 2.4.0 to succeed in test before production",
      );
      expect(evaluateGate(into('production', [])).reasons[0]?.message).toContain(
        'succeed in dev, test before',
      );
      expect(codes(into('test', []))).toEqual(['lifecycle_not_met']);
      expect(codes(into('test', ['dev']))).toEqual([]);
      expect(codes(into('production', ['test', 'dev']))).toEqual([]);
    });

    it('success in a later phase does not stand in for an earlier one', () => {
      expect(codes(into('test', ['production']))).toEqual(['lifecycle_not_met']);
    });
  });

  describe('suppliers', () => {
    it('supplier_out_of_scope names the targets outside the supplier', () => {
      const verdict = evaluateGate(
        allowedInput({
          targets: [
            { name: 'web-01', supplierId: 'sup-1' },
            { name: 'db-01', supplierId: 'sup-2' },
            { name: 'lb-01', supplierId: null },
          ],
        }),
      );
      expect(verdict.reasons.map((r) => r.code)).toEqual(['supplier_out_of_scope']);
      const message = verdict.reasons[0]?.message ?? '';
      expect(message).toContain('2 target(s)');
      expect(message).toContain('db-01');
      expect(message).toContain('lb-01');
      expect(message).not.toContain('web-01');
    });

    it('lists at most ten targets by name', () => {
      const targets = Array.from({ length: 12 }, (_, i) => ({
        name: `t-${String(i).padStart(2, '0')}`,
        supplierId: null,
      }));
      const message = evaluateGate(allowedInput({ targets })).reasons[0]?.message ?? '';
      expect(message).toContain('12 target(s)');
      expect(message).toContain('t-09');
      expect(message).not.toContain('t-10');
      expect(message).toMatch(/, …$/);
    });

    it('scope does not apply to non-supplier roles', () => {
      const input = allowedInput({
        actor: { role: 'deployer', supplierId: null },
        targets: [{ name: 'db-01', supplierId: 'sup-2' }],
      });
      expect(evaluateGate(input).allowed).toBe(true);
    });
  });
});
