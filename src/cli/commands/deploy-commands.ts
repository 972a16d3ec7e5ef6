/**
 * gantry deploy RELEASE … | gantry deployments list | show | watch | pause | resume | abort |
 * rollback | approve-wave | retry
 *
 * `--watch` follows the server's live stream (`GET /api/v1/deployments/:id/events`, server-sent
 * events carrying the whole deployment on each change) and reconnects when it drops before the
 * deployment ends, so a server restart does not end the watch.
 */
import cliProgress from 'cli-progress';
import type { Command } from 'commander';
import { createParser } from 'eventsource-parser';
import { DEPLOYMENT_STATES, FINAL_DEPLOYMENT_STATES } from '../../core/deployments.ts';
import { LABEL_KEY_PATTERN, parseLabels } from '../../core/inventory.ts';
import { STRATEGIES, type Strategy, type StrategyOptions, type WaveSpec } from '../../core/strategies.ts';
import type { DeploymentView } from '../../protocol/deployments.ts';
import type { ApiClient } from '../api-client.ts';
import type { CliContext } from '../context.ts';
import { CliError, EXIT } from '../exit-codes.ts';
import { collect, formatSeconds, parseSeconds, utc, wholeNumber } from '../option-parsers.ts';
import { type Io, keyValues, renderTable, sanitize } from '../output.ts';

type Wave = DeploymentView['waves'][number];

const FINAL: ReadonlySet<string> = new Set(FINAL_DEPLOYMENT_STATES);
/** Target states after which a target has nothing left to do in its wave. */
const TARGET_DONE: ReadonlySet<string> = new Set([
  'succeeded',
  'failed',
  'unhealthy',
  'rolled_back',
  'rollback_failed',
]);
const TARGET_BAD: ReadonlySet<string> = new Set(['failed', 'unhealthy', 'rollback_failed']);
const ON_FAILURE = ['rollback', 'pause', 'freeze'] as const;

/** Following the live stream: the server sends a keep-alive comment every 5 s. */
const WATCH = {
  /** No byte for this long: the connection is taken for dead and opened again. */
  idleMs: 20_000,
  /** Waits between reconnection attempts, doubling from the first to the last. */
  retryFirstMs: 500,
  retryMaxMs: 5_000,
  /** The server unreachable this long in a row: give up (the deployment goes on without us). */
  giveUpMs: 5 * 60_000,
};
/** More waves than this are shown on a terminal as two bars: all targets and the current wave. */
const MAX_BARS = 10;

const deploymentPath = (ref: string) => `/api/v1/deployments/${encodeURIComponent(ref)}`;

// ---------------------------------------------------------------------------------------------
// Options

const WAVE_HELP = `
Strategies (default rolling, one target at a time, unless --wave, --canary/--rest or
--batch-size/--max-unavailable imply another):
  big-bang   every target at once
  rolling    --batch-size N targets at a time (at most --max-unavailable N)
  canary     --canary N or N% targets first (default 10%), then the rest in --rest N waves
  phased     the waves you give with --wave, in order; targets left over go out in a last wave "rest"
  blue-green every target starts the new version in its idle slot (blue or green, from the package's
             gantry.yaml) and is checked there; once all are healthy, the package's switch hook moves
             traffic on all of them at once. The old slot keeps running for --keep (default 1h), so
             \`gantry deployments rollback DEP-…\` switches back at once.
             With --groups LABEL it works on two groups of targets instead: each target labelled
             LABEL=blue or LABEL=green, and one or more labelled LABEL=router (the load balancer's
             host). The idle group gets the new version, each target checked healthy; then the
             routers run the package's switch hook to move traffic to it. The serving group is not
             touched and keeps running, so a rollback switches traffic back to it at once

--wave SPEC (phased; repeat it, one per wave) is comma-separated, with exactly one of
  count=N       or just N      the next N targets (by name)
  percent=P     or just P%     the next P% of all targets
  selector=K=V                 every remaining target labelled K=V (repeat selector= for more labels)
and optionally
  bake=DURATION                wait this long after the wave before the next (default --bake)
  gate=manual   or just manual a person approves before the next wave starts
                               (\`gantry deployments approve-wave DEP-…\`)
Durations take a unit: 30s, 5m, 1h30m, 2d (or 0).

Install ahead (phased, rolling, canary): while a wave bakes, the next wave's targets download and
install the release (its install hooks run) but activate nothing; when their wave starts they only
activate. Not after a canary wave, nor before a manual gate. --no-install-ahead turns it off.

Halt rule: the deployment stops when more than --halt-max-failed percent of its targets failed
(default 10), or more than --halt-canary-failures targets of the canary wave (default 0); then
--on-failure says what happens: rollback (default: every changed target goes back), pause (a
person decides) or freeze (left as it is).

Examples:
  gantry deploy shop@2.4.0 --env staging --strategy big-bang --watch
  gantry deploy shop@2.4.0 --env production --wave count=1,bake=5m,gate=manual --wave percent=25 --wave 100%
  gantry deploy shop@2.4.0 --env production --wave selector=region=eu,bake=10m --wave selector=region=us
  gantry deploy shop@2.4.0 --env production --strategy canary --canary 5% --rest 2 --bake 10m --watch
  gantry deploy shop@2.4.0 --env production --batch-size 2 --max-unavailable 1 --on-failure pause
  gantry deploy shop@2.4.0 --env production --change CHG-12 --at-window

Without --watch the plan is printed and the command returns while the deployment runs. With
--watch it follows the deployment to its end: exit 0 when it succeeded, 3 when it ended
rolled_back, failed, aborted or frozen. A refusal by the gates lists every reason (exit 3).
`;

