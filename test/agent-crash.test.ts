/**
 * The agent killed at its durable steps (failpoints, row H1): an interrupted install leaves no
 * staging behind and is redone (F02, G4); an activation interrupted before it was confirmed is
 * undone at restart and reported once as rolled back (F04, G3); one interrupted after it was
 * confirmed is reported once as done (F03, G2); a download killed halfway is done again (F01); a
 * version failing its health check is marked bad (F05); a rollback with nothing to go back to
 * needs a person (F06); a torn state file is survived (F07).
 */
import { randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
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
  partialDownloads,
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
  const startAgent = (failpoints?: string, env: Record<string, string> = {}) =>
    startGantry(['agent', '--data-dir', agentDir()], failpoints ? { FAILPOINTS: failpoints, ...env } : env);

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

  it('F01: an agent killed halfway through a download keeps the old version, and downloads again at restart', async () => {
    writeFileSync(
      path.join(dir, 'web-3.0.0.tar.gz'),
      makeTarGz({ 'index.html': 'web 3.0.0', 'blob.bin': randomBytes(2 * 1024 * 1024).toString('base64') }),
    );
    await gantryJson(
      ['artifact', 'push', path.join(dir, 'web-3.0.0.tar.gz'), '--component', 'web', '--version', '3.0.0'],
      env,
    );
    // Downloaded to a file (not held in memory), so the kill leaves a partial download behind.
    agent = startAgent('agent.download.mid=kill', { GANTRY_AGENT_MEMORY_DOWNLOAD_MIB: '0' });
    const step = await queue('install', '3.0.0');
    expect(await agent.exited).toBeNull();
    expect(readlinkSync(path.join(releases(), 'current'))).toBe('2.0.0');
    expect(existsSync(path.join(releases(), '3.0.0'))).toBe(false);
    expect(partialDownloads(agentDir())).toHaveLength(1);
    agent = startAgent();
    expect((await finished(step.id)).state).toBe('succeeded');
    expect(existsSync(path.join(releases(), '3.0.0', 'index.html'))).toBe(true);
    expect(partialDownloads(agentDir())).toEqual([]);
    expect(await reports(step.id)).toHaveLength(1);
    await agent.stop('SIGTERM');
  });

  it('F05: a version that fails its health check is put back and marked bad, and not tried again until installed again', async () => {
    writeFileSync(
      path.join(dir, 'web-4.0.0.tar.gz'),
      makeTarGz({ 'gantry.yaml': 'health:\n  command: "false"\n  retries: 1\n', 'index.html': 'web 4.0.0' }),
    );
    await gantryJson(
      ['artifact', 'push', path.join(dir, 'web-4.0.0.tar.gz'), '--component', 'web', '--version', '4.0.0'],
      env,
    );
    agent = startAgent();
    expect((await finished((await queue('install', '4.0.0')).id)).state).toBe('succeeded');
    const first = await finished((await queue('activate', '4.0.0')).id);
    expect(first.state).toBe('failed');
    expect(first.message).toContain('rolled back to 2.0.0');
    expect(first.message).toContain('marked bad');
    expect(readlinkSync(path.join(releases(), 'current'))).toBe('2.0.0');
    const again = await finished((await queue('activate', '4.0.0')).id);
    expect(again.message).toMatch(/^refused: web 4\.0\.0 is marked bad on this target/);
    // Installing again is the deliberate way to try once more.
    expect((await finished((await queue('install', '4.0.0')).id)).state).toBe('succeeded');
    const retried = await finished((await queue('activate', '4.0.0')).id);
    expect(retried.message).toContain('health check failed');
    expect(readlinkSync(path.join(releases(), 'current'))).toBe('2.0.0');
    await agent.stop('SIGTERM');
  });

  it('F06: a rollback with nothing to go back to keeps what runs and raises an alert, never a success', async () => {
    rmSync(path.join(releases(), '1.0.0'), { recursive: true, force: true });
    agent = startAgent();
    const step = await gantryJson(
      ['steps', 'queue', 'web-1', '--kind', 'rollback', '--component', 'web'],
      env,
    );
    const done = await finished(step.id);
    expect(done.state).toBe('failed');
    expect(done.message).toMatch(/^failed_needs_attention: cannot roll back web to 1\.0\.0/);
    expect(readlinkSync(path.join(releases(), 'current'))).toBe('2.0.0');
    const events = await fetch(`${server.url}/api/v1/events?severity=exception&limit=20`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    }).then((r) => r.json() as Promise<{ events: Array<{ kind: string }> }>);
    expect(events.events.map((e) => e.kind)).toContain('target.needs_attention');
    await agent.stop('SIGTERM');
  });

  it('F07: a torn state file is replaced by its copy and the agent carries on; both torn stops it with what to do', async () => {
    const file = path.join(agentDir(), 'agent.json');
    writeFileSync(file, readFileSync(file, 'utf8').slice(0, 40));
    agent = startAgent();
    await eventually(async () => {
      const state = JSON.parse(readFileSync(file, 'utf8'));
      return state.checksum && state.components?.web?.current === '2.0.0' ? true : undefined;
    });
    expect((await finished((await queue('activate', '3.0.0')).id)).state).toBe('succeeded');
    await agent.stop('SIGTERM');
    writeFileSync(file, '{"version":1,');
    writeFileSync(`${file}.bak`, '');
    agent = startAgent();
    const code = await agent.exited;
    expect(code).not.toBe(0);
    expect(agent.output()).toContain('damaged; move them away and enroll the agent again');
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
        // About 5 MiB to download (held in memory), 10 MiB to unpack: the release does not fit.
        writeFileSync(
          path.join(dir, 'big.tar.gz'),
          makeTarGz({ 'data.txt': randomBytes(5 * 1024 * 1024).toString('hex') }),
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
        expect(partialDownloads(small)).toEqual([]);
      } finally {
        await smallAgent?.stop('SIGKILL');
        unmount(small);
      }
    },
  );
});
