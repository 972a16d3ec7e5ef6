import { describe, expect, it } from 'vitest';
import {
  type Decision as CoreDecision,
  DEFAULT_HALT_RULE,
  type DeploymentState,
  decide as decideCounts,
  type HaltRule,
  haltReason as haltReasonCounts,
  type Snapshot,
  type TargetState,
  type WaveState,
} from './deployments.ts';

const T0 = Date.parse('2030-03-01T09:00:00.000Z');
/** `s` seconds after T0. */
const at = (s: number) => new Date(T0 + s * 1000);

type Wave = Snapshot['waves'][number];
/** The tests follow single targets; the engine hands `decide` their counts per wave and state. */
type Target = { id: string; wave: number; state: TargetState };
/** A decision as the tests read it: a rollback names the targets in the states it names. */
type Decision =
  | Exclude<CoreDecision, { kind: 'roll_back_targets' }>
  | { kind: 'roll_back_targets'; targets: string[] };

/** A mutable snapshot: the test plays the shell, applying each decision as the engine does. */
interface Sim {
  state: DeploymentState;
  scheduledFor: Date | null;
  haltRule: HaltRule;
  waves: Wave[];
  targets: Target[];
  now: Date;
}

function waveOf(index: number, extra: Partial<Wave> = {}): Wave {
  return {
    index,
    state: 'pending',
    gate: 'auto',
    canary: false,
    bakeSeconds: 0,
    bakeUntil: null,
    approved: false,
    ...extra,
  };
}

/** `count` targets of `wave`, ids w<wave>-<n>, all in `state`. */
function targetsOf(wave: number, count: number, state: TargetState = 'pending'): Target[] {
  return Array.from({ length: count }, (_, i) => ({ id: `w${wave}-${i + 1}`, wave, state }));
}

function snapshot(extra: Partial<Sim> = {}): Sim {
  return {
    state: 'running',
    scheduledFor: null,
    haltRule: DEFAULT_HALT_RULE,
    waves: [waveOf(0)],
    targets: targetsOf(0, 10),
    now: at(0),
    ...extra,
  };
}

const counted = (s: Sim): Snapshot => ({
  ...s,
  targets: s.targets.map((t) => ({ wave: t.wave, state: t.state, count: 1 })),
});
function decide(s: Sim): Decision {
  const d = decideCounts(counted(s));
  if (d.kind !== 'roll_back_targets') return d;
  return {
    kind: 'roll_back_targets',
    targets: s.targets.filter((t) => d.states.includes(t.state)).map((t) => t.id),
  };
}
const haltReason = (s: Sim) => haltReasonCounts(counted(s));

/** What the engine does with a decision (deployment onFailure: rollback). */
function apply(s: Sim, d: Decision): void {
  const setWave = (index: number, patch: Partial<Wave>) => {
    s.waves = s.waves.map((w) => (w.index === index ? { ...w, ...patch } : w));
  };
  switch (d.kind) {
    case 'wait':
      return;
    case 'start':
      s.state = 'running';
      return;
    case 'start_wave':
      setWave(d.wave, { state: 'running' });
      s.targets = s.targets.map((t) =>
        t.wave === d.wave && t.state === 'pending' ? { ...t, state: 'installing' } : t,
      );
      return;
    case 'bake_wave':
      setWave(d.wave, { state: 'baking', bakeUntil: d.bakeUntil });
      return;
    case 'await_approval':
      setWave(d.wave, { state: 'awaiting_approval' });
      return;
    case 'finish_wave':
      setWave(d.wave, { state: 'succeeded' });
      return;
    case 'complete':
      s.state = 'succeeded';
      return;
    case 'halt':
      s.state = 'rolling_back';
      return;
    case 'roll_back_targets':
      s.targets = s.targets.map((t) => (d.targets.includes(t.id) ? { ...t, state: 'rolling_back' } : t));
      return;
    case 'finish_rollback':
      s.state = d.ok ? 'rolled_back' : 'failed';
      return;
  }
}

const setTargets = (s: Sim, states: Record<string, TargetState>) => {
  s.targets = s.targets.map((t) => (states[t.id] ? { ...t, state: states[t.id] as TargetState } : t));
};
const setWaveState = (s: Sim, index: number, state: WaveState, extra: Partial<Wave> = {}) => {
  s.waves = s.waves.map((w) => (w.index === index ? { ...w, state, ...extra } : w));
};

interface Step {
  /** What happened before the reconciler asks: the clock, target reports, an approval. */
  now?: number;
  targets?: Record<string, TargetState>;
  approve?: number;
  expect: Decision;
}

