/** gantry change create | edit | submit … close | show | list | check | template … */
import type { Static } from '@sinclair/typebox';
import type { Command } from 'commander';
import { CHANGE_STATES, CHANGE_TYPES } from '../../core/changes.ts';
import { parseLabels } from '../../core/inventory.ts';
import type { ChangeView, GateVerdictSchema, TemplateSchema } from '../../protocol/changes.ts';
import type { CliContext } from '../context.ts';
import { CliError, EXIT } from '../exit-codes.ts';
import { collect, eitherFlag, inZone, parseWindow, utc, wholeNumber } from '../option-parsers.ts';
import { keyValues, renderTable, sanitize } from '../output.ts';

type TemplateView = Static<typeof TemplateSchema>;
type GateVerdict = Static<typeof GateVerdictSchema>;
type RiskAnswers = ChangeView['riskAnswers'];

const IMPACTS = ['none', 'some', 'major'] as const;
const changePath = (ref: string) => `/api/v1/changes/${encodeURIComponent(ref)}`;

/** The state changes after `edit`, who takes them, and whether they need a reason. */
const ACTIONS = [
  ['submit', 'Submit a draft for approval (requester)', false],
  ['approve', 'Approve a submitted change (change authority; never its requester)', false],
  ['reject', 'Reject a submitted change (change authority); --reason required', true],
  ['cancel', 'Withdraw a change before it runs; --reason required', true],
  ['schedule', 'Schedule an approved change (implementer)', false],
  ['start', 'Start implementing an approved or scheduled change (implementer)', false],
  ['complete', 'Record that the implementation succeeded (implementer)', false],
  ['fail', 'Record that the implementation failed (implementer); --reason required', true],
  ['back-out', 'Record that the change was backed out (implementer); --reason required', true],
  ['review', 'Review a finished change (change authority)', false],
  ['close', 'Close a reviewed or rejected change (change authority)', false],
] as const;

interface ContentOptions {
  title?: string;
  description?: string;
  release?: string;
  env?: string[];
  window?: string[];
  tz?: string;
  selector?: string[];
  backoutPlan?: string;
  link?: string[];
  freezeOverrideReason?: string;
  impact?: string;
  doneBefore?: boolean;
  notDoneBefore?: boolean;
  backoutTested?: boolean;
  backoutUntested?: boolean;
  changesData?: boolean;
}

/** The options `create` and `edit` share: the change's content and the risk questionnaire. */
function contentOptions(c: Command, creating: boolean): Command {
  const required = creating ? ' (required)' : '';
  const replaces = creating ? '' : '; replaces them all';
  return c
    .option('--title <text>', `one line saying what changes${required}`)
    .option('--description <text>', 'what and why, in full')
    .option('--release <ref>', `the release it deploys: id or NAME@VERSION${required}`)
    .option('--env <name>', `an environment it touches; repeatable${required}${replaces}`, collect)
    .option(
      '--window <start/end>',
      `a window it may run in, e.g. 2026-11-24T22:00/2026-11-24T23:00 (local to --tz); repeatable${required}${replaces}`,
      collect,
    )
    .option('--tz <zone>', 'IANA time zone the windows are written in (default UTC), e.g. Europe/Berlin')
    .option('--selector <key=value>', `only targets with this label; repeatable${replaces}`, collect)
    .option('--backout-plan <text>', 'how to undo it')
    .option('--link <url>', `a link (ticket, runbook); repeatable${replaces}`, collect)
    .option('--freeze-override-reason <text>', 'emergency only: why it may run inside a freeze (audited)')
    .option('--impact <impact>', `risk: what users notice while it happens: ${IMPACTS.join(', ')}`)
    .option('--done-before', 'risk: this kind of change has been done before without trouble')
    .option('--not-done-before', 'risk: it has not (the default when not said)')
    .option('--backout-tested', 'risk: the backout has been tried (in a lower environment)')
    .option('--backout-untested', 'risk: it has not (the default when not said)')
    .option('--changes-data', 'risk: it changes stored data or a schema (the default when not said)')
    .option('--no-data-change', 'risk: it changes no stored data');
}

