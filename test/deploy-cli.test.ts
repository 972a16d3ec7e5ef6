/**
 * `gantry deploy` and `gantry deployments …` against a real server and two real agents with real
 * packages and health checks: a policy refusal lists every gate reason (exit 3); a rolling
 * deployment followed with --watch succeeds (exit 0); one whose second target fails its health
 * check is rolled back (exit 3, the failed target named); a canary plan printed without --watch,
 * then followed as NDJSON; list and show as JSON and as tables. Then, against a stand-in server
 * that drops the live stream, `deployments watch` reconnects and still sees the end.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  eventually,
  gantryJson,
  healthCheckedPackage,
  type LongProcess,
  pushReleases,
  runGantry,
  type ServerProcess,
  startEnrolledAgent,
  startServer,
} from './helpers/processes.ts';

const TOKEN = `gnt_deploycli_${'e'.repeat(40)}`;
const NAMES = ['web-1', 'web-2'];

describe('deployments through the CLI with real agents', () => {
  let dir: string;
  let server: ServerProcess;
  const agents: LongProcess[] = [];
  let env: Record<string, string>;
  const agentDir = (name: string) => path.join(dir, name);
  const gantry = (args: string[]) => runGantry(args, { env });

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-deploy-cli-'));
    server = await startServer(['--data-dir', path.join(dir, 'server')], {
      GANTRY_BOOTSTRAP_ADMIN_TOKEN: TOKEN,
    });
    env = { GANTRY_URL: server.url, GANTRY_TOKEN: TOKEN };
    await gantryJson(['env', 'create', 'production'], env);
    const releases = (async () => {
      // The health check fails where the agent's data directory holds a file named `unhealthy`.
      const versions = ['1.0.0', '2.0.0', '3.0.0'];
      await pushReleases(dir, env, {
        name: 'shop',
        component: 'web',
        versions,
        archive: healthCheckedPackage,
      });
    })();
    const enrolled = Promise.all(
      NAMES.map((name) => startEnrolledAgent(server, env, { name, dataDir: agentDir(name) })),
    );
    agents.push(...(await enrolled));
    await releases;
  }, 60_000);

  afterAll(async () => {
    for (const a of agents) await a.stop('SIGKILL');
    await server?.stop('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('prints every reason the gates refuse a deployment for, and exits 3', async () => {
    const policy = await gantry([
      'env',
      'policy',
      'production',
      '--strategies',
      'phased',
      '--change-required',
    ]);
    expect(policy.code, policy.stderr).toBe(0);

    const refused = await gantry(['deploy', 'shop@1.0.0', '--env', 'production', '--strategy', 'rolling']);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toContain('refused by the gates, for 2 reason(s)');
    expect(refused.stderr).toMatch(/change_required\s+production deploys only inside an approved change/);
    expect(refused.stderr).toMatch(
      /strategy_not_allowed\s+production allows the strategies phased, not rolling/,
    );

    const json = await gantry([
      'deploy',
      'shop@1.0.0',
      '--env',
      'production',
      '--strategy',
      'rolling',
      '--json',
    ]);
    expect(json.code).toBe(3);
    const body = JSON.parse(json.stdout);
    expect(body.error.code).toBe('GATE_REFUSED');
    expect(body.error.details.reasons.map((r: { code: string }) => r.code).sort()).toEqual([
      'change_required',
      'strategy_not_allowed',
    ]);

    // A strategy's options with another strategy is a usage error, before the server is asked.
    const mixed = await gantry([
      'deploy',
      'shop@1.0.0',
      '--env',
      'production',
      '--wave',
      '1',
      '--canary',
      '1',
    ]);
    expect(mixed.code).toBe(2);
    const badWave = await gantry([
      'deploy',
      'shop@1.0.0',
      '--env',
      'production',
      '--wave',
      'count=1,percent=5',
    ]);
    expect(badWave.code).toBe(2);
    expect(badWave.stderr).toContain('exactly one of count, percent or selector');

    const reset = await gantry(['env', 'policy', 'production', '--strategies', '', '--no-change-required']);
    expect(reset.code, reset.stderr).toBe(0);
  });

  it('follows a rolling deployment with --watch to success: exit 0, a line per change', async () => {
    const run = await gantry([
      'deploy',
      'shop@1.0.0',
      '--env',
      'production',
      '--strategy',
      'rolling',
      '--batch-size',
      '1',
      '--watch',
    ]);
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
    expect(run.stdout).toMatch(
      /Created DEP-\d+: shop@1\.0\.0 to production, rolling, 2 target\(s\) in 2 wave/,
    );
    expect(run.stdout).toContain('web-1 succeeded');
    expect(run.stdout).toContain('web-2 succeeded');
    expect(run.stdout).toMatch(
      /DEP-\d+ succeeded · wave 1\/2 batch 1: 1\/1 succeeded · wave 2\/2 batch 2: 1\/1 succeeded/,
    );
    expect(run.stdout).toMatch(/DEP-\d+ succeeded: 2 target\(s\) in production run shop@1\.0\.0/);
  }, 45_000);

  it('watches a deployment that fails a health check roll back: exit 3, the failed target named', async () => {
    writeFileSync(path.join(agentDir('web-2'), 'unhealthy'), '');
    try {
      const run = await gantry([
        'deploy',
        'shop@2.0.0',
        '--env',
        'production',
        '--strategy',
        'rolling',
        '--batch-size',
        '1',
        '--watch',
      ]);
      expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(3);
      expect(run.stdout).toMatch(/web-2 failed/);
      expect(run.stdout).toContain('web-1 rolled_back');
      expect(run.stdout).toMatch(/DEP-\d+ rolled_back: halted/);
      expect(run.stderr).toMatch(/error: DEP-\d+ ended rolled_back .*failed: web-2/);
    } finally {
      rmSync(path.join(agentDir('web-2'), 'unhealthy'), { force: true });
    }
  }, 45_000);

  it('prints a canary plan without --watch, then `deployments watch --json` follows it as NDJSON', async () => {
    const plan = await gantry([
      'deploy',
      'shop@3.0.0',
      '--env',
      'production',
      '--canary',
      '1',
      '--bake',
      '1s',
      '--halt-canary-failures',
      '0',
    ]);
    expect(plan.code, plan.stderr).toBe(0);
    const number = /Created (DEP-\d+)/.exec(plan.stdout)?.[1] as string;
    expect(number).toBeDefined();
    expect(plan.stdout).toMatch(/1\/2\s+canary \(canary\)\s+web-1\s+1s\s+auto/);
    expect(plan.stdout).toMatch(/2\/2\s+rest\s+web-2\s+1s\s+auto/);
    expect(plan.stdout).toContain(`gantry deployments watch ${number}`);

    const watched = await gantry(['deployments', 'watch', number, '--json']);
    expect(watched.code, watched.stderr).toBe(0);
    const lines = watched.stdout.trim().split('\n');
    const states = lines.map((line) => JSON.parse(line) as { number: string; state: string });
    expect(states.every((d) => d.number === number)).toBe(true);
    expect(states.at(-1)?.state).toBe('succeeded');
  }, 45_000);

  it('lists and shows deployments as JSON and as tables; an action a deployment cannot take exits 3', async () => {
    const list = await gantryJson(['deployments', 'list'], env);
    expect(list.deployments.map((d: { state: string }) => d.state)).toEqual([
      'succeeded',
      'rolled_back',
      'succeeded',
    ]);
    const rolledBack = list.deployments[1];
    const filtered = await gantryJson(['deployments', 'list', '--state', 'rolled_back'], env);
    expect(filtered.deployments.map((d: { number: string }) => d.number)).toEqual([rolledBack.number]);

    const shown = await gantryJson(['deployments', 'show', rolledBack.number], env);
    expect(shown).toMatchObject({ number: rolledBack.number, state: 'rolled_back', strategy: 'rolling' });
    expect(shown.waves).toHaveLength(2);

    const human = await gantry(['deployments', 'show', rolledBack.number]);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toMatch(/state\s+rolled_back/);
    expect(human.stdout).toMatch(/reason\s+halted: 1 of 2 target\(s\) failed/);
    expect(human.stdout).toMatch(/2\s+web-2\s+failed\s+web 1\.0\.0\s+\S/);
    expect(human.stdout).toMatch(/1\s+web-1\s+rolled_back\s+web 1\.0\.0/);
    expect(human.stdout).toContain('nothing: ');

    const table = await gantry(['deployments', 'list', '--env', 'production']);
    expect(table.stdout).toMatch(
      new RegExp(`${rolledBack.number}\\s+rolled_back\\s+shop@2\\.0\\.0\\s+production`),
    );

    const pause = await gantry(['deployments', 'pause', rolledBack.number, '--reason', 'too late']);
    expect(pause.code).toBe(3);
    expect(pause.stderr).toContain('only a running or scheduled deployment can be paused');
  });

  it('creates a pipeline, runs a release through it and shows the run, from the CLI', async () => {
    const bad = await gantry([
      'pipeline',
      'create',
      'shop-cd',
      '--release-name',
      'shop',
      '--stage',
      'env=production,speed=9',
    ]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("unknown part 'speed'");
    const none = await gantry([
      'pipeline',
      'create',
      'shop-cd',
      '--release-name',
      'shop',
      '--stage',
      'env=nowhere',
    ]);
    expect(none.code).not.toBe(0);
    expect(none.stderr).toContain("no environment 'nowhere'");

    const created = await gantryJson(
      [
        'pipeline',
        'create',
        'shop-cd',
        '--release-name',
        'shop',
        '--stage',
        'env=production,strategy=rolling,batch=2',
        '--no-auto-start',
      ],
      env,
    );
    expect(created.stages).toEqual([
      { environment: 'production', strategy: 'rolling', options: { batchSize: 2 } },
    ]);
    expect(created.autoStart).toBe(false);
    const run = await gantryJson(['pipeline', 'run', 'shop-cd', 'shop@1.0.0'], env);
    expect(run).toMatchObject({ release: 'shop@1.0.0', environment: 'production', state: 'running' });
    const done = await eventually(async () => {
      const shown = await gantryJson(['pipeline', 'show', 'shop-cd'], env);
      return ['succeeded', 'failed'].includes(shown.runs[0].state) ? shown.runs[0] : undefined;
    }, 40_000);
    expect(done.state, JSON.stringify(done)).toBe('succeeded');
    const human = await gantry(['pipeline', 'show', 'shop-cd']);
    expect(human.stdout).toContain('production (rolling)');
    expect(human.stdout).toMatch(/shop@1\.0\.0\s+production\s+succeeded/);
    const list = await gantry(['pipeline', 'list']);
    expect(list.stdout).toMatch(/shop-cd\s+shop\s+production\s+shop@1\.0\.0/);
  }, 60_000);
});

describe('deployments watch when the live stream drops', () => {
  let server: Server;
  let url: string;
  let connections = 0;
  const view = (state: string, done: number) => ({
    id: '01J',
    number: 'DEP-7',
    release: { id: 'r', name: 'shop', version: '1.0.0' },
    environment: 'production',
    change: null,
    strategy: 'big-bang',
    options: {},
    haltRule: { maxFailedPercent: 10, canaryMaxFailures: 0 },
    onFailure: 'rollback',
    state,
    reason: null,
    scheduledFor: null,
    excluded: [],
    createdBy: 'admin',
    createdAt: '2026-01-01T00:00:00.000Z',
    startedAt: '2026-01-01T00:00:00.000Z',
    finishedAt: null,
    waves: [
      {
        index: 0,
        name: 'all',
        gate: 'auto',
        canary: false,
        bakeSeconds: 0,
        state: done ? 'succeeded' : 'running',
        bakeUntil: null,
        approvedBy: null,
        startedAt: null,
        finishedAt: null,
        targets: [{ name: 'web-1', state: done ? 'succeeded' : 'installing', message: null, before: {} }],
      },
    ],
    counts: done ? { succeeded: 1 } : { installing: 1 },
  });

  beforeAll(async () => {
    // The first connection sends one state and is cut; the second sends the end and closes.
    server = createServer((req, res) => {
      if (req.url !== '/api/v1/deployments/DEP-7/events') {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { code: 'NOT_FOUND', message: 'No deployment.', details: null } }));
        return;
      }
      connections += 1;
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      if (connections === 1) {
        res.write(`event: deployment\ndata: ${JSON.stringify(view('running', 0))}\n\n`);
        setTimeout(() => res.socket?.destroy(), 100);
      } else {
        res.write(': keep-alive\n\n');
        res.end(`event: deployment\ndata: ${JSON.stringify(view('succeeded', 1))}\n\n`);
      }
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('reconnects and follows to the end', async () => {
    const run = await runGantry(['deployments', 'watch', 'DEP-7'], {
      env: { GANTRY_URL: url, GANTRY_TOKEN: 'anything' },
    });
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);
    expect(connections).toBe(2);
    expect(run.stderr).toContain('Lost the live stream (the connection was cut); reconnecting…');
    expect(run.stderr).toContain('Reconnected; following DEP-7 again.');
    expect(run.stdout.split('\n')).toEqual([
      'web-1 installing',
      'DEP-7 running · wave 1/1 all: 0/1 running',
      'web-1 succeeded',
      'DEP-7 succeeded · wave 1/1 all: 1/1 succeeded',
      'DEP-7 succeeded: 1 target(s) in production run shop@1.0.0.',
      '',
    ]);
  });

  it('gives up at once on a deployment the server does not know (exit 3)', async () => {
    const run = await runGantry(['deployments', 'watch', 'DEP-8'], {
      env: { GANTRY_URL: url, GANTRY_TOKEN: 'anything' },
    });
    expect(run.code).toBe(3);
    expect(run.stderr).toContain('No deployment.');
  });
});
