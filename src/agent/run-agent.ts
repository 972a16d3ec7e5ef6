/**
 * `gantry agent`: enrolls once with a token, then keeps its target alive with heartbeats carrying
 * its host facts. With the server unreachable it keeps running and retries with exponential
 * backoff and jitter. Installing, activating and rolling back releases arrive with the deployment
 * work; this is the agent's connection to the server.
 */
import { statfsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import { type Failpoints, NO_FAILPOINTS } from '../support/failpoints.ts';
import { type AgentState, forgetState, readState, statePath, writeState } from './agent-state.ts';
import { readText, send } from './http-client.ts';
import { retireExpired } from './slots.ts';
import { recover, runStep, type StepToRun, superviseActive } from './steps.ts';
import { Supervisor } from './supervisor.ts';

export interface AgentOptions {
  server: string | undefined;
  enrollToken: string | undefined;
  dataDir: string;
  name: string | undefined;
  logger: Logger;
  /** Resolves when the agent should stop (SIGTERM). */
  stopped: Promise<void>;
  /** Test harness failpoints (FAILPOINTS); none in production. */
  failpoints?: Failpoints | undefined;
  /** How long a download may be silent or trickle (GANTRY_AGENT_DOWNLOAD_TIMEOUT_SECONDS, 60). */
  downloadTimeoutSeconds?: number | undefined;
  /** Packages up to this many MiB are downloaded into memory (GANTRY_AGENT_MEMORY_DOWNLOAD_MIB, 64). */
  memoryDownloadMib?: number | undefined;
}

export class AgentFatalError extends Error {}

/** A setting the agent was started with is not usable; the message says which and what to give. */
export class AgentSettingError extends Error {}

/**
 * A whole-number setting from the environment: undefined when not given, else a number from `min`
 * to `max`, or an AgentSettingError naming the setting and what to give.
 */
export function wholeNumberSetting(
  name: string,
  text: string | undefined,
  min: number,
  max: number,
  unit: string,
): number | undefined {
  if (text === undefined || text === '') return undefined;
  const n = Number(text);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new AgentSettingError(
      `${name} is '${text}': give a whole number of ${unit} from ${min} to ${max}.`,
    );
  return n;
}

/**
 * The agent's settings from its environment:
 * - GANTRY_AGENT_DOWNLOAD_TIMEOUT_SECONDS: how long a download may be silent or trickle (5–3600);
 * - GANTRY_AGENT_MEMORY_DOWNLOAD_MIB: packages up to this size are downloaded into memory and
 *   checked there; larger ones go to a file under the data directory (0–1024; 0: always a file).
 */
export function agentSettings(
  env: Record<string, string | undefined>,
): Pick<AgentOptions, 'downloadTimeoutSeconds' | 'memoryDownloadMib'> {
  return {
    downloadTimeoutSeconds: wholeNumberSetting(
      'GANTRY_AGENT_DOWNLOAD_TIMEOUT_SECONDS',
      env.GANTRY_AGENT_DOWNLOAD_TIMEOUT_SECONDS,
      5,
      3600,
      'seconds',
    ),
    memoryDownloadMib: wholeNumberSetting(
      'GANTRY_AGENT_MEMORY_DOWNLOAD_MIB',
      env.GANTRY_AGENT_MEMORY_DOWNLOAD_MIB,
      0,
      1024,
      'MiB',
    ),
  };
}

export function hostFacts(dataDir: string) {
  let freeDiskBytes: number | undefined;
  try {
    const fs = statfsSync(dataDir);
    freeDiskBytes = Number(fs.bavail) * Number(fs.bsize);
  } catch {
    freeDiskBytes = undefined;
  }
  return {
    os: os.platform(),
    arch: os.arch(),
    nodeVersion: process.version,
    hostname: os.hostname().slice(0, 255),
    ...(freeDiskBytes !== undefined ? { freeDiskBytes } : {}),
  };
}

async function post(
  server: string,
  path: string,
  body: unknown,
  credential?: string,
): Promise<{ status: number; body: unknown }> {
  const response = await send('POST', new URL(path, server), {
    headers: {
      'content-type': 'application/json',
      accept: 'application/json',
      ...(credential ? { authorization: `Bearer ${credential}` } : {}),
    },
    body: JSON.stringify(body),
    timeoutMs: 15_000,
  });
  // The server's answers are small; anything large is refused rather than read into memory.
  const text = await readText(response.body);
  let parsed: unknown = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = { error: { message: text.slice(0, 200) } };
  }
  return { status: response.status, body: parsed };
}

function messageOf(body: unknown): string {
  return (body as { error?: { message?: string } } | null)?.error?.message ?? 'no message';
}

