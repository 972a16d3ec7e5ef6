/** gantry flag set | get | list | evaluate */
import type { Static } from '@sinclair/typebox';
import type { Command } from 'commander';
import type { EvaluationResult, FlagRuleSchema, FlagSchema } from '../../protocol/changes.ts';
import type { CliContext } from '../context.ts';
import { CliError, EXIT } from '../exit-codes.ts';
import { collect, commaList, eitherFlag, wholeNumber } from '../option-parsers.ts';
import { keyValues, renderTable } from '../output.ts';

type FlagView = Static<typeof FlagSchema>;
type FlagRule = Static<typeof FlagRuleSchema>;
type Evaluation = Static<typeof EvaluationResult>;

const OPS = ['eq', 'neq', 'in', 'not_in'] as const;
const flagsPath = (env: string) => `/api/v1/environments/${encodeURIComponent(env)}/flags`;

/** `plan in pro,enterprise` → { attribute: 'plan', op: 'in', values: ['pro', 'enterprise'] }. */
export function parseRule(text: string): FlagRule {
  const match = /^\s*(\S+)\s+(\S+)\s+(.+?)\s*$/.exec(text);
  const op = match?.[2] as FlagRule['op'] | undefined;
  if (!match?.[1] || !op || !(OPS as readonly string[]).includes(op))
    throw new CliError(
      EXIT.usage,
      `--rule '${text}' must read "ATTRIBUTE OP VALUES" with OP one of ${OPS.join(', ')}, e.g. "plan in pro,enterprise".`,
    );
  const values = commaList(match[3] ?? '');
  if (values.length === 0) throw new CliError(EXIT.usage, `--rule '${text}' names no value.`);
  if ((op === 'eq' || op === 'neq') && values.length > 1)
    throw new CliError(
      EXIT.usage,
      `--rule '${text}': ${op} compares with one value; use in or not_in for several.`,
    );
  return { attribute: match[1], op, values };
}

const ruleText = (r: FlagRule) => `${r.attribute} ${r.op} ${r.values.join(',')}`;

function showFlag(f: FlagView): string {
  return keyValues([
    ['flag', f.key],
    ['environment', f.environment],
    ['state', f.enabled ? 'on' : 'off'],
    ['percentage', f.percentage === null ? 'all subjects' : `${f.percentage}%`],
    ['rules', f.rules.map(ruleText).join('; ') || 'none'],
    ['description', f.description || null],
    ['revision', f.revision],
    ['updated', `${f.updatedAt} by ${f.updatedBy}`],
  ]);
}

export function addFlagCommands(program: Command, ctx: CliContext): void {
  const flag = program
    .command('flag')
    .description('Feature flags per environment: on/off, a percentage of subjects, attribute rules');

  flag
    .command('set')
    .description('Create or change a flag; what is not given keeps its value (a new flag starts off)')
    .argument('<key>', 'flag key, e.g. new-checkout')
    .requiredOption('--env <name>', 'environment')
    .option('--on', 'switch it on')
    .option('--off', 'switch it off')
    .option('--percentage <n>', 'on for this share of subjects (0–100), chosen stably by subject id')
    .option('--no-percentage', 'on for every subject (drop the percentage)')
    .option(
      '--rule <rule>',
      `on for subjects matching "ATTRIBUTE OP VALUES" (OP: ${OPS.join(', ')}); repeatable; replaces the rules`,
      collect,
    )
    .option('--clear-rules', 'remove every rule')
    .option('--description <text>', 'what it switches')
    .option('--change <ref>', 'the approved change, where the environment keeps flags under change control')
    .action(
      async (
        key: string,
        o: {
          env: string;
          on?: boolean;
          off?: boolean;
          percentage?: string | false;
          rule?: string[];
          clearRules?: boolean;
          description?: string;
          change?: string;
        },
        command: Command,
      ) => {
        const enabled = eitherFlag(o.on, o.off, ['--on', '--off']);
        if (o.rule?.length && o.clearRules)
          throw new CliError(EXIT.usage, 'Give --rule or --clear-rules, not both.');
        let percentage: number | null | undefined;
        if (o.percentage === false) percentage = null;
        else if (o.percentage !== undefined) {
          percentage = wholeNumber(o.percentage, '--percentage');
          if (percentage !== undefined && percentage > 100)
            throw new CliError(EXIT.usage, '--percentage must be between 0 and 100.');
        }
        const rules = o.clearRules ? [] : o.rule?.map(parseRule);
        const f = await ctx
          .client(command)
          .request<FlagView>('PUT', `${flagsPath(o.env)}/${encodeURIComponent(key)}`, {
            ...(enabled !== undefined ? { enabled } : {}),
            ...(percentage !== undefined ? { percentage } : {}),
            ...(rules !== undefined ? { rules } : {}),
            ...(o.description !== undefined ? { description: o.description } : {}),
            ...(o.change !== undefined ? { change: o.change } : {}),
          });
        ctx.out(command, f, () => showFlag(f));
      },
    );

  flag
    .command('get')
    .description('Show a flag')
    .argument('<key>', 'flag key')
    .requiredOption('--env <name>', 'environment')
    .action(async (key: string, o: { env: string }, command: Command) => {
      const f = await ctx
        .client(command)
        .request<FlagView>('GET', `${flagsPath(o.env)}/${encodeURIComponent(key)}`);
      ctx.out(command, f, () => showFlag(f));
    });

  flag
    .command('list')
    .description('List the flags of an environment')
    .requiredOption('--env <name>', 'environment')
    .action(async (o: { env: string }, command: Command) => {
      const body = await ctx.client(command).request<{ flags: FlagView[] }>('GET', flagsPath(o.env));
      ctx.out(command, body, () =>
        renderTable(
          ['FLAG', 'STATE', 'PERCENTAGE', 'RULES', 'REVISION', 'UPDATED', 'DESCRIPTION'],
          body.flags.map((f) => [
            f.key,
            f.enabled ? 'on' : 'off',
            f.percentage === null ? 'all' : `${f.percentage}%`,
            f.rules.map(ruleText).join('; ') || null,
            f.revision,
            `${f.updatedAt} by ${f.updatedBy}`,
            f.description || null,
          ]),
        ),
      );
    });

  flag
    .command('evaluate')
    .description('Every flag of an environment for one subject, as an application would get them')
    .requiredOption('--env <name>', 'environment')
    .requiredOption('--subject <id>', 'the subject (user, session, device) id')
    .option('--attr <key:value>', 'a subject attribute, e.g. plan:pro; repeatable', collect)
    .action(async (o: { env: string; subject: string; attr?: string[] }, command: Command) => {
      for (const pair of o.attr ?? [])
        if (pair.indexOf(':') <= 0)
          throw new CliError(EXIT.usage, `--attr '${pair}' must read key:value, e.g. plan:pro.`);
      const result = await ctx
        .client(command)
        .request<Evaluation>(
          'GET',
          `/api/v1/environments/${encodeURIComponent(o.env)}/evaluation`,
          undefined,
          { subject: o.subject, attr: o.attr },
        );
      ctx.out(command, result, () =>
        renderTable(
          ['FLAG', 'VALUE', 'VARIANT', 'REASON'],
          result.flags.map((f) => [f.key, f.value, f.variant, f.reason]),
        ),
      );
    });
}
