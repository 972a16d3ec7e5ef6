/**
 * A real agent process against a real server: enrollment with a one-time token, the credential
 * kept 0600 on disk, heartbeats with host facts, restart without the token, refusal once revoked.
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  eventually,
  gantryJson,
  runGantry,
  type ServerProcess,
  startGantry,
  startServer,
} from './helpers/processes.ts';

const TOKEN = `gnt_agent_${'a'.repeat(40)}`;

describe('the agent process', () => {
  let dir: string;
  let server: ServerProcess;
  let env: Record<string, string>;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-agent-'));
    server = await startServer(['--data-dir', path.join(dir, 'server')], {
      GANTRY_BOOTSTRAP_ADMIN_TOKEN: TOKEN,
    });
    env = { GANTRY_URL: server.url, GANTRY_TOKEN: TOKEN };
    await gantryJson(['env', 'create', 'production', '--os', 'linux'], env);
  });
  afterAll(async () => {
    await server?.stop('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('enrolls once, reports its host, survives a restart without the token, and stops when revoked', async () => {
    const token = await gantryJson(
      ['agents', 'enroll-token', '--env', 'production', '--label', 'region=eu', '--label', 'role=web'],
      env,
    );
    const agentDir = path.join(dir, 'agent');
    const agent = startGantry([
      'agent',
      '--server',
      server.url,
      '--enroll',
      token.secret,
      '--data-dir',
      agentDir,
      '--name',
      'web-1',
    ]);
    const target = await eventually(async () => {
      const t = await gantryJson(['targets', 'show', 'web-1'], env);
      return t.state === 'online' ? t : undefined;
    });
    expect(target).toMatchObject({
      environment: 'production',
      labels: { region: 'eu', role: 'web' },
      standardsProblems: [],
    });
    expect(target.facts.nodeVersion).toBe(process.version);
    const stateFile = path.join(agentDir, 'agent.json');
    expect(statSync(stateFile).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(stateFile, 'utf8')).credential).toMatch(/^gna_/);
    expect(await agent.stop('SIGTERM')).toBe(0);

    // The token is spent: a second agent cannot use it.
    const thief = startGantry([
      'agent',
      '--server',
      server.url,
      '--enroll',
      token.secret,
      '--data-dir',
      path.join(dir, 'thief'),
      '--name',
      'web-2',
    ]);
    expect(await thief.exited).toBe(3);
    expect(thief.output()).toContain('already used');

    // A restart needs no token: the agent comes back with its own credential.
    const before = (await gantryJson(['targets', 'show', 'web-1'], env)).lastSeenAt;
    const again = startGantry(['agent', '--data-dir', agentDir]);
    await eventually(async () =>
      (await gantryJson(['targets', 'show', 'web-1'], env)).lastSeenAt !== before ? true : undefined,
    );
    expect(await again.stop('SIGTERM')).toBe(0);

    await gantryJson(['targets', 'revoke-agent', 'web-1'], env);
    const revoked = startGantry(['agent', '--data-dir', agentDir]);
    expect(await revoked.exited).toBe(3);
    expect(revoked.output()).toContain('no longer accepts this agent');

    // With a new token the revoked agent enrolls again and takes up its own target.
    const fresh = await gantryJson(
      ['agents', 'enroll-token', '--env', 'production', '--label', 'region=eu'],
      env,
    );
    const back = startGantry(['agent', '--data-dir', agentDir, '--enroll', fresh.secret]);
    await eventually(async () => (back.output().includes('enrolled; the credential') ? true : undefined));
    const again2 = await gantryJson(['targets', 'show', 'web-1'], env);
    expect(again2.id).toBe(target.id);
    expect(again2.state).toBe('online');
    expect(await back.stop('SIGTERM')).toBe(0);
  });

  it('keeps running while the server is away, retrying with backoff', async () => {
    const token = await gantryJson(['agents', 'enroll-token', '--env', 'production'], env);
    const agentDir = path.join(dir, 'agent-2');
    const agent = startGantry([
      'agent',
      '--server',
      server.url,
      '--enroll',
      token.secret,
      '--data-dir',
      agentDir,
      '--name',
      'web-3',
    ]);
    await eventually(async () =>
      (await gantryJson(['targets', 'show', 'web-3'], env)).state === 'online' ? true : undefined,
    );
    // Point the agent at a port where nothing listens: it must keep trying, not exit.
    const state = JSON.parse(readFileSync(path.join(agentDir, 'agent.json'), 'utf8'));
    expect(await agent.stop('SIGTERM')).toBe(0);
    const { writeFileSync } = await import('node:fs');
    // Written by hand, as a person would: without the checksum the agent writes, which it then
    // does not ask for.
    const { checksum: _checksum, ...edited } = state;
    writeFileSync(
      path.join(agentDir, 'agent.json'),
      JSON.stringify({ ...edited, server: 'http://127.0.0.1:9' }),
      {
        mode: 0o600,
      },
    );
    const lonely = startGantry(['agent', '--data-dir', agentDir]);
    await eventually(async () => (lonely.output().includes('heartbeat failed; retrying') ? true : undefined));
    expect(lonely.proc.exitCode).toBeNull();
    expect(await lonely.stop('SIGTERM')).toBe(0);
  });

  it('refuses a download setting it cannot use, naming the setting, before it does anything', async () => {
    const dataDir = path.join(dir, 'bad-timeout');
    const cli = await runGantry(['agent', '--server', server.url, '--data-dir', dataDir, '--name', 'bad-1'], {
      env: { GANTRY_AGENT_DOWNLOAD_TIMEOUT_SECONDS: '2' },
    });
    expect(cli.code).toBe(2);
    expect(cli.stderr).toContain(
      "GANTRY_AGENT_DOWNLOAD_TIMEOUT_SECONDS is '2': give a whole number of seconds from 5 to 3600",
    );
    const code = await (await fetch(`${server.url}/agent/gantry-agent.js`)).text();
    const outside = mkdtempSync(path.join(os.tmpdir(), 'gantry-bundle-'));
    try {
      const { writeFileSync } = await import('node:fs');
      const { spawnSync } = await import('node:child_process');
      writeFileSync(path.join(outside, 'gantry-agent.js'), code);
      const bundled = (setting: Record<string, string>) =>
        spawnSync(process.execPath, ['gantry-agent.js', '--server', server.url, '--data-dir', 'state'], {
          cwd: outside,
          env: { PATH: process.env.PATH ?? '', ...setting },
          encoding: 'utf8',
        });
      const soon = bundled({ GANTRY_AGENT_DOWNLOAD_TIMEOUT_SECONDS: 'soon' });
      expect(soon.status).toBe(2);
      expect(soon.stderr).toContain("GANTRY_AGENT_DOWNLOAD_TIMEOUT_SECONDS is 'soon'");
      const lots = bundled({ GANTRY_AGENT_MEMORY_DOWNLOAD_MIB: '2048' });
      expect(lots.status).toBe(2);
      expect(lots.stderr).toContain(
        "GANTRY_AGENT_MEMORY_DOWNLOAD_MIB is '2048': give a whole number of MiB from 0 to 1024",
      );
    } finally {
      rmSync(outside, { recursive: true, force: true });
    }
    const { targets } = await gantryJson(['targets', 'list'], env);
    expect(targets.map((t: { name: string }) => t.name)).not.toContain('bad-1');
  });

  it('runs as the one JavaScript file the server hands out, with nothing but Node.js', async () => {
    const res = await fetch(`${server.url}/agent/gantry-agent.js`);
    expect(res.status).toBe(200);
    const code = await res.text();
    const outside = mkdtempSync(path.join(os.tmpdir(), 'gantry-bundle-'));
    try {
      const { writeFileSync } = await import('node:fs');
      writeFileSync(path.join(outside, 'gantry-agent.js'), code);
      const token = await gantryJson(['agents', 'enroll-token', '--env', 'production'], env);
      const { spawn } = await import('node:child_process');
      const child = spawn(
        process.execPath,
        ['gantry-agent.js', '--server', server.url, '--data-dir', 'state', '--name', 'bundled-1'],
        {
          cwd: outside,
          env: { PATH: process.env.PATH ?? '', GANTRY_ENROLL_TOKEN: token.secret },
          stdio: 'ignore',
        },
      );
      const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
      const target = await eventually(async () => {
        const t = await gantryJson(['targets', 'show', 'bundled-1'], env);
        return t.state === 'online' ? t : undefined;
      });
      expect(target.facts.nodeVersion).toBe(process.version);
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      rmSync(outside, { recursive: true, force: true });
    }
  });
});
