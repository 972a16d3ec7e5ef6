/**
 * The deployment reconciler's brain: from a snapshot of one deployment's durable state and the
 * time, the one next thing to do. The shell applies it in one transaction with its audit entry and
 * asks again; killed at any point, it asks again after a restart and gets the same answer.
 */

export const DEPLOYMENT_STATES = [
  'scheduled',
  'running',
  'paused',
  'rolling_back',
  'succeeded',
  'failed',
  'rolled_back',
  'aborted',
  'frozen',
] as const;
export type DeploymentState = (typeof DEPLOYMENT_STATES)[number];

/** States in which a deployment holds its targets: no other deployment may touch them. */
export const ACTIVE_DEPLOYMENT_STATES: readonly DeploymentState[] = [
  'scheduled',
  'running',
  'paused',
  'rolling_back',
];
export const FINAL_DEPLOYMENT_STATES: readonly DeploymentState[] = [
  'succeeded',
  'failed',
  'rolled_back',
  'aborted',
  'frozen',
];

/** `stopped`: it ran, then the deployment halted or was rolled back; `skipped`: it never started. */
export type WaveState =
  | 'pending'
  | 'running'
  | 'baking'
  | 'awaiting_approval'
  | 'succeeded'
  | 'stopped'
  | 'skipped';
export type TargetState =
  | 'pending'
  | 'installing'
  /**
   * Installed ahead of its wave, while the wave before it baked: the release is on the target,
   * nothing on it has changed. Its wave activates it; a deployment that stops first leaves it so.
   */
  | 'installed'
  | 'activating'
  /** Blue-green: starting in the idle slot and checking its health there. */
  | 'staging'
  /** Blue-green: healthy in the idle slot, waiting for every other target before the switch. */
  | 'staged'
  /** Blue-green: traffic is being moved to the new slot. */
  | 'switching'
  | 'succeeded'
  /**
   * Changed, then failed: an exception event on it during its wave's bake, or a step that failed
   * after one of its components was activated (or staged, or traffic switched): a failure that is
   * rolled back like a success.
   */
  | 'unhealthy'
  | 'failed'
  | 'rolling_back'
  | 'rolled_back'
  | 'rollback_failed';

export type OnFailure = 'rollback' | 'pause' | 'freeze';

export interface HaltRule {
  /** Halt when more than this share of the deployment's targets failed. */
  maxFailedPercent: number;
  /** Halt when more than this many targets of a canary wave failed. */
  canaryMaxFailures: number;
}

export const DEFAULT_HALT_RULE: HaltRule = { maxFailedPercent: 10, canaryMaxFailures: 0 };

export interface Snapshot {
  state: DeploymentState;
  scheduledFor: Date | null;
  haltRule: HaltRule;
  waves: ReadonlyArray<{
    index: number;
    state: WaveState;
    gate: 'auto' | 'manual';
    canary: boolean;
    bakeSeconds: number;
    bakeUntil: Date | null;
    approved: boolean;
  }>;
  /** How many targets of each wave are in each state (a state may appear more than once: summed). */
  targets: ReadonlyArray<TargetCount>;
  /**
   * The strategy installs a wave's release ahead, while the wave before it bakes (phased, rolling,
   * canary): the next wave then only activates.
   */
  installAhead?: boolean | undefined;
  /** A reason to halt whatever the halt rule says (blue-green by groups: a router that failed, or no healthy target in the group). */
  mustHalt?: string | null | undefined;
  /**
   * Blue-green by groups: a router has moved traffic (or may have). Any halt then rolls back,
   * whatever the on-failure action says: traffic must not be left split or on a group that failed.
   */
  trafficMoved?: boolean | undefined;
  /**
   * Blue-green by groups: how many of the targets (counted in `targets` too) are routers, by state.
   * A rollback switches traffic back on them before the group's targets go back.
   */
  routers?: ReadonlyArray<{ state: TargetState; count: number }> | undefined;
  now: Date;
}

export interface TargetCount {
  wave: number;
  state: TargetState;
  count: number;
}

/**
 * Blue-green by groups: whether a router has moved traffic, or may have — it switched (its stored
 * `activated` list is not empty), is switching, or could not switch back.
 */
export const routerMayHaveMoved = (t: { state: string; activated: string }): boolean =>
  t.activated !== '[]' || t.state === 'switching' || t.state === 'rollback_failed';

/** The targets a rollback puts back: those this deployment changed (or staged, blue-green). */
export const ROLL_BACK_FROM: readonly TargetState[] = ['succeeded', 'unhealthy', 'staged'];

export type Decision =
  | { kind: 'wait' }
  | { kind: 'start' }
  /** `rollBack`: roll back whatever the deployment's on-failure action says. */
  | { kind: 'halt'; reason: string; rollBack?: true }
  | { kind: 'start_wave'; wave: number }
  /** Blue-green: every target of the wave is staged (or failed): switch them all at once. */
  | { kind: 'switch_wave'; wave: number }
  /** `installAhead`: the next wave, whose pending targets install now (its gates pass first). */
  | { kind: 'bake_wave'; wave: number; bakeUntil: Date; installAhead?: number }
  | { kind: 'await_approval'; wave: number }
  | { kind: 'finish_wave'; wave: number }
  | { kind: 'complete' }
  /** Every target in one of these states gets its rollback (only the routers, when they say so). */
  | { kind: 'roll_back_targets'; states: readonly TargetState[]; only?: 'routers' }
  | { kind: 'finish_rollback'; ok: boolean };

const DONE: readonly TargetState[] = ['succeeded', 'unhealthy', 'failed'];
const MOVING: readonly TargetState[] = ['rolling_back', 'installing', 'activating', 'staging', 'switching'];
const FAILED: readonly TargetState[] = ['failed', 'unhealthy'];

