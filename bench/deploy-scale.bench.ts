/**
 * Control-plane scale: BENCH_TARGETS (default 10000) simulated agents, enrolled through the real
 * API and speaking the real agent protocol, take a big-bang deployment of a no-op package and then
 * a phased 10-wave rollout with 1 s of bake per wave, against one real `gantry server` process — on
 * SQLite, and on PostgreSQL when TEST_DATABASE_URL is set (a fresh schema, dropped afterwards).
 *
 * The simulated agents all live in this process: each long-polls `GET /api/v1/agent/steps/next`
 * (wait=BENCH_WAIT, default 20 s; BENCH_WAIT=0 polls in a loop with BENCH_POLL_MS sleeps instead)
 * over a keep-alive node:http Agent with a socket per agent, and reports every step at once as
 * succeeded (a no-op package: nothing is downloaded or unpacked). Steps per second are counted
 * from the deployment's creation request to its `finishedAt` (install + activate per target: each
 * queued, dispatched, reported, recorded with its audit entries and synced by the engine). The
 * baselines, in the same run at the same concurrency (every agent at once): a heartbeat (an
 * authenticated write, not audited) and POST /api/v1/tokens (a write with its audit entry). Server
 * memory is its RSS sampled every 100 ms from /proc, and the kernel's VmHWM.
 *
 * BENCH_HEARTBEATS=1 also sends every agent's heartbeat at the real rhythm (once per 15 s) during
 * the deployments. Diagnostics: BENCH_ONLY=big-bang skips the phased rollout (BENCH_ONLY=phased
 * the big-bang deployment), BENCH_SQLITE=0 the
 * SQLite run; BENCH_DIR=/dev/shm
 * puts the data directory in memory (no fsync cost); BENCH_SERVER_NODE_ARGS=--cpu-prof profiles.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import {
  ADMIN_TOKEN,
  Client,
  cpuSeconds,
  enroll,
  FACTS,
  Fleet,
  finished,
  machineCpu,
  mib,
  procStatus,
  type Simulated,
  seconds,
  sleep,
  startServer,
  uploadPackage,
} from './support.ts';

const TARGETS = Number(process.env.BENCH_TARGETS ?? 10_000);
const WAIT = Number(process.env.BENCH_WAIT ?? 20);
const POLL_MS = Number(process.env.BENCH_POLL_MS ?? 200);
const HEARTBEATS = process.env.BENCH_HEARTBEATS === '1';
const ENROLL_CONCURRENCY = Number(process.env.BENCH_ENROLL_CONCURRENCY ?? 32);
const ONLY = process.env.BENCH_ONLY ?? '';
const DEPLOY_TIMEOUT_MS = Number(process.env.BENCH_DEPLOY_TIMEOUT_S ?? 1800) * 1000;
const IDLE_SECONDS = 20;
const WAVES = 10;
const BAKE_SECONDS = 1;

function noopPackage(dir: string, version: string): Buffer {
  const src = path.join(dir, `pkg-${version}`);
  mkdirSync(src, { recursive: true });
  writeFileSync(path.join(src, 'index.html'), `no-op ${version}\n`);
  const file = path.join(dir, `noop-${version}.tar.gz`);
  execFileSync('tar', ['-czf', file, '-C', src, 'index.html']);
  return readFileSync(file);
}

interface DeployResult {
  wallMs: number;
  createMs: number;
  state: string;
  counts: Record<string, number>;
  stepsSeen: number;
  serverCpu: number;
  simulatorCpu: number;
  machineBusy: number;
  machineIdle: number;
}

async function deploy(
  client: Client,
  fleet: Fleet<Simulated>,
  serverPid: number,
  body: Record<string, unknown>,
): Promise<DeployResult> {
  const steps0 = fleet.steps;
  const activates0 = fleet.activates;
  const cpu0 = cpuSeconds(serverPid);
  const sim0 = process.cpuUsage();
  const machine0 = machineCpu();
  const t0 = Date.now();
  const progress = setInterval(() => {
    console.error(
      `  … ${seconds(Date.now() - t0)} s: ${fleet.steps - steps0} steps reported, server RSS ${mib(procStatus(serverPid, 'VmRSS'))} MiB`,
    );
  }, 30_000);
  const created = await client.json('POST', '/api/v1/deployments', body);
  const createMs = Date.now() - t0;
  const view = await finished(
    client,
    created.id as string,
    DEPLOY_TIMEOUT_MS,
    () => fleet.activates - activates0 >= TARGETS,
    () => `${fleet.activates - activates0} activations seen; last agent error: ${fleet.lastError}`,
  ).finally(() => clearInterval(progress));
  const serverCpu = cpuSeconds(serverPid) - cpu0;
  const sim = process.cpuUsage(sim0);
  const machine = machineCpu();
  // Where a wave's time went: its steps (start to bake), and the gap from one wave to the next.
  const waves = (view.waves ?? []) as Array<{
    startedAt: string | null;
    finishedAt: string | null;
    bakeUntil: string | null;
  }>;
  const timeline = waves.map((w, i) => {
    const start = Date.parse(w.startedAt ?? '');
    const bake = Date.parse(w.bakeUntil ?? '') - (body.options ? BAKE_SECONDS * 1000 : 0);
    const next = Date.parse(waves[i + 1]?.startedAt ?? String(view.finishedAt ?? ''));
    const end = Date.parse(w.finishedAt ?? '');
    const late = end - Date.parse(w.bakeUntil ?? '');
    return `${seconds(bake - start)}+${seconds(late)}+${seconds(next - end)}`;
  });
  if (waves.length > 1)
    console.error(
      `  created → first wave started ${seconds(Date.parse(waves[0]?.startedAt ?? '') - t0 - createMs)} s (deployment started ${seconds(Date.parse(String(view.startedAt ?? '')) - t0 - createMs)} s); waves (steps s + bake's end to finish s + gap to the next s): ${timeline.join(' ')}`,
    );
  return {
    // From the creation request to the engine's own record of the end (same machine, same clock).
    wallMs: Date.parse(view.finishedAt as string) - t0,
    createMs,
    state: view.state as string,
    counts: view.counts as Record<string, number>,
    stepsSeen: fleet.steps - steps0,
    serverCpu,
    simulatorCpu: (sim.user + sim.system) / 1e6,
    machineBusy: machine.busy - machine0.busy,
    machineIdle: machine.idle - machine0.idle,
  };
}

interface Row {
  database: string;
  enrollSeconds: number;
  heartbeatRate: number;
  tokenRate: number;
  refused: { heartbeats: number; tokens: number };
  bigBang: DeployResult | undefined;
  phased: DeployResult | undefined;
  rssPeak: number;
  rssIdle: number;
  errors: number;
  lastError: string;
  idleCpu: number;
}

/**
 * `count` writes at once (every agent), each retried as an agent would when refused for load (503)
 * or when its connection was reset (10,000 connections at once overflow the listen backlog).
 */
