/** gantry release create | list | show | evidence | record | make-available | lifecycle … | subscribe … */
import { readFile } from 'node:fs/promises';
import type { Static } from '@sinclair/typebox';
import type { Command } from 'commander';
import type { ChangeView } from '../../protocol/changes.ts';
import type { LifecycleSchema, ReleaseView, SubscriptionSchema } from '../../protocol/releases.ts';
import type { ApiClient } from '../api-client.ts';
import type { CliContext } from '../context.ts';
import { CliError, EXIT } from '../exit-codes.ts';
import { collect, commaList, eitherFlag } from '../option-parsers.ts';
import { keyValues, renderTable } from '../output.ts';

type LifecycleView = Static<typeof LifecycleSchema>;
type SubscriptionView = Static<typeof SubscriptionSchema>;

const EVIDENCE_KINDS = ['test-report', 'scan', 'other'] as const;
const path = (ref: string) => `/api/v1/releases/${encodeURIComponent(ref)}`;

/** `web=2.4.0` (by version) or `api@sha256:…` / `api=sha256:…` (by digest). */
export function parseComponent(text: string): { component: string; version?: string; digest?: string } {
  const digestAt = text.indexOf('@sha256:');
  if (digestAt > 0) return { component: text.slice(0, digestAt), digest: text.slice(digestAt + 1) };
  const eq = text.indexOf('=');
  if (eq > 0) {
    const component = text.slice(0, eq);
    const value = text.slice(eq + 1);
    if (value.startsWith('sha256:')) return { component, digest: value };
    if (value !== '') return { component, version: value };
  }
  throw new CliError(
    EXIT.usage,
    `--component '${text}' must read COMPONENT=VERSION (web=2.4.0) or COMPONENT@sha256:DIGEST.`,
  );
}

function splitRef(text: string): { name: string; version: string } {
  const at = text.lastIndexOf('@');
  if (at <= 0 || at === text.length - 1)
    throw new CliError(EXIT.usage, `'${text}' must read NAME@VERSION, e.g. shop@2.4.0.`);
  return { name: text.slice(0, at), version: text.slice(at + 1) };
}

/** A change's id from its id or CHG-number (the outcome record takes the id). */
async function changeId(client: ApiClient, ref: string): Promise<string> {
  return (await client.request<ChangeView>('GET', `/api/v1/changes/${encodeURIComponent(ref)}`)).id;
}

function releaseTable(releases: ReleaseView[]): string {
  return renderTable(
    ['RELEASE', 'COMPONENTS', 'EVIDENCE', 'SUCCEEDED IN', 'AVAILABLE IN', 'LOCKED', 'CREATED'],
    releases.map((r) => [
      `${r.name}@${r.version}`,
      r.components.map((c) => `${c.component} ${c.version}`).join(', '),
      r.evidenceSummary,
      [...new Set(r.lifecycle.filter((o) => o.outcome === 'succeeded').map((o) => o.environment))].join(
        ', ',
      ) || null,
      r.availableIn.map((a) => a.environment).join(', ') || null,
      r.lockedAt ? 'yes' : 'no',
      r.createdAt,
    ]),
  );
}