const WAVE_EXAMPLES = 'e.g. count=1,bake=5m,gate=manual or percent=25 or selector=region=eu,bake=10m';

/** One `--wave` spec → a wave of the phased strategy. */
export function parseWaveSpec(text: string): WaveSpec {
  const problem = (why: string) => new CliError(EXIT.usage, `--wave '${text}': ${why} (${WAVE_EXAMPLES}).`);
  const spec: WaveSpec = {};
  const labels: string[] = [];
  const given = new Set<string>();
  const parts = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (parts.length === 0) throw problem('it is empty');
  for (const part of parts) {
    const eq = part.indexOf('=');
    let key: string;
    let value: string;
    if (eq > 0) {
      key = part.slice(0, eq).trim().toLowerCase();
      value = part.slice(eq + 1).trim();
    } else if (/^\d+$/.test(part)) [key, value] = ['count', part];
    else if (/^\d+%$/.test(part)) [key, value] = ['percent', part];
    else if (part === 'manual' || part === 'auto') [key, value] = ['gate', part];
    else throw problem(`'${part}' is not key=value`);
    if (key !== 'selector') {
      if (given.has(key)) throw problem(`${key} is given twice`);
      given.add(key);
    }
    switch (key) {
      case 'count':
        if (!/^\d+$/.test(value) || Number(value) < 1)
          throw problem('count must be a whole number, 1 or more');
        spec.count = Number(value);
        break;
      case 'percent': {
        const n = /^(\d+)%?$/.exec(value)?.[1];
        if (n === undefined || Number(n) < 1 || Number(n) > 100)
          throw problem('percent must be a whole number from 1 to 100');
        spec.percent = Number(n);
        break;
      }
      case 'selector':
        labels.push(value);
        break;
      case 'bake':
        spec.bakeSeconds = parseSeconds(value, '--wave bake');
        break;
      case 'gate':
        if (value !== 'manual' && value !== 'auto') throw problem('gate must be manual or auto');
        spec.gate = value;
        break;
      default:
        throw problem(`unknown key '${key}' (count, percent, selector, bake, gate)`);
    }
  }
  if (labels.length > 0) {
    const parsed = parseLabels(labels);
    if ('problem' in parsed) throw problem(parsed.problem.replace('a label', 'a selector'));
    spec.selector = parsed.labels;
  }
  const kinds = [spec.count, spec.percent, spec.selector].filter((x) => x !== undefined).length;
  if (kinds !== 1) throw problem('give exactly one of count, percent or selector');
  return spec;
}

interface DeployOptions {
  env: string;
  change?: string;
  strategy?: string;
  wave?: string[];
  batchSize?: string;
  maxUnavailable?: string;
  canary?: string;
  rest?: string;
  bake?: string;
  keep?: string;
  groups?: string;
  serving?: string;
  /** false with --no-install-ahead (commander's default for the negated flag is true). */
  installAhead?: boolean;
  haltMaxFailed?: string;
  haltCanaryFailures?: string;
  onFailure?: string;
  atWindow?: boolean;
  watch?: boolean;
}

/** The strategy asked for, or implied by its options; options of another strategy are refused. */
function strategyOf(o: DeployOptions): Strategy {
  const implied: Array<[Strategy, string]> = [];
  if (o.wave?.length) implied.push(['phased', '--wave']);
  if (o.canary !== undefined) implied.push(['canary', '--canary']);
  if (o.rest !== undefined) implied.push(['canary', '--rest']);
  if (o.batchSize !== undefined) implied.push(['rolling', '--batch-size']);
  if (o.maxUnavailable !== undefined) implied.push(['rolling', '--max-unavailable']);
  if (o.keep !== undefined) implied.push(['blue-green', '--keep']);
  if (o.groups !== undefined) implied.push(['blue-green', '--groups']);
  if (o.strategy !== undefined) {
    if (!(STRATEGIES as readonly string[]).includes(o.strategy))
      throw new CliError(EXIT.usage, `--strategy must be one of ${STRATEGIES.join(', ')}.`);
    const foreign = implied.filter(([s]) => s !== o.strategy);
    if (foreign.length > 0)
      throw new CliError(
        EXIT.usage,
        `${foreign.map(([s, flag]) => `${flag} belongs to ${s}`).join(', ')}, not to --strategy ${o.strategy}.`,
      );
    return o.strategy as Strategy;
  }
  const kinds = [...new Set(implied.map(([s]) => s))];
  if (kinds.length > 1)
    throw new CliError(
      EXIT.usage,
      `${implied.map(([s, flag]) => `${flag} (${s})`).join(', ')} belong to different strategies: give the options of one.`,
    );
  return kinds[0] ?? 'rolling';
}

function bounded(text: string | undefined, flag: string, min: number, max: number): number | undefined {
  const n = wholeNumber(text, flag, min);
  if (n !== undefined && n > max) throw new CliError(EXIT.usage, `${flag} must be ${min} to ${max}.`);
  return n;
}

