/**
 * A supervised service with real processes: a real agent runs a small HTTP service from a
 * package (`supervise: true`), starts it again when it dies, keeps its output in the data
 * directory where the server can read it (`gantry targets logs`), stops it when another version
 * is activated, and leaves it running — adopted, not doubled — when the agent itself restarts.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTarGz } from './helpers/archives.ts';
import {
  eventually,
  gantryJson,
  type LongProcess,
  runGantry,
  type ServerProcess,
  startEnrolledAgent,
  startServer,
} from './helpers/processes.ts';

const TOKEN = `gnt_supervise_${'v'.repeat(40)}`;

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

describe('a supervised service run by a real agent', () => {
  let dir: string;
  let server: ServerProcess;
  let agent: LongProcess;
  let env: Record<string, string>;
  let port: number;
  const agentDir = () => path.join(dir, 'agent');
  const pid = () =>
    Number(
      readFileSync(path.join(agentDir(), 'run', 'web.pid'), 'utf8')
        .trim()
        .split(' ')[0],
    );
  const answer = async () => {
    const res = await fetch(`http://127.0.0.1:${port}/`).catch(() => undefined);
    return res?.ok ? res.text() : undefined;
  };

  async function step(kind: string, version?: string) {
    const queued = await gantryJson(
      [
        'steps',
        'queue',
        'web-1',
        '--kind',
        kind,
        '--component',
        'web',
        ...(version ? ['--version', version] : []),
      ],
      env,
    );
    return eventually(async () => {
      const { steps } = await gantryJson(['steps', 'list', 'web-1'], env);
      const s = steps.find((x: { id: string }) => x.id === queued.id);
      return s && (s.state === 'succeeded' || s.state === 'failed') ? s : undefined;
    }, 30_000);
  }

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-supervise-'));
    port = await freePort();
    server = await startServer(['--data-dir', path.join(dir, 'server')], {
      GANTRY_BOOTSTRAP_ADMIN_TOKEN: TOKEN,
    });
    env = { GANTRY_URL: server.url, GANTRY_TOKEN: TOKEN };
    await gantryJson(['env', 'create', 'production'], env);
    agent = await startEnrolledAgent(server, env, { name: 'web-1', dataDir: agentDir() });
    for (const version of ['1.0.0', '2.0.0']) {
      const file = path.join(dir, `web-${version}.tar.gz`);
      writeFileSync(
        file,
        makeTarGz({
          'gantry.yaml': [
            'supervise: true',
            'start: node server.js',
            'env:',
            `  PORT: ${port}`,
            'health:',
            `  http: http://127.0.0.1:${port}/`,
            '  retries: 20',
            '  interval: 1',
            '',
          ].join('\n'),
          'server.js': [
            "const http = require('node:http');",
            `console.log('web ${version} listening');`,
            `http.createServer((q, s) => s.end('web ${version}')).listen(Number(process.env.PORT), '127.0.0.1');`,
            "process.on('SIGTERM', () => { console.log('web stopping'); process.exit(0); });",
          ].join('\n'),
        }),
      );
      await gantryJson(['artifact', 'push', file, '--component', 'web', '--version', version], env);
    }
  }, 90_000);

  afterAll(async () => {
    await agent?.stop('SIGKILL');
    for (const p of [pid]) {
      try {
        process.kill(-p(), 'SIGKILL');
      } catch {}
    }
    await server?.stop('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs the service, and starts it again when it dies', async () => {
    expect((await step('install', '1.0.0')).state).toBe('succeeded');
    const activated = await step('activate', '1.0.0');
    expect(activated.state, activated.message).toBe('succeeded');
    expect(await answer()).toBe('web 1.0.0');
    const first = pid();
    process.kill(first, 'SIGKILL');
    const again = await eventually(
      async () => ((await answer()) === 'web 1.0.0' && pid() !== first ? pid() : undefined),
      15_000,
    );
    expect(again).not.toBe(first);
  }, 60_000);

  it('shows the service’s output and the agent’s notes through the server', async () => {
    const result = await runGantry(['targets', 'logs', 'web-1', '--component', 'web'], { env });
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('web 1.0.0 listening');
    expect(result.stdout).toMatch(/web exited \(SIGKILL\); starting it again in 1 s/);
  }, 40_000);

  it('stops the old version’s service when another is activated', async () => {
    const old = pid();
    expect((await step('install', '2.0.0')).state).toBe('succeeded');
    expect((await step('activate', '2.0.0')).state).toBe('succeeded');
    expect(await answer()).toBe('web 2.0.0');
    expect(() => process.kill(old, 0)).toThrow();
  }, 60_000);

  it('leaves the service running when the agent restarts, and adopts it instead of starting another', async () => {
    const running = pid();
    await agent.stop('SIGKILL');
    expect(await answer()).toBe('web 2.0.0');
    agent = await startEnrolledAgent(server, env, { name: 'web-1', dataDir: agentDir() });
    await new Promise((r) => setTimeout(r, 3000));
    expect(pid()).toBe(running);
    expect(await answer()).toBe('web 2.0.0');
    const log = readFileSync(path.join(agentDir(), 'logs', 'web.log'), 'utf8');
    expect(log).toContain(`found web 2.0.0 still running (pid ${running})`);
  }, 60_000);
});