export function decide(s: Snapshot): Decision {
  if (s.state === 'scheduled')
    return s.scheduledFor === null || s.now.getTime() >= s.scheduledFor.getTime()
      ? { kind: 'start' }
      : { kind: 'wait' };

  if (s.state === 'rolling_back') {
    // Blue-green by groups: traffic goes back first, then the group it left is put back.
    const routers = s.routers ?? [];
    if (count(routers, (t) => ROLL_BACK_FROM.includes(t.state)) > 0)
      return { kind: 'roll_back_targets', states: ROLL_BACK_FROM, only: 'routers' };
    if (count(routers, (t) => MOVING.includes(t.state)) > 0) return { kind: 'wait' };
    // A router that could not switch back may still send traffic to the group: it is left as it is.
    if (count(routers, (t) => t.state === 'rollback_failed') > 0)
      return count(s.targets, (t) => MOVING.includes(t.state)) > 0
        ? { kind: 'wait' }
        : { kind: 'finish_rollback', ok: false };
    // Every target this deployment changed goes back; a target that failed was put back by its agent.
    if (count(s.targets, (t) => ROLL_BACK_FROM.includes(t.state)) > 0)
      return { kind: 'roll_back_targets', states: ROLL_BACK_FROM };
    // Installs ahead in waves that never started change nothing that runs: not waited for (an
    // agent that is away would hold the rollback up for nothing).
    const started = new Set(
      s.waves.filter((w) => w.state !== 'pending' && w.state !== 'skipped').map((w) => w.index),
    );
    if (count(s.targets, (t) => MOVING.includes(t.state) && started.has(t.wave)) > 0) return { kind: 'wait' };
    return { kind: 'finish_rollback', ok: count(s.targets, (t) => t.state === 'rollback_failed') === 0 };
  }

  if (s.state !== 'running') return { kind: 'wait' };

  const halt = s.mustHalt ?? haltReason(s);
  if (halt)
    return s.trafficMoved ? { kind: 'halt', reason: halt, rollBack: true } : { kind: 'halt', reason: halt };

  const current = s.waves.find((w) => w.state !== 'succeeded');
  // A target retried after its wave ran (retry-failed) is waited for: nothing is finished under it.
  if (!current)
    return count(s.targets, (t) => MOVING.includes(t.state)) > 0 ? { kind: 'wait' } : { kind: 'complete' };
  const mine = s.targets.filter((t) => t.wave === current.index && t.count > 0);
  if (
    (current.state === 'baking' || current.state === 'awaiting_approval') &&
    mine.some((t) => MOVING.includes(t.state))
  )
    return { kind: 'wait' };
  switch (current.state) {
    case 'pending':
      return { kind: 'start_wave', wave: current.index };
    case 'running':
      // Blue-green: nothing switches until every target has staged (or failed); then all at once.
      if (
        mine.some((t) => t.state === 'staged') &&
        mine.every((t) => t.state === 'staged' || DONE.includes(t.state))
      )
        return { kind: 'switch_wave', wave: current.index };
      if (!mine.every((t) => DONE.includes(t.state))) return { kind: 'wait' };
      return {
        kind: 'bake_wave',
        wave: current.index,
        bakeUntil: new Date(s.now.getTime() + current.bakeSeconds * 1000),
        ...installAhead(s, current.index),
      };
    case 'baking':
      if (current.bakeUntil !== null && s.now.getTime() < current.bakeUntil.getTime())
        return { kind: 'wait' };
      return current.gate === 'manual' && !current.approved
        ? { kind: 'await_approval', wave: current.index }
        : { kind: 'finish_wave', wave: current.index };
    case 'awaiting_approval':
      return current.approved ? { kind: 'finish_wave', wave: current.index } : { kind: 'wait' };
  }
  return { kind: 'wait' };
}

/**
 * The next wave, when its targets may install while `wave` bakes: not after a canary (the rest
 * installs once the canary has passed) nor before a manual gate (nothing more until a person says).
 */
function installAhead(s: Snapshot, wave: number): { installAhead?: number } {
  const current = s.waves.find((w) => w.index === wave);
  const next = s.waves.find((w) => w.index === wave + 1);
  if (!s.installAhead || next?.state !== 'pending' || current?.canary || current?.gate === 'manual')
    return {};
  const waiting = count(s.targets, (t) => t.wave === next.index && t.state === 'pending');
  return waiting > 0 ? { installAhead: next.index } : {};
}

/** Why the halt rule stops the deployment now, or null. */
export function haltReason(s: Pick<Snapshot, 'haltRule' | 'waves' | 'targets'>): string | null {
  for (const w of s.waves.filter((x) => x.canary)) {
    const failed = count(s.targets, (t) => t.wave === w.index && FAILED.includes(t.state));
    if (failed > s.haltRule.canaryMaxFailures)
      return `${failed} canary target(s) failed (the rule allows ${s.haltRule.canaryMaxFailures})`;
  }
  const total = count(s.targets, () => true);
  const failed = count(s.targets, (t) => FAILED.includes(t.state));
  if (total > 0 && (failed * 100) / total > s.haltRule.maxFailedPercent)
    return `${failed} of ${total} target(s) failed (${Math.round((failed * 1000) / total) / 10}%, the rule allows ${s.haltRule.maxFailedPercent}%)`;
  return null;
}

function count<T extends { count: number }>(targets: ReadonlyArray<T>, which: (t: T) => boolean): number {
  let n = 0;
  for (const t of targets) if (which(t)) n += t.count;
  return n;
}
