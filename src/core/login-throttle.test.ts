import { describe, expect, it } from 'vitest';
import {
  afterFailure,
  afterSuccess,
  EMPTY_THROTTLE,
  lockRemainingMs,
  USER_THROTTLE,
} from './login-throttle.ts';

const t0 = new Date('2026-11-22T10:00:00Z');

describe('login throttle', () => {
  it('lets the first failures through without a lock', () => {
    let state = EMPTY_THROTTLE;
    for (let i = 0; i < USER_THROTTLE.freeFailures; i++) state = afterFailure(state, USER_THROTTLE, t0);
    expect(state.failures).toBe(5);
    expect(lockRemainingMs(state, t0)).toBe(0);
  });

  it('locks after the free failures and doubles the lock with each further failure, up to the cap', () => {
    let state = EMPTY_THROTTLE;
    const locks: number[] = [];
    for (let i = 0; i < 20; i++) {
      state = afterFailure(state, USER_THROTTLE, t0);
      locks.push(lockRemainingMs(state, t0));
    }
    expect(locks.slice(5, 9)).toEqual([1000, 2000, 4000, 8000]);
    expect(Math.max(...locks)).toBe(USER_THROTTLE.maxLockMs);
  });

  it('unlocks when the lock has passed and resets on success', () => {
    let state = EMPTY_THROTTLE;
    for (let i = 0; i < 7; i++) state = afterFailure(state, USER_THROTTLE, t0);
    expect(lockRemainingMs(state, new Date(t0.getTime() + 1999))).toBe(1);
    expect(lockRemainingMs(state, new Date(t0.getTime() + 2000))).toBe(0);
    expect(afterSuccess()).toEqual(EMPTY_THROTTLE);
  });
});
