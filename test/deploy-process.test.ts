/**
 * Deployments end to end with real processes: a real server, three real agents, real packages
 * with health checks. A big-bang rollout succeeds and the ledger follows; a phased rollout whose
 * second wave fails a health check is halted by the rule and rolled back, leaving every target on
 * its old version; a server killed mid-rollout resumes it with no step run twice (rows F08, F09);
 * a second deployment to the same targets is refused while the first runs (row L04). On SQLite
 * and on PostgreSQL.
 */
import { mkdtempSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  apiOf,
  deploymentEnded,
  eventually,
  gantryJson,
  healthCheckedPackage,
  type LongProcess,
  pushReleases,
  type ServerProcess,
  startEnrolledAgent,
  startServer,
} from './helpers/processes.ts';
import { SERVER_DATABASES, serverDatabase } from './helpers/test-databases.ts';

const TOKEN = `gnt_deploy_${'d'.repeat(40)}`;
const NAMES = ['web-1', 'web-2', 'web-3'];

for (const database of SERVER_DATABASES)
  describe(`deployments driven by the engine with real agents on ${database}`, () => {
    let dir: string;
    let db: Awaited<ReturnType<typeof serverDatabase>> | undefined;
    let databaseEnv: Record<string, string> = {};
    let server: ServerProcess;
    const agents: LongProcess[] = [];
    let env: Record<string, string>;
    const agentDir = (name: string) => path.join(dir, name);
    const current = (name: string) => readlinkSync(path.join(agentDir(name), 'releases', 'web', 'current'));

    const api = apiOf(() => server.url, TOKEN);

    const finished = (id: string, timeoutMs = 45_000) => deploymentEnded(api, id, timeoutMs);

    async function startServerProcess(port = '0') {
      server = await startServer(['--data-dir', path.join(dir, 'server'), '--port', port], {
        GANTRY_BOOTSTRAP_ADMIN_TOKEN: TOKEN,
        // A restarted server takes over a killed one's deployments once its lease has run out.
        GANTRY_DEPLOY_LEASE_SECONDS: '4',
        ...databaseEnv,
      });
    }

    beforeAll(async () => {
      dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-deploy-'));
      db = await serverDatabase(database);
      databaseEnv = db.env;
      await startServerProcess();
      env = { GANTRY_URL: server.url, GANTRY_TOKEN: TOKEN };
      await gantryJson(['env', 'create', 'production'], env);
      for (const name of NAMES)
        agents.push(await startEnrolledAgent(server, env, { name, dataDir: agentDir(name) }));
      // The health check fails where the agent's data directory holds a file named `unhealthy`.
      const versions = ['1.0.0', '2.0.0', '3.0.0'];
      await pushReleases(dir, env, {
        name: 'shop',
        component: 'web',
        versions,
        archive: healthCheckedPackage,
      });
    }, 120_000);

    afterAll(async () => {
      for (const a of agents) await a.stop('SIGKILL');
      await server?.stop('SIGKILL');
      await db?.drop();
      rmSync(dir, { recursive: true, force: true });
    });

    it('a big-bang deployment installs and activates on every target, and the ledger follows', async () => {
      const created = await api('POST', '/api/v1/deployments', {
        release: 'shop@1.0.0',
        environment: 'production',
        strategy: 'big-bang',
      });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      expect(created.body.waves).toHaveLength(1);
      const done = await finished(created.body.id);
      expect(done.state).toBe('succeeded');
      expect(done.counts).toEqual({ succeeded: 3 });
      for (const name of NAMES) expect(current(name)).toBe('1.0.0');
      const ledger = await gantryJson(['ledger', '--env', 'production'], env);
      expect(JSON.stringify(ledger)).toContain('1.0.0');
      const release = (await api('GET', '/api/v1/releases/shop@1.0.0')).body;
      expect(release.lifecycle).toEqual([
        expect.objectContaining({
          environment: 'production',
          outcome: 'succeeded',
          deploymentId: created.body.id,
        }),
      ]);
    }, 60_000);

    it('halts a phased rollout when a health check fails, rolls back every changed target, and refuses a second deployment meanwhile', async () => {
      writeFileSync(path.join(agentDir('web-3'), 'unhealthy'), '');
      const created = await api('POST', '/api/v1/deployments', {
        release: 'shop@2.0.0',
        environment: 'production',
        strategy: 'phased',
        options: { waves: [{ count: 1, bakeSeconds: 1 }, { count: 2 }] },
        onFailure: 'rollback',
      });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      expect(
        created.body.waves.map((w: { targets: Array<{ name: string }> }) => w.targets.map((t) => t.name)),
      ).toEqual([['web-1'], ['web-2', 'web-3']]);
      const second = await api('POST', '/api/v1/deployments', {
        release: 'shop@3.0.0',
        environment: 'production',
        strategy: 'big-bang',
      });
      expect(second.status).toBe(409);
      expect(second.body.error.message).toContain(created.body.number);

      const done = await finished(created.body.id);
      expect(done.state).toBe('rolled_back');
      expect(done.reason).toContain('1 of 3 target(s) failed');
      const states = Object.fromEntries(
        done.waves.flatMap((w: { targets: Array<{ name: string; state: string }> }) =>
          w.targets.map((t) => [t.name, t.state]),
        ),
      );
      expect(states['web-3']).toBe('failed');
      expect(states['web-1']).toBe('rolled_back');
      for (const name of NAMES) expect(current(name)).toBe('1.0.0');
      const events = (await api('GET', '/api/v1/events?limit=50')).body.events;
      expect(events.map((e: { kind: string }) => e.kind)).toContain('deployment.halted');
      rmSync(path.join(agentDir('web-3'), 'unhealthy'));
    }, 90_000);

    it('F08: a server killed mid-rollout resumes it after a restart, with no step run twice', async () => {
      const created = await api('POST', '/api/v1/deployments', {
        release: 'shop@3.0.0',
        environment: 'production',
        strategy: 'rolling',
        options: { batchSize: 1, bakeSeconds: 2 },
      });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      await eventually(async () => {
        const d = (await api('GET', `/api/v1/deployments/${created.body.id}`)).body;
        return d.waves[0].state === 'baking' ? d : undefined;
      });
      // The agents keep talking to the same address; the new process takes the lease once the
      // killed one's has run out.
      const port = new URL(server.url).port;
      await server.stop('SIGKILL');
      await startServerProcess(port);
      const done = await finished(created.body.id, 60_000);
      expect(done.state).toBe('succeeded');
      for (const name of NAMES) {
        expect(current(name)).toBe('3.0.0');
        const steps = await gantryJson(['steps', 'list', name], { ...env, GANTRY_URL: server.url });
        const forThree = (steps.steps ?? steps).filter(
          (s: { version: string | null }) => s.version === '3.0.0',
        );
        expect(forThree.map((s: { kind: string }) => s.kind)).toEqual(['install', 'activate']);
      }
    }, 120_000);
  });