/** The request body for `POST /api/v1/deployments`. */
export function deploymentRequest(release: string, o: DeployOptions) {
  const strategy = strategyOf(o);
  const options: StrategyOptions = {};
  if (strategy === 'phased') {
    if (!o.wave?.length)
      throw new CliError(EXIT.usage, `A phased deployment needs at least one --wave (${WAVE_EXAMPLES}).`);
    options.waves = o.wave.map(parseWaveSpec);
  }
  options.batchSize = bounded(o.batchSize, '--batch-size', 1, 1_000_000);
  options.maxUnavailable = bounded(o.maxUnavailable, '--max-unavailable', 1, 1_000_000);
  if (o.canary !== undefined) {
    const percent = /^(\d+)%$/.exec(o.canary.trim())?.[1];
    if (percent !== undefined) options.canaryPercent = bounded(percent, '--canary N%', 1, 99);
    else options.canaryCount = bounded(o.canary.trim(), '--canary (N or N%)', 1, 1_000_000);
  }
  options.rest = bounded(o.rest, '--rest', 1, 50);
  if (o.bake !== undefined) options.bakeSeconds = parseSeconds(o.bake, '--bake');
  if (o.keep !== undefined) {
    options.keepSeconds = parseSeconds(o.keep, '--keep');
    if (options.keepSeconds > 30 * 86_400) throw new CliError(EXIT.usage, '--keep may be 30 days at most.');
  }
  if (o.installAhead === false) {
    if (strategy === 'big-bang' || strategy === 'blue-green')
      throw new CliError(
        EXIT.usage,
        `--no-install-ahead is for strategies with more than one wave (phased, rolling, canary), not for ${strategy}.`,
      );
    options.installAhead = false;
  }
  if (o.groups !== undefined) {
    if (!new RegExp(LABEL_KEY_PATTERN).test(o.groups))
      throw new CliError(
        EXIT.usage,
        '--groups names a label key (lower-case letters, digits, . _ / -), e.g. --groups slot for targets labelled slot=blue, slot=green and slot=router.',
      );
    if (o.keep !== undefined)
      throw new CliError(
        EXIT.usage,
        '--keep is for slots on each target; with --groups the serving group keeps running until a later deployment.',
      );
    options.groupLabel = o.groups;
  }
  if (o.serving !== undefined) {
    if (o.groups === undefined)
      throw new CliError(EXIT.usage, '--serving says which group serves: give --groups LABEL too.');
    if (o.serving !== 'blue' && o.serving !== 'green')
      throw new CliError(EXIT.usage, '--serving must be blue or green.');
    options.serving = o.serving;
  }
  for (const seconds of [options.bakeSeconds, ...(options.waves ?? []).map((w) => w.bakeSeconds)])
    if (seconds !== undefined && seconds > 7 * 86_400)
      throw new CliError(EXIT.usage, 'A bake time may be a week at most.');
  const haltRule: { maxFailedPercent?: number; canaryMaxFailures?: number } = {};
  if (o.haltMaxFailed !== undefined) {
    const text = o.haltMaxFailed.trim().replace(/%$/, '');
    const n = Number(text);
    if (!/^\d+(\.\d+)?$/.test(text) || n > 100)
      throw new CliError(EXIT.usage, '--halt-max-failed must be a percentage from 0 to 100, e.g. 10.');
    haltRule.maxFailedPercent = n;
  }
  if (o.haltCanaryFailures !== undefined)
    haltRule.canaryMaxFailures = wholeNumber(o.haltCanaryFailures, '--halt-canary-failures');
  if (o.onFailure !== undefined && !(ON_FAILURE as readonly string[]).includes(o.onFailure))
    throw new CliError(EXIT.usage, `--on-failure must be one of ${ON_FAILURE.join(', ')}.`);
  if (o.atWindow && o.change === undefined)
    throw new CliError(EXIT.usage, '--at-window waits for the next window of a change: give --change too.');
  const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined));
  return {
    release,
    environment: o.env,
    strategy,
    ...(o.change !== undefined ? { change: o.change } : {}),
    ...(Object.keys(given).length > 0 ? { options: given } : {}),
    ...(Object.keys(haltRule).length > 0 ? { haltRule } : {}),
    ...(o.onFailure !== undefined ? { onFailure: o.onFailure } : {}),
    ...(o.atWindow ? { start: 'window' as const } : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// Human output

function release(d: DeploymentView): string {
  return `${d.release.name}@${d.release.version}`;
}

function waveLabel(w: Wave, total: number): string {
  const plain = w.name === `wave ${w.index + 1}`;
  return `wave ${w.index + 1}/${total}${plain ? '' : ` ${w.name}`}`;
}

function targetsDone(w: Wave): number {
  return w.targets.filter((t) => TARGET_DONE.has(t.state)).length;
}

function waveProgress(w: Wave, total: number): string {
  const bad = w.targets.filter((t) => TARGET_BAD.has(t.state)).length;
  // Installed while the wave before baked: they only activate when this wave starts.
  const ahead = w.targets.filter((t) => t.state === 'installed').length;
  const state = w.state === 'pending' ? '' : ` ${w.state}`;
  return `${waveLabel(w, total)}: ${targetsDone(w)}/${w.targets.length}${state}${ahead ? ` (${ahead} installed ahead)` : ''}${bad ? ` (${bad} failed)` : ''}`;
}

function headline(d: DeploymentView): string {
  const when = d.state === 'scheduled' && d.scheduledFor ? ` (starts ${utc(d.scheduledFor)})` : '';
  return `${d.number} ${d.state}${d.reason ? `: ${d.reason}` : ''}${when}`;
}

/** `DEP-101 running · wave 1/2 canary: 1/1 succeeded · wave 2/2 rest: 0/2`; many waves folded. */
export function summaryLine(d: DeploymentView): string {
  const n = d.waves.length;
  const parts = [headline(d)];
  if (n <= 4) parts.push(...d.waves.map((w) => waveProgress(w, n)));
  else {
    const first = d.waves.findIndex((w) => w.state !== 'succeeded');
    const at = first < 0 ? n - 1 : first;
    if (at === 1) parts.push(waveProgress(d.waves[0] as Wave, n));
    else if (at > 1) parts.push(`waves 1–${at}/${n} succeeded`);
    parts.push(waveProgress(d.waves[at] as Wave, n));
    const later = n - at - 1;
    if (later === 1) parts.push(waveProgress(d.waves[n - 1] as Wave, n));
    else if (later > 1) parts.push(`waves ${at + 2}–${n} to go`);
  }
  return sanitize(parts.join(' · '));
}

function nameList(names: string[], max = 12): string {
  return names.length <= max
    ? names.join(', ')
    : `${names.slice(0, max).join(', ')}, … (+${names.length - max})`;
}

function gateText(w: Wave): string {
  if (w.gate !== 'manual') return w.gate;
  return w.approvedBy ? `manual, approved by ${w.approvedBy}` : 'manual';
}

function excludedText(d: DeploymentView): string {
  if (d.excluded.length === 0) return '';
  return `Excluded (${d.excluded.length}):\n${renderTable(
    ['TARGET', 'WHY'],
    d.excluded.map((e) => [e.target, e.reason]),
  )}`;
}

/** The plan `gantry deploy` prints: waves with their targets, and the targets left out. */
export function planText(d: DeploymentView): string {
  const n = d.waves.length;
  const total = d.waves.reduce((sum, w) => sum + w.targets.length, 0);
  const start =
    d.state === 'scheduled' && d.scheduledFor
      ? `scheduled for ${utc(d.scheduledFor)} (the change's next window)`
      : d.state;
  const head = `Created ${d.number}: ${release(d)} to ${d.environment}${d.change ? ` under ${d.change}` : ''}, ${d.strategy}, ${total} target(s) in ${n} wave(s); ${start}.`;
  const waves = renderTable(
    ['WAVE', 'NAME', 'TARGETS', 'BAKE', 'GATE'],
    d.waves.map((w) => [
      `${w.index + 1}/${n}`,
      w.canary ? `${w.name} (canary)` : w.name,
      nameList(w.targets.map((t) => t.name)),
      formatSeconds(w.bakeSeconds),
      gateText(w),
    ]),
  );
  return `${sanitize(head)}\n${waves}${excludedText(d)}Follow it with \`gantry deployments watch ${d.number}\`.\n`;
}

function strategyText(d: DeploymentView): string {
  const o = d.options;
  const bits: string[] = [];
  if (o.batchSize !== undefined) bits.push(`batch size ${o.batchSize}`);
  if (o.maxUnavailable !== undefined) bits.push(`max unavailable ${o.maxUnavailable}`);
  if (o.canaryCount !== undefined) bits.push(`canary ${o.canaryCount}`);
  if (o.canaryPercent !== undefined) bits.push(`canary ${o.canaryPercent}%`);
  if (o.rest !== undefined) bits.push(`rest in ${o.rest}`);
  if (o.bakeSeconds !== undefined) bits.push(`bake ${formatSeconds(o.bakeSeconds)}`);
  if (o.keepSeconds !== undefined) bits.push(`keep ${formatSeconds(o.keepSeconds)}`);
  if (o.installAhead === false) bits.push('no install ahead');
  if (o.groups)
    bits.push(
      `groups by ${o.groups.label}: ${o.groups.group} gets it${o.groups.previous ? `, ${o.groups.previous} serves` : ''}`,
    );
  return bits.length ? `${d.strategy} (${bits.join(', ')})` : d.strategy;
}

function countsText(d: DeploymentView): string {
  const total = Object.values(d.counts).reduce((a, b) => a + b, 0);
  const parts = Object.entries(d.counts)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([state, n]) => `${n} ${state}`);
  return `${total}: ${parts.join(', ') || 'none'}`;
}

/** What may be done next to a deployment in this state. */
function nextSteps(d: DeploymentView): string[] {
  const failed = (d.counts.failed ?? 0) > 0;
  const waiting = d.waves.some((w) => w.state === 'awaiting_approval');
  const verbs: string[] = [];
  if (waiting && (d.state === 'running' || d.state === 'paused')) verbs.push('approve-wave');
  if (failed && (d.state === 'running' || d.state === 'paused')) verbs.push('retry');
  if (d.state === 'running' || d.state === 'scheduled') verbs.push('pause');
  if (d.state === 'paused') verbs.push('resume');
  if (!FINAL.has(d.state)) verbs.push('abort');
  if (!['rolling_back', 'rolled_back', 'aborted'].includes(d.state)) verbs.push('rollback');
  if (!FINAL.has(d.state)) verbs.unshift('watch');
  return verbs.map((v) => `gantry deployments ${v} ${d.number}`);
}

function versions(before: Record<string, string | null>): string {
  return (
    Object.entries(before)
      .map(([component, version]) => `${component} ${version ?? 'none'}`)
      .join(', ') || '-'
  );
}

/** `deployments show`: the plan beside what happened. */
export function showDeployment(d: DeploymentView): string {
  const n = d.waves.length;
  const head = keyValues([
    ['deployment', `${d.number}  ${release(d)} to ${d.environment}`],
    ['state', d.state],
    ['reason', d.reason],
    ['change', d.change],
    ['strategy', strategyText(d)],
    [
      'halt rule',
      `more than ${d.haltRule.maxFailedPercent}% of targets failed, or more than ${d.haltRule.canaryMaxFailures} in a canary wave`,
    ],
    ['on failure', d.onFailure],
    ['targets', countsText(d)],
    ['scheduled for', d.scheduledFor],
    ['created', `${d.createdAt} by ${d.createdBy}`],
    ['started', d.startedAt],
    ['finished', d.finishedAt],
    ['id', d.id],
  ]);
  const waves = renderTable(
    ['WAVE', 'NAME', 'STATE', 'BAKE', 'GATE', 'TARGETS', 'STARTED', 'FINISHED'],
    d.waves.map((w) => [
      `${w.index + 1}/${n}`,
      w.canary ? `${w.name} (canary)` : w.name,
      w.state === 'baking' && w.bakeUntil ? `baking until ${w.bakeUntil}` : w.state,
      formatSeconds(w.bakeSeconds),
      gateText(w),
      `${targetsDone(w)}/${w.targets.length} done`,
      w.startedAt,
      w.finishedAt,
    ]),
  );
  const targets = renderTable(
    ['WAVE', 'TARGET', 'STATE', 'BEFORE', 'MESSAGE'],
    d.waves.flatMap((w) =>
      w.targets.map((t) => [`${w.index + 1}`, t.name, t.state, versions(t.before), t.message]),
    ),
  );
  const next = nextSteps(d);
  return (
    `${head}\nWaves (plan beside outcome):\n${waves}\nTargets:\n${targets}` +
    `${d.excluded.length ? `\n${excludedText(d)}` : ''}\nNext:\n${next.length ? next.join('\n') : `nothing: ${d.number} is ${d.state}`}\n`
  );
}

function listTable(deployments: DeploymentView[]): string {
  return renderTable(
    [
      'DEPLOYMENT',
      'STATE',
      'RELEASE',
      'ENVIRONMENT',
      'STRATEGY',
      'CHANGE',
      'TARGETS',
      'CREATED (UTC)',
      'REASON',
    ],
    deployments.map((d) => {
      const total = Object.values(d.counts).reduce((a, b) => a + b, 0);
      const bad = (d.counts.failed ?? 0) + (d.counts.unhealthy ?? 0) + (d.counts.rollback_failed ?? 0);
      return [
        d.number,
        d.state,
        release(d),
        d.environment,
        d.strategy,
        d.change,
        `${d.counts.succeeded ?? 0}/${total} succeeded${bad ? `, ${bad} failed` : ''}`,
        utc(d.createdAt),
        d.reason,
      ];
    }),
  );
}

interface ErrorBody {
  error?: {
    code?: string;
    message?: string;
    details?: {
      reasons?: Array<{ code: string; message: string }>;
      notes?: Array<{ code: string; message: string }>;
      excluded?: Array<{ target: string; reason: string }>;
    } | null;
  };
}

/**
 * A refusal worth more than its one-line message: the gates' every reason, or the targets left out
 * of a plan that could not be made. Printed here; the CliError returned only carries the exit code.
 */
function explainRefusal(ctx: CliContext, command: Command, error: unknown): unknown {
  if (!(error instanceof CliError) || ctx.json(command)) return error;
  const body = (error.body ?? null) as ErrorBody | null;
  const details = body?.error?.details;
  if (body?.error?.code === 'GATE_REFUSED' && details?.reasons?.length) {
    const notes = details.notes?.length
      ? `Notes:\n${renderTable(
          ['NOTE', 'MESSAGE'],
          details.notes.map((r) => [r.code, r.message]),
        )}`
      : '';
    ctx.io.stderr(
      `error: refused by the gates, for ${details.reasons.length} reason(s):\n${renderTable(
        ['REASON', 'MESSAGE'],
        details.reasons.map((r) => [r.code, r.message]),
      )}${notes}`,
    );
    return new CliError(error.exitCode, error.message, error.body, true);
  }
  if (details?.excluded?.length) {
    ctx.io.stderr(
      `error: ${error.message}\nLeft out:\n${renderTable(
        ['TARGET', 'WHY'],
        details.excluded.map((e) => [e.target, e.reason]),
      )}`,
    );
    return new CliError(error.exitCode, error.message, error.body, true);
  }
  return error;
}

// ---------------------------------------------------------------------------------------------
// Following the live stream

interface Renderer {
  update(d: DeploymentView): void;
  /** A word about the connection (lost, back). */
  note(text: string): void;
  stop(): void;
}

/** Not a terminal (CI, a pipe, tests): one line per change. */
class LineRenderer implements Renderer {
  private last = '';
  private hinted = '';
  private readonly targets = new Map<string, string>();
  constructor(private readonly io: Io) {}

  update(d: DeploymentView): void {
    for (const w of d.waves)
      for (const t of w.targets) {
        const seen = this.targets.get(t.name);
        this.targets.set(t.name, t.state);
        if (seen === t.state || (seen === undefined && t.state === 'pending')) continue;
        this.io.stdout(`${sanitize(`${t.name} ${t.state}${t.message ? `: ${t.message}` : ''}`)}\n`);
      }
    const line = summaryLine(d);
    if (line !== this.last) this.io.stdout(`${line}\n`);
    this.last = line;
    const waiting = d.waves.find((w) => w.state === 'awaiting_approval');
    const hint = waiting ? `${d.number}:${waiting.index}` : '';
    if (waiting && hint !== this.hinted)
      this.io.stdout(
        `${sanitize(`${waveLabel(waiting, d.waves.length)} is done; the next starts when a person approves: gantry deployments approve-wave ${d.number}`)}\n`,
      );
    this.hinted = hint;
  }

  note(text: string): void {
    this.io.stderr(`${text}\n`);
  }

  stop(): void {}
}

/** --json: every state of the deployment as one JSON line (NDJSON). */
class JsonLinesRenderer implements Renderer {
  constructor(private readonly io: Io) {}
  update(d: DeploymentView): void {
    this.io.stdout(`${JSON.stringify(d)}\n`);
  }
  note(text: string): void {
    this.io.stderr(`${text}\n`);
  }
  stop(): void {}
}

/** A terminal: a state line and one bar per wave (targets done of all), on standard error. */
class BarRenderer implements Renderer {
  private readonly multi = new cliProgress.MultiBar(
    {
      stream: process.stderr,
      format: ' {label} [{bar}] {value}/{total} {state}',
      barsize: 24,
      hideCursor: true,
      // A line logged above the bars moves them down: every bar is drawn again, changed or not.
      forceRedraw: true,
      clearOnComplete: false,
      stopOnComplete: false,
    },
    cliProgress.Presets.shades_classic,
  );
  private status: cliProgress.SingleBar | undefined;
  private bars: cliProgress.SingleBar[] = [];
  private width = 0;
  private readonly targets = new Map<string, string>();
  private stopped = false;

  update(d: DeploymentView): void {
    const n = d.waves.length;
    const many = n > MAX_BARS;
    if (!this.status) {
      this.status = this.multi.create(1, 0, { line: '' }, { format: '{line}' });
      const labels = many ? ['all targets', 'current wave'] : d.waves.map((w) => sanitize(waveLabel(w, n)));
      this.width = Math.max(...labels.map((l) => l.length));
      this.bars = labels.map((label) =>
        this.multi.create(1, 0, { label: label.padEnd(this.width), state: '' }),
      );
    }
    for (const w of d.waves)
      for (const t of w.targets) {
        const seen = this.targets.get(t.name);
        this.targets.set(t.name, t.state);
        // The bars show progress; the log above them keeps what needs a person's eye.
        if (
          seen !== t.state &&
          ['failed', 'unhealthy', 'rolled_back', 'rollback_failed', 'retry'].includes(t.state)
        )
          this.log(`${t.name} ${t.state}${t.message ? `: ${t.message}` : ''}`);
      }
    this.status.update(0, { line: sanitize(headline(d)) });
    if (many) {
      const all = d.waves.flatMap((w) => w.targets);
      const current = d.waves.find((w) => w.state !== 'succeeded') ?? (d.waves[n - 1] as Wave);
      this.set(0, all.length, all.filter((t) => TARGET_DONE.has(t.state)).length, '', 'all targets');
      this.set(
        1,
        current.targets.length,
        targetsDone(current),
        current.state,
        sanitize(waveLabel(current, n)),
      );
    } else for (const [i, w] of d.waves.entries()) this.set(i, w.targets.length, targetsDone(w), w.state);
  }

  private set(i: number, total: number, done: number, state: string, label?: string): void {
    const bar = this.bars[i];
    if (!bar) return;
    bar.setTotal(Math.max(total, 1));
    bar.update(done, { state, ...(label ? { label: label.padEnd(this.width) } : {}) });
  }

  /** A line above the bars, cut to the terminal's width: a wrapped line would throw the bars off. */
  private log(text: string): void {
    const width = Math.max(20, (process.stderr.columns ?? 80) - 1);
    const line = sanitize(text);
    // Erase what the bars left to the right of it (cli-progress clears only the first such line).
    this.multi.log(`${line.length > width ? `${line.slice(0, width - 1)}…` : line}\u001b[0K\n`);
  }

  note(text: string): void {
    if (this.status) this.log(text);
    else process.stderr.write(`${text}\n`);
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    // `stop` draws the bars once more but drops lines logged since the last frame: draw one first.
    if (this.status) this.multi.update();
    this.multi.stop();
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function describeDrop(error: unknown): string {
  if (error instanceof CliError) return error.message;
  const cause = (error as { cause?: { code?: string } }).cause?.code;
  if (cause === 'UND_ERR_SOCKET' || cause === 'ECONNRESET') return 'the connection was cut';
  return cause ?? (error as Error).message ?? String(error);
}

/**
 * Follows a deployment's live stream until it reaches a final state, handing each state to
 * `render`. A stream that drops (or goes quiet) before then is opened again; a refusal (not
 * found, not allowed) ends the watch at once.
 */
export async function followDeployment(
  client: ApiClient,
  ref: string,
  render: Renderer,
  timing = WATCH,
): Promise<DeploymentView> {
  let last: DeploymentView | undefined;
  let lostSince: number | undefined;
  let delay = timing.retryFirstMs;
  for (;;) {
    const controller = new AbortController();
    let idle: NodeJS.Timeout | undefined;
    const touch = () => {
      clearTimeout(idle);
      idle = setTimeout(() => controller.abort(), timing.idleMs);
    };
    let malformed = false;
    let fresh = false;
    const parser = createParser({
      onEvent: (message) => {
        if (message.event !== 'deployment' || malformed) return;
        let view: DeploymentView;
        try {
          view = JSON.parse(message.data) as DeploymentView;
        } catch {
          malformed = true;
          return;
        }
        last = view;
        fresh = true;
        render.update(view);
      },
    });
    let drop: string;
    try {
      touch();
      const response = await client.stream(
        `${deploymentPath(ref)}/events`,
        'text/event-stream',
        controller.signal,
      );
      if (lostSince !== undefined) render.note(`Reconnected; following ${last?.number ?? ref} again.`);
      lostSince = undefined;
      const decoder = new TextDecoder();
      for await (const chunk of (response.body ?? []) as AsyncIterable<Uint8Array>) {
        touch();
        parser.feed(decoder.decode(chunk, { stream: true }));
        if (malformed)
          throw new CliError(EXIT.failed, `The server sent a deployment event that is not JSON.`);
        if (last && FINAL.has(last.state)) break;
      }
      drop = 'the server ended the stream';
    } catch (error) {
      if (error instanceof CliError && (error.exitCode === EXIT.refused || malformed)) throw error;
      drop = controller.signal.aborted
        ? `no word from the server for ${Math.round(timing.idleMs / 1000)} s`
        : describeDrop(error);
    } finally {
      clearTimeout(idle);
      controller.abort();
    }
    if (last && FINAL.has(last.state)) return last;
    if (fresh) delay = timing.retryFirstMs;
    if (lostSince === undefined) {
      lostSince = Date.now();
      render.note(`Lost the live stream (${drop}); reconnecting…`);
    } else if (Date.now() - lostSince > timing.giveUpMs)
      throw new CliError(
        EXIT.unreachable,
        `Could not reach the server for ${Math.round(timing.giveUpMs / 60_000)} minutes (${drop}). ` +
          `${last?.number ?? ref} goes on without you: \`gantry deployments watch ${last?.number ?? ref}\`.`,
      );
    await sleep(delay);
    delay = Math.min(delay * 2, timing.retryMaxMs);
  }
}

/** Follows to the end in the form the output asks for; exit 0 only when the deployment succeeded. */
async function watch(ctx: CliContext, command: Command, client: ApiClient, ref: string): Promise<void> {
  const json = ctx.json(command);
  const terminal = !json && process.stdout.isTTY === true && process.stderr.isTTY === true;
  const render: Renderer = json
    ? new JsonLinesRenderer(ctx.io)
    : terminal
      ? new BarRenderer()
      : new LineRenderer(ctx.io);
  // On a terminal, Ctrl-C puts the cursor back and says the deployment goes on without us.
  const interrupted = () => {
    render.stop();
    ctx.io.stderr(
      `\nStopped watching; ${ref} goes on. Follow it again with \`gantry deployments watch ${ref}\`.\n`,
    );
    process.exit(130);
  };
  if (terminal) process.once('SIGINT', interrupted);
  let d: DeploymentView;
  try {
    d = await followDeployment(client, ref, render);
  } finally {
    render.stop();
    process.off('SIGINT', interrupted);
  }
  const bad = d.waves.flatMap((w) => w.targets).filter((t) => TARGET_BAD.has(t.state));
  if (d.state === 'succeeded') {
    // The halt rule may tolerate a few failures: a success can still leave targets behind.
    const behind = bad.length
      ? ` ${bad.length} failed within the halt rule: ${bad.map((t) => t.name).join(', ')}.`
      : '';
    if (!json)
      ctx.io.stdout(
        `${sanitize(`${d.number} succeeded: ${d.counts.succeeded ?? 0} target(s) in ${d.environment} run ${release(d)}.${behind}`)}\n`,
      );
    return;
  }
  const message =
    `${d.number} ended ${d.state}${d.reason ? ` (${d.reason})` : ''}` +
    `${bad.length ? `; failed: ${bad.map((t) => `${t.name}${t.message ? ` (${t.message})` : ''}`).join(', ')}` : ''}`;
  if (!json)
    ctx.io.stderr(`${sanitize(`error: ${message}. See \`gantry deployments show ${d.number}\`.`)}\n`);
  throw new CliError(EXIT.refused, message, d, true);
}

// ---------------------------------------------------------------------------------------------
// Commands

const ACTIONS: Array<[verb: string, endpoint: string, description: string]> = [
  [
    'pause',
    'pause',
    'Pause a running or scheduled deployment: what is in flight finishes, nothing new starts',
  ],
  ['resume', 'resume', 'Resume a paused deployment (paused by a person, a closed window or the halt rule)'],
  ['abort', 'abort', 'Stop a deployment for good, leaving targets as they are (roll back instead to undo)'],
  ['rollback', 'rollback', 'Roll back every target the deployment changed to what it ran before'],
  ['approve-wave', 'approve-wave', 'Approve the wave waiting at a manual gate, so the next one starts'],
  ['retry', 'retry-failed', 'Install again on the targets that failed (a running or paused deployment)'],
];

function afterAction(d: DeploymentView, verb: string, from: string | undefined): string {
  if (verb === 'approve-wave') {
    const wave = d.waves.find((w) => w.state !== 'succeeded');
    return `${sanitize(`Approved ${wave ? waveLabel(wave, d.waves.length) : 'the waiting wave'} of ${d.number}; the next wave starts when it is done.`)}\n`;
  }
  return `${sanitize(`${d.number} is now ${d.state}${from && from !== d.state ? ` (was ${from})` : ''}${d.reason ? `: ${d.reason}` : ''}.`)}\n`;
}

export function addDeployCommands(program: Command, ctx: CliContext): void {
  program
    .command('deploy')
    .description('Deploy a release to an environment: the gates checked, the plan stored and shown, then run')
    .argument('<release>', 'NAME@VERSION or release id')
    .requiredOption('--env <name>', 'the environment to deploy to')
    .option('--change <ref>', 'the change it runs under (CHG-number or id)')
    .option('--strategy <name>', `${STRATEGIES.join(', ')} (see below)`)
    .option(
      '--wave <spec>',
      'phased: one wave, e.g. count=1,bake=5m,gate=manual; repeatable, in order',
      collect,
    )
    .option('--batch-size <n>', 'rolling: targets at a time (default 1)')
    .option('--max-unavailable <n>', 'rolling: at most this many targets changing at once')
    .option('--canary <n|n%>', 'canary: the first wave, as a count or a percentage (default 10%)')
    .option('--rest <n>', 'canary: how many waves the rest goes out in (default 1)')
    .option('--bake <duration>', 'wait after each wave before the next, e.g. 5m (default 0)')
    .option(
      '--no-install-ahead',
      'phased, rolling, canary: install each wave only when it starts (by default the next wave installs while a wave bakes)',
    )
    .option(
      '--keep <duration>',
      'blue-green: keep the old slot running this long for an instant switch back (default 1h)',
    )
    .option(
      '--groups <label>',
      'blue-green by two target groups: the label whose values blue, green and router place each target',
    )
    .option(
      '--serving <group>',
      'blue-green by groups: the group that serves now (blue or green), after putting the routers right by hand',
    )
    .option('--halt-max-failed <percent>', 'halt when more than this % of targets failed (default 10)')
    .option('--halt-canary-failures <n>', 'halt when more than this many canary targets failed (default 0)')
    .option('--on-failure <what>', `when halted: ${ON_FAILURE.join(', ')} (default rollback)`)
    .option('--at-window', "wait for the change's next window instead of starting now (needs --change)")
    .option('--watch', 'follow it to its end; exit 0 when it succeeded, 3 when it did not')
    .addHelpText('after', WAVE_HELP)
    .action(async (ref: string, o: DeployOptions, command: Command) => {
      const body = deploymentRequest(ref, o);
      const client = ctx.client(command);
      let created: DeploymentView;
      try {
        created = await client.request<DeploymentView>('POST', '/api/v1/deployments', body);
      } catch (error) {
        throw explainRefusal(ctx, command, error);
      }
      if (!o.watch) {
        ctx.out(command, created, () => planText(created));
        return;
      }
      if (!ctx.json(command)) ctx.io.stdout(planText(created).replace(/Follow it with .*\n$/, ''));
      await watch(ctx, command, client, created.number);
    });

  const deployments = program
    .command('deployments')
    .description(
      'Deployments: list, show, watch, and pause, resume, abort, roll back, approve or retry them',
    );

  deployments
    .command('list')
    .description('List deployments, newest first')
    .option('--state <state>', DEPLOYMENT_STATES.join(', '))
    .option('--env <name>', 'only deployments to this environment')
    .action(async (o: { state?: string; env?: string }, command: Command) => {
      if (o.state !== undefined && !(DEPLOYMENT_STATES as readonly string[]).includes(o.state))
        throw new CliError(EXIT.usage, `--state must be one of ${DEPLOYMENT_STATES.join(', ')}.`);
      const body = await ctx
        .client(command)
        .request<{ deployments: DeploymentView[] }>('GET', '/api/v1/deployments', undefined, {
          state: o.state,
          environment: o.env,
        });
      ctx.out(command, body, () =>
        body.deployments.length ? listTable(body.deployments) : 'No deployments.\n',
      );
    });

  deployments
    .command('show')
    .description(
      'Show a deployment: the plan beside the outcome, per wave and per target, and what can be done next',
    )
    .argument('<deployment>', 'DEP-number or id')
    .action(async (ref: string, _o: unknown, command: Command) => {
      const d = await ctx.client(command).request<DeploymentView>('GET', deploymentPath(ref));
      ctx.out(command, d, () => showDeployment(d));
    });

  deployments
    .command('watch')
    .description(
      'Follow a deployment to its end (bars on a terminal, a line per change otherwise, NDJSON with --json); ' +
        'exit 0 when it succeeded, 3 when it ended otherwise',
    )
    .argument('<deployment>', 'DEP-number or id')
    .action(async (ref: string, _o: unknown, command: Command) => {
      await watch(ctx, command, ctx.client(command), ref);
    });

  for (const [verb, endpoint, description] of ACTIONS) {
    deployments
      .command(verb)
      .description(description)
      .argument('<deployment>', 'DEP-number or id')
      .option('--reason <text>', 'why (kept in the audit log)')
      .option('--watch', 'then follow it to its end, as `deployments watch`')
      .action(async (ref: string, o: { reason?: string; watch?: boolean }, command: Command) => {
        const client = ctx.client(command);
        const before = await client.request<DeploymentView>('GET', deploymentPath(ref));
        const d = await client.request<DeploymentView>(
          'POST',
          `${deploymentPath(ref)}/${endpoint}`,
          o.reason !== undefined ? { reason: o.reason } : {},
        );
        if (o.watch) {
          if (!ctx.json(command)) ctx.io.stdout(afterAction(d, verb, before.state));
          await watch(ctx, command, client, d.number);
          return;
        }
        ctx.out(command, d, () => afterAction(d, verb, before.state));
      });
  }
}
