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
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTarGz } from './helpers/archives.ts';
import {
  eventually,
  gantryJson,
  type LongProcess,
  type ServerProcess,
  startGantry,
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
    const token = await gantryJson(['agents', 'enroll-token', '--env', 'production'], env);
    agent = startGantry(['agent', '--server', server.url, '--data-dir', agentDir(), '--name', 'web-1'], {
      GANTRY_ENROLL_TOKEN: token.secret,
    });
    await eventually(async () =>
      (await gantryJson(['targets', 'show', 'web-1'], env)).state === 'online' ? true : undefined,
    );
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
    expect(readdirSync(path.join(agentDir(), 'downloads'))).toEqual([]);
  });
});
