/**
 * Slowing down repeated failed logins. Pure: the shell loads the state for a key (a user name or a
 * source address), asks whether it is locked, and stores the state this module returns. Because
 * the state lives in the database, a restart does not reset it and a flood of other keys cannot
 * evict it.
 */

export interface ThrottleState {
  failures: number;
  lockedUntil: Date | null;
}

export interface ThrottlePolicy {
  /** Failures allowed before the first lock. */
  freeFailures: number;
  /** Length of the first lock; each further failure doubles it. */
  baseLockMs: number;
  maxLockMs: number;
}

export const USER_THROTTLE: ThrottlePolicy = { freeFailures: 5, baseLockMs: 1_000, maxLockMs: 15 * 60_000 };
export const SOURCE_THROTTLE: ThrottlePolicy = {
  freeFailures: 20,
  baseLockMs: 1_000,
  maxLockMs: 15 * 60_000,
};

export const EMPTY_THROTTLE: ThrottleState = { failures: 0, lockedUntil: null };

/** Milliseconds the caller must still wait, or 0 when a login may be tried now. */
export function lockRemainingMs(state: ThrottleState, now: Date): number {
  if (state.lockedUntil === null) return 0;
  return Math.max(0, state.lockedUntil.getTime() - now.getTime());
}

export function afterFailure(state: ThrottleState, policy: ThrottlePolicy, now: Date): ThrottleState {
  const failures = state.failures + 1;
  const over = failures - policy.freeFailures;
  if (over <= 0) return { failures, lockedUntil: null };
  const lockMs = Math.min(policy.maxLockMs, policy.baseLockMs * 2 ** Math.min(over - 1, 30));
  return { failures, lockedUntil: new Date(now.getTime() + lockMs) };
}

export function afterSuccess(): ThrottleState {
  return EMPTY_THROTTLE;
}

/**
 * Takes back one attempt that was counted before the password was checked and then turned out
 * right (attempts are counted first so that parallel guesses cannot slip past the lock).
 */
export function forgiveOne(state: ThrottleState, policy: ThrottlePolicy): ThrottleState {
  const failures = Math.max(0, state.failures - 1);
  return { failures, lockedUntil: failures <= policy.freeFailures ? null : state.lockedUntil };
}