/**
 * Runs the steps: before each, the step's events; then decide (twice: the same snapshot gives the
 * same answer, as after a restart) and, if it is what the step expects, apply it.
 */
function walk(s: Sim, steps: ReadonlyArray<readonly [string, Step]>): void {
  for (const [label, step] of steps) {
    if (step.now !== undefined) s.now = at(step.now);
    if (step.targets) setTargets(s, step.targets);
    if (step.approve !== undefined) {
      const index = step.approve;
      s.waves = s.waves.map((w) => (w.index === index ? { ...w, approved: true } : w));
    }
    const decision = decide(s);
    expect(decision, label).toEqual(step.expect);
    expect(decide(s), `${label} (asked again)`).toEqual(decision);
    apply(s, decision);
  }
}

describe('decide: installing the next wave ahead', () => {
  const twoWaves = (installAhead: boolean, second: TargetState = 'pending'): Snapshot => ({
    ...counted(
      snapshot({
        waves: [waveOf(0, { state: 'running', bakeSeconds: 60 }), waveOf(1)],
        targets: [...targetsOf(0, 2, 'succeeded'), ...targetsOf(1, 3, second)],
        now: at(10),
      }),
    ),
    installAhead,
  });

  it('names the next wave when the bake starts, if the strategy installs ahead and it has targets waiting', () => {
    expect(decideCounts(twoWaves(true))).toEqual({
      kind: 'bake_wave',
      wave: 0,
      bakeUntil: at(70),
      installAhead: 1,
    });
    expect(decideCounts(twoWaves(false))).toEqual({ kind: 'bake_wave', wave: 0, bakeUntil: at(70) });
    // Nothing waiting there (installed already, or retried since): nothing to install ahead.
    expect(decideCounts(twoWaves(true, 'installed'))).toEqual({
      kind: 'bake_wave',
      wave: 0,
      bakeUntil: at(70),
    });
  });

  it('a target installed ahead neither holds up the wave before it nor counts as a failure', () => {
    const s = twoWaves(true, 'installed');
    const baking = {
      ...s,
      waves: s.waves.map((w) => (w.index === 0 ? { ...w, state: 'baking' as const, bakeUntil: at(70) } : w)),
    };
    expect(decideCounts({ ...baking, now: at(71) })).toEqual({ kind: 'finish_wave', wave: 0 });
    expect(haltReasonCounts(baking)).toBeNull();
  });
});

