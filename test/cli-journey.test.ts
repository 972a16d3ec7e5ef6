/**
 * The foundation's journey with real processes: start `gantry server` on SQLite, sign in with the
 * CLI, make a user and a token, list and verify the audit chain, find an edit made behind
 * Gantry's back, and stop the server gracefully.
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gantryJson, runGantry, type ServerProcess, startServer } from './helpers/processes.ts';

describe('the CLI against a real server on SQLite', () => {
  let dir: string;
  let server: ServerProcess;
  let env: Record<string, string>;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-cli-'));
    server = await startServer(['--data-dir', path.join(dir, 'data')]);
    env = { GANTRY_CONFIG_DIR: path.join(dir, 'config') };
  });
  afterAll(async () => {
    await server?.stop('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('tells the operator once how to log in, without writing the password to the log', () => {
    const password = readFileSync(path.join(dir, 'data', 'initial-admin-password'), 'utf8').trim();
    expect(statSync(path.join(dir, 'data', 'initial-admin-password')).mode & 0o777).toBe(0o600);
    expect(server.output()).toContain('initial-admin-password');
    expect(server.output()).toContain('gantry login');
    expect(server.output()).not.toContain(password);
  });

  it('logs in with the password, keeps the token in a 0600 file, and answers whoami', async () => {
    const password = readFileSync(path.join(dir, 'data', 'initial-admin-password'), 'utf8');
    const login = await gantryJson(
      ['login', server.url, '--username', 'admin', '--password-stdin'],
      env,
      password,
    );
    expect(login.user.role).toBe('admin');
    expect(statSync(path.join(dir, 'config', 'config.json')).mode & 0o777).toBe(0o600);
    const human = await runGantry(['whoami'], { env });
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/user\s+admin/);
    expect(human.stdout).toMatch(/role\s+admin/);
  });

  it('creates a user and a token; the token works through GANTRY_URL and GANTRY_TOKEN alone', async () => {
    const user = await gantryJson(['users', 'create', 'alice', '--role', 'viewer'], env);
    expect(user.username).toBe('alice');
    const created = await gantryJson(
      ['tokens', 'create', 'ci pipeline', '--user', user.id, '--expires-in-days', '30'],
      env,
    );
    expect(created.secret).toMatch(/^gnt_/);
    const me = await gantryJson(['whoami'], {
      GANTRY_URL: server.url,
      GANTRY_TOKEN: created.secret,
      GANTRY_CONFIG_DIR: path.join(dir, 'none'),
    });
    expect(me.user.username).toBe('alice');
    const listed = await runGantry(['tokens', 'list', '--all'], { env });
    expect(listed.stdout).toContain('ci pipeline');
    expect(listed.stdout).toContain(created.token.prefix);
    expect(listed.stdout).not.toContain(created.secret);
  });

  it('exits 2 on a usage error, 3 when refused, 4 when the server is unreachable', async () => {
    expect((await runGantry(['users', 'create', 'bob', '--role', 'emperor'], { env })).code).toBe(2);
    expect((await runGantry(['tokens', 'frobnicate'], { env })).code).toBe(2);
    expect((await runGantry(['whoami'], { env: { GANTRY_CONFIG_DIR: path.join(dir, 'empty') } })).code).toBe(
      2,
    );
    const viewer = await gantryJson(
      ['tokens', 'create', 'v', '--user', (await gantryJson(['users', 'show', 'alice'], env)).id],
      env,
    );
    const refused = await runGantry(['users', 'list', '--json'], {
      env: { ...env, GANTRY_TOKEN: viewer.secret },
    });
    expect(refused.code).toBe(3);
    expect(JSON.parse(refused.stdout).error.code).toBe('FORBIDDEN');
    expect(refused.stderr).toContain('does not allow');
    const down = await runGantry(['whoami'], { env: { ...env, GANTRY_URL: 'http://127.0.0.1:9' } });
    expect(down.code).toBe(4);
    expect(down.stderr).toContain('Cannot reach');
  });

  it('lists the audit chain and verifies it, then names the entry edited in the database file', async () => {
    const list = await gantryJson(['audit', 'list', '--action', 'user.*'], env);
    expect(list.entries.map((e: { details: { username: string } }) => e.details.username)).toEqual([
      'admin',
      'alice',
    ]);
    const table = await runGantry(['audit', 'list'], { env });
    expect(table.stdout).toContain('token.created');
    const ok = await runGantry(['audit', 'verify'], { env });
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/audit chain\s+intact/);

    const db = new Database(path.join(dir, 'data', 'gantry.db'));
    db.prepare('update audit_log set details = \'{"username":"mallory"}\' where seq = 2').run();
    db.close();
    const broken = await runGantry(['audit', 'verify'], { env });
    expect(broken.code).toBe(1);
    expect(broken.stdout).toContain('BROKEN at entry 2');
    const json = await runGantry(['audit', 'verify', '--json'], { env });
    expect(JSON.parse(json.stdout)).toMatchObject({
      ok: false,
      checked: 1,
      broken: { seq: 2, kind: 'hash_mismatch' },
    });
  });

  it('logs out by revoking the saved token', async () => {
    const saved = JSON.parse(readFileSync(path.join(dir, 'config', 'config.json'), 'utf8'));
    const out = await runGantry(['logout'], { env });
    expect(out.code).toBe(0);
    const after = await runGantry(['whoami'], {
      env: { GANTRY_URL: server.url, GANTRY_TOKEN: saved.token, GANTRY_CONFIG_DIR: path.join(dir, 'none') },
    });
    expect(after.code).toBe(3);
  });

  it('never writes a token or password to the server log', async () => {
    const log = server.output();
    const saved = readFileSync(path.join(dir, 'data', 'initial-admin-password'), 'utf8').trim();
    expect(log).not.toContain(saved);
    expect(log).not.toMatch(/gnt_[A-Za-z0-9_-]{43}/);
    expect(log).not.toMatch(/Bearer /);
  });

  it('shuts down gracefully on SIGTERM', async () => {
    const code = await server.stop('SIGTERM');
    expect(code).toBe(0);
    expect(server.output()).toContain('"msg":"stopped"');
  });
});