async function writeRate(
  count: number,
  send: (i: number) => Promise<{ status: number; text: string }>,
  ok: number,
): Promise<{ rate: number; refused: number }> {
  let refused = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      for (;;) {
        const res = await send(i).catch((error: Error) => ({ status: 0, text: error.message }));
        if (res.status === ok) return;
        if (res.status !== 503 && res.status !== 0)
          throw new Error(`baseline write answered ${res.status}: ${res.text}`);
        refused++;
        await sleep(100 + Math.random() * 400);
      }
    }),
  );
  return { rate: count / ((performance.now() - t0) / 1000), refused };
}

async function scenario(database: string, dir: string, env: Record<string, string>): Promise<Row> {
  const server = await startServer(dir, env);
  let peak = 0;
  const sampler = setInterval(() => {
    peak = Math.max(peak, procStatus(server.pid, 'VmRSS'));
  }, 100);
  const client = new Client(server.base, TARGETS + 64);
  try {
    await client.json('POST', '/api/v1/environments', { name: 'scale' });
    for (const version of ['1.0.0', '2.0.0']) {
      await uploadPackage(server.base, noopPackage(dir, version), 'noop', version);
      await client.json('POST', '/api/v1/releases', {
        name: 'noop',
        version,
        components: [{ component: 'noop', version }],
      });
    }
    const rssIdle = procStatus(server.pid, 'VmRSS');

    const enrolled = await enroll(client, 'scale', TARGETS, ENROLL_CONCURRENCY, (i) => `sim-${i}`);
    const sims: Simulated[] = enrolled.agents;
    console.error(`[${database}] enrolled ${TARGETS} agents in ${enrolled.seconds.toFixed(1)} s`);

    const beat = (i: number) =>
      client.request('POST', '/api/v1/agent/heartbeat', {
        token: (sims[i] as Simulated).credential,
        body: { facts: FACTS },
      });
    // A first round opens a keep-alive connection per agent (thousands of connections at once
    // overflow the listen backlog and are retried); the second, on open connections, is measured.
    await writeRate(TARGETS, beat, 200);
    const heartbeat = await writeRate(TARGETS, beat, 200);
    const tokens = await writeRate(
      TARGETS,
      () => client.request('POST', '/api/v1/tokens', { token: ADMIN_TOKEN, body: { name: 'bench' } }),
      201,
    );
    console.error(
      `[${database}] baselines: ${heartbeat.rate.toFixed(0)} heartbeats/s, ${tokens.rate.toFixed(0)} tokens/s`,
    );

    // A no-op package: the agent does nothing and says so.
    const fleet = new Fleet(
      client,
      sims,
      async (_sim, step) => ({
        outcome: 'succeeded',
        message: `no-op ${step.kind}`,
        ...(step.kind === 'activate' ? { active: { component: step.component, version: step.version } } : {}),
      }),
      { wait: WAIT, pollMs: POLL_MS, heartbeats: HEARTBEATS },
    );
    fleet.start();
    await sleep(Math.min(10_000, 1000 + TARGETS / 2)); // every long-poll open
    // What waiting costs: every agent holding a long-poll, nothing to do.
    const idle0 = cpuSeconds(server.pid);
    await sleep(IDLE_SECONDS * 1000);
    const idleCpu = (cpuSeconds(server.pid) - idle0) / IDLE_SECONDS;
    let bigBang: DeployResult | undefined;
    if (ONLY !== 'phased') {
      bigBang = await deploy(client, fleet, server.pid, {
        release: 'noop@1.0.0',
        environment: 'scale',
        strategy: 'big-bang',
      });
      console.error(
        `[${database}] big-bang: ${bigBang.state} in ${seconds(bigBang.wallMs)} s (${((2 * TARGETS) / (bigBang.wallMs / 1000)).toFixed(0)} steps/s)`,
      );
    }
    let phased: DeployResult | undefined;
    if (ONLY !== 'big-bang') {
      phased = await deploy(client, fleet, server.pid, {
        release: 'noop@2.0.0',
        environment: 'scale',
        strategy: 'phased',
        options: {
          waves: Array.from({ length: WAVES }, () => ({ percent: 100 / WAVES, bakeSeconds: BAKE_SECONDS })),
        },
      });
      console.error(`[${database}] phased: ${phased.state} in ${seconds(phased.wallMs)} s`);
    }
    await fleet.stop();
    return {
      database,
      enrollSeconds: enrolled.seconds,
      heartbeatRate: heartbeat.rate,
      tokenRate: tokens.rate,
      refused: { heartbeats: heartbeat.refused, tokens: tokens.refused },
      bigBang,
      phased,
      rssPeak: Math.max(peak, procStatus(server.pid, 'VmRSS'), procStatus(server.pid, 'VmHWM')),
      rssIdle,
      errors: fleet.errors,
      lastError: fleet.lastError,
      idleCpu,
    };
  } finally {
    clearInterval(sampler);
    client.agent.destroy();
    await server.stop();
  }
}

