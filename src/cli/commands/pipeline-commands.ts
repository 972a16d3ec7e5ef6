/** gantry pipeline create | list | show | run | approve: continuous delivery through environments. */
import type { Command } from 'commander';
import { LABEL_KEY_PATTERN } from '../../core/inventory.ts';
import { STRATEGIES, type StrategyOptions } from '../../core/strategies.ts';
import type { CliContext } from '../context.ts';
import { CliError, EXIT } from '../exit-codes.ts';
import { formatSeconds, parseSeconds, wholeNumber } from '../option-parsers.ts';
import { renderTable } from '../output.ts';

interface StageView {
  environment: string;
  strategy: string;
  options?: StrategyOptions;
  soakSeconds?: number;
  template?: string;
  requireEvidence?: boolean;
}
interface RunView {
  id: string;
  release: string;
  stage: number;
  environment: string | null;
  state: string;
  deploymentId: string | null;
  soakUntil: string | null;
  reason: string | null;
  history: Array<{ at: string; stage: number; event: string; detail: string }>;
  createdAt: string;
}
interface PipelineView {
  id: string;
  name: string;
  releaseName: string;
  stages: StageView[];
  autoStart: boolean;
  createdBy: string;
  createdAt: string;
  runs: RunView[];
}

const STAGE_HELP = `
--stage SPEC (one per environment, in order) is comma-separated:
  env=NAME            the environment (required)
  strategy=NAME       ${STRATEGIES.join(', ')} (default big-bang)
  soak=DURATION       how long the release must run well here before the next stage, e.g. 30m
  template=NAME       a change template: this stage runs under a standard change raised from it
  evidence            the release's evidence must have passed before this stage deploys
  bake=DURATION       bake after each wave;  batch=N  rolling batch size;  canary=N  canary size
  keep=DURATION       blue-green: how long the old slot keeps running
  groups=LABEL        blue-green by two target groups (LABEL=blue, LABEL=green, LABEL=router)
Example:
  gantry pipeline create shop-cd --release-name shop \\
    --stage env=test --stage env=staging,soak=1h,template=staging-std --stage env=production,strategy=canary`;

/** One `--stage` spec as the API's stage. */
export function parseStage(spec: string): StageView {
  const stage: StageView = { environment: '', strategy: 'big-bang' };
  const options: StrategyOptions = {};
  for (const part of spec
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const [key, ...rest] = part.split('=');
    const value = rest.join('=');
    const flag = `--stage ${key}`;
    switch (key) {
      case 'env':
        stage.environment = value;
        break;
      case 'strategy':
        if (!(STRATEGIES as readonly string[]).includes(value))
          throw new CliError(EXIT.usage, `--stage strategy=${value}: use one of ${STRATEGIES.join(', ')}.`);
        stage.strategy = value;
        break;
      case 'soak':
        stage.soakSeconds = parseSeconds(value, flag);
        break;
      case 'template':
        stage.template = value;
        break;
      case 'evidence':
        stage.requireEvidence = true;
        break;
      case 'bake':
        options.bakeSeconds = parseSeconds(value, flag);
        break;
      case 'keep':
        options.keepSeconds = parseSeconds(value, flag);
        break;
      case 'batch':
        options.batchSize = wholeNumber(value, flag, 1);
        break;
      case 'canary':
        options.canaryCount = wholeNumber(value, flag, 1);
        break;
      case 'groups':
        if (!new RegExp(LABEL_KEY_PATTERN).test(value))
          throw new CliError(EXIT.usage, `${flag}=${value}: name a label key, e.g. groups=slot.`);
        options.groupLabel = value;
        break;
      default:
        throw new CliError(
          EXIT.usage,
          `--stage '${spec}': unknown part '${key}' (known: env, strategy, soak, template, evidence, bake, batch, canary, keep, groups).`,
        );
    }
  }
  if (!stage.environment) throw new CliError(EXIT.usage, `--stage '${spec}' names no env=ENVIRONMENT.`);
  // groups= and keep= are blue-green's: they imply it, and refuse another strategy.
  if (options.groupLabel !== undefined || options.keepSeconds !== undefined) {
    if (!/(^|,)\s*strategy=/.test(spec)) stage.strategy = 'blue-green';
    else if (stage.strategy !== 'blue-green')
      throw new CliError(EXIT.usage, `--stage '${spec}': groups= and keep= are for strategy=blue-green.`);
  }
  if (Object.keys(options).length > 0) stage.options = options;
  return stage;
}

function stageText(s: StageView): string {
  const parts = [s.strategy];
  if (s.soakSeconds) parts.push(`soak ${formatSeconds(s.soakSeconds)}`);
  if (s.template) parts.push(`standard change from '${s.template}'`);
  if (s.requireEvidence) parts.push('evidence must pass');
  return `${s.environment} (${parts.join(', ')})`;
}