describe('decide: a whole phased deployment', () => {
  /** Wave 1: 2 targets, bake 60 s. Wave 2: 3 targets, bake 300 s, manual gate. Rest: 5, no bake. */
  const phased = (): Sim =>
    snapshot({
      state: 'scheduled',
      scheduledFor: at(100),
      waves: [waveOf(0, { bakeSeconds: 60 }), waveOf(1, { bakeSeconds: 300, gate: 'manual' }), waveOf(2)],
      targets: [...targetsOf(0, 2), ...targetsOf(1, 3), ...targetsOf(2, 5)],
    });

  it('walks from scheduled through every wave, the bakes and the manual gate, to complete', () => {
    const s = phased();
    walk(s, [
      ['before its time, a scheduled deployment waits', { now: 50, expect: { kind: 'wait' } }],
      ['1 ms before its time it still waits', { now: 99.999, expect: { kind: 'wait' } }],
      ['at its time it starts', { now: 100, expect: { kind: 'start' } }],
      ['running, the first wave starts', { expect: { kind: 'start_wave', wave: 0 } }],
      ['both targets installing: wait', { now: 110, expect: { kind: 'wait' } }],
      [
        'one succeeded, one still activating: wait',
        { now: 120, targets: { 'w0-1': 'succeeded', 'w0-2': 'activating' }, expect: { kind: 'wait' } },
      ],
      [
        'both succeeded: bake until now + 60 s',
        {
          now: 130,
          targets: { 'w0-2': 'succeeded' },
          expect: { kind: 'bake_wave', wave: 0, bakeUntil: at(190) },
        },
      ],
      ['1 s before the bake ends: wait', { now: 189, expect: { kind: 'wait' } }],
      ['the bake ends: wave 1 finishes', { now: 190, expect: { kind: 'finish_wave', wave: 0 } }],
      ['the second wave starts', { expect: { kind: 'start_wave', wave: 1 } }],
      ['its targets installing: wait', { now: 200, expect: { kind: 'wait' } }],
      [
        'a target still pending (not yet picked up): wait',
        {
          targets: { 'w1-1': 'succeeded', 'w1-2': 'succeeded', 'w1-3': 'pending' },
          expect: { kind: 'wait' },
        },
      ],
      [
        'all succeeded: bake 300 s',
        {
          now: 250,
          targets: { 'w1-3': 'succeeded' },
          expect: { kind: 'bake_wave', wave: 1, bakeUntil: at(550) },
        },
      ],
      ['during the bake: wait', { now: 549, expect: { kind: 'wait' } }],
      [
        'the bake ends, the gate is manual and not approved: await approval',
        { now: 550, expect: { kind: 'await_approval', wave: 1 } },
      ],
      ['no approval an hour later: wait', { now: 4150, expect: { kind: 'wait' } }],
      ['approved: the wave finishes', { approve: 1, expect: { kind: 'finish_wave', wave: 1 } }],
      ['the last wave starts', { expect: { kind: 'start_wave', wave: 2 } }],
      [
        'four of five done, one installing: wait',
        {
          now: 4200,
          targets: { 'w2-1': 'succeeded', 'w2-2': 'succeeded', 'w2-3': 'succeeded', 'w2-4': 'succeeded' },
          expect: { kind: 'wait' },
        },
      ],
      [
        'the fifth failed (1 of 10 = 10%, at the threshold): the wave still bakes, for 0 s',
        {
          now: 4210,
          targets: { 'w2-5': 'failed' },
          expect: { kind: 'bake_wave', wave: 2, bakeUntil: at(4210) },
        },
      ],
      ['a bake of 0 s ends at once', { expect: { kind: 'finish_wave', wave: 2 } }],
      ['every wave succeeded: complete', { expect: { kind: 'complete' } }],
      ['succeeded: nothing more to do', { now: 9000, expect: { kind: 'wait' } }],
    ]);
    expect(s.state).toBe('succeeded');
    expect(s.waves.map((w) => w.state)).toEqual(['succeeded', 'succeeded', 'succeeded']);
  });

  it('a manual gate approved during the bake finishes when the bake ends, without awaiting approval', () => {
    const s = phased();
    s.state = 'running';
    setWaveState(s, 0, 'succeeded');
    setTargets(s, { 'w0-1': 'succeeded', 'w0-2': 'succeeded' });
    walk(s, [
      ['start wave 2', { now: 1000, expect: { kind: 'start_wave', wave: 1 } }],
      [
        'done: bake',
        {
          targets: { 'w1-1': 'succeeded', 'w1-2': 'succeeded', 'w1-3': 'succeeded' },
          expect: { kind: 'bake_wave', wave: 1, bakeUntil: at(1300) },
        },
      ],
      ['approved while baking: still wait for the bake', { now: 1200, approve: 1, expect: { kind: 'wait' } }],
      ['the bake ends: finish', { now: 1300, expect: { kind: 'finish_wave', wave: 1 } }],
    ]);
  });

  it('a wave asked about well after its bake ended finishes (an auto gate)', () => {
    const s = snapshot({
      waves: [waveOf(0, { state: 'baking', bakeUntil: at(60) }), waveOf(1)],
      targets: [...targetsOf(0, 1, 'succeeded'), ...targetsOf(1, 1)],
      now: at(86_400),
    });
    expect(decide(s)).toEqual({ kind: 'finish_wave', wave: 0 });
  });

  it('a manual gate not approved is awaited even long after the bake', () => {
    const s = snapshot({
      waves: [waveOf(0, { state: 'baking', bakeUntil: at(60), gate: 'manual' })],
      targets: targetsOf(0, 1, 'succeeded'),
      now: at(86_400),
    });
    expect(decide(s)).toEqual({ kind: 'await_approval', wave: 0 });
  });

  it('a baking wave without a recorded bake end goes on (an auto gate finishes, a manual one is awaited)', () => {
    const waves = [waveOf(0, { state: 'baking', bakeUntil: null })];
    expect(decide(snapshot({ waves, targets: targetsOf(0, 2, 'succeeded') }))).toEqual({
      kind: 'finish_wave',
      wave: 0,
    });
    const manual = [waveOf(0, { state: 'baking', bakeUntil: null, gate: 'manual' })];
    expect(decide(snapshot({ waves: manual, targets: targetsOf(0, 2, 'succeeded') }))).toEqual({
      kind: 'await_approval',
      wave: 0,
    });
  });

  it('waits on an awaiting wave until it is approved, whatever the clock says', () => {
    const waves = [waveOf(0, { state: 'awaiting_approval', gate: 'manual', bakeUntil: at(0) })];
    for (const now of [at(1), at(3600), at(864_000)])
      expect(decide(snapshot({ waves, targets: targetsOf(0, 1, 'succeeded'), now }))).toEqual({
        kind: 'wait',
      });
    const approved = [{ ...(waves[0] as Wave), approved: true }];
    expect(decide(snapshot({ waves: approved, targets: targetsOf(0, 1, 'succeeded') }))).toEqual({
      kind: 'finish_wave',
      wave: 0,
    });
  });

  it('bakes for the wave’s own bake time from the moment its last target is done', () => {
    const s = snapshot({
      waves: [waveOf(0, { state: 'running', bakeSeconds: 1800 })],
      targets: targetsOf(0, 3, 'succeeded'),
      now: at(12.5),
    });
    expect(decide(s)).toEqual({ kind: 'bake_wave', wave: 0, bakeUntil: new Date(T0 + 12_500 + 1_800_000) });
  });

  it('the next wave waits for the one before it (waves go in order)', () => {
    const s = snapshot({
      waves: [
        waveOf(0, { state: 'succeeded' }),
        waveOf(1, { state: 'baking', bakeUntil: at(10) }),
        waveOf(2),
      ],
      targets: [...targetsOf(0, 1, 'succeeded'), ...targetsOf(1, 1, 'succeeded'), ...targetsOf(2, 1)],
      now: at(5),
    });
    expect(decide(s)).toEqual({ kind: 'wait' });
  });

  it('a deployment with every wave succeeded completes', () => {
    const s = snapshot({
      waves: [waveOf(0, { state: 'succeeded' }), waveOf(1, { state: 'succeeded' })],
      targets: [...targetsOf(0, 2, 'succeeded'), ...targetsOf(1, 2, 'succeeded')],
    });
    expect(decide(s)).toEqual({ kind: 'complete' });
  });
});

