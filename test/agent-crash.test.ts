/**
 * The agent killed at its durable steps (failpoints, row H1): an interrupted install leaves no
 * staging behind and is redone (F02, G4); an activation interrupted before it was confirmed is
 * undone at restart and reported once as rolled back (F04, G3); one interrupted after it was
 * confirmed is reported once as done (F03, G2).
 */
import { randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
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
  startEnrolledAgent,
  startGantry,
  startServer,
} from './helpers/processes.ts';
import { canMountTmpfs, mountTmpfs, unmount } from './helpers/tmpfs.ts';

const TOKEN = `gnt_crash_${'c'.repeat(40)}`;

describe('the agent killed mid-step', () => {
  let dir: string;
  let server: ServerProcess;
  let env: Record<string, string>;
  let agent: LongProcess | undefined;
  const agentDir = () => path.join(dir, 'agent');
  const releases = () => path.join(agentDir(), 'releases', 'web');
  const startAgent = (failpoints?: string) =>
    startGantry(['agent', '--data-dir', agentDir()], failpoints ? { FAILPOINTS: failpoints } : {});

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-crash-'));
    server = await startServer(['--data-dir', path.join(dir, 'server')], {
      GANTRY_BOOTSTRAP_ADMIN_TOKEN: TOKEN,
    });
    env = { GANTRY_URL: server.url, GANTRY_TOKEN: TOKEN };
    await gantryJson(['env', 'create', 'production'], env);
    const first = await startEnrolledAgent(server, env, { name: 'web-1', dataDir: agentDir() });
    await eventually(async () =>
      (await gantryJson(['targets', 'show', 'web-1'], env)).state === 'online' ? true : undefined,
    );
    await first.stop('SIGTERM');
    for (const version of ['1.0.0', '2.0.0']) {
      writeFileSync(path.join(dir, `web-${version}.tar.gz`), makeTarGz({ 'index.html': `web ${version}` }));
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

  const queue = (kind: string, version: string) =>
    gantryJson(['steps', 'queue', 'web-1', '--kind', kind, '--component', 'web', '--version', version], env);
  const finished = (id: string) =>
    eventually(async () => {
      const list = await gantryJson(['steps', 'list', 'web-1'], env);
      return list.steps.find(
        (s: { id: string; state: string }) =>
          s.id === id && (s.state === 'succeeded' || s.state === 'failed'),
      );
    }, 30_000);
  const reports = async (id: string) =>
    (await gantryJson(['audit', 'list', '--subject', `step:${id}`, '--limit', '1000'], env)).entries.filter(
      (e: { action: string }) => ['step.succeeded', 'step.failed'].includes(e.action),
    );

  it('F02: an install killed after unpacking leaves no staging after restart and is done once', async () => {
    agent = startAgent('agent.after_extract=kill');
    const step = await queue('install', '1.0.0');
    expect(await agent.exited).toBeNull();
    expect(readdirSync(releases()).some((e) => e.startsWith('.staging-'))).toBe(true);
    agent = startAgent();
    expect((await finished(step.id)).state).toBe('succeeded');
    expect(readdirSync(releases())).toEqual(['1.0.0']);
    expect(await reports(step.id)).toHaveLength(1);
    expect((await finished((await queue('activate', '1.0.0')).id)).state).toBe('succeeded');
    expect((await finished((await queue('install', '2.0.0')).id)).state).toBe('succeeded');
    await agent.stop('SIGTERM');
  });

  it('F04: an activation killed before it was confirmed is undone at restart and reported once', async () => {
    agent = startAgent('agent.during_health=kill');
    const step = await queue('activate', '2.0.0');
    expect(await agent.exited).toBeNull();
    expect(readlinkSync(path.join(releases(), 'current'))).toBe('2.0.0');
    agent = startAgent();
    const done = await finished(step.id);
    expect(done.state).toBe('failed');
    expect(done.message).toContain('health_unconfirmed_after_restart');
    expect(readlinkSync(path.join(releases(), 'current'))).toBe('1.0.0');
    expect((await gantryJson(['ledger', '--target', 'web-1'], env)).positions[0].version).toBe('1.0.0');
    expect(await reports(step.id)).toHaveLength(1);
    await agent.stop('SIGTERM');
  });

  it('F03: an activation killed after it was confirmed, before its report, is reported once as done', async () => {
    agent = startAgent('agent.before_report=kill');
    const step = await queue('activate', '2.0.0');
    expect(await agent.exited).toBeNull();
    expect(readlinkSync(path.join(releases(), 'current'))).toBe('2.0.0');
    agent = startAgent();
    expect((await finished(step.id)).state).toBe('succeeded');
    expect(await reports(step.id)).toHaveLength(1);
    expect((await gantryJson(['ledger', '--target', 'web-1'], env)).positions[0]).toMatchObject({
      version: '2.0.0',
      previousVersion: '1.0.0',
    });
    expect(existsSync(path.join(agentDir(), 'downloads'))).toBe(false);
    await agent.stop('SIGTERM');
  });

  it.skipIf(!canMountTmpfs)(
    'F19: a full disk on the target fails the install as insufficient_disk, before anything is activated',
    async () => {
      const small = path.join(dir, 'small-agent');
      mkdirSync(small, { recursive: true });
      mountTmpfs(small, '8m');
      let smallAgent: LongProcess | undefined;
      try {
        smallAgent = await startEnrolledAgent(server, env, { name: 'small-1', dataDir: small });
        await eventually(async () =>
          (await gantryJson(['targets', 'show', 'small-1'], env)).state === 'online' ? true : undefined,
        );
        // About 3 MiB to download, 6 MiB to unpack: the download fits, the release does not.
        writeFileSync(
          path.join(dir, 'big.tar.gz'),
          makeTarGz({ 'data.txt': randomBytes(3 * 1024 * 1024).toString('hex') }),
        );
        await gantryJson(
          ['artifact', 'push', path.join(dir, 'big.tar.gz'), '--component', 'big', '--version', '1.0.0'],
          env,
        );
        const step = await gantryJson(
          ['steps', 'queue', 'small-1', '--kind', 'install', '--component', 'big', '--version', '1.0.0'],
          env,
        );
        const done = await eventually(async () => {
          const list = await gantryJson(['steps', 'list', 'small-1'], env);
          return list.steps.find(
            (x: { id: string; state: string }) => x.id === step.id && x.state === 'failed',
          );
        }, 30_000);
        expect(done.message).toContain('insufficient_disk');
        expect(readdirSync(path.join(small, 'releases', 'big'))).toEqual([]);
        expect(readdirSync(path.join(small, 'downloads'))).toEqual([]);
      } finally {
        await smallAgent?.stop('SIGKILL');
        unmount(small);
      }
    },
  );
});