export function showRelease(r: ReleaseView, lifecycle?: LifecycleView): string {
  const head = keyValues([
    ['release', `${r.name}@${r.version}`],
    ['id', r.id],
    ['created', `${r.createdAt} by ${r.createdBy}`],
    ['locked', r.lockedAt ? `${r.lockedAt} (a submitted change names it; it cannot change)` : 'no'],
    ['flags', r.flags.join(', ') || null],
    ['evidence', r.evidenceSummary],
  ]);
  const components = renderTable(
    ['COMPONENT', 'VERSION', 'DIGEST'],
    r.components.map((c) => [c.component, c.version, c.digest]),
  );
  const evidence = r.evidence.length
    ? renderTable(
        ['RESULT', 'NAME', 'KIND', 'SUMMARY', 'DIGEST', 'ADDED'],
        r.evidence.map((e) => [
          e.passed ? 'PASS' : 'FAIL',
          e.name,
          e.kind,
          e.summary || null,
          `${e.digest.slice(0, 19)}…`,
          `${e.addedAt} by ${e.addedBy}`,
        ]),
      )
    : 'none\n';
  // Per environment: the lifecycle's phases first, in order, then any other environment with a record.
  const environments = [...new Set([...(lifecycle?.phases ?? []), ...r.lifecycle.map((o) => o.environment)])];
  const record = environments.length
    ? renderTable(
        ['ENVIRONMENT', 'PHASE', 'LAST OUTCOME', 'RUNS', 'LAST AT', 'CHANGE', 'SOURCE', 'NOTE'],
        environments.map((env) => {
          const runs = r.lifecycle.filter((o) => o.environment === env);
          const last = runs[runs.length - 1];
          const phase = lifecycle?.phases.indexOf(env) ?? -1;
          return [
            env,
            phase >= 0 ? `${phase + 1} of ${lifecycle?.phases.length}` : null,
            last ? last.outcome : 'not yet',
            runs.length,
            last?.at,
            last?.changeId,
            last?.source,
            last?.note,
          ];
        }),
      )
    : 'nothing recorded yet\n';
  const available = r.availableIn.length
    ? renderTable(
        ['ENVIRONMENT', 'SINCE', 'BY'],
        r.availableIn.map((a) => [a.environment, a.at, a.by]),
      )
    : 'not made available anywhere yet\n';
  return (
    `${head}\nComponents:\n${components}\nEvidence:\n${evidence}\n` +
    `Lifecycle${lifecycle ? ` (${lifecycle.name}: ${lifecycle.phases.join(' → ')})` : ''}:\n${record}\n` +
    `Available in:\n${available}${r.notes ? `\nNotes:\n${r.notes}\n` : ''}`
  );
}