describe('decide: scheduled', () => {
  it.each([
    ['an hour before', at(-3600), { kind: 'wait' }],
    ['1 ms before', new Date(T0 - 1), { kind: 'wait' }],
    ['exactly at its time', at(0), { kind: 'start' }],
    ['after its time', at(3600), { kind: 'start' }],
  ] as const)('%s its time: %o', (_, now, expected) => {
    expect(decide(snapshot({ state: 'scheduled', scheduledFor: at(0), now }))).toEqual(expected);
  });

  it('without a time it starts at once', () => {
    expect(decide(snapshot({ state: 'scheduled', scheduledFor: null }))).toEqual({ kind: 'start' });
  });

  it('starts even when failures are recorded (the halt rule is for running deployments)', () => {
    expect(decide(snapshot({ state: 'scheduled', targets: targetsOf(0, 2, 'failed') }))).toEqual({
      kind: 'start',
    });
  });
});

describe('decide: the halt rule', () => {
  /** 10 targets in one running wave, `failed` of them failed, the rest succeeded. */
  const withFailed = (failed: number, total = 10, rule: HaltRule = DEFAULT_HALT_RULE) =>
    snapshot({
      haltRule: rule,
      waves: [waveOf(0, { state: 'running' })],
      targets: targetsOf(0, total, 'succeeded').map((t, i) => (i < failed ? { ...t, state: 'failed' } : t)),
    });

  it('more than maxFailedPercent failed halts, with a reason naming the counts', () => {
    expect(decide(withFailed(2))).toEqual({
      kind: 'halt',
      reason: '2 of 10 target(s) failed (20%, the rule allows 10%)',
    });
  });

  it('exactly at the threshold does not halt', () => {
    expect(haltReason(withFailed(1))).toBeNull();
    expect(decide(withFailed(1))).toEqual({ kind: 'bake_wave', wave: 0, bakeUntil: at(0) });
    expect(haltReason(withFailed(3, 30))).toBeNull();
    expect(haltReason(withFailed(5, 10, { maxFailedPercent: 50, canaryMaxFailures: 0 }))).toBeNull();
    expect(haltReason(withFailed(6, 10, { maxFailedPercent: 50, canaryMaxFailures: 0 }))).toBe(
      '6 of 10 target(s) failed (60%, the rule allows 50%)',
    );
  });

  it('just over the threshold halts, with the share rounded to a tenth', () => {
    expect(haltReason(withFailed(4, 30))).toBe('4 of 30 target(s) failed (13.3%, the rule allows 10%)');
    expect(haltReason(withFailed(1, 3, { maxFailedPercent: 33, canaryMaxFailures: 0 }))).toBe(
      '1 of 3 target(s) failed (33.3%, the rule allows 33%)',
    );
  });

  it('a rule of 0% halts on the first failure and not before', () => {
    const zero: HaltRule = { maxFailedPercent: 0, canaryMaxFailures: 0 };
    expect(haltReason(withFailed(0, 10, zero))).toBeNull();
    expect(haltReason(withFailed(1, 10, zero))).toBe('1 of 10 target(s) failed (10%, the rule allows 0%)');
  });

  it('a rule of 100% never halts', () => {
    expect(haltReason(withFailed(10, 10, { maxFailedPercent: 100, canaryMaxFailures: 0 }))).toBeNull();
  });

  it('halts while other targets are still in flight', () => {
    const s = withFailed(3);
    setTargets(s, { 'w0-9': 'installing', 'w0-10': 'activating' });
    expect(decide(s)).toMatchObject({ kind: 'halt' });
  });

  it('halts in any wave state, not only while a wave runs', () => {
    for (const state of ['pending', 'baking', 'awaiting_approval'] as const) {
      const s = withFailed(2);
      setWaveState(s, 0, state, { bakeUntil: at(60), gate: 'manual' });
      expect(decide(s), state).toMatchObject({ kind: 'halt' });
    }
  });

  describe('canary', () => {
    /** 100 targets: a canary wave of 5, then 95. */
    const canary = (rule: HaltRule, failedIn: Record<string, TargetState>) => {
      const s = snapshot({
        haltRule: rule,
        waves: [waveOf(0, { canary: true, state: 'running' }), waveOf(1)],
        targets: [...targetsOf(0, 5, 'succeeded'), ...targetsOf(1, 95)],
      });
      setTargets(s, failedIn);
      return s;
    };

    it('any canary failure with canaryMaxFailures 0 halts though 1% is under the threshold', () => {
      expect(decide(canary(DEFAULT_HALT_RULE, { 'w0-3': 'failed' }))).toEqual({
        kind: 'halt',
        reason: '1 canary target(s) failed (the rule allows 0)',
      });
    });

    it('canary failures up to canaryMaxFailures do not halt; one more does', () => {
      const rule: HaltRule = { maxFailedPercent: 10, canaryMaxFailures: 2 };
      expect(decide(canary(rule, { 'w0-1': 'failed', 'w0-2': 'failed' }))).toMatchObject({
        kind: 'bake_wave',
      });
      expect(decide(canary(rule, { 'w0-1': 'failed', 'w0-2': 'failed', 'w0-3': 'failed' }))).toEqual({
        kind: 'halt',
        reason: '3 canary target(s) failed (the rule allows 2)',
      });
    });

    it('a failure outside the canary wave is judged by the percentage only', () => {
      const s = canary(DEFAULT_HALT_RULE, {});
      setWaveState(s, 0, 'succeeded');
      setWaveState(s, 1, 'running');
      s.targets = s.targets.map((t) => (t.wave === 1 ? { ...t, state: 'succeeded' } : t));
      setTargets(s, { 'w1-1': 'failed' });
      expect(haltReason(s)).toBeNull();
      expect(decide(s)).toMatchObject({ kind: 'bake_wave', wave: 1 });
    });

    it('a canary that only rolled back or is in flight has not failed', () => {
      expect(
        haltReason(canary(DEFAULT_HALT_RULE, { 'w0-1': 'installing', 'w0-2': 'rolled_back' })),
      ).toBeNull();
    });
  });

  it('a wave whose failures stay under the threshold bakes, finishes, and the deployment goes on', () => {
    const s = snapshot({
      haltRule: { maxFailedPercent: 25, canaryMaxFailures: 0 },
      waves: [waveOf(0, { bakeSeconds: 30 }), waveOf(1)],
      targets: [...targetsOf(0, 4), ...targetsOf(1, 8)],
    });
    walk(s, [
      ['start', { expect: { kind: 'start_wave', wave: 0 } }],
      [
        'two of four failed: 2 of 12 is under 25%, bake',
        {
          now: 10,
          targets: { 'w0-1': 'failed', 'w0-2': 'failed', 'w0-3': 'succeeded', 'w0-4': 'succeeded' },
          expect: { kind: 'bake_wave', wave: 0, bakeUntil: at(40) },
        },
      ],
      ['baked: finish', { now: 40, expect: { kind: 'finish_wave', wave: 0 } }],
      ['the next wave starts', { expect: { kind: 'start_wave', wave: 1 } }],
      [
        'a third failure is 3 of 12 = 25%: still not over, wait for the rest',
        { targets: { 'w1-1': 'failed' }, expect: { kind: 'wait' } },
      ],
      [
        'a fourth is over: halt',
        {
          targets: { 'w1-2': 'failed' },
          expect: { kind: 'halt', reason: '4 of 12 target(s) failed (33.3%, the rule allows 25%)' },
        },
      ],
    ]);
    expect(s.state).toBe('rolling_back');
  });
});

