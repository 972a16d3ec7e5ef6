/** gantry env … | suppliers … | targets … | agents enroll-token */
import type { Static } from '@sinclair/typebox';
import type { Command } from 'commander';
import { parseLabels } from '../../core/inventory.ts';
import type { PolicyView as PolicyViewSchema } from '../../protocol/inventory.ts';
import type { CliContext } from '../context.ts';
import { CliError, EXIT } from '../exit-codes.ts';
import { commaList, eitherFlag } from '../option-parsers.ts';
import { keyValues, renderTable } from '../output.ts';

interface EnvironmentView {
  name: string;
  position: number;
  policy: PolicyView;
  standards: Record<string, unknown>;
  createdAt: string;
}

type PolicyView = Static<typeof PolicyViewSchema>;

const APPROVER_ROLES = ['change-authority', 'emergency-authority', 'admin'] as const;

function policyPairs(p: PolicyView): Array<[string, string | number]> {
  return [
    ['change required', p.changeRequired ? 'yes: deployments only inside an approved change' : 'no'],
    ['approvals', `${p.approvals} (high risk: ${p.highRiskApprovals}) from ${p.approverRole}`],
    ['require signature', p.requireSignature ? 'yes' : 'no'],
    ['require evidence', p.requireEvidence ? 'yes: passing evidence before approval' : 'no'],
    ['auto-approve low risk', p.autoApproveLowRisk ? 'yes' : 'no'],
    ['strategies', p.strategies.length ? p.strategies.join(', ') : 'any'],
    ['flags under change', p.flagsUnderChange ? 'yes' : 'no'],
    ['bookable', p.bookable ? 'yes' : 'no'],
  ];
}

interface TargetView {
  id: string;
  name: string;
  environment: string;
  labels: Record<string, string>;
  state: string;
  lastSeenAt: string | null;
  facts: Record<string, unknown>;
  standardsProblems: string[];
  supplierId: string | null;
}

interface LedgerPositionView {
  target: string;
  environment: string;
  component: string;
  version: string;
  previousVersion: string | null;
  source: string;
  reference: string | null;
  recordedBy: string;
  at: string;
  drift: { reportedVersion: string; since: string } | null;
}

interface StepView {
  id: string;
  target: string;
  kind: string;
  component: string;
  version: string | null;
  state: string;
  message: string | null;
  createdAt: string;
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

function wholeNumber(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) throw new CliError(EXIT.usage, `${flag} must be a whole number.`);
  return n;
}

function standardsFrom(o: { os?: string[]; arch?: string[]; minFreeDisk?: string; minNode?: string }) {
  const standards: Record<string, unknown> = {};
  if (o.os?.length) standards.os = o.os;
  if (o.arch?.length) standards.arch = o.arch;
  if (o.minFreeDisk !== undefined) standards.minFreeDiskBytes = wholeNumber(o.minFreeDisk, '--min-free-disk');
  if (o.minNode !== undefined) standards.minNodeMajor = wholeNumber(o.minNode, '--min-node');
  return standards;
}

function showTarget(t: TargetView): string {
  return keyValues([
    ['name', t.name],
    ['environment', t.environment],
    ['state', t.state],
    ['last seen', t.lastSeenAt],
    [
      'labels',
      Object.entries(t.labels)
        .map(([k, v]) => `${k}=${v}`)
        .join(', ') || null,
    ],
    [
      'facts',
      Object.entries(t.facts)
        .map(([k, v]) => `${k}=${v}`)
        .join(', ') || null,
    ],
    ['platform standards', t.standardsProblems.length ? `NOT MET: ${t.standardsProblems.join('; ')}` : 'met'],
    ['id', t.id],
  ]);
}

