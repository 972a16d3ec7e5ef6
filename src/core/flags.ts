/**
 * Feature flags: release without deploy. A flag in an environment is on or off, may be on for a
 * percentage of subjects (chosen deterministically by subject id, so a subject keeps its answer
 * as the percentage grows) and for subjects matching attribute rules. Evaluation results follow
 * OpenFeature's shape: value, variant, reason.
 */

export const FLAG_KEY_PATTERN = '^[a-z0-9][a-z0-9._-]{0,99}$';

export interface FlagRule {
  attribute: string;
  op: 'eq' | 'neq' | 'in' | 'not_in';
  values: string[];
}

export interface FlagDefinition {
  key: string;
  enabled: boolean;
  /** 0–100: the share of subjects the flag is on for; absent means all. */
  percentage: number | null;
  /** A subject matching any rule gets the flag on, whatever the percentage. */
  rules: FlagRule[];
}

export interface Subject {
  id: string;
  attributes: Record<string, string>;
}

/** OpenFeature resolution reasons used here. */
export type EvaluationReason = 'DISABLED' | 'TARGETING_MATCH' | 'SPLIT' | 'STATIC' | 'DEFAULT';

export interface Evaluation {
  key: string;
  value: boolean;
  variant: 'on' | 'off';
  reason: EvaluationReason;
}

/**
 * `bucketOf(flagKey, subjectId)` maps a subject to 0–9999 (the shell hashes); a subject is in a
 * percentage p when its bucket is below p × 100.
 */
export function evaluateFlag(
  flag: FlagDefinition,
  subject: Subject,
  bucketOf: (flagKey: string, subjectId: string) => number,
): Evaluation {
  const result = (value: boolean, reason: EvaluationReason): Evaluation => ({
    key: flag.key,
    value,
    variant: value ? 'on' : 'off',
    reason,
  });
  if (!flag.enabled) return result(false, 'DISABLED');
  if (flag.rules.some((rule) => ruleMatches(rule, subject))) return result(true, 'TARGETING_MATCH');
  if (flag.percentage === null) return flag.rules.length ? result(false, 'DEFAULT') : result(true, 'STATIC');
  return result(bucketOf(flag.key, subject.id) < flag.percentage * 100, 'SPLIT');
}

function ruleMatches(rule: FlagRule, subject: Subject): boolean {
  // Own attributes only: `constructor`, `toString` and the like are not the subject's attributes.
  const value = Object.hasOwn(subject.attributes, rule.attribute)
    ? subject.attributes[rule.attribute]
    : undefined;
  switch (rule.op) {
    case 'eq':
      return value !== undefined && value === rule.values[0];
    case 'neq':
      return value !== undefined && value !== rule.values[0];
    case 'in':
      return value !== undefined && rule.values.includes(value);
    case 'not_in':
      return value !== undefined && !rule.values.includes(value);
  }
}