describe('decide: rolling back', () => {
  const rollingBack = (states: TargetState[]) =>
    snapshot({
      state: 'rolling_back',
      waves: [waveOf(0, { state: 'running' })],
      targets: states.map((state, i) => ({ id: `t${i + 1}`, wave: 0, state })),
    });

  it('rolls back exactly the targets that succeeded', () => {
    const s = rollingBack([
      'succeeded',
      'failed',
      'pending',
      'succeeded',
      'installing',
      'rolled_back',
      'rollback_failed',
      'rolling_back',
      'activating',
      'succeeded',
    ]);
    expect(decide(s)).toEqual({ kind: 'roll_back_targets', targets: ['t1', 't4', 't10'] });
  });

  it('rolls back a target that succeeds after the halt', () => {
    const s = rollingBack(['rolling_back', 'installing']);
    expect(decide(s)).toEqual({ kind: 'wait' });
    setTargets(s, { t2: 'succeeded' });
    expect(decide(s)).toEqual({ kind: 'roll_back_targets', targets: ['t2'] });
  });

  it.each(['rolling_back', 'installing', 'activating'] as const)('waits while a target is %s', (state) => {
    expect(decide(rollingBack(['rolled_back', state, 'failed', 'rollback_failed']))).toEqual({
      kind: 'wait',
    });
  });

  it('finishes ok when no target failed to roll back', () => {
    expect(decide(rollingBack(['rolled_back', 'failed', 'pending', 'rolled_back']))).toEqual({
      kind: 'finish_rollback',
      ok: true,
    });
    expect(decide(rollingBack(['failed']))).toEqual({ kind: 'finish_rollback', ok: true });
  });

  it('finishes not ok when any target failed to roll back', () => {
    expect(decide(rollingBack(['rolled_back', 'rollback_failed', 'rolled_back']))).toEqual({
      kind: 'finish_rollback',
      ok: false,
    });
  });

  it('is not stopped by the halt rule (every target is already failed)', () => {
    expect(decide(rollingBack(['failed', 'failed', 'failed']))).toEqual({
      kind: 'finish_rollback',
      ok: true,
    });
  });

  it('walks a halted deployment back: roll back, wait, finish', () => {
    const s = snapshot({
      waves: [waveOf(0, { state: 'running' })],
      targets: targetsOf(0, 4, 'succeeded'),
    });
    walk(s, [
      [
        'two fail: halt',
        {
          targets: { 'w0-1': 'failed', 'w0-2': 'failed' },
          expect: { kind: 'halt', reason: '2 of 4 target(s) failed (50%, the rule allows 10%)' },
        },
      ],
      [
        'roll back the two that succeeded',
        { expect: { kind: 'roll_back_targets', targets: ['w0-3', 'w0-4'] } },
      ],
      ['both rolling back: wait', { expect: { kind: 'wait' } }],
      ['one rolled back: wait', { targets: { 'w0-3': 'rolled_back' }, expect: { kind: 'wait' } }],
      [
        'the other failed to roll back: finish, not ok',
        { targets: { 'w0-4': 'rollback_failed' }, expect: { kind: 'finish_rollback', ok: false } },
      ],
    ]);
    expect(s.state).toBe('failed');
  });
});