export function addReleaseCommands(program: Command, ctx: CliContext): void {
  const release = program
    .command('release')
    .description('Releases: named, versioned sets of artifacts, with evidence, lifecycle record and notes');

  release
    .command('create')
    .description('Make a release from artifacts in the media library')
    .argument('<release>', 'NAME@VERSION, e.g. shop@2.4.0')
    .requiredOption(
      '--component <spec>',
      'a component by version (web=2.4.0) or by digest (api@sha256:…); repeatable',
      collect,
    )
    .option('--notes <text>', 'release notes')
    .option('--notes-file <file>', 'read the release notes from a file')
    .option(
      '--flag <key>',
      'a feature flag this release switches on when made available; repeatable',
      collect,
    )
    .action(
      async (
        ref: string,
        o: { component: string[]; notes?: string; notesFile?: string; flag?: string[] },
        command: Command,
      ) => {
        const { name, version } = splitRef(ref);
        if (o.notes !== undefined && o.notesFile !== undefined)
          throw new CliError(EXIT.usage, 'Give --notes or --notes-file, not both.');
        const notes =
          o.notesFile !== undefined
            ? await readFile(o.notesFile, 'utf8').catch(() => {
                throw new CliError(EXIT.usage, `Cannot read ${o.notesFile}.`);
              })
            : o.notes;
        const created = await ctx.client(command).request<ReleaseView>('POST', '/api/v1/releases', {
          name,
          version,
          components: o.component.map(parseComponent),
          ...(notes !== undefined ? { notes } : {}),
          ...(o.flag?.length ? { flags: o.flag } : {}),
        });
        ctx.out(
          command,
          created,
          () => `Created release ${created.name}@${created.version}.\n${showRelease(created)}`,
        );
      },
    );

  release
    .command('list')
    .description('List releases, newest first')
    .option('--name <name>', 'only this release line')
    .action(async (o: { name?: string }, command: Command) => {
      const body = await ctx
        .client(command)
        .request<{ releases: ReleaseView[] }>('GET', '/api/v1/releases', undefined, { name: o.name });
      ctx.out(command, body, () => releaseTable(body.releases));
    });

  release
    .command('show')
    .description(
      'Show a release: components, evidence (pass/fail), lifecycle record per environment, availability',
    )
    .argument('<release>', 'id or NAME@VERSION')
    .action(async (ref: string, _o: unknown, command: Command) => {
      const client = ctx.client(command);
      const r = await client.request<ReleaseView>('GET', path(ref));
      // The lifecycle's phases order the human view; --json prints the release as the API gives it.
      const lifecycles = ctx.json(command)
        ? []
        : (await client.request<{ lifecycles: LifecycleView[] }>('GET', '/api/v1/lifecycles')).lifecycles;
      ctx.out(command, r, () =>
        showRelease(
          r,
          lifecycles.find((l) => l.releaseName === r.name),
        ),
      );
    });

  release
    .command('evidence')
    .description('Attach evidence (a document already in the media library) with its verdict')
    .argument('<release>', 'id or NAME@VERSION')
    .requiredOption('--name <name>', 'what it is, e.g. "integration tests"')
    .requiredOption('--kind <kind>', EVIDENCE_KINDS.join(', '))
    .requiredOption('--digest <sha256:…>', 'the document’s digest (gantry artifact push … --kind document)')
    .option('--passed', 'the evidence says the release is good')
    .option('--failed', 'the evidence says the release is not good')
    .option('--summary <text>', 'a short summary')
    .action(
      async (
        ref: string,
        o: {
          name: string;
          kind: string;
          digest: string;
          passed?: boolean;
          failed?: boolean;
          summary?: string;
        },
        command: Command,
      ) => {
        if (!(EVIDENCE_KINDS as readonly string[]).includes(o.kind))
          throw new CliError(EXIT.usage, `--kind must be one of ${EVIDENCE_KINDS.join(', ')}.`);
        const passed = eitherFlag(o.passed, o.failed, ['--passed', '--failed']);
        if (passed === undefined) throw new CliError(EXIT.usage, 'Say the verdict: --passed or --failed.');
        const r = await ctx.client(command).request<ReleaseView>('POST', `${path(ref)}/evidence`, {
          name: o.name,
          kind: o.kind,
          digest: o.digest,
          passed,
          ...(o.summary !== undefined ? { summary: o.summary } : {}),
        });
        ctx.out(
          command,
          r,
          () =>
            `Added ${passed ? 'passing' : 'failing'} evidence '${o.name}' to ${r.name}@${r.version}; its evidence is now ${r.evidenceSummary}.\n`,
        );
      },
    );

  release
    .command('record')
    .description('Record how the release fared in an environment when it was deployed outside Gantry')
    .argument('<release>', 'id or NAME@VERSION')
    .requiredOption('--env <name>', 'environment')
    .option('--succeeded', 'it succeeded there')
    .option('--failed', 'it failed there')
    .option('--change <ref>', 'the change it ran under (id or CHG-number)')
    .option('--note <text>', 'a note')
    .action(
      async (
        ref: string,
        o: { env: string; succeeded?: boolean; failed?: boolean; change?: string; note?: string },
        command: Command,
      ) => {
        const ok = eitherFlag(o.succeeded, o.failed, ['--succeeded', '--failed']);
        if (ok === undefined) throw new CliError(EXIT.usage, 'Say how it went: --succeeded or --failed.');
        const client = ctx.client(command);
        const r = await client.request<ReleaseView>('POST', `${path(ref)}/outcomes`, {
          environment: o.env,
          outcome: ok ? 'succeeded' : 'failed',
          ...(o.change !== undefined ? { changeId: await changeId(client, o.change) } : {}),
          ...(o.note !== undefined ? { note: o.note } : {}),
        });
        ctx.out(
          command,
          r,
          () => `Recorded: ${r.name}@${r.version} ${ok ? 'succeeded' : 'failed'} in ${o.env}.\n`,
        );
      },
    );

  release
    .command('make-available')
    .description(
      'Release without deploying: switch the release’s flags on in an environment and tell subscribers',
    )
    .argument('<release>', 'id or NAME@VERSION')
    .requiredOption('--env <name>', 'environment')
    .option('--change <ref>', 'the approved change, where the environment keeps flags under change control')
    .action(async (ref: string, o: { env: string; change?: string }, command: Command) => {
      const r = await ctx.client(command).request<ReleaseView>('POST', `${path(ref)}/make-available`, {
        environment: o.env,
        ...(o.change !== undefined ? { change: o.change } : {}),
      });
      ctx.out(
        command,
        r,
        () =>
          `${r.name}@${r.version} is available in ${o.env}${r.flags.length ? `; flags on: ${r.flags.join(', ')}` : ''}.\n`,
      );
    });

  const lifecycle = release
    .command('lifecycle')
    .description('Lifecycles: the environments a release line must succeed in, in order');
  lifecycle
    .command('set')
    .description('Create or replace a lifecycle (admin)')
    .argument('<name>', 'lifecycle name, e.g. shop-path')
    .requiredOption('--release-name <name>', 'the release line it governs, e.g. shop')
    .requiredOption('--phases <envs>', 'environments in order, comma-separated: test,staging,production')
    .action(async (name: string, o: { releaseName: string; phases: string }, command: Command) => {
      const phases = commaList(o.phases);
      if (phases.length === 0) throw new CliError(EXIT.usage, '--phases needs at least one environment.');
      const l = await ctx
        .client(command)
        .request<LifecycleView>('PUT', `/api/v1/lifecycles/${encodeURIComponent(name)}`, {
          releaseName: o.releaseName,
          phases,
        });
      ctx.out(
        command,
        l,
        () => `Lifecycle ${l.name}: ${l.releaseName} releases go ${l.phases.join(' → ')}.\n`,
      );
    });
  lifecycle
    .command('list')
    .description('List lifecycles')
    .action(async (_o: unknown, command: Command) => {
      const body = await ctx
        .client(command)
        .request<{ lifecycles: LifecycleView[] }>('GET', '/api/v1/lifecycles');
      ctx.out(command, body, () =>
        renderTable(
          ['NAME', 'RELEASE LINE', 'PHASES', 'UPDATED'],
          body.lifecycles.map((l) => [l.name, l.releaseName, l.phases.join(' → '), l.updatedAt]),
        ),
      );
    });

  release
    .command('subscribe')
    .description('Send release notes to a webhook when a release is made available (admin)')
    .argument('<url>', 'http(s) URL')
    .option('--release-name <name>', 'only this release line (default: all)')
    .action(async (url: string, o: { releaseName?: string }, command: Command) => {
      const s = await ctx.client(command).request<SubscriptionView>('POST', '/api/v1/subscriptions', {
        url,
        ...(o.releaseName !== undefined ? { releaseName: o.releaseName } : {}),
      });
      ctx.out(
        command,
        s,
        () => `Subscribed ${s.url} to ${s.releaseName ?? 'every release line'} (id ${s.id}).\n`,
      );
    });
  release
    .command('subscriptions')
    .description('List release-note subscribers (admin)')
    .action(async (_o: unknown, command: Command) => {
      const body = await ctx
        .client(command)
        .request<{ subscriptions: SubscriptionView[] }>('GET', '/api/v1/subscriptions');
      ctx.out(command, body, () =>
        renderTable(
          ['URL', 'RELEASE LINE', 'BY', 'SINCE', 'ID'],
          body.subscriptions.map((s) => [s.url, s.releaseName ?? '(all)', s.createdBy, s.createdAt, s.id]),
        ),
      );
    });
  release
    .command('unsubscribe')
    .description('Remove a subscriber (admin)')
    .argument('<id>', 'subscription id (gantry release subscriptions)')
    .action(async (id: string, _o: unknown, command: Command) => {
      await ctx.client(command).request('DELETE', `/api/v1/subscriptions/${encodeURIComponent(id)}`);
      ctx.out(command, { deleted: id }, () => `Removed subscription ${id}.\n`);
    });
}
