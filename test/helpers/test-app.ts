/**
 * A real Gantry app on a real database, driven in-process through Fastify's inject (real
 * routing, validation, hooks and serialisation; no socket). Time is a `TestClock`.
 */

import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Role } from '../../src/core/roles.ts';
import { ensureFirstAdmin } from '../../src/server/bootstrap.ts';
import type { Clock } from '../../src/server/clock.ts';
import { createApp } from '../../src/server/create-app.ts';
import { FsBlobStore } from '../../src/server/dml/fs-blob-store.ts';
import type { App } from '../../src/server/http/route-kit.ts';
import type { TestDatabase, TestDatabaseKind } from './test-databases.ts';

export class TestClock implements Clock {
  constructor(private current = new Date('2026-11-22T10:00:00.000Z')) {}
  now(): Date {
    return new Date(this.current.getTime());
  }
  advance(ms: number): void {
    this.current = new Date(this.current.getTime() + ms);
  }
}

export const ADMIN_TOKEN = `gnt_test_admin_${'x'.repeat(40)}`;

export interface TestApp {
  app: App;
  db: TestDatabase;
  clock: TestClock;
  dataDir: string;
  /** Sends a request as `token` (or anonymously) and returns status, parsed body and headers. */
  call(method: string, url: string, options?: CallOptions): Promise<CallResult>;
  /** Creates a user with `role` and returns an API token for it. */
  userWithToken(role: Role, username?: string): Promise<{ id: string; token: string; username: string }>;
  /** A fresh app on the same database, as after a restart. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

export interface CallOptions {
  token?: string | undefined;
  body?: unknown;
  rawBody?: string | Buffer;
  headers?: Record<string, string>;
}

export interface CallResult {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: tests read whatever the response holds.
  body: any;
  headers: Record<string, string | string[] | number | undefined>;
}

let counter = 0;

export async function startTestApp(
  kind: TestDatabaseKind,
  options: { db?: TestDatabase; dmlMaxBytes?: number; dmlUserQuotaBytes?: number } = {},
): Promise<TestApp> {
  const db = options.db ?? (await kind.open());
  const clock = new TestClock();
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'gantry-test-'));
  await ensureFirstAdmin({ database: db.database, clock }, { dataDir, bootstrapToken: ADMIN_TOKEN });
  const blobs = new FsBlobStore(path.join(dataDir, 'blobs'));
  await blobs.init();
  const build = () =>
    createApp({
      database: db.database,
      clock,
      logger: false,
      bodyLimit: 1024 * 1024,
      publicUrl: undefined,
      trustProxy: false,
      dataDir,
      blobs,
      dmlMaxBytes: options.dmlMaxBytes ?? 64 * 1024 * 1024,
      dmlUserQuotaBytes: options.dmlUserQuotaBytes,
      // Tests move the deployment engine with `kick` and `idle`; the interval is only a backstop.
      engineIntervalMs: 60_000,
    });
  let app = await build();

  const call = async (method: string, url: string, callOptions: CallOptions = {}): Promise<CallResult> => {
    const headers: Record<string, string> = { ...(callOptions.headers ?? {}) };
    if (callOptions.token) headers.authorization = `Bearer ${callOptions.token}`;
    let payload: string | Buffer | undefined;
    if (callOptions.rawBody !== undefined) {
      payload = callOptions.rawBody;
      headers['content-type'] ??= 'application/json';
    } else if (callOptions.body !== undefined) {
      payload = JSON.stringify(callOptions.body);
      headers['content-type'] ??= 'application/json';
    }
    const response = await app.inject({
      method: method as 'GET',
      url,
      headers,
      ...(payload !== undefined ? { payload } : {}),
    });
    let body: unknown = null;
    if (response.body !== '') {
      try {
        body = JSON.parse(response.body);
      } catch {
        body = response.body;
      }
    }
    return { status: response.statusCode, body, headers: response.headers };
  };

  return {
    get app() {
      return app;
    },
    db,
    clock,
    dataDir,
    call,
    async userWithToken(role, username) {
      counter += 1;
      const name = username ?? `${role.replace(/[^a-z]/g, '')}${counter}`;
      const created = await call('POST', '/api/v1/users', {
        token: ADMIN_TOKEN,
        body: { username: name, role },
      });
      if (created.status !== 201) throw new Error(`could not create user: ${JSON.stringify(created.body)}`);
      const token = await call('POST', '/api/v1/tokens', {
        token: ADMIN_TOKEN,
        body: { name: 'test', userId: created.body.id },
      });
      if (token.status !== 201) throw new Error(`could not create token: ${JSON.stringify(token.body)}`);
      return { id: created.body.id, token: token.body.secret, username: name };
    },
    async restart() {
      await app.close();
      app = await build();
    },
    async close() {
      await app.close();
      await blobs.close();
      if (!options.db) await db.cleanup();
      rmSync(dataDir, { recursive: true, force: true });
    },
  } as TestApp;
}