describe('decide: states that wait', () => {
  it.each(['paused', 'succeeded', 'failed', 'aborted', 'frozen', 'rolled_back'] as const)(
    '%s waits, whatever its waves and targets',
    (state) => {
      const cases: Sim[] = [
        snapshot({ state }),
        snapshot({ state, targets: targetsOf(0, 10, 'failed'), waves: [waveOf(0, { state: 'running' })] }),
        snapshot({
          state,
          waves: [waveOf(0, { state: 'succeeded' })],
          targets: targetsOf(0, 1, 'succeeded'),
        }),
        snapshot({ state, targets: targetsOf(0, 2, 'succeeded'), waves: [waveOf(0, { state: 'running' })] }),
      ];
      for (const s of cases) expect(decide(s)).toEqual({ kind: 'wait' });
    },
  );

  it('the same snapshots running do not wait (so the waits above are about the state)', () => {
    expect(decide(snapshot())).toEqual({ kind: 'start_wave', wave: 0 });
    expect(
      decide(snapshot({ targets: targetsOf(0, 10, 'failed'), waves: [waveOf(0, { state: 'running' })] })),
    ).toMatchObject({ kind: 'halt' });
    expect(
      decide(snapshot({ waves: [waveOf(0, { state: 'succeeded' })], targets: targetsOf(0, 1, 'succeeded') })),
    ).toEqual({ kind: 'complete' });
  });
});

