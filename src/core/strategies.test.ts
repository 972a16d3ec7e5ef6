import { describe, expect, it } from 'vitest';
import type { Labels } from './inventory.ts';
import {
  type PlannedWave,
  type PlanResult,
  type PlanTarget,
  plan,
  STRATEGIES,
  type Strategy,
  type StrategyOptions,
} from './strategies.ts';

/**
 * `count` targets named web-01, web-02, … Ids run the other way (the first name has the last id),
 * so a plan ordered by id instead of by name fails here. Every third target is in region eu.
 */
function fleet(count: number, labelsOf: (i: number) => Labels = regionOf): PlanTarget[] {
  return Array.from({ length: count }, (_, i) => ({
    id: `id-${String(count - i).padStart(3, '0')}`,
    name: `web-${String(i + 1).padStart(2, '0')}`,
    labels: labelsOf(i),
  }));
}
const regionOf = (i: number): Labels => ({ region: i % 3 === 0 ? 'eu' : 'us' });

/** A deterministic shuffle (a small LCG), so a failure reproduces. */
function shuffled<T>(items: readonly T[], seed: number): T[] {
  const out = [...items];
  let state = seed;
  for (let i = out.length - 1; i > 0; i--) {
    state = (state * 1_103_515_245 + 12_345) % 2_147_483_648;
    const j = state % (i + 1);
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

function waves(result: PlanResult): PlannedWave[] {
  if ('problem' in result) throw new Error(`expected a plan, got the problem: ${result.problem}`);
  return result.ok;
}
function problem(result: PlanResult): string {
  if ('ok' in result) throw new Error(`expected a problem, got ${result.ok.length} wave(s)`);
  return result.problem;
}
const names = (w: PlannedWave) => w.targets.map((t) => t.name);
const sizes = (ws: PlannedWave[]) => ws.map((w) => w.targets.length);
const sortedNames = (ts: readonly PlanTarget[]) => ts.map((t) => t.name).sort();

describe('every strategy', () => {
  const planning: ReadonlyArray<readonly [Strategy, StrategyOptions]> = [
    ['big-bang', {}],
    ['rolling', { batchSize: 3 }],
    ['canary', { canaryCount: 2, rest: 3 }],
    ['phased', { waves: [{ selector: { region: 'eu' } }, { count: 2 }, { percent: 30 }] }],
  ];

  it.each(STRATEGIES)('%s refuses an empty list of targets', (strategy) => {
    expect(plan(strategy, [], { batchSize: 1, waves: [{ count: 1 }] })).toEqual({
      problem: 'no targets to deploy to',
    });
  });

  it.each(planning)('%s orders by target name whatever the input order (%o)', (strategy, options) => {
    const targets = fleet(11);
    const reference = waves(plan(strategy, targets, options));
    for (const seed of [1, 2, 3, 42, 2024]) {
      const input = shuffled(targets, seed);
      expect(plan(strategy, input, options)).toEqual({ ok: reference });
    }
    for (const w of reference) expect(names(w)).toEqual([...names(w)].sort());
    // Ids run against names: planned by name, they come out descending.
    const ids = reference.flatMap((w) => w.targets.map((t) => t.id));
    if (strategy !== 'phased') expect(ids).toEqual([...ids].sort().reverse());
  });

  it.each(planning)('%s does not change the list it was given', (strategy, options) => {
    const input = shuffled(fleet(9), 7);
    const before = input.map((t) => t.name);
    plan(strategy, input, options);
    expect(input.map((t) => t.name)).toEqual(before);
  });

  it('blue-green is one wave of every target: stage, then switch all', () => {
    const result = plan('blue-green', shuffled(fleet(4), 2), { bakeSeconds: 60, keepSeconds: 600 });
    expect('ok' in result && result.ok).toEqual([
      {
        index: 0,
        name: 'stage, then switch all',
        targets: fleet(4),
        bakeSeconds: 60,
        gate: 'auto',
        canary: false,
      },
    ]);
  });

  it.each([-1, 1.5, 30 * 86_400 + 1])('blue-green refuses a keep time of %s, naming the range', (keep) => {
    expect(problem(plan('blue-green', fleet(2), { keepSeconds: keep }))).toContain('0 to 2592000');
  });
});

describe('blue-green by two target groups', () => {
  // web-01 router; then blue, green, blue, green …
  const groups = (count: number) =>
    fleet(count, (i) => ({ slot: i === 0 ? 'router' : i % 2 === 1 ? 'blue' : 'green' }));
  const names = (result: PlanResult) => waves(result).flatMap((w) => w.targets.map((t) => t.name));

  it('starts with blue: one wave of the blue targets and the routers; green is left alone', () => {
    const result = plan('blue-green', shuffled(groups(5), 3), { groupLabel: 'slot', bakeSeconds: 30 });
    expect(names(result)).toEqual(['web-01', 'web-02', 'web-04']);
    expect(waves(result)[0]).toMatchObject({ name: 'blue group, then switch', bakeSeconds: 30 });
    expect('groups' in result && result.groups).toEqual({
      label: 'slot',
      group: 'blue',
      previous: null,
      routers: ['id-005'],
      previousTargets: [],
    });
  });

  it('installs into the group that does not serve', () => {
    const result = plan(
      'blue-green',
      groups(5),
      { groupLabel: 'slot' },
      { serving: { group: 'blue', targets: ['web-02'] } },
    );
    expect(names(result)).toEqual(['web-01', 'web-03', 'web-05']);
    expect('groups' in result && result.groups).toMatchObject({
      group: 'green',
      previous: 'blue',
      previousTargets: ['web-02'],
    });
    const back = plan(
      'blue-green',
      groups(5),
      { groupLabel: 'slot' },
      { serving: { group: 'green', targets: [] } },
    );
    expect('groups' in back && back.groups).toMatchObject({ group: 'blue', previous: 'green' });
  });

  it('names every target without a group, and why', () => {
    const targets = groups(4).map((t, i) =>
      i === 2 ? { ...t, labels: { slot: 'purple' } } : i === 3 ? { ...t, labels: {} } : t,
    );
    const why = problem(plan('blue-green', targets, { groupLabel: 'slot' }));
    expect(why).toContain('slot=blue, slot=green or slot=router; 2 is not: web-03 (slot=purple), web-04');
  });

  it('needs a router and an idle group with targets, and takes no keep time', () => {
    const noRouter = fleet(2, (i) => ({ slot: i === 0 ? 'blue' : 'green' }));
    expect(problem(plan('blue-green', noRouter, { groupLabel: 'slot' }))).toContain(
      'at least one target labelled slot=router',
    );
    const noGreen = fleet(2, (i) => ({ slot: i === 0 ? 'router' : 'blue' }));
    expect(
      problem(
        plan(
          'blue-green',
          noGreen,
          { groupLabel: 'slot' },
          { serving: { group: 'blue', targets: ['web-02'] } },
        ),
      ),
    ).toBe('the green group is the idle one (blue serves), and no target is labelled slot=green');
    expect(problem(plan('blue-green', groups(3), { groupLabel: 'slot', keepSeconds: 60 }))).toContain(
      'keepSeconds is for slots on each target',
    );
  });

  it('is only for blue-green: another strategy refuses the group label (and the keep time)', () => {
    expect(problem(plan('rolling', groups(3), { groupLabel: 'slot' }))).toBe(
      'groupLabel is for blue-green, not for rolling',
    );
    expect(problem(plan('big-bang', groups(3), { keepSeconds: 60 }))).toBe(
      'keepSeconds is for blue-green, not for big-bang',
    );
  });
});

describe('big-bang', () => {
  it('is one wave named all with every target, the default bake and an automatic gate', () => {
    const targets = fleet(5);
    expect(plan('big-bang', shuffled(targets, 3), { bakeSeconds: 120 })).toEqual({
      ok: [{ index: 0, name: 'all', targets, bakeSeconds: 120, gate: 'auto', canary: false }],
    });
  });

  it('bakes for 0 seconds when no bake is given', () => {
    expect(waves(plan('big-bang', fleet(1)))[0]?.bakeSeconds).toBe(0);
  });
});

describe('rolling', () => {
  it('batches by batchSize, the last batch smaller', () => {
    const ws = waves(plan('rolling', fleet(10), { batchSize: 4, bakeSeconds: 30 }));
    expect(sizes(ws)).toEqual([4, 4, 2]);
    expect(ws.map((w) => w.name)).toEqual(['batch 1', 'batch 2', 'batch 3']);
    expect(ws.map((w) => w.index)).toEqual([0, 1, 2]);
    expect(names(ws[0] as PlannedWave)).toEqual(['web-01', 'web-02', 'web-03', 'web-04']);
    expect(names(ws[2] as PlannedWave)).toEqual(['web-09', 'web-10']);
    for (const w of ws) expect(w).toMatchObject({ bakeSeconds: 30, gate: 'auto', canary: false });
  });

  it('a batch is never larger than maxUnavailable', () => {
    expect(sizes(waves(plan('rolling', fleet(10), { batchSize: 4, maxUnavailable: 3 })))).toEqual([
      3, 3, 3, 1,
    ]);
    expect(sizes(waves(plan('rolling', fleet(10), { batchSize: 3, maxUnavailable: 5 })))).toEqual([
      3, 3, 3, 1,
    ]);
  });

  it('defaults to one target at a time', () => {
    expect(sizes(waves(plan('rolling', fleet(3))))).toEqual([1, 1, 1]);
    expect(sizes(waves(plan('rolling', fleet(3), { maxUnavailable: 2 })))).toEqual([1, 1, 1]);
  });

  it('a batch that divides the targets evenly leaves no short or empty batch', () => {
    expect(sizes(waves(plan('rolling', fleet(9), { batchSize: 3 })))).toEqual([3, 3, 3]);
  });

  it('a batch as large as the fleet (or larger) is one batch', () => {
    expect(sizes(waves(plan('rolling', fleet(4), { batchSize: 4 })))).toEqual([4]);
    expect(sizes(waves(plan('rolling', fleet(4), { batchSize: 50 })))).toEqual([4]);
  });

  it.each([
    [{ batchSize: 0 }],
    [{ batchSize: -2 }],
    [{ batchSize: 1.5 }],
    [{ batchSize: 5, maxUnavailable: 0 }],
    [{ maxUnavailable: 0 }],
  ] as const)('refuses a batch under 1 or not whole: %o', (options) => {
    expect(problem(plan('rolling', fleet(5), options))).toBe(
      'rolling needs a batch size (and maxUnavailable) of at least 1',
    );
  });
});

describe('canary', () => {
  it('defaults to 10% (rounded up) in the canary wave and the rest in one wave', () => {
    const ws = waves(plan('canary', fleet(20), { bakeSeconds: 600 }));
    expect(ws.map((w) => [w.index, w.name, w.targets.length, w.canary])).toEqual([
      [0, 'canary', 2, true],
      [1, 'rest', 18, false],
    ]);
    expect(names(ws[0] as PlannedWave)).toEqual(['web-01', 'web-02']);
    for (const w of ws) expect(w).toMatchObject({ bakeSeconds: 600, gate: 'auto' });
    // 10% of 11 is 1.1: rounded up to 2.
    expect(sizes(waves(plan('canary', fleet(11))))).toEqual([2, 9]);
  });

  it('takes a count', () => {
    const ws = waves(plan('canary', fleet(10), { canaryCount: 3 }));
    expect(sizes(ws)).toEqual([3, 7]);
    expect(ws.map((w) => w.canary)).toEqual([true, false]);
  });

  it('takes a percentage and rounds it up', () => {
    expect(sizes(waves(plan('canary', fleet(10), { canaryPercent: 25 })))).toEqual([3, 7]);
    expect(sizes(waves(plan('canary', fleet(10), { canaryPercent: 20 })))).toEqual([2, 8]);
    expect(sizes(waves(plan('canary', fleet(10), { canaryPercent: 1 })))).toEqual([1, 9]);
  });

  it('a count wins over a percentage', () => {
    expect(sizes(waves(plan('canary', fleet(10), { canaryCount: 1, canaryPercent: 50 })))).toEqual([1, 9]);
  });

  it('splits the rest into the waves asked for, named rest 1, rest 2, …', () => {
    const ws = waves(plan('canary', fleet(10), { canaryCount: 1, rest: 3 }));
    expect(ws.map((w) => w.name)).toEqual(['canary', 'rest 1', 'rest 2', 'rest 3']);
    expect(ws.map((w) => w.index)).toEqual([0, 1, 2, 3]);
    expect(sizes(ws)).toEqual([1, 3, 3, 3]);
    expect(ws.map((w) => w.canary)).toEqual([true, false, false, false]);
  });

  it('rest gives exactly that many waves (never more than targets left), sizes within one', () => {
    for (let left = 1; left <= 20; left++) {
      for (let rest = 1; rest <= 8; rest++) {
        const ws = waves(plan('canary', fleet(left + 1), { canaryCount: 1, rest })).slice(1);
        const label = `${left} left in ${rest} wave(s)`;
        expect(ws.length, label).toBe(Math.min(rest, left));
        const s = sizes(ws);
        expect(Math.max(...s) - Math.min(...s), label).toBeLessThanOrEqual(1);
        expect(s, label).toEqual([...s].sort((a, b) => b - a));
      }
    }
  });

  it('a rest that is not whole is rounded down', () => {
    expect(sizes(waves(plan('canary', fleet(8), { canaryCount: 1, rest: 2.5 })))).toEqual([1, 4, 3]);
  });

  it('rest 1 (or less) keeps the single wave named rest', () => {
    expect(waves(plan('canary', fleet(5), { canaryCount: 1, rest: 1 })).map((w) => w.name)).toEqual([
      'canary',
      'rest',
    ]);
    expect(waves(plan('canary', fleet(5), { canaryCount: 1, rest: 0 })).map((w) => w.name)).toEqual([
      'canary',
      'rest',
    ]);
  });

  it.each([
    ['a count of 0', 10, { canaryCount: 0 }],
    ['a count of every target', 10, { canaryCount: 10 }],
    ['a count of more than every target', 10, { canaryCount: 11 }],
    ['0%', 10, { canaryPercent: 0 }],
    ['100%', 10, { canaryPercent: 100 }],
    ['95% of 10 (rounded up to all)', 10, { canaryPercent: 95 }],
    ['the default 10% of a single target', 1, {}],
  ] as const)('refuses a canary of %s', (_, count, options) => {
    expect(problem(plan('canary', fleet(count), options))).toBe(
      `a canary needs at least one target in its first wave and one after it (${count} target(s))`,
    );
  });
});

describe('phased', () => {
  it('takes waves by count, then the rest in a final wave named rest', () => {
    const ws = waves(plan('phased', fleet(10), { waves: [{ count: 1 }, { count: 3 }], bakeSeconds: 60 }));
    expect(ws.map((w) => [w.index, w.name, w.targets.length])).toEqual([
      [0, 'wave 1', 1],
      [1, 'wave 2', 3],
      [2, 'rest', 6],
    ]);
    expect(names(ws[1] as PlannedWave)).toEqual(['web-02', 'web-03', 'web-04']);
    for (const w of ws) expect(w).toMatchObject({ bakeSeconds: 60, gate: 'auto', canary: false });
  });

  it('a percentage is of all targets (not of those left) and rounds up', () => {
    const ws = waves(plan('phased', fleet(10), { waves: [{ count: 2 }, { percent: 50 }, { percent: 25 }] }));
    // 50% of 10 is 5 (not 50% of the 8 left); 25% of 10 is 2.5, rounded up to 3.
    expect(sizes(ws)).toEqual([2, 5, 3]);
    expect(ws.map((w) => w.name)).toEqual(['wave 1', 'wave 2', 'wave 3']);
  });

  it('a percentage larger than what is left takes what is left', () => {
    expect(sizes(waves(plan('phased', fleet(10), { waves: [{ count: 8 }, { percent: 50 }] })))).toEqual([
      8, 2,
    ]);
  });

  it('takes a wave by label selector (eu first), in name order, then the rest', () => {
    const ws = waves(plan('phased', fleet(10), { waves: [{ selector: { region: 'eu' } }] }));
    expect(ws.map((w) => [w.name, names(w)])).toEqual([
      ['wave 1', ['web-01', 'web-04', 'web-07', 'web-10']],
      ['rest', ['web-02', 'web-03', 'web-05', 'web-06', 'web-08', 'web-09']],
    ]);
  });

  it('a selector must match every label it names', () => {
    const labelsOf = (i: number): Labels => ({ region: i < 4 ? 'eu' : 'us', tier: i % 2 ? 'web' : 'db' });
    const ws = waves(
      plan('phased', fleet(8, labelsOf), { waves: [{ selector: { region: 'eu', tier: 'db' } }] }),
    );
    expect(names(ws[0] as PlannedWave)).toEqual(['web-01', 'web-03']);
  });

  it('a selector takes only what earlier waves left', () => {
    const ws = waves(plan('phased', fleet(10), { waves: [{ count: 1 }, { selector: { region: 'eu' } }] }));
    expect(ws.map(names)).toEqual([
      ['web-01'],
      ['web-04', 'web-07', 'web-10'],
      ['web-02', 'web-03', 'web-05', 'web-06', 'web-08', 'web-09'],
    ]);
  });

  it('keeps each wave its bake time and gate; the rest wave has the default bake and an automatic gate', () => {
    const ws = waves(
      plan('phased', fleet(10), {
        bakeSeconds: 45,
        waves: [
          { count: 1, bakeSeconds: 900, gate: 'manual' },
          { count: 2, gate: 'manual' },
          { count: 3, bakeSeconds: 0 },
        ],
      }),
    );
    expect(ws.map((w) => [w.name, w.bakeSeconds, w.gate])).toEqual([
      ['wave 1', 900, 'manual'],
      ['wave 2', 45, 'manual'],
      ['wave 3', 0, 'auto'],
      ['rest', 45, 'auto'],
    ]);
  });

  it('no rest wave when the waves take every target', () => {
    const ws = waves(plan('phased', fleet(6), { waves: [{ count: 2 }, { percent: 100 }] }));
    expect(ws.map((w) => w.name)).toEqual(['wave 1', 'wave 2']);
    expect(sizes(ws)).toEqual([2, 4]);
  });

  it('a wave that takes nothing is left out, and the waves after it are numbered without a gap', () => {
    const ws = waves(
      plan('phased', fleet(6), {
        waves: [
          { count: 1 },
          { selector: { region: 'mars' }, gate: 'manual' },
          { count: 0 },
          { count: 2, bakeSeconds: 10 },
        ],
      }),
    );
    expect(ws.map((w) => [w.index, w.name, w.targets.length, w.bakeSeconds, w.gate])).toEqual([
      [0, 'wave 1', 1, 0, 'auto'],
      [1, 'wave 2', 2, 10, 'auto'],
      [2, 'rest', 3, 0, 'auto'],
    ]);
  });

  it('a wave after every target is taken is left out', () => {
    const ws = waves(plan('phased', fleet(3), { waves: [{ percent: 100 }, { count: 2, gate: 'manual' }] }));
    expect(ws.map((w) => [w.name, w.targets.length, w.gate])).toEqual([['wave 1', 3, 'auto']]);
  });

  it.each([
    ['count and percent', { count: 1, percent: 10 }],
    ['count and selector', { count: 1, selector: { region: 'eu' } }],
    ['percent and selector', { percent: 10, selector: { region: 'eu' } }],
    ['all three', { count: 1, percent: 10, selector: { region: 'eu' } }],
    ['none of them', { bakeSeconds: 10 }],
  ] as const)('refuses a wave that gives %s, naming the wave', (_, spec) => {
    expect(problem(plan('phased', fleet(10), { waves: [{ count: 1 }, spec] }))).toBe(
      'wave 2 must give exactly one of count, percent or selector',
    );
  });

  it('refuses a plan without waves', () => {
    const expected = 'phased needs at least one wave (count, percent or selector)';
    expect(problem(plan('phased', fleet(3)))).toBe(expected);
    expect(problem(plan('phased', fleet(3), { waves: [] }))).toBe(expected);
  });
});

describe('every target is in exactly one wave', () => {
  const COUNTS = [1, 2, 3, 4, 5, 7, 9, 10, 13, 20, 33, 49, 50];
  const OPTIONS: ReadonlyArray<readonly [Strategy, StrategyOptions]> = [
    ['big-bang', {}],
    ['big-bang', { bakeSeconds: 60 }],
    ['rolling', {}],
    ['rolling', { batchSize: 4, maxUnavailable: 3 }],
    ['rolling', { batchSize: 7 }],
    ['rolling', { batchSize: 10, maxUnavailable: 10 }],
    ['canary', {}],
    ['canary', { canaryPercent: 25 }],
    ['canary', { canaryCount: 1, rest: 3 }],
    ['canary', { canaryPercent: 50, rest: 4 }],
    ['canary', { canaryCount: 3, rest: 50 }],
    ['phased', { waves: [{ count: 1 }, { percent: 30 }] }],
    ['phased', { waves: [{ selector: { region: 'eu' }, gate: 'manual' }, { percent: 50 }] }],
    ['phased', { waves: [{ percent: 100 }] }],
    ['phased', { waves: [{ count: 60 }, { count: 1 }] }],
    ['phased', { waves: [{ count: 2 }, { selector: { region: 'us' } }, { percent: 10 }] }],
  ];

  /** Independently of the module: when a canary cannot be planned. */
  const canaryRefused = (n: number, o: StrategyOptions) => {
    const first = o.canaryCount ?? Math.ceil((n * (o.canaryPercent ?? 10)) / 100);
    return first < 1 || first >= n;
  };

  it('for every strategy, target count and option combination', () => {
    let planned = 0;
    for (const count of COUNTS) {
      const targets = fleet(count);
      for (const [strategy, options] of OPTIONS) {
        const label = `${strategy} ${JSON.stringify(options)} over ${count} target(s)`;
        const result = plan(strategy, shuffled(targets, count), options);
        if (strategy === 'canary' && canaryRefused(count, options)) {
          expect('problem' in result, label).toBe(true);
          continue;
        }
        const ws = waves(result);
        planned++;
        const placed = ws.flatMap((w) => w.targets);
        expect(sortedNames(placed), label).toEqual(sortedNames(targets));
        expect(new Set(placed.map((t) => t.id)).size, label).toBe(count);
        expect(
          ws.map((w) => w.index),
          label,
        ).toEqual(ws.map((_, i) => i));
        for (const w of ws) {
          expect(w.targets.length, label).toBeGreaterThan(0);
          expect(names(w), label).toEqual([...names(w)].sort());
        }
        if (strategy !== 'phased')
          expect(
            placed.map((t) => t.name),
            label,
          ).toEqual(sortedNames(targets));
        expect(
          ws.filter((w) => w.canary).map((w) => w.index),
          label,
        ).toEqual(strategy === 'canary' ? [0] : []);
        if (strategy === 'canary') {
          const first = options.canaryCount ?? Math.ceil((count * (options.canaryPercent ?? 10)) / 100);
          expect(ws[0]?.targets.length, label).toBe(first);
          expect(ws.length - 1, label).toBe(Math.min(options.rest ?? 1, count - first));
        }
        if (strategy === 'rolling') {
          const batch = Math.min(options.batchSize ?? 1, options.maxUnavailable ?? Number.POSITIVE_INFINITY);
          expect(
            sizes(ws)
              .slice(0, -1)
              .every((s) => s === batch),
            label,
          ).toBe(true);
          expect(ws.at(-1)?.targets.length, label).toBe(count % batch || batch);
        }
      }
    }
    // Only small canaries are refused: nearly every combination was planned and checked.
    expect(planned).toBeGreaterThan(COUNTS.length * OPTIONS.length - 20);
  });
});