const RISK_HELP = `
Risk questionnaire (normal and emergency changes): --impact is required. An answer not given is
taken as the riskier one, so a change is never rated lower than its requester claimed:
not done before, backout untested, changes stored data. Say --done-before, --backout-tested and
--no-data-change when they are true. A standard change takes its template's low-risk answers
unless you answer.
`;

const EDIT_RISK_HELP = `
Risk questionnaire: give only the answers that change; the others keep the change's own.
`;

/**
 * The risk answers from the flags: `base` for the answers not given (an edit keeps the change's own),
 * otherwise the pessimistic ones. Undefined when no risk flag was given and no base is needed.
 */
function riskAnswers(
  o: ContentOptions,
  command: Command,
  required: boolean,
  base: RiskAnswers | undefined,
  notes: string[],
): RiskAnswers | undefined {
  const doneBefore = eitherFlag(o.doneBefore, o.notDoneBefore, ['--done-before', '--not-done-before']);
  const backoutTested = eitherFlag(o.backoutTested, o.backoutUntested, [
    '--backout-tested',
    '--backout-untested',
  ]);
  // --no-data-change is a negation commander defaults to "true"; only an explicit one counts.
  const noDataChange = command.getOptionValueSource('dataChange') === 'cli';
  const changesData = eitherFlag(o.changesData, noDataChange, ['--changes-data', '--no-data-change']);
  const anyGiven =
    o.impact !== undefined ||
    doneBefore !== undefined ||
    backoutTested !== undefined ||
    changesData !== undefined;
  if (!anyGiven && !required) return undefined;
  if (o.impact !== undefined && !(IMPACTS as readonly string[]).includes(o.impact))
    throw new CliError(EXIT.usage, `--impact must be one of ${IMPACTS.join(', ')}.`);
  const impact = (o.impact ?? base?.userImpact) as RiskAnswers['userImpact'] | undefined;
  if (impact === undefined)
    throw new CliError(
      EXIT.usage,
      `Answer the risk questionnaire: --impact ${IMPACTS.join('|')} (what users notice while it happens).`,
    );
  const assumed = (given: boolean | undefined, kept: boolean | undefined, riskier: boolean, text: string) => {
    if (given !== undefined) return given;
    if (kept !== undefined) return kept;
    notes.push(text);
    return riskier;
  };
  return {
    userImpact: impact,
    doneBefore: assumed(doneBefore, base?.doneBefore, false, 'not done before (say --done-before if it was)'),
    backoutTested: assumed(
      backoutTested,
      base?.backoutTested,
      false,
      'backout not tested (say --backout-tested if it was)',
    ),
    changesData: assumed(
      changesData,
      base?.changesData,
      true,
      'changes stored data (say --no-data-change if it does not)',
    ),
  };
}

function windowsFrom(o: ContentOptions) {
  if (o.tz !== undefined && !o.window?.length)
    throw new CliError(EXIT.usage, '--tz says how to read --window; give the windows again with it.');
  return o.window?.map((w) => parseWindow(w, o.tz));
}

function selectorFrom(o: ContentOptions) {
  if (!o.selector?.length) return undefined;
  const parsed = parseLabels(o.selector);
  if ('problem' in parsed) throw new CliError(EXIT.usage, parsed.problem.replace('a label', 'a selector'));
  return parsed.labels;
}

function approvalsLine(c: ChangeView): string {
  return `${c.approvalsValid} of ${c.approvalsRequired} from ${c.approverRoles.join(', ')}`;
}

function windowText(w: ChangeView['windows'][number]): [string, string] {
  return [
    `${inZone(w.startAt, w.timeZone)} – ${inZone(w.endAt, w.timeZone)}`,
    `${utc(w.startAt)} – ${utc(w.endAt)}`,
  ];
}