export function addInventoryCommands(program: Command, ctx: CliContext): void {
  const env = program
    .command('env')
    .description('Environments: their order, platform standards and change policy');
  env
    .command('list')
    .description('List environments in order')
    .action(async (_o: unknown, command: Command) => {
      const body = await ctx
        .client(command)
        .request<{ environments: EnvironmentView[] }>('GET', '/api/v1/environments');
      ctx.out(command, body, () =>
        renderTable(
          ['NAME', 'ORDER', 'CHANGES', 'STANDARDS'],
          body.environments.map((e) => [
            e.name,
            e.position,
            e.policy.changeRequired ? `required, ${e.policy.approvals} approval(s)` : 'not required',
            JSON.stringify(e.standards),
          ]),
        ),
      );
    });
  const standardsOptions = (c: Command) =>
    c
      .option('--os <os>', 'allowed operating system (repeatable), e.g. linux', collect)
      .option('--arch <arch>', 'allowed architecture (repeatable), e.g. x64', collect)
      .option('--min-free-disk <bytes>', 'least free disk a target must have')
      .option('--min-node <major>', 'lowest Node.js major version');
  standardsOptions(
    env
      .command('create')
      .description('Create an environment (admin)')
      .argument('<name>', 'e.g. staging')
      .option('--position <n>', 'place in the order (default: after the last)'),
  ).action(async (name: string, o: Record<string, string & string[]>, command: Command) => {
    const standards = standardsFrom(o);
    const created = await ctx.client(command).request<EnvironmentView>('POST', '/api/v1/environments', {
      name,
      ...(o.position !== undefined ? { position: wholeNumber(o.position, '--position') } : {}),
      ...(Object.keys(standards).length ? { standards } : {}),
    });
    ctx.out(command, created, () => `Created environment ${created.name} (order ${created.position}).\n`);
  });
  standardsOptions(
    env
      .command('update')
      .description('Change an environment’s order or platform standards (admin)')
      .argument('<name>', 'environment')
      .option('--position <n>', 'place in the order'),
  ).action(async (name: string, o: Record<string, string & string[]>, command: Command) => {
    const standards = standardsFrom(o);
    const change = {
      ...(o.position !== undefined ? { position: wholeNumber(o.position, '--position') } : {}),
      ...(Object.keys(standards).length ? { standards } : {}),
    };
    if (Object.keys(change).length === 0)
      throw new CliError(EXIT.usage, 'Nothing to change: give --position or a standard.');
    const updated = await ctx
      .client(command)
      .request<EnvironmentView>('PATCH', `/api/v1/environments/${encodeURIComponent(name)}`, change);
    ctx.out(
      command,
      updated,
      () =>
        `Updated ${updated.name}: order ${updated.position}, standards ${JSON.stringify(updated.standards)}.\n`,
    );
  });
  env
    .command('show')
    .description('Show an environment')
    .argument('<name>', 'environment')
    .action(async (name: string, _o: unknown, command: Command) => {
      const e = await ctx
        .client(command)
        .request<EnvironmentView>('GET', `/api/v1/environments/${encodeURIComponent(name)}`);
      ctx.out(
        command,
        e,
        () =>
          `${keyValues([
            ['name', e.name],
            ['order', e.position],
            ['standards', JSON.stringify(e.standards)],
            ['created', e.createdAt],
          ])}\nPolicy:\n${keyValues(policyPairs(e.policy))}`,
      );
    });
  env
    .command('policy')
    .description(
      'Show an environment’s change policy, or change it (admin): fields not given keep their value',
    )
    .argument('<name>', 'environment')
    .option('--change-required', 'deployments run only inside an approved change')
    .option('--no-change-required', 'deployments need no change')
    .option('--approvals <n>', 'approvals a normal change needs (1–10)')
    .option('--high-risk-approvals <n>', 'approvals a high-risk change needs (1–10)')
    .option('--approver-role <role>', `whose approvals count: ${APPROVER_ROLES.join(', ')}`)
    .option('--require-signature', 'every artifact must be signed by a trusted key')
    .option('--no-require-signature', 'signatures are not required')
    .option('--require-evidence', 'a change is approved only when its release’s evidence all passed')
    .option('--no-require-evidence', 'evidence is not required')
    .option('--auto-approve-low-risk', 'a low-risk normal change with passing evidence is approved at submit')
    .option('--no-auto-approve-low-risk', 'every normal change waits for people')
    .option('--strategies <list>', 'allowed rollout strategies, comma-separated; "" allows any')
    .option('--flags-under-change', 'flag changes need an approved change covering the environment')
    .option('--no-flags-under-change', 'flags change freely')
    .option('--bookable', 'teams may book it (test cycles)')
    .option('--not-bookable', 'it cannot be booked (production-like)')
    .action(
      async (
        name: string,
        o: {
          changeRequired?: boolean;
          approvals?: string;
          highRiskApprovals?: string;
          approverRole?: string;
          requireSignature?: boolean;
          requireEvidence?: boolean;
          autoApproveLowRisk?: boolean;
          strategies?: string;
          flagsUnderChange?: boolean;
          bookable?: boolean;
          notBookable?: boolean;
        },
        command: Command,
      ) => {
        const count = (text: string | undefined, flag: string) => {
          const n = wholeNumber(text, flag);
          if (n !== undefined && (n < 1 || n > 10))
            throw new CliError(EXIT.usage, `${flag} must be 1 to 10.`);
          return n;
        };
        if (o.approverRole !== undefined && !(APPROVER_ROLES as readonly string[]).includes(o.approverRole))
          throw new CliError(EXIT.usage, `--approver-role must be one of ${APPROVER_ROLES.join(', ')}.`);
        const policy: Partial<PolicyView> = {
          ...(o.changeRequired !== undefined ? { changeRequired: o.changeRequired } : {}),
          ...(o.approvals !== undefined ? { approvals: count(o.approvals, '--approvals') } : {}),
          ...(o.highRiskApprovals !== undefined
            ? { highRiskApprovals: count(o.highRiskApprovals, '--high-risk-approvals') }
            : {}),
          ...(o.approverRole !== undefined
            ? { approverRole: o.approverRole as PolicyView['approverRole'] }
            : {}),
          ...(o.requireSignature !== undefined ? { requireSignature: o.requireSignature } : {}),
          ...(o.requireEvidence !== undefined ? { requireEvidence: o.requireEvidence } : {}),
          ...(o.autoApproveLowRisk !== undefined ? { autoApproveLowRisk: o.autoApproveLowRisk } : {}),
          ...(o.strategies !== undefined ? { strategies: commaList(o.strategies) } : {}),
          ...(o.flagsUnderChange !== undefined ? { flagsUnderChange: o.flagsUnderChange } : {}),
        };
        const bookable = eitherFlag(o.bookable, o.notBookable, ['--bookable', '--not-bookable']);
        if (bookable !== undefined) policy.bookable = bookable;
        const client = ctx.client(command);
        const path = `/api/v1/environments/${encodeURIComponent(name)}`;
        const changed = Object.keys(policy).length > 0;
        const e = changed
          ? await client.request<EnvironmentView>('PATCH', path, { policy })
          : await client.request<EnvironmentView>('GET', path);
        ctx.out(
          command,
          e,
          () =>
            `${changed ? `Updated the policy of ${e.name}:` : `Policy of ${e.name}:`}\n${keyValues(policyPairs(e.policy))}`,
        );
      },
    );

  const suppliers = program
    .command('suppliers')
    .description('Suppliers: organisations whose people act only in their own scope');
  suppliers
    .command('list')
    .description('List suppliers (admin)')
    .action(async (_o: unknown, command: Command) => {
      const body = await ctx
        .client(command)
        .request<{ suppliers: Array<{ id: string; name: string }> }>('GET', '/api/v1/suppliers');
      ctx.out(command, body, () =>
        renderTable(
          ['NAME', 'ID'],
          body.suppliers.map((s) => [s.name, s.id]),
        ),
      );
    });
  suppliers
    .command('create')
    .description(
      'Create a supplier (admin); then `gantry users create NAME --role supplier --supplier SUPPLIER`',
    )
    .argument('<name>', 'e.g. storage-vendor')
    .action(async (name: string, _o: unknown, command: Command) => {
      const s = await ctx
        .client(command)
        .request<{ id: string; name: string }>('POST', '/api/v1/suppliers', { name });
      ctx.out(command, s, () => `Created supplier ${s.name}.\n`);
    });

  const targets = program.command('targets').description('Targets: the machines and devices agents run on');
  targets
    .command('list')
    .description('List the targets you may see')
    .option('--env <name>', 'only this environment')
    .action(async (o: { env?: string }, command: Command) => {
      const body = await ctx
        .client(command)
        .request<{ targets: TargetView[] }>('GET', '/api/v1/targets', undefined, { environment: o.env });
      ctx.out(command, body, () =>
        renderTable(
          ['NAME', 'ENVIRONMENT', 'STATE', 'LABELS', 'STANDARDS', 'LAST SEEN'],
          body.targets.map((t) => [
            t.name,
            t.environment,
            t.state,
            Object.entries(t.labels)
              .map(([k, v]) => `${k}=${v}`)
              .join(','),
            t.standardsProblems.length ? 'not met' : 'met',
            t.lastSeenAt,
          ]),
        ),
      );
    });
  targets
    .command('show')
    .description('Show a target: state, labels, facts, platform standards')
    .argument('<target>', 'name or id')
    .action(async (ref: string, _o: unknown, command: Command) => {
      const t = await ctx
        .client(command)
        .request<TargetView>('GET', `/api/v1/targets/${encodeURIComponent(ref)}`);
      ctx.out(command, t, () => showTarget(t));
    });
  for (const [verb, path, text] of [
    ['retire', 'retire', 'Retire a target; its agent can no longer connect (admin)'],
    [
      'revoke-agent',
      'revoke-agent',
      'Revoke a target’s agent credential; the agent must enroll again (admin)',
    ],
  ] as const) {
    targets
      .command(verb)
      .description(text)
      .argument('<target>', 'name or id')
      .action(async (ref: string, _o: unknown, command: Command) => {
        const t = await ctx
          .client(command)
          .request<TargetView>('POST', `/api/v1/targets/${encodeURIComponent(ref)}/${path}`);
        ctx.out(command, t, () => showTarget(t));
      });
  }

  const agents = program.command('agents').description('Agent enrollment');
  agents
    .command('enroll-token')
    .description('Make a one-time token an agent uses to join an environment (admin)')
    .requiredOption('--env <name>', 'the environment the agent’s target joins')
    .option('--label <key=value>', 'a label for the target (repeatable), e.g. region=eu', collect)
    .option('--supplier <name>', 'the supplier that manages the target')
    .option('--expires-in-hours <n>', 'how long the token is valid (default 24)')
    .action(
      async (
        o: { env: string; label?: string[]; supplier?: string; expiresInHours?: string },
        command: Command,
      ) => {
        const parsed = parseLabels(o.label ?? []);
        if ('problem' in parsed) throw new CliError(EXIT.usage, parsed.problem);
        const created = await ctx
          .client(command)
          .request<{ secret: string; expiresAt: string }>('POST', '/api/v1/enrollment-tokens', {
            environment: o.env,
            labels: parsed.labels,
            ...(o.supplier ? { supplier: o.supplier } : {}),
            ...(o.expiresInHours !== undefined
              ? { expiresInHours: wholeNumber(o.expiresInHours, '--expires-in-hours') }
              : {}),
          });
        ctx.out(
          command,
          created,
          () =>
            `Enrollment token for ${o.env} (one use, expires ${created.expiresAt}):\n${created.secret}\n` +
            `On the target: GANTRY_ENROLL_TOKEN=${created.secret} gantry agent --server ${ctx.client(command).baseUrl} --data-dir /var/lib/gantry-agent\n`,
        );
      },
    );

  const ledger = program
    .command('ledger')
    .description('What runs where, since when, and what put it there')
    .option('--env <name>', 'only this environment')
    .option('--component <name>', 'only this component')
    .option('--target <name>', 'only this target')
    .action(async (o: { env?: string; component?: string; target?: string }, command: Command) => {
      const body = await ctx
        .client(command)
        .request<{ positions: LedgerPositionView[] }>('GET', '/api/v1/ledger', undefined, {
          environment: o.env,
          component: o.component,
          target: o.target,
        });
      ctx.out(command, body, () =>
        renderTable(
          ['ENVIRONMENT', 'TARGET', 'COMPONENT', 'VERSION', 'PREVIOUS', 'SINCE', 'BY', 'DRIFT'],
          body.positions.map((p) => [
            p.environment,
            p.target,
            p.component,
            p.version,
            p.previousVersion,
            p.at,
            `${p.source}${p.reference ? ` ${p.reference}` : ''}`,
            p.drift ? `runs ${p.drift.reportedVersion} since ${p.drift.since}` : null,
          ]),
        ),
      );
    });
  ledger
    .command('history')
    .description('Every change on one target, oldest first')
    .argument('<target>', 'name or id')
    .option('--component <name>', 'only this component')
    .action(async (ref: string, o: { component?: string }, command: Command) => {
      const body = await ctx
        .client(command)
        .request<{ entries: LedgerPositionView[] }>(
          'GET',
          `/api/v1/targets/${encodeURIComponent(ref)}/ledger`,
          undefined,
          {
            component: o.component,
          },
        );
      ctx.out(command, body, () =>
        renderTable(
          ['WHEN (UTC)', 'COMPONENT', 'VERSION', 'PREVIOUS', 'SOURCE', 'REFERENCE', 'RECORDED BY'],
          body.entries.map((e) => [
            e.at,
            e.component,
            e.version,
            e.previousVersion,
            e.source,
            e.reference,
            e.recordedBy,
          ]),
        ),
      );
    });
  ledger
    .command('record')
    .description(
      'Record a change made outside Gantry (e.g. a supplier’s firmware update) so the ledger stays true',
    )
    .requiredOption('--target <name>', 'the target that changed')
    .requiredOption('--component <name>', 'what changed, e.g. san-firmware')
    .requiredOption('--version <version>', 'the version it runs now')
    .requiredOption('--reference <ref>', 'the change or supplier reference, e.g. CHG-42')
    .option('--digest <sha256:…>', 'the digest of what was installed, when known')
    .option('--note <text>', 'a note')
    .action(
      async (
        o: {
          target: string;
          component: string;
          version: string;
          reference: string;
          digest?: string;
          note?: string;
        },
        command: Command,
      ) => {
        const entry = await ctx
          .client(command)
          .request<LedgerPositionView>('POST', '/api/v1/ledger/external', {
            target: o.target,
            component: o.component,
            version: o.version,
            reference: o.reference,
            ...(o.digest ? { digest: o.digest } : {}),
            ...(o.note ? { note: o.note } : {}),
          });
        ctx.out(
          command,
          entry,
          () =>
            `Recorded ${entry.component} ${entry.version} on ${entry.target} (was ${entry.previousVersion ?? 'nothing'}).\n`,
        );
      },
    );

  const steps = program
    .command('steps')
    .description('Steps for one target’s agent: install, activate, rollback, remove');
  steps
    .command('queue')
    .description('Queue a step for a target’s agent (admin, deployer)')
    .argument('<target>', 'name or id')
    .requiredOption('--kind <kind>', 'install, activate, rollback or remove')
    .requiredOption('--component <name>', 'component')
    .option('--version <version>', 'version (not for rollback)')
    .action(
      async (ref: string, o: { kind: string; component: string; version?: string }, command: Command) => {
        const step = await ctx
          .client(command)
          .request<StepView>('POST', `/api/v1/targets/${encodeURIComponent(ref)}/steps`, {
            kind: o.kind,
            component: o.component,
            ...(o.version ? { version: o.version } : {}),
          });
        ctx.out(
          command,
          step,
          () =>
            `Queued ${step.kind} ${step.component} ${step.version ?? ''} on ${step.target} (step ${step.id}).\n`,
        );
      },
    );
  targets
    .command('logs')
    .description(
      'The last lines of a component’s log on a target: its supervised service’s output and the agent’s notes',
    )
    .argument('<target>', 'name or id')
    .requiredOption('--component <name>', 'component')
    .option('--wait <seconds>', 'how long to wait for the agent', '30')
    .action(async (ref: string, o: { component: string; wait: string }, command: Command) => {
      const client = ctx.client(command);
      const target = encodeURIComponent(ref);
      const step = await client.request<StepView>('POST', `/api/v1/targets/${target}/steps`, {
        kind: 'logs',
        component: o.component,
      });
      const until = Date.now() + Number(o.wait) * 1000;
      for (;;) {
        const { steps: all } = await client.request<{ steps: StepView[] }>(
          'GET',
          `/api/v1/targets/${target}/steps`,
        );
        const done = all.find((x) => x.id === step.id);
        if (done && (done.state === 'succeeded' || done.state === 'failed')) {
          ctx.out(command, done, () => (done.message ?? '').replace(/\n?$/, '\n'));
          if (done.state === 'failed')
            throw new CliError(EXIT.refused, done.message ?? 'the agent could not read the log');
          return;
        }
        if (Date.now() > until)
          throw new CliError(
            EXIT.unreachable,
            `The agent of ${ref} did not answer within ${o.wait} s (is it online? see gantry targets show ${ref}).`,
          );
        await new Promise((r) => setTimeout(r, 500));
      }
    });
  steps
    .command('list')
    .description('A target’s steps, oldest first, with their outcome')
    .argument('<target>', 'name or id')
    .action(async (ref: string, _o: unknown, command: Command) => {
      const body = await ctx
        .client(command)
        .request<{ steps: StepView[] }>('GET', `/api/v1/targets/${encodeURIComponent(ref)}/steps`);
      ctx.out(command, body, () =>
        renderTable(
          ['WHEN (UTC)', 'KIND', 'COMPONENT', 'VERSION', 'STATE', 'MESSAGE', 'ID'],
          body.steps.map((x) => [x.createdAt, x.kind, x.component, x.version, x.state, x.message, x.id]),
        ),
      );
    });
}
