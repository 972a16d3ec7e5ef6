/**
 * Deployment strategies: each is a pure function from the targets, the release's components and
 * the options to a plan — ordered waves, each naming its targets, its bake time and its gate. The
 * plan is stored before anything runs, so what was planned and what happened sit side by side.
 */
import type { Labels } from './inventory.ts';

export const STRATEGIES = ['big-bang', 'phased', 'rolling', 'canary', 'blue-green'] as const;
export type Strategy = (typeof STRATEGIES)[number];

export interface PlanTarget {
  id: string;
  name: string;
  labels: Labels;
}

export interface WaveSpec {
  /** How many targets: a count, or a percentage of all targets, or all that match a selector. */
  count?: number | undefined;
  percent?: number | undefined;
  selector?: Labels | undefined;
  bakeSeconds?: number | undefined;
  /** `manual`: a person approves before the next wave starts. */
  gate?: 'auto' | 'manual' | undefined;
}

export interface StrategyOptions {
  /** phased */
  waves?: WaveSpec[] | undefined;
  /** rolling */
  batchSize?: number | undefined;
  maxUnavailable?: number | undefined;
  /** canary: the first wave, as a count or percentage (default 10%) */
  canaryCount?: number | undefined;
  canaryPercent?: number | undefined;
  /** canary: how many waves the rest goes out in (default 1) */
  rest?: number | undefined;
  /** bake time after each wave unless a wave says otherwise */
  bakeSeconds?: number | undefined;
  /** blue-green: how long the old slot keeps running after the switch, for an instant switch back */
  keepSeconds?: number | undefined;
  /** phased, rolling, canary: the next wave installs while a wave bakes (default true) */
  installAhead?: boolean | undefined;
  /**
   * blue-green by two target groups: the label whose value on each target is `blue` or `green` (its
   * group) or `router` (a target that runs the package's `switch` hook to move traffic between them).
   */
  groupLabel?: string | undefined;
  /**
   * blue-green by groups: which group serves now, as a person says after putting the routers right
   * (otherwise Gantry knows it from the last deployment, and refuses when it does not).
   */
  serving?: 'blue' | 'green' | undefined;
}

export type GroupName = 'blue' | 'green';

/** Blue-green by two target groups: which group this deployment installs into, and who switches. */
export interface GroupPlan {
  label: string;
  /** The idle group: it gets the new version; traffic moves to it once it is healthy. */
  group: GroupName;
  /** The group that serves now (null before the first switch): it keeps running, untouched. */
  previous: GroupName | null;
  /** Ids of the targets that run the switch. */
  routers: string[];
  /** Names of the targets traffic goes to now, in the serving group: where a rollback sends it. */
  previousTargets: string[];
  /** Names of the group's targets the routers moved traffic to (set once they switch). */
  targets?: string[] | undefined;
}

/** A deployment's options as stored: what was asked and, blue-green by groups, what was planned. */
export type StoredOptions = StrategyOptions & { groups?: GroupPlan | undefined };

/** What a plan needs to know besides the targets: blue-green by groups, which group serves now. */
export interface PlanContext {
  serving?: { group: GroupName; targets: string[] } | null | undefined;
}

export interface PlannedWave {
  index: number;
  name: string;
  targets: PlanTarget[];
  bakeSeconds: number;
  gate: 'auto' | 'manual';
  canary: boolean;
}

export type PlanResult = { ok: PlannedWave[]; groups?: GroupPlan } | { problem: string };

const byName = (a: PlanTarget, b: PlanTarget) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
const matches = (labels: Labels, selector: Labels) =>
  Object.entries(selector).every(([k, v]) => labels[k] === v);

/** Options given to a strategy they do not belong to, or null: checked before any target is known. */
export function optionsProblem(strategy: Strategy, options: StrategyOptions): string | null {
  if (strategy !== 'blue-green')
    for (const key of ['groupLabel', 'keepSeconds', 'serving'] as const)
      if (options[key] !== undefined) return `${key} is for blue-green, not for ${strategy}`;
  if (options.installAhead !== undefined && (strategy === 'big-bang' || strategy === 'blue-green'))
    return `installAhead is for strategies with more than one wave (phased, rolling, canary), not for ${strategy}`;
  if (options.serving !== undefined && options.groupLabel === undefined)
    return 'serving says which group serves: it goes with groupLabel (--groups)';
  if (options.groupLabel !== undefined && options.keepSeconds !== undefined)
    return `keepSeconds is for slots on each target; with groups (${options.groupLabel}) the serving group keeps running until a later deployment makes it the idle one`;
  return null;
}