const rows: Row[] = [];
const root = mkdtempSync(path.join(process.env.BENCH_DIR ?? os.tmpdir(), 'gantry-scale-bench-'));
try {
  if (process.env.BENCH_SQLITE !== '0')
    rows.push(await scenario('SQLite (WAL, synchronous=FULL)', path.join(root, 'sqlite'), {}));
  const pgUrl = process.env.TEST_DATABASE_URL;
  if (pgUrl) {
    // A schema of its own, as the tests do, dropped afterwards.
    const schema = `gantry_bench_${randomBytes(6).toString('hex')}`;
    const admin = new pg.Client({ connectionString: pgUrl });
    await admin.connect();
    await admin.query(`create schema ${schema}`);
    try {
      const url = new URL(pgUrl);
      url.searchParams.set('options', `-c search_path=${schema}`);
      const version = String((await admin.query('show server_version')).rows[0]?.server_version ?? '');
      rows.push(
        await scenario(`PostgreSQL ${version.split(' ')[0]} (pool of 10)`, path.join(root, 'postgres'), {
          GANTRY_DATABASE_URL: url.toString(),
        }),
      );
    } finally {
      await admin.query(`drop schema if exists ${schema} cascade`);
      await admin.end();
    }
  }
} finally {
  rmSync(root, { recursive: true, force: true });
}

