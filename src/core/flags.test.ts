import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { evaluateFlag, FLAG_KEY_PATTERN, type FlagDefinition, type FlagRule, type Subject } from './flags.ts';

/** A real bucket function, as the shell would write it: sha256(flag key, subject id) → 0–9999. */
function sha256Bucket(flagKey: string, subjectId: string): number {
  const hash = createHash('sha256').update(`${flagKey}\u0000${subjectId}`).digest();
  return hash.readUInt32BE(0) % 10_000;
}

const flag = (overrides: Partial<FlagDefinition> = {}): FlagDefinition => ({
  key: 'new-checkout',
  enabled: true,
  percentage: null,
  rules: [],
  ...overrides,
});

const subject = (id: string, attributes: Record<string, string> = {}): Subject => ({ id, attributes });

/** A bucket function that must not be asked: rules and static answers do not need one. */
const noBucket = (): number => {
  throw new Error('bucketOf should not be called');
};

const SUBJECT_IDS = Array.from({ length: 10_000 }, (_, i) => `user-${i}`);

describe('evaluateFlag', () => {
  it('a disabled flag is off with reason DISABLED, whatever its rules and percentage', () => {
    const disabled = flag({
      enabled: false,
      percentage: 100,
      rules: [{ attribute: 'country', op: 'eq', values: ['DE'] }],
    });
    expect(evaluateFlag(disabled, subject('u1', { country: 'DE' }), noBucket)).toEqual({
      key: 'new-checkout',
      value: false,
      variant: 'off',
      reason: 'DISABLED',
    });
  });

  it('a subject matching a rule is on with TARGETING_MATCH, even at percentage 0', () => {
    const targeted = flag({ percentage: 0, rules: [{ attribute: 'country', op: 'eq', values: ['DE'] }] });
    expect(evaluateFlag(targeted, subject('u1', { country: 'DE' }), noBucket)).toEqual({
      key: 'new-checkout',
      value: true,
      variant: 'on',
      reason: 'TARGETING_MATCH',
    });
  });

  it('any one matching rule is enough', () => {
    const targeted = flag({
      rules: [
        { attribute: 'country', op: 'eq', values: ['FR'] },
        { attribute: 'plan', op: 'in', values: ['pro', 'enterprise'] },
      ],
    });
    expect(evaluateFlag(targeted, subject('u1', { country: 'DE', plan: 'pro' }), noBucket).reason).toBe(
      'TARGETING_MATCH',
    );
  });

  it('no percentage and no rules is STATIC on', () => {
    expect(evaluateFlag(flag(), subject('u1'), noBucket)).toEqual({
      key: 'new-checkout',
      value: true,
      variant: 'on',
      reason: 'STATIC',
    });
  });

  it('rules but no percentage and no match is DEFAULT off', () => {
    const targeted = flag({ rules: [{ attribute: 'country', op: 'eq', values: ['DE'] }] });
    expect(evaluateFlag(targeted, subject('u1', { country: 'FR' }), noBucket)).toEqual({
      key: 'new-checkout',
      value: false,
      variant: 'off',
      reason: 'DEFAULT',
    });
  });

  it('a percentage asks the bucket function with the flag key and subject id, and compares below p × 100', () => {
    const calls: Array<[string, string]> = [];
    const fixed = (bucket: number) => (key: string, id: string) => {
      calls.push([key, id]);
      return bucket;
    };
    const thirty = flag({ percentage: 30 });
    expect(evaluateFlag(thirty, subject('u1'), fixed(2999))).toMatchObject({ value: true, reason: 'SPLIT' });
    expect(evaluateFlag(thirty, subject('u1'), fixed(3000))).toMatchObject({
      value: false,
      variant: 'off',
      reason: 'SPLIT',
    });
    expect(calls).toEqual([
      ['new-checkout', 'u1'],
      ['new-checkout', 'u1'],
    ]);
    expect(evaluateFlag(flag({ percentage: 0 }), subject('u1'), fixed(0)).value).toBe(false);
    expect(evaluateFlag(flag({ percentage: 100 }), subject('u1'), fixed(9999)).value).toBe(true);
  });

  it('with a percentage and rules, a non-matching subject falls to the split', () => {
    const both = flag({ percentage: 50, rules: [{ attribute: 'country', op: 'eq', values: ['DE'] }] });
    expect(evaluateFlag(both, subject('u1', { country: 'FR' }), () => 10)).toMatchObject({
      value: true,
      reason: 'SPLIT',
    });
    expect(evaluateFlag(both, subject('u1', { country: 'FR' }), () => 9000)).toMatchObject({
      value: false,
      reason: 'SPLIT',
    });
  });

  describe('percentage rollout with a sha256 bucket', () => {
    const onAt = (percentage: number, key = 'new-checkout') =>
      new Set(
        SUBJECT_IDS.filter((id) => evaluateFlag(flag({ key, percentage }), subject(id), sha256Bucket).value),
      );

    it('is deterministic: the same subject gets the same answer every time', () => {
      const first = onAt(30);
      const second = onAt(30);
      expect([...second]).toEqual([...first]);
    });

    it('turns on about 30% of 10,000 subjects at percentage 30 (±2%)', () => {
      const on = onAt(30).size;
      expect(on).toBeGreaterThanOrEqual(2800);
      expect(on).toBeLessThanOrEqual(3200);
    });

    it('raising 30 → 50 keeps everyone who was on, and adds about 20% more', () => {
      const at30 = onAt(30);
      const at50 = onAt(50);
      for (const id of at30) expect(at50.has(id), id).toBe(true);
      expect(at50.size).toBeGreaterThanOrEqual(4800);
      expect(at50.size).toBeLessThanOrEqual(5200);
      expect(at50.size - at30.size).toBeGreaterThan(1500);
    });

    it('different flags choose different subjects at the same percentage', () => {
      const a = onAt(30, 'new-checkout');
      const b = onAt(30, 'dark-mode');
      const both = [...a].filter((id) => b.has(id)).length;
      // Independent 30% choices share about 9%; identical choices would share 30%.
      expect(both).toBeGreaterThan(700);
      expect(both).toBeLessThan(1100);
    });
  });

  describe('rule operators', () => {
    const on = (rule: FlagRule, attributes: Record<string, string>) =>
      evaluateFlag(flag({ rules: [rule] }), subject('u1', attributes), noBucket).value;

    it('eq matches only the equal value', () => {
      const rule: FlagRule = { attribute: 'country', op: 'eq', values: ['DE'] };
      expect(on(rule, { country: 'DE' })).toBe(true);
      expect(on(rule, { country: 'de' })).toBe(false);
      expect(on(rule, { country: 'FR' })).toBe(false);
    });

    it('neq matches any other value', () => {
      const rule: FlagRule = { attribute: 'country', op: 'neq', values: ['DE'] };
      expect(on(rule, { country: 'FR' })).toBe(true);
      expect(on(rule, { country: 'DE' })).toBe(false);
    });

    it('in matches any listed value', () => {
      const rule: FlagRule = { attribute: 'plan', op: 'in', values: ['pro', 'enterprise'] };
      expect(on(rule, { plan: 'pro' })).toBe(true);
      expect(on(rule, { plan: 'enterprise' })).toBe(true);
      expect(on(rule, { plan: 'free' })).toBe(false);
    });

    it('not_in matches any unlisted value', () => {
      const rule: FlagRule = { attribute: 'plan', op: 'not_in', values: ['pro', 'enterprise'] };
      expect(on(rule, { plan: 'free' })).toBe(true);
      expect(on(rule, { plan: 'pro' })).toBe(false);
    });

    it.each(['eq', 'neq', 'in', 'not_in'] as const)('%s never matches a missing attribute', (op) => {
      const rule: FlagRule = { attribute: 'country', op, values: ['DE'] };
      const result = evaluateFlag(flag({ rules: [rule] }), subject('u1', { plan: 'pro' }), noBucket);
      expect(result).toMatchObject({ value: false, reason: 'DEFAULT' });
    });

    it.each(['neq', 'not_in'] as const)(
      '%s does not treat inherited object properties (constructor, toString) as attributes',
      (op) => {
        for (const attribute of ['constructor', 'toString', 'hasOwnProperty']) {
          const rule: FlagRule = { attribute, op, values: ['x'] };
          expect(on(rule, {}), attribute).toBe(false);
        }
      },
    );

    it('matches on the named attribute, not another one with the same value', () => {
      const rule: FlagRule = { attribute: 'country', op: 'eq', values: ['DE'] };
      expect(on(rule, { region: 'DE' })).toBe(false);
    });
  });

  it('the flag key pattern accepts lowercase keys and refuses others', () => {
    const pattern = new RegExp(FLAG_KEY_PATTERN);
    expect(pattern.test('new-checkout')).toBe(true);
    expect(pattern.test('a.b_c-1')).toBe(true);
    expect(pattern.test('New-Checkout')).toBe(false);
    expect(pattern.test('-leading')).toBe(false);
    expect(pattern.test('')).toBe(false);
    expect(pattern.test('a'.repeat(101))).toBe(false);
    expect(pattern.test('a'.repeat(100))).toBe(true);
  });
});