export function showChange(c: ChangeView): string {
  const head = keyValues([
    ['change', `${c.number}  ${c.title}`],
    ['type', c.type],
    ['state', c.state],
    ['risk', `${c.risk}${c.riskBecause.length ? ` (${c.riskBecause.join('; ')})` : ''}`],
    [
      'risk answers',
      `impact ${c.riskAnswers.userImpact}, ${c.riskAnswers.doneBefore ? 'done before' : 'not done before'}, ` +
        `backout ${c.riskAnswers.backoutTested ? 'tested' : 'untested'}, ` +
        `${c.riskAnswers.changesData ? 'changes data' : 'no data change'}`,
    ],
    ['release', `${c.release.name}@${c.release.version}`],
    ['environments', c.environments.join(', ')],
    [
      'targets',
      Object.keys(c.targetSelector).length
        ? Object.entries(c.targetSelector)
            .map(([k, v]) => `${k}=${v}`)
            .join(', ')
        : 'all in those environments',
    ],
    ['approvals', approvalsLine(c)],
    ['requester', c.requester],
    ['template', c.template],
    ['freeze override', c.freezeOverrideReason],
    ['backout plan', c.backoutPlan || null],
    ['links', c.links.join(' ') || null],
    ['revision', c.revision],
    ['content digest', c.contentDigest],
    ['id', c.id],
    ['created', c.createdAt],
    ['updated', c.updatedAt],
  ]);
  const windows = renderTable(
    ['WINDOW (LOCAL)', 'WINDOW (UTC)', 'ZONE'],
    c.windows.map((w) => [...windowText(w), w.timeZone]),
  );
  const approvals = c.approvals.length
    ? renderTable(
        ['WHO', 'ROLE', 'DECISION', 'COUNTS', 'AT (UTC)', 'REASON'],
        c.approvals.map((a) => [
          a.automatic ? `${a.approver} (automatic)` : a.approver,
          a.role,
          a.decision,
          a.current ? 'current' : 'void (content changed since)',
          a.at,
          a.reason || null,
        ]),
      )
    : 'none yet\n';
  const conflicts = c.conflicts.length
    ? renderTable(
        ['CHANGE', 'TITLE', 'WHY'],
        c.conflicts.map((x) => [x.change, x.title, x.reason]),
      )
    : 'none\n';
  const history = renderTable(
    ['WHEN (UTC)', 'WHO', 'ACTION', 'FROM', 'TO', 'REASON'],
    c.history.map((h) => [h.at, h.actor, h.action, h.from, h.to, h.reason]),
  );
  const next = c.actions.length
    ? c.actions.map((a) => `gantry change ${a} ${c.number}`).join('\n')
    : `nothing: a ${c.state} change is final`;
  return (
    `${head}${c.description ? `\n${sanitize(c.description)}\n` : ''}\nWindows:\n${windows}\n` +
    `Approvals (${approvalsLine(c)}):\n${approvals}\nConflicts:\n${conflicts}\nHistory:\n${history}\n` +
    `Next:\n${next}\n`
  );
}

function changeTable(changes: ChangeView[]): string {
  return renderTable(
    [
      'CHANGE',
      'TYPE',
      'STATE',
      'RISK',
      'TITLE',
      'RELEASE',
      'ENVIRONMENTS',
      'FIRST WINDOW (UTC)',
      'APPROVALS',
    ],
    changes.map((c) => {
      const first = [...c.windows].sort((a, b) => a.startAt.localeCompare(b.startAt))[0];
      return [
        c.number,
        c.type,
        c.state,
        c.risk,
        c.title,
        `${c.release.name}@${c.release.version}`,
        c.environments.join(', '),
        first ? `${utc(first.startAt)} – ${utc(first.endAt)}` : null,
        `${c.approvalsValid}/${c.approvalsRequired}${c.conflicts.length ? ' CONFLICT' : ''}`,
      ];
    }),
  );
}

function afterAction(c: ChangeView, action: string, from: string | undefined): string {
  if (action === 'approve' && c.state === 'submitted')
    return `Approval recorded for ${c.number}: ${approvalsLine(c)}; it stays submitted until enough approve.\n`;
  const last = c.history[c.history.length - 1];
  const because = last?.reason ? ` (${last.reason})` : '';
  return `${c.number} is now ${c.state}${from && from !== c.state ? `, was ${from}` : ''}${because}. Next: ${
    c.actions.join(', ') || 'nothing (final)'
  }.\n`;
}