describe('decide: blue-green', () => {
  const running = (states: TargetState[], haltRule: HaltRule = DEFAULT_HALT_RULE) =>
    snapshot({
      haltRule,
      waves: [waveOf(0, { state: 'running' })],
      targets: states.map((state, i) => ({ id: `t${i + 1}`, wave: 0, state })),
    });

  it('does not switch while any target is still installing or staging', () => {
    expect(decide(running(['staged', 'staging', 'staged']))).toEqual({ kind: 'wait' });
    expect(decide(running(['staged', 'installing']))).toEqual({ kind: 'wait' });
  });

  it('switches every target at once when all have staged', () => {
    expect(decide(running(['staged', 'staged', 'staged']))).toEqual({ kind: 'switch_wave', wave: 0 });
  });

  it('a failure within the halt rule does not hold the switch back for the others', () => {
    const rule = { maxFailedPercent: 50, canaryMaxFailures: 0 };
    expect(decide(running(['staged', 'failed', 'staged'], rule))).toEqual({ kind: 'switch_wave', wave: 0 });
  });

  it('a failure beyond the halt rule halts before anything switches', () => {
    expect(decide(running(['staged', 'failed', 'staged'])).kind).toBe('halt');
  });

  it('bakes once every switch is done', () => {
    const s = running(['succeeded', 'succeeded']);
    expect(decide(s).kind).toBe('bake_wave');
    expect(decide(running(['succeeded', 'switching']))).toEqual({ kind: 'wait' });
  });

  it('rolling back stops the staged targets too, and waits for those switching or staging', () => {
    const s = snapshot({
      state: 'rolling_back',
      waves: [waveOf(0, { state: 'running' })],
      targets: (['staged', 'succeeded', 'failed'] as TargetState[]).map((state, i) => ({
        id: `t${i + 1}`,
        wave: 0,
        state,
      })),
    });
    expect(decide(s)).toEqual({ kind: 'roll_back_targets', targets: ['t1', 't2'] });
    setTargets(s, { t1: 'rolled_back', t2: 'switching' });
    expect(decide(s)).toEqual({ kind: 'wait' });
    setTargets(s, { t2: 'staging' });
    expect(decide(s)).toEqual({ kind: 'wait' });
  });
});

describe('decide: from counts, as the engine gives them', () => {
  const s = (targets: Snapshot['targets'], extra: Partial<Snapshot> = {}): Snapshot => ({
    state: 'running',
    scheduledFor: null,
    haltRule: DEFAULT_HALT_RULE,
    waves: [waveOf(0, { state: 'running' }), waveOf(1)],
    targets,
    now: at(0),
    ...extra,
  });

  it('judges the halt rule on the summed counts', () => {
    const some = s([
      { wave: 0, state: 'succeeded', count: 900 },
      { wave: 0, state: 'failed', count: 100 },
      { wave: 1, state: 'pending', count: 1000 },
    ]);
    expect(decideCounts(some).kind).toBe('bake_wave');
    const many = s([
      { wave: 0, state: 'succeeded', count: 800 },
      { wave: 0, state: 'failed', count: 150 },
      { wave: 0, state: 'unhealthy', count: 51 },
      { wave: 1, state: 'pending', count: 999 },
    ]);
    expect(decideCounts(many)).toEqual({
      kind: 'halt',
      reason: '201 of 2000 target(s) failed (10.1%, the rule allows 10%)',
    });
  });

  it('ignores empty groups, and a rollback names the states to roll back from', () => {
    expect(
      decideCounts(
        s([
          { wave: 0, state: 'installing', count: 0 },
          { wave: 0, state: 'succeeded', count: 3 },
        ]),
      ).kind,
    ).toBe('bake_wave');
    expect(decideCounts(s([{ wave: 0, state: 'succeeded', count: 2 }], { state: 'rolling_back' }))).toEqual({
      kind: 'roll_back_targets',
      states: ['succeeded', 'unhealthy', 'staged'],
    });
  });
});