function installedOf(state: AgentState): Array<{ component: string; version: string }> {
  return Object.entries(state.components ?? {})
    .filter(([, c]) => c.current !== null)
    .map(([component, c]) => ({ component, version: c.current as string }));
}

/** Enrolls when there is no saved state yet; returns the state to run with. */
export async function ensureEnrolled(options: AgentOptions): Promise<AgentState> {
  const saved = readState(options.dataDir);
  if (saved) {
    // The credential belongs to one server and is never sent to another.
    if (options.server !== undefined && new URL(options.server).href !== new URL(saved.server).href) {
      throw new AgentFatalError(
        `This agent is enrolled with ${saved.server}, not ${options.server}; its credential is not sent elsewhere. Use another --data-dir to enroll with another server.`,
      );
    }
    if (options.enrollToken) {
      options.logger.info(
        { target: saved.name },
        'already enrolled; the token is kept in case the server asks for a new enrollment',
      );
    }
    if (saved.restored) {
      // The state file was damaged and its copy may be one write behind: what runs is read from
      // the `current` links on disk, and the next heartbeat tells the server (row F07).
      const components = await activeOnDisk(options.dataDir);
      const state: AgentState = {
        ...saved,
        components: mergeActive(saved.components, components),
        pending: undefined,
      };
      delete (state as { restored?: boolean }).restored;
      writeState(options.dataDir, state);
      options.logger.warn(
        { target: saved.name, active: components },
        `${statePath(options.dataDir)} was damaged: carried on from its copy, with the active versions read from disk`,
      );
      return state;
    }
    return saved;
  }
  if (!options.server || !options.enrollToken) {
    throw new AgentFatalError(
      'This agent is not enrolled yet: give --server URL and --enroll TOKEN (an admin makes one with `gantry agents enroll-token`).',
    );
  }
  const name =
    options.name ??
    os
      .hostname()
      .toLowerCase()
      .replace(/[^a-z0-9._-]/g, '-')
      .replace(/^[^a-z0-9]+/, '')
      .slice(0, 63);
  const result = await post(options.server, '/api/v1/agent/enroll', {
    token: options.enrollToken,
    name,
    facts: hostFacts(options.dataDir),
  });
  if (result.status !== 201)
    throw new AgentFatalError(`Enrollment refused (${result.status}): ${messageOf(result.body)}`);
  const enrolled = result.body as { agentId: string; targetId: string; credential: string };
  const state: AgentState = {
    version: 1,
    server: options.server,
    agentId: enrolled.agentId,
    targetId: enrolled.targetId,
    name,
    credential: enrolled.credential,
  };
  writeState(options.dataDir, state);
  options.logger.info(
    { target: name, targetId: state.targetId },
    'enrolled; the credential is kept in the data directory (mode 0600)',
  );
  return state;
}