export function addChangeCommands(program: Command, ctx: CliContext): void {
  const change = program
    .command('change')
    .description('Change requests: raise, approve, schedule, implement and review changes');

  contentOptions(
    change
      .command('create')
      .description('Raise a change request (a draft; `gantry change submit` sends it for approval)')
      .requiredOption('--type <type>', CHANGE_TYPES.join(', '))
      .option('--template <name>', 'standard change: the pre-approved template it follows'),
    true,
  )
    .addHelpText('after', RISK_HELP)
    .action(async (o: ContentOptions & { type: string; template?: string }, command: Command) => {
      if (!(CHANGE_TYPES as readonly string[]).includes(o.type))
        throw new CliError(EXIT.usage, `--type must be one of ${CHANGE_TYPES.join(', ')}.`);
      const missing = [
        ['--title', o.title],
        ['--release', o.release],
        ['--env', o.env?.length ? o.env : undefined],
        ['--window', o.window?.length ? o.window : undefined],
      ]
        .filter(([, v]) => v === undefined)
        .map(([flag]) => flag);
      if (missing.length) throw new CliError(EXIT.usage, `A change needs ${missing.join(', ')}.`);
      const notes: string[] = [];
      const answers = riskAnswers(o, command, o.type !== 'standard', undefined, notes);
      const selector = selectorFrom(o);
      const created = await ctx.client(command).request<ChangeView>('POST', '/api/v1/changes', {
        type: o.type,
        title: o.title,
        release: o.release,
        environments: o.env,
        windows: windowsFrom(o),
        ...(o.description !== undefined ? { description: o.description } : {}),
        ...(answers ? { riskAnswers: answers } : {}),
        ...(selector ? { targetSelector: selector } : {}),
        ...(o.backoutPlan !== undefined ? { backoutPlan: o.backoutPlan } : {}),
        ...(o.link?.length ? { links: o.link } : {}),
        ...(o.template !== undefined ? { template: o.template } : {}),
        ...(o.freezeOverrideReason !== undefined ? { freezeOverrideReason: o.freezeOverrideReason } : {}),
      });
      if (notes.length) ctx.io.stderr(`note: risk answers assumed (not given): ${notes.join('; ')}.\n`);
      ctx.out(
        command,
        created,
        () =>
          `Created ${created.number} (${created.type}, ${created.risk} risk, draft). Submit it with \`gantry change submit ${created.number}\`.\n`,
      );
    });

  contentOptions(
    change
      .command('edit')
      .description(
        'Edit a change; changing what an approver judged (scope, windows, release, risk, backout) voids its approvals',
      )
      .argument('<change>', 'CHG-number or id')
      .option('--expect-revision <n>', 'refuse if the change moved on since this revision'),
    false,
  )
    .addHelpText('after', EDIT_RISK_HELP)
    .action(async (ref: string, o: ContentOptions & { expectRevision?: string }, command: Command) => {
      const client = ctx.client(command);
      const notes: string[] = [];
      const wantsRisk =
        o.impact !== undefined ||
        o.doneBefore ||
        o.notDoneBefore ||
        o.backoutTested ||
        o.backoutUntested ||
        o.changesData ||
        command.getOptionValueSource('dataChange') === 'cli';
      // The questionnaire is sent whole: answers not given now keep the change's own.
      const answers = wantsRisk
        ? riskAnswers(
            o,
            command,
            true,
            (await client.request<ChangeView>('GET', changePath(ref))).riskAnswers,
            notes,
          )
        : undefined;
      const selector = selectorFrom(o);
      const windows = windowsFrom(o);
      const body = {
        ...(o.title !== undefined ? { title: o.title } : {}),
        ...(o.description !== undefined ? { description: o.description } : {}),
        ...(o.release !== undefined ? { release: o.release } : {}),
        ...(o.env?.length ? { environments: o.env } : {}),
        ...(windows ? { windows } : {}),
        ...(answers ? { riskAnswers: answers } : {}),
        ...(selector ? { targetSelector: selector } : {}),
        ...(o.backoutPlan !== undefined ? { backoutPlan: o.backoutPlan } : {}),
        ...(o.link?.length ? { links: o.link } : {}),
        ...(o.freezeOverrideReason !== undefined ? { freezeOverrideReason: o.freezeOverrideReason } : {}),
      };
      if (Object.keys(body).length === 0)
        throw new CliError(EXIT.usage, 'Nothing to change: give a field to edit (see --help).');
      const revision = wholeNumber(o.expectRevision, '--expect-revision', 1);
      const edited = await client.request<ChangeView>('PATCH', changePath(ref), {
        ...body,
        ...(revision !== undefined ? { expectedRevision: revision } : {}),
      });
      // The server says in the history entry whether approvals were voided.
      const note = edited.history[edited.history.length - 1]?.reason;
      ctx.out(
        command,
        edited,
        () =>
          `Edited ${edited.number} (now revision ${edited.revision}); it is ${edited.state}` +
          `${note ? ` (${note}); approvals ${approvalsLine(edited)}` : ''}.\n`,
      );
    });

  for (const [action, text, reasonRequired] of ACTIONS) {
    const verb = change
      .command(action)
      .description(text)
      .argument('<change>', 'CHG-number or id')
      .option(`--reason <text>`, reasonRequired ? 'why (required)' : 'why, for the record')
      .option(
        '--expect-revision <n>',
        'refuse if the change moved on since this revision (see `change show`)',
      );
    if (action === 'approve')
      verb.option(
        '--digest <sha256:…>',
        'the content digest you reviewed (from `change show`): refused if the change differs now',
      );
    verb.action(
      async (
        ref: string,
        o: { reason?: string; expectRevision?: string; digest?: string },
        command: Command,
      ) => {
        if (reasonRequired && !o.reason?.trim())
          throw new CliError(EXIT.usage, `Say why you ${action} ${ref}: --reason "…" is required.`);
        if (o.digest !== undefined && !/^sha256:[0-9a-f]{64}$/.test(o.digest))
          throw new CliError(EXIT.usage, '--digest must read sha256: and 64 hex digits (see `change show`).');
        const revision = wholeNumber(o.expectRevision, '--expect-revision', 1);
        const client = ctx.client(command);
        const acted = await client.request<ChangeView>('POST', `${changePath(ref)}/${action}`, {
          ...(o.reason !== undefined ? { reason: o.reason } : {}),
          ...(revision !== undefined ? { expectedRevision: revision } : {}),
          ...(o.digest !== undefined ? { contentDigest: o.digest } : {}),
        });
        const from = [...acted.history].reverse().find((h) => h.action === action)?.from;
        ctx.out(command, acted, () => afterAction(acted, action, from));
      },
    );
  }

  change
    .command('show')
    .description('Show a change: state, risk and why, windows, approvals, conflicts, history, next steps')
    .argument('<change>', 'CHG-number or id')
    .action(async (ref: string, _o: unknown, command: Command) => {
      const c = await ctx.client(command).request<ChangeView>('GET', changePath(ref));
      ctx.out(command, c, () => showChange(c));
    });

  change
    .command('list')
    .description('List changes, newest first')
    .option('--state <state>', CHANGE_STATES.join(', '))
    .option('--env <name>', 'only changes touching this environment')
    .option('--type <type>', CHANGE_TYPES.join(', '))
    .action(async (o: { state?: string; env?: string; type?: string }, command: Command) => {
      if (o.state !== undefined && !(CHANGE_STATES as readonly string[]).includes(o.state))
        throw new CliError(EXIT.usage, `--state must be one of ${CHANGE_STATES.join(', ')}.`);
      if (o.type !== undefined && !(CHANGE_TYPES as readonly string[]).includes(o.type))
        throw new CliError(EXIT.usage, `--type must be one of ${CHANGE_TYPES.join(', ')}.`);
      const body = await ctx
        .client(command)
        .request<{ changes: ChangeView[] }>('GET', '/api/v1/changes', undefined, {
          state: o.state,
          environment: o.env,
          type: o.type,
        });
      ctx.out(command, body, () => changeTable(body.changes));
    });

  change
    .command('check')
    .description('May this change deploy to an environment now? ALLOWED, or every reason not (exit 3)')
    .argument('<change>', 'CHG-number or id')
    .requiredOption('--env <name>', 'the environment to deploy to')
    .option('--strategy <name>', 'the rollout strategy, e.g. rolling')
    .action(async (ref: string, o: { env: string; strategy?: string }, command: Command) => {
      const verdict = await ctx.client(command).request<GateVerdict>('POST', '/api/v1/gates/check', {
        change: ref,
        environment: o.env,
        ...(o.strategy !== undefined ? { strategy: o.strategy } : {}),
      });
      ctx.out(command, verdict, () => {
        const head = verdict.allowed
          ? `ALLOWED: ${ref} may deploy to ${o.env} now (${verdict.at}).\n`
          : `NOT ALLOWED: ${ref} may not deploy to ${o.env} now (${verdict.at}):\n${renderTable(
              ['REASON', 'MESSAGE'],
              verdict.reasons.map((r) => [r.code, r.message]),
            )}`;
        const notes = verdict.notes.length
          ? `Notes:\n${renderTable(
              ['NOTE', 'MESSAGE'],
              verdict.notes.map((r) => [r.code, r.message]),
            )}`
          : '';
        return head + notes;
      });
      if (!verdict.allowed)
        throw new CliError(
          EXIT.refused,
          `not allowed: ${verdict.reasons.map((r) => r.code).join(', ')}`,
          verdict,
          true,
        );
    });

  const template = change.command('template').description('Templates: pre-approved kinds of standard change');
  template
    .command('create')
    .description('Create a template for standard changes (change authority)')
    .argument('<name>', 'e.g. web-patch')
    .requiredOption('--component <name>', 'a component it covers; repeatable', collect)
    .requiredOption('--env <name>', 'an environment it covers; repeatable', collect)
    .option('--strategy <name>', 'a rollout strategy it allows (default any); repeatable', collect)
    .option('--description <text>', 'what it is for')
    .action(
      async (
        name: string,
        o: { component: string[]; env: string[]; strategy?: string[]; description?: string },
        command: Command,
      ) => {
        const t = await ctx.client(command).request<TemplateView>('POST', '/api/v1/change-templates', {
          name,
          components: o.component,
          environments: o.env,
          ...(o.strategy?.length ? { strategies: o.strategy } : {}),
          ...(o.description !== undefined ? { description: o.description } : {}),
        });
        ctx.out(
          command,
          t,
          () =>
            `Created template ${t.name}: ${t.components.join(', ')} in ${t.environments.join(', ')}. ` +
            `Raise changes from it with \`gantry change create --type standard --template ${t.name} …\`.\n`,
        );
      },
    );
  template
    .command('list')
    .description('List templates')
    .action(async (_o: unknown, command: Command) => {
      const body = await ctx
        .client(command)
        .request<{ templates: TemplateView[] }>('GET', '/api/v1/change-templates');
      ctx.out(command, body, () =>
        renderTable(
          ['NAME', 'COMPONENTS', 'ENVIRONMENTS', 'STRATEGIES', 'STATE', 'DESCRIPTION'],
          body.templates.map((t) => [
            t.name,
            t.components.join(', '),
            t.environments.join(', '),
            t.strategies.join(', ') || 'any',
            t.retiredAt ? `retired ${t.retiredAt}` : 'active',
            t.description || null,
          ]),
        ),
      );
    });
  template
    .command('retire')
    .description('Retire a template: no new standard changes from it (change authority)')
    .argument('<name>', 'template name')
    .action(async (name: string, _o: unknown, command: Command) => {
      const t = await ctx
        .client(command)
        .request<TemplateView>('DELETE', `/api/v1/change-templates/${encodeURIComponent(name)}`);
      ctx.out(command, t, () => `Retired template ${t.name}.\n`);
    });
}
