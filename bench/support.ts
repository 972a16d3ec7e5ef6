/**
 * Shared by the deployment benchmarks: a real `gantry server` process, an HTTP client over a
 * keep-alive pool big enough for thousands of simulated agents, and readings from /proc.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';

export const ADMIN_TOKEN = `gnt_bench_${'s'.repeat(40)}`;
export const FACTS = { os: 'linux', arch: 'x64', nodeVersion: process.version };
const BIN = path.resolve(import.meta.dirname, '../bin/gantry.js');

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const seconds = (ms: number) => (ms / 1000).toFixed(1);
export const mib = (n: number) => (n / 1024 / 1024).toFixed(0);

/** VmRSS (now) or VmHWM (the peak so far) of a process, in bytes; 0 once it is gone. */
export function procStatus(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(text)?.[1] ?? 0) * 1024;
  } catch {
    return 0;
  }
}

/** CPU seconds (user + system) a process has used. */
export function cpuSeconds(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/** Busy and idle CPU seconds of the whole machine (all cores, other people's work included). */
export function machineCpu(): { busy: number; idle: number } {
  const f = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').split(/\s+/).slice(1).map(Number);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  const total = f.reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0);
  return { busy: (total - idle) / 100, idle: idle / 100 };
}

/** HTTP over one keep-alive pool with up to `sockets` connections (one per simulated agent). */
export class Client {
  readonly agent: http.Agent;
  constructor(
    readonly base: URL,
    sockets: number,
  ) {
    this.agent = new http.Agent({ keepAlive: true, maxSockets: sockets, maxFreeSockets: sockets });
  }

  request(
    method: string,
    url: string,
    options: { token: string; body?: unknown; timeoutMs?: number },
  ): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      const body = options.body === undefined ? undefined : JSON.stringify(options.body);
      const req = http.request(
        new URL(url, this.base),
        {
          method,
          agent: this.agent,
          headers: {
            authorization: `Bearer ${options.token}`,
            ...(body !== undefined
              ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }
              : {}),
          },
          timeout: options.timeoutMs ?? 120_000,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
          );
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', reject);
      req.end(body);
    });
  }

  /** A JSON call that must succeed; a 503 (overloaded: no database connection free) is retried. */
  async json(
    method: string,
    url: string,
    body?: unknown,
    token = ADMIN_TOKEN,
    timeoutMs = 600_000,
  ): Promise<Record<string, unknown>> {
    let res = await this.request(method, url, { token, body, timeoutMs });
    for (let i = 0; i < 20 && res.status === 503; i++) {
      await sleep(200 + Math.random() * 800);
      res = await this.request(method, url, { token, body, timeoutMs });
    }
    if (res.status >= 300) throw new Error(`${method} ${url}: ${res.status} ${res.text.slice(0, 500)}`);
    return res.text ? (JSON.parse(res.text) as Record<string, unknown>) : {};
  }
}

/** Runs `work(i)` for i < n with at most `concurrency` at a time; resolves with the seconds taken. */
export async function bounded(
  n: number,
  concurrency: number,
  work: (i: number) => Promise<void>,
): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(n, concurrency) }, async () => {
      for (let i = next++; i < n; i = next++) await work(i);
    }),
  );
  return (performance.now() - t0) / 1000;
}

/** Pushes a package into the media library. */
export async function uploadPackage(
  base: URL,
  bytes: Buffer,
  component: string,
  version: string,
): Promise<string> {
  const hex = createHash('sha256').update(bytes).digest('hex');
  const query = new URLSearchParams({
    component,
    version,
    kind: 'package',
    filename: `${component}-${version}.tar.gz`,
    digest: `sha256:${hex}`,
  });
  const res = await fetch(new URL(`/api/v1/artifacts?${query}`, base), {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/octet-stream' },
    body: bytes,
  });
  if (res.status !== 201)
    throw new Error(`upload ${component} ${version}: ${res.status} ${await res.text()}`);
  return hex;
}

export interface ServerHandle {
  pid: number;
  base: URL;
  stop(): Promise<void>;
}

/**
 * A real `gantry server` (SQLite in `dir`, or PostgreSQL through GANTRY_DATABASE_URL in `env`),
 * logging at the default level into `dir/server.log`. BENCH_SERVER_NODE_ARGS gives Node flags to
 * the server alone, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`.
 */
export async function startServer(dir: string, env: Record<string, string> = {}): Promise<ServerHandle> {
  mkdirSync(dir, { recursive: true });
  const logFile = path.join(dir, 'server.log');
  const log = openSync(logFile, 'w');
  const nodeArgs = (process.env.BENCH_SERVER_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const args = [...nodeArgs, BIN, 'server', '--port', '0', '--data-dir', path.join(dir, 'data')];
  const server = spawn(process.execPath, args, {
    env: { ...process.env, GANTRY_BOOTSTRAP_ADMIN_TOKEN: ADMIN_TOKEN, GANTRY_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', log, log],
  });
  closeSync(log);
  let url = '';
  for (let i = 0; i < 300 && !url; i++) {
    await sleep(100);
    url =
      /"url":"(http:\/\/[^"]+)"[^\n]*"msg":"gantry server listening"/.exec(
        readFileSync(logFile, 'utf8'),
      )?.[1] ?? '';
    if (server.exitCode !== null) break;
  }
  if (!url) {
    server.kill('SIGKILL');
    throw new Error(`server did not start:\n${readFileSync(logFile, 'utf8').slice(-3000)}`);
  }
  return {
    pid: server.pid as number,
    base: new URL(url),
    // A graceful stop first (so a --cpu-prof profile is written), then a hard one.
    stop: async () => {
      if (server.exitCode !== null) return;
      const exited = new Promise((resolve) => server.once('exit', resolve));
      server.kill('SIGTERM');
      await Promise.race([exited, sleep(10_000)]);
      server.kill('SIGKILL');
    },
  };
}