describe('decide: blue-green by two target groups', () => {
  const s = (
    targets: Snapshot['targets'],
    routers: Snapshot['routers'],
    extra: Partial<Snapshot> = {},
  ): Snapshot => ({
    state: 'running',
    scheduledFor: null,
    haltRule: DEFAULT_HALT_RULE,
    waves: [waveOf(0, { state: 'running' })],
    targets,
    routers,
    now: at(0),
    ...extra,
  });

  it('switches once the group has activated and the routers have staged', () => {
    const ready = s(
      [
        { wave: 0, state: 'succeeded', count: 4 },
        { wave: 0, state: 'staged', count: 1 },
      ],
      [{ state: 'staged', count: 1 }],
    );
    expect(decideCounts(ready)).toEqual({ kind: 'switch_wave', wave: 0 });
  });

  it('halts for the reason the engine gives, whatever the halt rule allows', () => {
    const rule = { maxFailedPercent: 100, canaryMaxFailures: 0 };
    const failedSwitch = s(
      [
        { wave: 0, state: 'succeeded', count: 4 },
        { wave: 0, state: 'failed', count: 1 },
      ],
      [{ state: 'failed', count: 1 }],
      { haltRule: rule, mustHalt: 'router lb: the switch failed' },
    );
    expect(decideCounts(failedSwitch)).toEqual({ kind: 'halt', reason: 'router lb: the switch failed' });
    const moved = { ...failedSwitch, mustHalt: 'router lb2: the switch failed', trafficMoved: true };
    expect(decideCounts(moved)).toEqual({
      kind: 'halt',
      reason: 'router lb2: the switch failed',
      rollBack: true,
    });
  });

  it('once traffic has moved, a halt by the ordinary rule rolls back too', () => {
    const baking = s(
      [
        { wave: 0, state: 'succeeded', count: 2 },
        { wave: 0, state: 'unhealthy', count: 2 },
      ],
      [{ state: 'succeeded', count: 1 }],
      { trafficMoved: true },
    );
    expect(decideCounts(baking)).toMatchObject({ kind: 'halt', rollBack: true });
  });

  it('a rollback switches traffic back on the routers before the group goes back', () => {
    const back = (routers: Snapshot['routers']) =>
      decideCounts(
        s(
          [{ wave: 0, state: 'succeeded', count: 4 }, ...(routers ?? []).map((r) => ({ wave: 0, ...r }))],
          routers,
          { state: 'rolling_back' },
        ),
      );
    expect(back([{ state: 'succeeded', count: 1 }])).toEqual({
      kind: 'roll_back_targets',
      states: ['succeeded', 'unhealthy', 'staged'],
      only: 'routers',
    });
    expect(back([{ state: 'rolling_back', count: 1 }])).toEqual({ kind: 'wait' });
    expect(back([{ state: 'rolled_back', count: 1 }])).toEqual({
      kind: 'roll_back_targets',
      states: ['succeeded', 'unhealthy', 'staged'],
    });
    // A router that could not switch back: the group, which may still take traffic, is left alone.
    expect(back([{ state: 'rollback_failed', count: 1 }])).toEqual({ kind: 'finish_rollback', ok: false });
    expect(
      back([
        { state: 'rollback_failed', count: 1 },
        { state: 'rolling_back', count: 1 },
      ]),
    ).toEqual({ kind: 'wait' });
  });
});

describe('decide: targets retried after their wave ran', () => {
  it('a baking wave does not finish while a retried target of it is in flight', () => {
    const s = snapshot({
      waves: [waveOf(0, { state: 'baking', bakeUntil: at(10) }), waveOf(1)],
      targets: [
        { id: 't1', wave: 0, state: 'succeeded' },
        { id: 't2', wave: 0, state: 'installing' },
        { id: 't3', wave: 1, state: 'pending' },
      ],
      now: at(60),
    });
    expect(decide(s)).toEqual({ kind: 'wait' });
    setTargets(s, { t2: 'succeeded' });
    expect(decide(s)).toEqual({ kind: 'finish_wave', wave: 0 });
  });

  it('a deployment whose waves all succeeded completes only once no target is in flight', () => {
    const s = snapshot({
      waves: [waveOf(0, { state: 'succeeded' }), waveOf(1, { state: 'succeeded' })],
      targets: [
        { id: 't1', wave: 0, state: 'activating' },
        { id: 't2', wave: 1, state: 'succeeded' },
      ],
    });
    expect(decide(s)).toEqual({ kind: 'wait' });
    setTargets(s, { t1: 'succeeded' });
    expect(decide(s)).toEqual({ kind: 'complete' });
  });
});
