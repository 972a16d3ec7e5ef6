/**
 * Two real server replicas on one PostgreSQL (rows F12, F13): a deployment is driven by the
 * replica holding its lease; when that replica is killed, the other takes the lease over once it
 * runs out and finishes the rollout; a replica that stalls after taking a lease (failpoint) wakes
 * up to find its fencing number stale and writes nothing. No step is queued twice.
 */
import { mkdtempSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTarGz } from './helpers/archives.ts';
import {
  eventually,
  gantryJson,
  type LongProcess,
  type ServerProcess,
  startEnrolledAgent,
  startServer,
} from './helpers/processes.ts';
import { createPostgresSchema, postgresUrl, urlWithSchema } from './helpers/test-databases.ts';

const TOKEN = `gnt_replicas_${'r'.repeat(40)}`;
const NAMES = ['web-1', 'web-2'];

describe.skipIf(!postgresUrl)('two replicas on one PostgreSQL', () => {
  let dir: string;
  let schema: { schema: string; drop: () => Promise<void> };
  let databaseUrl: string;
  let a: ServerProcess;
  let b: ServerProcess;
  let client: pg.Client;
  const agents: LongProcess[] = [];

  const replicaOf = (server: ServerProcess) => /"replica":"(replica-[0-9a-f]+)"/.exec(server.output())?.[1];
  const start = (name: string, failpoints?: string) =>
    startServer(['--data-dir', path.join(dir, name)], {
      GANTRY_DATABASE_URL: databaseUrl,
      GANTRY_BOOTSTRAP_ADMIN_TOKEN: TOKEN,
      GANTRY_DEPLOY_LEASE_SECONDS: '3',
      FAILPOINTS: failpoints,
    });

  async function api(server: ServerProcess, method: string, url: string, body?: unknown) {
    const res = await fetch(`${server.url}${url}`, {
      method,
      headers: { authorization: `Bearer ${TOKEN}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  }

  async function lease(id: string): Promise<{ owner: string | null; fencing: number }> {
    const { rows } = await client.query(
      `select lease_owner, fencing from "${schema.schema}".deployments where id = $1`,
      [id],
    );
    return { owner: rows[0].lease_owner, fencing: Number(rows[0].fencing) };
  }

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-replicas-'));
    schema = await createPostgresSchema(postgresUrl as string);
    databaseUrl = urlWithSchema(postgresUrl as string, schema.schema);
    client = new pg.Client({ connectionString: postgresUrl });
    await client.connect();
    b = await start('b');
    a = await start('a');
    // Agents and artifacts live with replica B; A only drives deployments.
    const env = { GANTRY_URL: b.url, GANTRY_TOKEN: TOKEN };
    await gantryJson(['env', 'create', 'production'], env);
    for (const name of NAMES)
      agents.push(await startEnrolledAgent(b, env, { name, dataDir: path.join(dir, name) }));
    for (const version of ['1.0.0', '2.0.0']) {
      const file = path.join(dir, `web-${version}.tar.gz`);
      writeFileSync(file, makeTarGz({ 'index.html': version }));
      await gantryJson(['artifact', 'push', file, '--component', 'web', '--version', version], env);
      await api(b, 'POST', '/api/v1/releases', {
        name: 'shop',
        version,
        components: [{ component: 'web', version }],
      });
    }
  }, 120_000);

  afterAll(async () => {
    for (const x of agents) await x.stop('SIGKILL');
    for (const s of [a, b]) await s?.stop('SIGKILL').catch(() => undefined);
    await client?.end();
    await schema?.drop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function deployVia(server: ServerProcess, version: string) {
    const made = await api(server, 'POST', '/api/v1/deployments', {
      release: `shop@${version}`,
      environment: 'production',
      strategy: 'rolling',
      options: { batchSize: 1, bakeSeconds: 4 },
    });
    expect(made.status, JSON.stringify(made.body)).toBe(201);
    return made.body.id as string;
  }

  async function finished(id: string) {
    return eventually(async () => {
      const d = (await api(b, 'GET', `/api/v1/deployments/${id}`)).body;
      return ['succeeded', 'failed', 'rolled_back'].includes(d.state) ? d : undefined;
    }, 60_000);
  }

  async function stepsFor(version: string) {
    const { rows } = await client.query(
      `select t.name, s.kind from "${schema.schema}".steps s join "${schema.schema}".targets t on t.id = s.target_id where s.version = $1 order by s.id`,
      [version],
    );
    return rows.map((r) => `${r.name} ${r.kind}`).sort();
  }

  /** Makes a deployment through A while B is frozen, so that A takes its lease. */
  async function deployHeldByA(version: string) {
    b.proc.kill('SIGSTOP');
    try {
      const id = await deployVia(a, version);
      const held = await eventually(async () => {
        const l = await lease(id);
        return l.owner === replicaOf(a) ? l : undefined;
      });
      return { id, held };
    } finally {
      b.proc.kill('SIGCONT');
    }
  }

  it('F12: the other replica takes over a killed replica’s deployment and finishes it', async () => {
    const { id, held } = await deployHeldByA('1.0.0');
    await eventually(async () => {
      const d = (await api(b, 'GET', `/api/v1/deployments/${id}`)).body;
      return d.waves[0].state === 'baking' ? d : undefined;
    });
    await a.stop('SIGKILL');
    const done = await finished(id);
    expect(done.state).toBe('succeeded');
    const after = await lease(id);
    expect(after.owner).toBe(replicaOf(b));
    expect(after.fencing).toBeGreaterThan(held.fencing);
    expect(await stepsFor('1.0.0')).toEqual([
      'web-1 activate',
      'web-1 install',
      'web-2 activate',
      'web-2 install',
    ]);
    for (const name of NAMES)
      expect(readlinkSync(path.join(dir, name, 'releases', 'web', 'current'))).toBe('1.0.0');
  }, 120_000);

  it('F13: a replica that stalls after taking a lease loses it to the other, which finishes; the stalled one writes nothing', async () => {
    // A stalls 6 s after every lease it takes, twice as long as the lease lasts.
    a = await start('a', 'deploy.after_lease=sleep:6000');
    const { id, held } = await deployHeldByA('2.0.0');
    const done = await finished(id);
    expect(done.state).toBe('succeeded');
    const taken = await lease(id);
    expect(taken.owner).toBe(replicaOf(b));
    expect(taken.fencing).toBeGreaterThan(held.fencing);
    // A woke up within the rollout and tried its pass: every entry for the deployment after the
    // takeover is B's, none is A's.
    const { rows } = await client.query(
      `select action, source from "${schema.schema}".audit_log where subject = $1 order by seq`,
      [`deployment:${id}`],
    );
    const takeover = rows.findIndex((r) => r.action === 'deployment.lease_taken');
    expect(takeover).toBeGreaterThan(-1);
    expect(rows[takeover]?.source).toBe(replicaOf(b));
    expect(rows.filter((r) => r.source === held.owner)).toEqual([]);
    expect((await api(a, 'GET', `/api/v1/deployments/${id}`)).body.state).toBe('succeeded');
    expect(await stepsFor('2.0.0')).toEqual([
      'web-1 activate',
      'web-1 install',
      'web-2 activate',
      'web-2 install',
    ]);
  }, 120_000);
});
