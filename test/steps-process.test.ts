/**
 * Steps end to end with real processes: a package pushed to the media library is installed and
 * activated by a real agent into its data directory, the ledger follows, a rollback puts the old
 * version back, and a hostile archive is refused with nothing written outside staging.
 */
import {
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTarGz } from './helpers/archives.ts';
import {
  eventually,
  gantryJson,
  type LongProcess,
  partialDownloads,
  type ServerProcess,
  startEnrolledAgent,
  startServer,
} from './helpers/processes.ts';
import { rawTar } from './helpers/tar-factory.ts';

const TOKEN = `gnt_steps_${'s'.repeat(40)}`;

describe('steps run by a real agent', () => {
  let dir: string;
  let server: ServerProcess;
  let agent: LongProcess;
  let env: Record<string, string>;
  const agentDir = () => path.join(dir, 'agent');

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-steps-'));
    server = await startServer(['--data-dir', path.join(dir, 'server')], {
      GANTRY_BOOTSTRAP_ADMIN_TOKEN: TOKEN,
    });
    env = { GANTRY_URL: server.url, GANTRY_TOKEN: TOKEN };
    await gantryJson(['env', 'create', 'production'], env);
    agent = await startEnrolledAgent(server, env, { name: 'web-1', dataDir: agentDir() });
    for (const [version, text] of [
      ['2.4.0', 'shop 2.4.0'],
      ['2.5.0', 'shop 2.5.0'],
    ] as const) {
      writeFileSync(path.join(dir, `web-${version}.tar.gz`), makeTarGz({ 'index.html': text }));
      await gantryJson(
        [
          'artifact',
          'push',
          path.join(dir, `web-${version}.tar.gz`),
          '--component',
          'web',
          '--version',
          version,
        ],
        env,
      );
    }
  });
  afterAll(async () => {
    await agent?.stop('SIGKILL');
    await server?.stop('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  async function run(kind: string, version?: string) {
    const step = await gantryJson(
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
      const list = await gantryJson(['steps', 'list', 'web-1'], env);
      const done = list.steps.find(
        (s: { id: string; state: string }) =>
          s.id === step.id && (s.state === 'succeeded' || s.state === 'failed'),
      );
      return done ?? undefined;
    }, 30_000);
  }

  it('installs and activates a version, and the ledger says what runs', async () => {
    expect((await run('install', '2.4.0')).state).toBe('succeeded');
    expect((await run('activate', '2.4.0')).state).toBe('succeeded');
    const releases = path.join(agentDir(), 'releases', 'web');
    expect(readlinkSync(path.join(releases, 'current'))).toBe('2.4.0');
    expect(readFileSync(path.join(releases, 'current', 'index.html'), 'utf8')).toBe('shop 2.4.0');
    const ledger = await gantryJson(['ledger', '--target', 'web-1'], env);
    expect(ledger.positions).toEqual([
      expect.objectContaining({ component: 'web', version: '2.4.0', source: 'step', drift: null }),
    ]);
  });

  it('activates the next version and rolls back to the one before', async () => {
    expect((await run('install', '2.5.0')).state).toBe('succeeded');
    expect((await run('activate', '2.5.0')).state).toBe('succeeded');
    const releases = path.join(agentDir(), 'releases', 'web');
    expect(readFileSync(path.join(releases, 'current', 'index.html'), 'utf8')).toBe('shop 2.5.0');
    expect((await run('rollback')).state).toBe('succeeded');
    expect(readlinkSync(path.join(releases, 'current'))).toBe('2.4.0');
    const ledger = await gantryJson(['ledger', '--target', 'web-1'], env);
    expect(ledger.positions[0]).toMatchObject({ version: '2.4.0', previousVersion: '2.5.0' });
    const removeActive = await run('remove', '2.4.0');
    expect(removeActive.state).toBe('failed');
    expect(removeActive.message).toContain('is active');
  });

  it('B11: refuses a package with an entry that climbs out, writing nothing outside staging', async () => {
    writeFileSync(
      path.join(dir, 'evil.tar'),
      rawTar([
        { name: 'index.html', content: 'ok' },
        { name: '../../../escaped.txt', content: 'evil' },
      ]),
    );
    await gantryJson(
      ['artifact', 'push', path.join(dir, 'evil.tar'), '--component', 'web', '--version', '6.6.6'],
      env,
    );
    const step = await run('install', '6.6.6');
    expect(step.state).toBe('failed');
    expect(step.message).toContain('climbs out');
    expect(readdirSync(path.join(agentDir(), 'releases', 'web')).sort()).toEqual([
      '2.4.0',
      '2.5.0',
      'current',
    ]);
    expect(existsSync(path.join(dir, 'escaped.txt'))).toBe(false);
    expect(existsSync(path.join(agentDir(), 'escaped.txt'))).toBe(false);
    expect(partialDownloads(agentDir())).toEqual([]);
  });

  it('deploys a real HTTP service, and rolls back a version whose health check fails (F05)', async () => {
    const port = await new Promise<number>((resolve) => {
      const probe = net.createServer().listen(0, '127.0.0.1', () => {
        const { port: p } = probe.address() as net.AddressInfo;
        probe.close(() => resolve(p));
      });
    });
    const service = (version: string, healthy: boolean) =>
      makeTarGz({
        'server.js': `require('node:http').createServer((q, r) => { r.statusCode = q.url === '/healthz' && !${!healthy} ? 200 : q.url === '/healthz' ? 500 : 200; r.end('api ${version}'); }).listen(process.env.PORT, '127.0.0.1');`,
        'gantry.yaml': [
          'start: node server.js > server.log 2>&1 & echo $! > server.pid',
          'stop: kill $(cat server.pid) && sleep 0.3',
          'health:',
          `  http: http://127.0.0.1:${port}/healthz`,
          '  retries: 10',
          '  interval: 0.3',
          'env:',
          `  PORT: ${port}`,
          '',
        ].join('\n'),
      });
    for (const [version, healthy] of [
      ['1.0.0', true],
      ['1.1.0', true],
      ['1.2.0', false],
    ] as const) {
      writeFileSync(path.join(dir, `api-${version}.tar.gz`), service(version, healthy));
      await gantryJson(
        [
          'artifact',
          'push',
          path.join(dir, `api-${version}.tar.gz`),
          '--component',
          'api',
          '--version',
          version,
        ],
        env,
      );
    }
    const runApi = async (kind: string, version: string) => {
      const step = await gantryJson(
        ['steps', 'queue', 'web-1', '--kind', kind, '--component', 'api', '--version', version],
        env,
      );
      return eventually(async () => {
        const list = await gantryJson(['steps', 'list', 'web-1'], env);
        return list.steps.find(
          (s: { id: string; state: string }) =>
            s.id === step.id && (s.state === 'succeeded' || s.state === 'failed'),
        );
      }, 40_000);
    };
    const answer = async () => (await fetch(`http://127.0.0.1:${port}/`)).text();
    try {
      for (const version of ['1.0.0', '1.1.0']) {
        expect((await runApi('install', version)).state).toBe('succeeded');
        const activated = await runApi('activate', version);
        expect(activated.state, activated.message).toBe('succeeded');
        expect(await answer()).toBe(`api ${version}`);
      }
      expect((await runApi('install', '1.2.0')).state).toBe('succeeded');
      const broken = await runApi('activate', '1.2.0');
      expect(broken.state).toBe('failed');
      expect(broken.message).toContain('health check failed');
      expect(broken.message).toContain('rolled back to 1.1.0');
      expect(await answer()).toBe('api 1.1.0');
      const ledger = await gantryJson(['ledger', '--target', 'web-1', '--component', 'api'], env);
      expect(ledger.positions[0]).toMatchObject({ version: '1.1.0', previousVersion: '1.0.0' });
    } finally {
      const pidFile = path.join(agentDir(), 'releases', 'api', 'current', 'server.pid');
      if (existsSync(pidFile)) process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGTERM');
    }
    // Seven steps, each a CLI call or two and real hook processes: a minute on a busy machine.
  }, 90_000);
});