/** Heartbeats until stopped. A revoked credential ends the agent; anything else is retried. */
export async function runAgent(options: AgentOptions): Promise<void> {
  const hadState = readState(options.dataDir) !== undefined;
  let state = await ensureEnrolled(options);
  const server = options.server ?? state.server;
  const failpoints = options.failpoints ?? NO_FAILPOINTS;
  const supervisor = new Supervisor(options.dataDir);
  const downloadTimeoutMs = (options.downloadTimeoutSeconds ?? 60) * 1000;
  const inMemoryDownloadMax =
    options.memoryDownloadMib === undefined ? undefined : options.memoryDownloadMib * 1024 * 1024;
  // What a step needs; `state` is read each time (a re-enrollment replaces it).
  const stepContext = () => ({
    server,
    dataDir: options.dataDir,
    state,
    failpoints,
    supervisor,
    downloadTimeoutMs,
    inMemoryDownloadMax,
  });
  const heartbeat = () =>
    post(
      server,
      '/api/v1/agent/heartbeat',
      { facts: hostFacts(options.dataDir), installed: installedOf(state) },
      state.credential,
    );
  const recovered = await recover(stepContext());
  await superviseActive(stepContext());
  if (recovered) options.logger.warn({ recovered }, 'an activation was interrupted and has been undone');
  // A token given to an agent that was already enrolled is kept for one re-enrollment.
  let tokenUsed = !hadState || options.enrollToken === undefined;
  let stopped = false;
  // A stop also ends a long-poll in flight, so the agent stops at once.
  const stop = new AbortController();
  void options.stopped.then(() => {
    stopped = true;
    stop.abort();
  });
  let interval = 15;
  let failures = 0;

  /** Long-polls for steps until `deadline`, running each and reporting its outcome. */
  const workUntil = async (deadline: number): Promise<void> => {
    while (!stopped && Date.now() < deadline) {
      const wait = Math.max(0, Math.min(25, Math.floor((deadline - Date.now()) / 1000)));
      const response = await send('GET', new URL(`/api/v1/agent/steps/next?wait=${wait}`, server), {
        headers: { authorization: `Bearer ${state.credential}`, accept: 'application/json' },
        timeoutMs: (wait + 15) * 1000,
        signal: stop.signal,
      });
      const text = await readText(response.body);
      if (response.status === 204) continue;
      if (response.status === 401) return; // the heartbeat that follows decides what to do
      if (response.status !== 200) throw new Error(`asking for work answered ${response.status}`);
      const step = JSON.parse(text) as StepToRun;
      options.logger.info(
        { step: step.id, kind: step.kind, component: step.component, version: step.version },
        'running step',
      );
      // A long step (a large download) must not make a healthy target look stale: heartbeats go
      // on beside it.
      const beating = setInterval(() => {
        heartbeat().catch(() => undefined);
      }, interval * 1000);
      beating.unref();
      const outcome = await runStep(stepContext(), step).finally(() => clearInterval(beating));
      options.logger.info(
        { step: step.id, outcome: outcome.outcome, message: outcome.message },
        'step finished',
      );
      // The report is idempotent: it is sent until the server has it.
      for (let attempt = 1; ; attempt++) {
        const sent = await post(
          server,
          `/api/v1/agent/steps/${step.id}/result`,
          outcome,
          state.credential,
        ).catch((error: Error) => ({
          status: 0,
          body: { error: { message: error.message } },
        }));
        // Retried only while the server is away or failing; a refusal (4xx) will not change.
        if (sent.status >= 200 && sent.status < 500 && sent.status !== 429) break;
        await new Promise((resolve) => setTimeout(resolve, Math.min(30_000, 500 * 2 ** attempt)));
        if (stopped) return;
      }
    }
  };
  while (!stopped) {
    let delay: number;
    try {
      const result = await heartbeat();
      if (result.status === 401) {
        if (!tokenUsed) {
          // Revoked, and a new token was given: enroll again under the same name.
          tokenUsed = true;
          options.logger.warn(
            { target: state.name },
            'the server no longer accepts this agent; enrolling again with the token given',
          );
          forgetState(options.dataDir);
          state = await ensureEnrolled({ ...options, server, name: state.name });
          continue;
        }
        throw new AgentFatalError(`The server no longer accepts this agent: ${messageOf(result.body)}`);
      }
      if (result.status !== 200)
        throw new Error(`heartbeat answered ${result.status}: ${messageOf(result.body)}`);
      const offered = Number((result.body as { heartbeatSeconds?: unknown }).heartbeatSeconds);
      interval = Number.isFinite(offered) && offered >= 1 && offered <= 3600 ? offered : 15;
      if (failures > 0) options.logger.info({ after: failures }, 'server reachable again');
      failures = 0;
      // Blue-green: a slot kept for switching back is stopped once its time is up.
      const retired = await retireExpired(stepContext());
      if (retired.length > 0) options.logger.info({ retired }, 'stopped the slots kept for switching back');
      // Until the next heartbeat is due, wait for work and run it.
      await workUntil(Date.now() + interval * 1000);
      delay = 0;
    } catch (error) {
      if (error instanceof AgentFatalError) throw error;
      if (stopped) break;
      failures += 1;
      // Exponential backoff with full jitter, capped at a minute: a thousand agents coming back
      // after an outage do not arrive at once.
      delay = Math.random() * Math.min(60_000, 1000 * 2 ** Math.min(failures, 6));
      options.logger.warn(
        { err: (error as Error).message, failures, retryInMs: Math.round(delay) },
        'heartbeat failed; retrying',
      );
    }
    if (delay === 0) continue;
    // The timer keeps the process alive between heartbeats; a stop cuts the wait short.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([new Promise((resolve) => (timer = setTimeout(resolve, delay))), options.stopped]);
    clearTimeout(timer);
  }
  options.logger.info('agent stopped');
}

/** The version each component's `current` link points at. */
async function activeOnDisk(dataDir: string): Promise<Record<string, string>> {
  const { readdir, readlink } = await import('node:fs/promises');
  const root = path.join(dataDir, 'releases');
  const out: Record<string, string> = {};
  for (const component of await readdir(root).catch(() => [] as string[])) {
    const target = await readlink(path.join(root, component, 'current')).catch(() => null);
    if (target) out[component] = path.basename(target);
  }
  return out;
}

function mergeActive(
  known: AgentState['components'],
  onDisk: Record<string, string>,
): NonNullable<AgentState['components']> {
  const merged: NonNullable<AgentState['components']> = { ...(known ?? {}) };
  for (const [component, version] of Object.entries(onDisk)) {
    const before = merged[component];
    merged[component] = {
      ...before,
      current: version,
      previous:
        before?.current !== version
          ? (before?.current ?? before?.previous ?? null)
          : (before?.previous ?? null),
    };
  }
  return merged;
}