function showPipeline(p: PipelineView): string {
  const lines = [
    `Pipeline ${p.name}: releases named ${p.releaseName}${p.autoStart ? ', each new one starts a run' : ''}`,
    `  ${p.stages.map(stageText).join('  →  ')}`,
    '',
  ];
  if (p.runs.length === 0) lines.push('No runs yet.');
  else
    lines.push(
      renderTable(
        ['RUN', 'RELEASE', 'AT', 'STATE', 'REASON'],
        p.runs.map((r) => [r.id, r.release, r.environment, r.state, r.reason]),
      ).trimEnd(),
    );
  const waiting = p.runs.find((r) => r.state === 'waiting_change');
  if (waiting)
    lines.push(
      '',
      `Run ${waiting.id} waits at ${waiting.environment} for an approved change: gantry pipeline approve ${waiting.id} --change CHG-…`,
    );
  return `${lines.join('\n')}\n`;
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

export function addPipelineCommands(program: Command, ctx: CliContext): void {
  const pipeline = program
    .command('pipeline')
    .description('Pipelines: carry each release through environments in order (continuous delivery)');

  pipeline
    .command('create')
    .description('Create a pipeline of environments, each with its strategy, soak time and change template')
    .argument('<name>', 'pipeline name')
    .requiredOption('--release-name <name>', 'the releases it carries (each new version starts a run)')
    .option('--stage <spec>', 'one environment, in order; repeatable (see below)', collect)
    .option('--no-auto-start', 'start runs only with `gantry pipeline run`')
    .addHelpText('after', STAGE_HELP)
    .action(
      async (
        name: string,
        o: { releaseName: string; stage?: string[]; autoStart: boolean },
        command: Command,
      ) => {
        if (!o.stage?.length)
          throw new CliError(EXIT.usage, 'A pipeline needs at least one --stage env=NAME (see --help).');
        const created = await ctx.client(command).request<PipelineView>('POST', '/api/v1/pipelines', {
          name,
          releaseName: o.releaseName,
          stages: o.stage.map(parseStage),
          autoStart: o.autoStart,
        });
        ctx.out(command, created, () => showPipeline(created));
      },
    );

  pipeline
    .command('list')
    .description('List pipelines with their latest run')
    .action(async (_o: unknown, command: Command) => {
      const body = await ctx
        .client(command)
        .request<{ pipelines: PipelineView[] }>('GET', '/api/v1/pipelines');
      ctx.out(command, body, () =>
        renderTable(
          ['PIPELINE', 'RELEASES', 'STAGES', 'LATEST RUN', 'AT', 'STATE'],
          body.pipelines.map((p) => [
            p.name,
            p.releaseName,
            p.stages.map((s) => s.environment).join(' → '),
            p.runs[0]?.release ?? null,
            p.runs[0]?.environment ?? null,
            p.runs[0]?.state ?? null,
          ]),
        ),
      );
    });

  pipeline
    .command('show')
    .description('Show a pipeline, its stages and its runs')
    .argument('<name>', 'pipeline name')
    .action(async (name: string, _o: unknown, command: Command) => {
      const p = await ctx
        .client(command)
        .request<PipelineView>('GET', `/api/v1/pipelines/${encodeURIComponent(name)}`);
      ctx.out(command, p, () => showPipeline(p));
    });

  pipeline
    .command('run')
    .description('Carry a release through the pipeline now')
    .argument('<name>', 'pipeline name')
    .argument('<release>', 'NAME@VERSION or release id')
    .action(async (name: string, release: string, _o: unknown, command: Command) => {
      const run = await ctx
        .client(command)
        .request<RunView>('POST', `/api/v1/pipelines/${encodeURIComponent(name)}/runs`, { release });
      ctx.out(
        command,
        run,
        () =>
          `Run ${run.id} of ${name} carries ${run.release}; it starts at ${run.environment} (${run.state}).\n`,
      );
    });

  pipeline
    .command('approve')
    .description('Let a run waiting at an environment go on under an approved change')
    .argument('<run>', 'run id (see `gantry pipeline show`)')
    .requiredOption('--change <ref>', 'the approved change (CHG-number or id)')
    .action(async (run: string, o: { change: string }, command: Command) => {
      await ctx
        .client(command)
        .request('POST', `/api/v1/pipeline-runs/${encodeURIComponent(run)}/approve`, { change: o.change });
      ctx.out(
        command,
        { run, change: o.change, approved: true },
        () => `Run ${run} goes on under ${o.change}.\n`,
      );
    });
}
