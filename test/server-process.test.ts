/**
 * `gantry server` as a process: HTTP framing abuse (B24), what is reachable without credentials
 * and where it binds (A09), first-start bootstrap happening once, refusal of a newer database,
 * and the same server on the real PostgreSQL.
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gantryJson, runGantry, type ServerProcess, startServer } from './helpers/processes.ts';
import { createPostgresSchema, postgresUrl, urlWithSchema } from './helpers/test-databases.ts';

const BOOTSTRAP = `gnt_bootstrap_${'b'.repeat(40)}`;

/** Sends raw bytes and returns the whole answer. */
function rawRequest(url: string, payload: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname, () => socket.write(payload));
    let data = '';
    socket.on('data', (d) => {
      data += d.toString();
    });
    socket.on('close', () => resolve(data));
    socket.on('error', reject);
    socket.setTimeout(5000, () => {
      socket.destroy();
      resolve(data || 'timeout');
    });
  });
}

describe('gantry server process on SQLite', () => {
  let dir: string;
  let server: ServerProcess;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-srv-'));
    server = await startServer(['--data-dir', dir], {
      GANTRY_BOOTSTRAP_ADMIN_TOKEN: BOOTSTRAP,
      GANTRY_AUDIT_FILE: path.join(dir, 'audit.jsonl'),
    });
  });
  afterAll(async () => {
    await server?.stop('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('A09: binds to loopback by default, and keeps its data readable by its own OS user only', () => {
    expect(new URL(server.url).hostname).toBe('127.0.0.1');
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(path.join(dir, 'gantry.db')).mode & 0o077).toBe(0);
    expect(statSync(path.join(dir, 'initial-admin-password')).mode & 0o777).toBe(0o600);
  });

  it('A09: answers nothing but health, version and the API description without credentials', async () => {
    for (const p of [
      '/api/v1/users',
      '/api/v1/tokens',
      '/api/v1/audit',
      '/api/v1/audit/verify',
      '/api/v1/whoami',
    ]) {
      const res = await fetch(server.url + p);
      expect(res.status, p).toBe(401);
    }
    for (const p of ['/metrics', '/debug/pprof', '/documentation', '/.env']) {
      expect((await fetch(server.url + p)).status, p).toBe(404);
    }
  });

  it('B24: refuses a request with both Content-Length and Transfer-Encoding, and oversized headers', async () => {
    const smuggle = await rawRequest(
      server.url,
      'POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    );
    expect(smuggle).toMatch(/^HTTP\/1\.1 400/);
    expect(JSON.parse(smuggle.slice(smuggle.indexOf('\r\n\r\n') + 4)).error).toMatchObject({
      code: 'VALIDATION',
    });
    const huge = await rawRequest(
      server.url,
      `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
    );
    expect(huge).toMatch(/^HTTP\/1\.1 431/);
    expect(JSON.parse(huge.slice(huge.indexOf('\r\n\r\n') + 4)).error.requestId).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('makes GANTRY_BOOTSTRAP_ADMIN_TOKEN admin’s first token', async () => {
    const me = await gantryJson(['whoami'], { GANTRY_URL: server.url, GANTRY_TOKEN: BOOTSTRAP });
    expect(me.user.username).toBe('admin');
  });

  it('A10: copies every committed audit entry to the audit file, identical to the chain', async () => {
    const env = { GANTRY_URL: server.url, GANTRY_TOKEN: BOOTSTRAP };
    await gantryJson(['users', 'create', 'auditor', '--role', 'viewer'], env);
    await runGantry(['users', 'create', 'auditor', '--role', 'viewer'], { env }); // refused: no entry
    const chain = await gantryJson(['audit', 'list', '--limit', '1000'], env);
    const copied = readFileSync(path.join(dir, 'audit.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(copied).toEqual(chain.entries);
    expect(copied.map((e: { action: string }) => e.action)).toContain('user.created');
    expect(statSync(path.join(dir, 'audit.jsonl')).mode & 0o777).toBe(0o600);

    const against = ['audit', 'verify', '--against', path.join(dir, 'audit.jsonl')];
    expect(await gantryJson(against, env)).toMatchObject({ ok: true, comparedWithCopy: copied.length });
    // Removing the newest entry leaves a chain that verifies on its own; only the copy shows the loss.
    const db = new Database(path.join(dir, 'gantry.db'));
    db.prepare('delete from audit_log where seq = (select max(seq) from audit_log)').run();
    db.close();
    expect((await gantryJson(['audit', 'verify'], env)).ok).toBe(true);
    const truncated = await runGantry([...against, '--json'], { env });
    expect(truncated.code).toBe(1);
    expect(JSON.parse(truncated.stdout).broken).toMatchObject({ kind: 'copy_mismatch' });
    expect(JSON.parse(truncated.stdout).broken.message).toContain('removed from the end');
  });

  it('bootstraps only once: a restart on the same data makes no second admin and says nothing of a password', async () => {
    expect(await server.stop('SIGTERM')).toBe(0);
    server = await startServer(['--data-dir', dir], {
      GANTRY_BOOTSTRAP_ADMIN_TOKEN: `gnt_other_${'c'.repeat(40)}`,
    });
    expect(server.output()).not.toContain('initial-admin-password');
    const users = await gantryJson(['users', 'list'], { GANTRY_URL: server.url, GANTRY_TOKEN: BOOTSTRAP });
    expect(users.users.map((u: { username: string }) => u.username).sort()).toEqual(['admin', 'auditor']);
    const other = await runGantry(['whoami'], {
      env: { GANTRY_URL: server.url, GANTRY_TOKEN: `gnt_other_${'c'.repeat(40)}` },
    });
    expect(other.code).toBe(3);
  });

  it('refuses to start on a database migrated by a newer Gantry, and says so', async () => {
    expect(await server.stop('SIGTERM')).toBe(0);
    const db = new Database(path.join(dir, 'gantry.db'));
    db.prepare(
      "insert into gantry_migration (name, timestamp) values ('0999-future', '2030-01-01T00:00:00Z')",
    ).run();
    db.close();
    const error = await startServer(['--data-dir', dir]).catch((e: Error) => e);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toContain('newer Gantry');
    expect((error as Error).message).toContain('0999-future');
  });

  it('refuses a bad setting before starting, naming it', async () => {
    const result = await runGantry(['server', '--port', 'http'], { env: {} });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('--port');
  });
});

describe.skipIf(!postgresUrl)('gantry server process on PostgreSQL', () => {
  let server: ServerProcess;
  let drop: () => Promise<void>;
  let dir: string;
  beforeAll(async () => {
    const schema = await createPostgresSchema(postgresUrl as string);
    drop = schema.drop;
    dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-pg-'));
    server = await startServer(['--data-dir', dir], {
      GANTRY_DATABASE_URL: urlWithSchema(postgresUrl as string, schema.schema),
      GANTRY_BOOTSTRAP_ADMIN_TOKEN: BOOTSTRAP,
    });
  });
  afterAll(async () => {
    await server?.stop('SIGKILL');
    await drop?.();
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs the same API on PostgreSQL: a user, a token, an intact audit chain', async () => {
    const env = { GANTRY_URL: server.url, GANTRY_TOKEN: BOOTSTRAP };
    expect((await gantryJson(['version'], env)).server.database).toBe('postgres');
    await gantryJson(['users', 'create', 'pat', '--role', 'change-authority'], env);
    await gantryJson(['tokens', 'create', 'pipeline'], env);
    const verify = await gantryJson(['audit', 'verify'], env);
    expect(verify).toMatchObject({ ok: true, broken: null });
    expect(verify.checked).toBeGreaterThanOrEqual(4);
    expect(server.output()).not.toContain(BOOTSTRAP);
    expect(await server.stop('SIGTERM')).toBe(0);
  });
});