/** Waits until the deployment `id` ends; `fast()` says when to look often (the view lists every target). */
export async function finished(
  client: Client,
  id: string,
  timeoutMs: number,
  fast: () => boolean,
  describe: () => string,
): Promise<Record<string, unknown>> {
  const final = new Set(['succeeded', 'failed', 'rolled_back', 'aborted', 'frozen']);
  const t0 = Date.now();
  for (;;) {
    // Under load an answer may take long (every request waits for the one database connection).
    const view = await client.json('GET', `/api/v1/deployments/${id}`, undefined, ADMIN_TOKEN, timeoutMs);
    if (final.has(view.state as string)) return view;
    if (Date.now() - t0 > timeoutMs)
      throw new Error(
        `deployment not finished after ${seconds(timeoutMs)} s: ${view.state} ${JSON.stringify(view.counts)}; ${describe()}`,
      );
    await sleep(fast() ? 100 : 2000);
  }
}

export interface GivenStep {
  id: string;
  kind: 'install' | 'activate' | 'rollback' | 'remove' | 'logs';
  component: string;
  version: string | null;
  digest: string | null;
  size: number | null;
}

export interface Simulated {
  credential: string;
}

/**
 * Simulated agents on the real protocol, all in this process: each long-polls
 * `GET /api/v1/agent/steps/next?wait=N` (or, with wait 0, polls with `pollMs` sleeps), runs the
 * step with `run` and reports the outcome until the server has it; a failed request is retried
 * after a short random pause, as an agent does, and counted.
 */
export class Fleet<S extends Simulated> {
  steps = 0;
  activates = 0;
  errors = 0;
  lastError = '';
  private stopped = false;
  private loops: Promise<void>[] = [];
  private heartbeatTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly client: Client,
    private readonly sims: S[],
    private readonly run: (sim: S, step: GivenStep) => Promise<Record<string, unknown>>,
    private readonly options: { wait: number; pollMs: number; heartbeats: boolean },
  ) {}

  start(): void {
    this.loops = this.sims.map((sim) => this.loop(sim));
    if (this.options.heartbeats) {
      // Every agent once per 15 s, spread evenly, as the real agents do.
      let sent = 0;
      const t0 = Date.now();
      this.heartbeatTimer = setInterval(() => {
        const due = Math.floor(((Date.now() - t0) / 15_000) * this.sims.length);
        for (; sent < due; sent++) {
          const sim = this.sims[sent % this.sims.length] as S;
          this.client
            .request('POST', '/api/v1/agent/heartbeat', { token: sim.credential, body: { facts: FACTS } })
            .catch(() => {});
        }
      }, 50);
    }
  }

  private async loop(sim: S): Promise<void> {
    const wait = this.options.wait;
    while (!this.stopped) {
      try {
        const res = await this.client.request('GET', `/api/v1/agent/steps/next?wait=${wait}`, {
          token: sim.credential,
          timeoutMs: (wait + 60) * 1000,
        });
        if (res.status === 204) {
          if (wait === 0) await sleep(this.options.pollMs);
          continue;
        }
        if (res.status !== 200)
          throw new Error(`steps/next answered ${res.status}: ${res.text.slice(0, 200)}`);
        const step = JSON.parse(res.text) as GivenStep;
        const outcome = await this.run(sim, step);
        for (;;) {
          const sent = await this.client.request('POST', `/api/v1/agent/steps/${step.id}/result`, {
            token: sim.credential,
            body: outcome,
          });
          if (sent.status === 200) break;
          this.errors++;
          this.lastError = `result answered ${sent.status}: ${sent.text.slice(0, 200)}`;
          if (this.stopped) return;
          await sleep(250 + Math.random() * 500);
        }
        this.steps++;
        if (step.kind === 'activate') this.activates++;
      } catch (error) {
        if (this.stopped) return;
        this.errors++;
        this.lastError = (error as Error).message;
        await sleep(250 + Math.random() * 500);
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.client.agent.destroy();
    await Promise.all(this.loops);
  }
}

/** Enrolls `n` agents through the real API: a one-time token each, traded for a credential. */
export async function enroll(
  client: Client,
  environment: string,
  n: number,
  concurrency: number,
  name: (i: number) => string,
): Promise<{ seconds: number; agents: Array<{ credential: string; agentId: string; targetId: string }> }> {
  const agents: Array<{ credential: string; agentId: string; targetId: string }> = new Array(n);
  const took = await bounded(n, concurrency, async (i) => {
    const token = (await client.json('POST', '/api/v1/enrollment-tokens', { environment })).secret as string;
    const enrolled = await client.json('POST', '/api/v1/agent/enroll', {
      token,
      name: name(i),
      facts: FACTS,
    });
    agents[i] = {
      credential: enrolled.credential as string,
      agentId: enrolled.agentId as string,
      targetId: enrolled.targetId as string,
    };
  });
  return { seconds: took, agents };
}