const mode =
  WAIT > 0
    ? `each long-polling steps/next?wait=${WAIT}`
    : `each polling steps/next?wait=0 with ${POLL_MS} ms sleeps (not long-polls)`;
const ulimit = execFileSync('sh', ['-c', 'ulimit -n']).toString().trim();
console.log(
  `\nControl-plane scale — node ${process.version}, ${os.cpus().length} cores, ${TARGETS} simulated agents in one process, ${mode}${HEARTBEATS ? ', heartbeats at the real rhythm' : ''}; ulimit -n ${ulimit}`,
);
console.log(
  '| database | enrollment | big-bang steps/s | ratio to heartbeats/s | ratio to POST /tokens/s | phased 10 × 1 s bake: wall, overhead beyond bake | server RSS peak (idle) |',
);
console.log('|---|---:|---:|---:|---:|---:|---:|');
for (const r of rows) {
  const steps = 2 * TARGETS;
  const rate = r.bigBang ? steps / (r.bigBang.wallMs / 1000) : Number.NaN;
  const bake = WAVES * BAKE_SECONDS * 1000;
  const phased = r.phased
    ? `${seconds(r.phased.wallMs)} s, ${seconds(r.phased.wallMs - bake)} s (${r.phased.state})`
    : 'not run';
  console.log(
    `| ${r.database} | ${r.enrollSeconds.toFixed(1)} s (${(TARGETS / r.enrollSeconds).toFixed(0)}/s) | ${r.bigBang ? `${rate.toFixed(0)} (${steps} steps in ${seconds(r.bigBang.wallMs)} s, ${r.bigBang.state})` : 'not run'} | ${(rate / r.heartbeatRate).toFixed(2)} (${r.heartbeatRate.toFixed(0)}/s) | ${(rate / r.tokenRate).toFixed(2)} (${r.tokenRate.toFixed(0)}/s) | ${phased} | ${mib(r.rssPeak)} MiB (${mib(r.rssIdle)} MiB) |`,
  );
}
console.log('\nDetails:');
for (const r of rows) {
  for (const [name, d] of [
    ['big-bang', r.bigBang],
    ['phased', r.phased],
  ] as const) {
    if (!d) continue;
    const busy = (d.machineBusy / (d.machineBusy + d.machineIdle)) * 100;
    console.log(
      `- ${r.database}, ${name}: creation request ${seconds(d.createMs)} s; ${d.stepsSeen} steps reported; counts ${JSON.stringify(d.counts)}; server CPU ${d.serverCpu.toFixed(1)} s over ${seconds(d.wallMs)} s (${((d.serverCpu / (d.wallMs / 1000)) * 100).toFixed(0)}% of one core), simulator CPU ${d.simulatorCpu.toFixed(1)} s; the machine's ${os.cpus().length} cores ${busy.toFixed(0)}% busy (other work included)`,
    );
  }
  console.log(
    `- ${r.database}: ${TARGETS} agents waiting on long-polls with nothing to do cost the server ${(r.idleCpu * 100).toFixed(0)}% of one core (${IDLE_SECONDS} s measured)`,
  );
  console.log(
    `- ${r.database}: failed agent requests, retried: ${r.errors}${r.errors ? ` (the last: ${r.lastError})` : ''}; baseline writes refused (503) or reset and retried: ${r.refused.heartbeats} heartbeats, ${r.refused.tokens} tokens`,
  );
}
