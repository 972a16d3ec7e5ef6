/**
 * Real processes: `gantry server` and the `gantry` CLI, spawned from bin/gantry.js exactly as a
 * user runs them.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { makeTarGz } from './archives.ts';

export const GANTRY_BIN = path.resolve(import.meta.dirname, '../../bin/gantry.js');

export interface ServerProcess {
  url: string;
  proc: ChildProcess;
  /** Everything the server printed so far. */
  output(): string;
  /** Sends `signal` and waits for the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export function childEnv(extra: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_ENV: 'test' };
  for (const key of Object.keys(env)) if (key.startsWith('GANTRY_')) delete env[key];
  for (const [key, value] of Object.entries(extra)) {
    if (value === undefined) delete env[key];
    else env[key] = value;
  }
  return env;
}

export async function startServer(
  args: string[],
  env: Record<string, string | undefined> = {},
): Promise<ServerProcess> {
  const server = startGantry(['server', '--port', '0', ...args], env);
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`server did not start in time:\n${server.output()}`)),
      20_000,
    );
    const check = () => {
      const match = /"url":"(http:\/\/[^"]+)"[^\n]*"msg":"gantry server listening"/.exec(server.output());
      if (match?.[1]) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    server.proc.stdout?.on('data', check);
    server.proc.stderr?.on('data', check);
    server.exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}:\n${server.output()}`));
    });
  });
  return { url, proc: server.proc, output: server.output, stop: server.stop };
}

export interface LongProcess {
  proc: ChildProcess;
  output(): string;
  /** Resolves with the exit code when the process ends. */
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts a `gantry` command that keeps running (an agent), collecting what it prints. */
export function startGantry(args: string[], env: Record<string, string | undefined> = {}): LongProcess {
  const proc = spawn(process.execPath, [GANTRY_BIN, ...args], {
    env: childEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  proc.stderr?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return {
    proc,
    output: () => out,
    exited,
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode !== null) return proc.exitCode;
      proc.kill(signal);
      return exited;
    },
  };
}

/** Polls `check` until it returns a value, or fails after `timeoutMs`. */
export async function eventually<T>(check: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const value = await check().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 200));
  }
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runGantry(
  args: string[],
  options: { env?: Record<string, string | undefined>; stdin?: string } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [GANTRY_BIN, ...args], {
      env: childEnv(options.env ?? {}),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    proc.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    proc.on('error', reject);
    proc.on('exit', (code) => resolve({ code, stdout, stderr }));
    proc.stdin.end(options.stdin ?? '');
  });
}

/** Runs a CLI command that must succeed, and returns its parsed --json output. */
export async function gantryJson(
  args: string[],
  env: Record<string, string | undefined>,
  stdin?: string,
  // biome-ignore lint/suspicious/noExplicitAny: tests read whatever the command printed.
): Promise<any> {
  const result = await runGantry([...args, '--json'], { env, ...(stdin !== undefined ? { stdin } : {}) });
  if (result.code !== 0)
    throw new Error(`gantry ${args.join(' ')} exited ${result.code}:\n${result.stdout}\n${result.stderr}`);
  return JSON.parse(result.stdout);
}

/**
 * A package whose health check fails on a target whose agent's data directory holds a file named
 * `unhealthy`, and whose `index.html` names its version.
 */
export function healthCheckedPackage(version: string): Buffer {
  return makeTarGz({
    'gantry.yaml': 'health:\n  command: test ! -e ../../../unhealthy\n  retries: 1\n  interval: 1\n',
    'index.html': `web ${version}`,
  });
}

/** Pushes each of `versions` of `component` (its archive from `archive`) and makes `name@version` of it alone. */
export async function pushReleases(
  dir: string,
  env: Record<string, string>,
  release: { name: string; component: string; versions: string[]; archive: (version: string) => Buffer },
): Promise<void> {
  const { name, component } = release;
  for (const version of release.versions) {
    const file = path.join(dir, `${component}-${version}.tar.gz`);
    writeFileSync(file, release.archive(version));
    await gantryJson(['artifact', 'push', file, '--component', component, '--version', version], env);
    await gantryJson(
      ['release', 'create', `${name}@${version}`, '--component', `${component}=${version}`],
      env,
    );
  }
}

/**
 * Kills what the agents of these data directories started and a killed agent leaves running
 * (services by their pid files in `run/`, an nginx by `nginx/nginx.pid`), with their groups.
 */
/** What an agent's downloads directory holds (none when it was never made: small downloads stay in memory). */
export function partialDownloads(dataDir: string): string[] {
  const downloads = path.join(dataDir, 'downloads');
  return existsSync(downloads) ? readdirSync(downloads) : [];
}

export function killLeftovers(dataDirs: string[]): void {
  for (const dataDir of dataDirs) {
    const run = path.join(dataDir, 'run');
    const files = [
      path.join(dataDir, 'nginx', 'nginx.pid'),
      ...(existsSync(run) ? readdirSync(run).map((f) => path.join(run, f)) : []),
    ];
    for (const file of files) {
      if (!existsSync(file)) continue;
      const pid = Number(readFileSync(file, 'utf8').trim().split(' ')[0]);
      for (const p of [-pid, pid])
        try {
          process.kill(p, 'SIGKILL');
        } catch {}
    }
  }
}

/** Makes an enrollment token for `environment`, starts an agent with it, and waits until its target is online. */
export async function startEnrolledAgent(
  server: { url: string },
  env: Record<string, string>,
  options: { name: string; dataDir: string; environment?: string; labels?: Record<string, string> },
): Promise<LongProcess> {
  const token = await gantryJson(
    [
      'agents',
      'enroll-token',
      '--env',
      options.environment ?? 'production',
      ...Object.entries(options.labels ?? {}).flatMap(([k, v]) => ['--label', `${k}=${v}`]),
    ],
    env,
  );
  const agent = startGantry(
    ['agent', '--server', server.url, '--data-dir', options.dataDir, '--name', options.name],
    {
      GANTRY_ENROLL_TOKEN: token.secret,
    },
  );
  await eventually(async () =>
    (await gantryJson(['targets', 'show', options.name], env)).state === 'online' ? true : undefined,
  );
  return agent;
}

/** The parsed JSON answer, of whatever shape (each test checks what it needs). */
type Json = ReturnType<typeof JSON.parse>;
export type Api = (method: string, url: string, body?: unknown) => Promise<{ status: number; body: Json }>;

/** JSON requests with a bearer token to the server `base()` names at each call (it may restart). */
export function apiOf(base: () => string, token: string): Api {
  return async (method, url, body) => {
    const res = await fetch(`${base()}${url}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : null };
  };
}

/** Waits until deployment `id` has ended, and returns its view. */
export function deploymentEnded(api: Api, id: string, timeoutMs = 50_000) {
  return eventually(async () => {
    const d = (await api('GET', `/api/v1/deployments/${id}`)).body;
    return ['succeeded', 'failed', 'rolled_back', 'aborted', 'frozen'].includes(d.state) ? d : undefined;
  }, timeoutMs);
}