export function plan(
  strategy: Strategy,
  targets: readonly PlanTarget[],
  options: StrategyOptions = {},
  context: PlanContext = {},
): PlanResult {
  if (targets.length === 0) return { problem: 'no targets to deploy to' };
  const misfit = optionsProblem(strategy, options);
  if (misfit) return { problem: misfit };
  const all = [...targets].sort(byName);
  const bake = options.bakeSeconds ?? 0;
  switch (strategy) {
    case 'big-bang':
      return {
        ok: [{ index: 0, name: 'all', targets: all, bakeSeconds: bake, gate: 'auto', canary: false }],
      };
    case 'rolling': {
      const batch = Math.min(options.batchSize ?? 1, options.maxUnavailable ?? Number.POSITIVE_INFINITY);
      if (!Number.isInteger(batch) || batch < 1)
        return { problem: 'rolling needs a batch size (and maxUnavailable) of at least 1' };
      return { ok: chunk(all, batch).map((t, i) => wave(i, `batch ${i + 1}`, t, bake, 'auto', false)) };
    }
    case 'canary': {
      const first = options.canaryCount ?? Math.ceil((all.length * (options.canaryPercent ?? 10)) / 100);
      if (first < 1 || first >= all.length)
        return {
          problem: `a canary needs at least one target in its first wave and one after it (${all.length} target(s))`,
        };
      const rest = all.slice(first);
      const parts = Math.max(1, Math.min(Math.floor(options.rest ?? 1), rest.length));
      return {
        ok: [
          wave(0, 'canary', all.slice(0, first), bake, 'auto', true),
          ...split(rest, parts).map((t, i) =>
            wave(i + 1, parts === 1 ? 'rest' : `rest ${i + 1}`, t, bake, 'auto', false),
          ),
        ],
      };
    }
    case 'phased': {
      const specs = options.waves ?? [];
      if (specs.length === 0)
        return { problem: 'phased needs at least one wave (count, percent or selector)' };
      let left = all;
      const waves: PlannedWave[] = [];
      for (const [i, spec] of specs.entries()) {
        const kinds = [spec.count, spec.percent, spec.selector].filter((x) => x !== undefined).length;
        if (kinds !== 1)
          return { problem: `wave ${i + 1} must give exactly one of count, percent or selector` };
        let taken: PlanTarget[];
        if (spec.selector) taken = left.filter((t) => matches(t.labels, spec.selector as Labels));
        else {
          const n = spec.count ?? Math.ceil((all.length * (spec.percent ?? 0)) / 100);
          taken = left.slice(0, n);
        }
        if (taken.length === 0) continue; // a wave with nothing left to take is left out of the plan
        left = left.filter((t) => !taken.includes(t));
        waves.push(
          wave(
            waves.length,
            `wave ${waves.length + 1}`,
            taken,
            spec.bakeSeconds ?? bake,
            spec.gate ?? 'auto',
            false,
          ),
        );
      }
      if (left.length > 0) waves.push(wave(waves.length, 'rest', left, bake, 'auto', false));
      return { ok: waves };
    }
    case 'blue-green': {
      // One wave: every target stages the new version in its idle slot; once all are healthy
      // there, traffic switches on all of them at once. The bake follows the switch.
      if (options.groupLabel !== undefined) return planGroups(all, options, context, bake);
      const keep = options.keepSeconds ?? 3600;
      if (!Number.isInteger(keep) || keep < 0 || keep > 30 * 24 * 3600)
        return {
          problem: 'blue-green keepSeconds must be a whole number of seconds from 0 to 2592000 (30 days)',
        };
      return {
        ok: [
          {
            index: 0,
            name: 'stage, then switch all',
            targets: all,
            bakeSeconds: bake,
            gate: 'auto',
            canary: false,
          },
        ],
      };
    }
  }
}

/**
 * Blue-green by two target groups: one wave, the idle group's targets (installed and activated as
 * usual, each checked healthy) and the routers (the package installed; once every target of the
 * group has finished, they run its `switch` hook at once). The serving group is not touched.
 */
function planGroups(
  all: PlanTarget[],
  options: StrategyOptions,
  context: PlanContext,
  bake: number,
): PlanResult {
  const label = options.groupLabel as string;
  const of = (value: string) => all.filter((t) => t.labels[label] === value);
  const unlabelled = all.filter((t) => !['blue', 'green', 'router'].includes(t.labels[label] ?? ''));
  if (unlabelled.length > 0)
    return {
      problem: `blue-green by groups needs every target labelled ${label}=blue, ${label}=green or ${label}=router; ${unlabelled.length} is not: ${unlabelled
        .slice(0, 5)
        .map((t) => (t.labels[label] === undefined ? t.name : `${t.name} (${label}=${t.labels[label]})`))
        .join(', ')}${unlabelled.length > 5 ? ', …' : ''}`,
    };
  const routers = of('router');
  if (routers.length === 0)
    return {
      problem: `blue-green by groups needs at least one target labelled ${label}=router to run the switch`,
    };
  const previous = context.serving?.group ?? null;
  const group: GroupName = previous === 'blue' ? 'green' : 'blue';
  const members = of(group);
  if (members.length === 0)
    return {
      problem: `the ${group} group is the idle one${previous ? ` (${previous} serves)` : ''}, and no target is labelled ${label}=${group}`,
    };
  return {
    ok: [
      {
        index: 0,
        name: `${group} group, then switch`,
        targets: [...members, ...routers].sort(byName),
        bakeSeconds: bake,
        gate: 'auto',
        canary: false,
      },
    ],
    groups: {
      label,
      group,
      previous,
      routers: routers.map((t) => t.id),
      previousTargets: context.serving?.targets ?? [],
    },
  };
}

function wave(
  index: number,
  name: string,
  targets: PlanTarget[],
  bakeSeconds: number,
  gate: 'auto' | 'manual',
  canary: boolean,
): PlannedWave {
  return { index, name, targets, bakeSeconds, gate, canary };
}

/** Exactly `parts` slices in order, sizes within one of each other, the larger first. */
function split<T>(items: readonly T[], parts: number): T[][] {
  const small = Math.floor(items.length / parts);
  const larger = items.length % parts;
  const out: T[][] = [];
  let at = 0;
  for (let i = 0; i < parts; i++) {
    const size = small + (i < larger ? 1 : 0);
    out.push(items.slice(at, at + size));
    at += size;
  }
  return out;
}

function chunk<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}
