/**
 * Agent footprint: resident memory of an idle agent (the one-file bundle, as a target runs it)
 * against a bare Node.js process in the same run, and the server's cost per connected agent:
 * memory growth and CPU with BENCH_AGENTS (default 1000) simulated agents sending heartbeats at
 * their real rhythm, and heartbeat throughput as a ratio to GET /healthz.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const AGENTS = Number(process.env.BENCH_AGENTS ?? 1000);
const TOKEN = `gnt_bench_${'a'.repeat(40)}`;
const BIN = path.resolve(import.meta.dirname, '../bin/gantry.js');
const dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-agent-bench-'));
const children: Array<ReturnType<typeof spawn>> = [];

function rss(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
}
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100;
}
const mib = (n: number) => (n / 1024 / 1024).toFixed(1);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function api(url: string, method: string, body?: unknown, token = TOKEN) {
  const res = await fetch(url, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : null,
  });
  const json = (await res.json().catch(() => null)) as Record<string, unknown> | null;
  if (!res.ok) throw new Error(`${method} ${url}: ${res.status} ${JSON.stringify(json)}`);
  return json as Record<string, unknown>;
}

async function throughput(
  n: number,
  concurrency: number,
  send: (i: number) => Promise<Response>,
): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < n; i = next++) {
        const res = await send(i);
        await res.arrayBuffer();
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
      }
    }),
  );
  return n / ((performance.now() - t0) / 1000);
}

try {
  const server = spawn(
    process.execPath,
    [BIN, 'server', '--port', '0', '--data-dir', path.join(dir, 'data')],
    {
      env: { ...process.env, GANTRY_BOOTSTRAP_ADMIN_TOKEN: TOKEN, GANTRY_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  children.push(server);
  let out = '';
  server.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
    if (out.length > 1e6) out = out.slice(-1e5);
  });
  let base = '';
  for (let i = 0; i < 200 && !base; i++) {
    base = /"url":"(http:\/\/[^"]+)"[^\n]*"msg":"gantry server listening"/.exec(out)?.[1] ?? '';
    await sleep(100);
  }
  if (!base) throw new Error('server did not start');
  const serverPid = server.pid as number;
  await api(`${base}/api/v1/environments`, 'POST', { name: 'bench' });

  // 1. An idle agent, run from the one-file bundle, against a bare Node.js process.
  writeFileSync(
    path.join(dir, 'gantry-agent.js'),
    await (await fetch(`${base}/agent/gantry-agent.js`)).text(),
  );
  const bare = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)']);
  children.push(bare);
  const token = (await api(`${base}/api/v1/enrollment-tokens`, 'POST', { environment: 'bench' }))
    .secret as string;
  const agent = spawn(
    process.execPath,
    [
      path.join(dir, 'gantry-agent.js'),
      '--server',
      base,
      '--data-dir',
      path.join(dir, 'agent'),
      '--name',
      'idle-1',
    ],
    {
      env: { PATH: process.env.PATH ?? '', GANTRY_ENROLL_TOKEN: token },
      stdio: 'ignore',
    },
  );
  children.push(agent);
  await sleep(5000);
  const agentRss = rss(agent.pid as number);
  const bareRss = rss(bare.pid as number);

  // 2. Many simulated agents: enrolled through the real API, then heartbeating at their rhythm.
  const idleServerRss = rss(serverPid);
  const credentials: string[] = [];
  for (let i = 0; i < AGENTS; i++) {
    const t = (await api(`${base}/api/v1/enrollment-tokens`, 'POST', { environment: 'bench' }))
      .secret as string;
    const res = await fetch(`${base}/api/v1/agent/enroll`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        token: t,
        name: `sim-${i}`,
        facts: { os: 'linux', arch: 'x64', nodeVersion: process.version },
      }),
    });
    credentials.push(((await res.json()) as { credential: string }).credential);
  }
  const heartbeat = (i: number) =>
    fetch(`${base}/api/v1/agent/heartbeat`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${credentials[i % credentials.length]}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify({ facts: { os: 'linux', arch: 'x64', nodeVersion: process.version } }),
    });
  // Real rhythm: every agent once per 15 s, spread evenly, for 30 s.
  const cpu0 = cpuSeconds(serverPid);
  const t0 = Date.now();
  let sent = 0;
  let peakRss = rss(serverPid);
  while (Date.now() - t0 < 30_000) {
    const due = Math.floor(((Date.now() - t0) / 15_000) * AGENTS);
    const batch: Promise<Response>[] = [];
    for (; sent < due; sent++) batch.push(heartbeat(sent));
    await Promise.all(batch.map((p) => p.then((r) => r.arrayBuffer())));
    peakRss = Math.max(peakRss, rss(serverPid));
    await sleep(50);
  }
  const cpuUsed = cpuSeconds(serverPid) - cpu0;
  const rhythmSeconds = (Date.now() - t0) / 1000;

  // 3. Every agent idling on a long-poll for work at once, for 15 s.
  const pollCpu0 = cpuSeconds(serverPid);
  const pollRss0 = rss(serverPid);
  let pollPeak = pollRss0;
  const pollStart = Date.now();
  const sampler = setInterval(() => {
    pollPeak = Math.max(pollPeak, rss(serverPid));
  }, 100);
  const polls = await Promise.all(
    credentials.map(async (credential) => {
      const res = await fetch(`${base}/api/v1/agent/steps/next?wait=15`, {
        headers: { authorization: `Bearer ${credential}` },
      });
      await res.arrayBuffer();
      return res.status;
    }),
  );
  clearInterval(sampler);
  const pollSeconds = (Date.now() - pollStart) / 1000;
  const pollCpu = cpuSeconds(serverPid) - pollCpu0;
  if (polls.some((status) => status !== 204))
    throw new Error(`long-polls answered ${[...new Set(polls)].join(', ')}`);

  // 4. Heartbeats as fast as they can go, against the framework's bare answer.
  const healthz = await throughput(4000, 32, () => fetch(`${base}/healthz`));
  const beats = await throughput(4000, 32, heartbeat);

  console.log(
    `\nAgent footprint — node ${process.version}, ${os.cpus().length} cores, ${AGENTS} simulated agents`,
  );
  console.log('| measure | value | baseline | ratio |');
  console.log('|---|---:|---:|---:|');
  console.log(
    `| idle agent RSS (one-file bundle) | ${mib(agentRss)} MiB | bare node ${mib(bareRss)} MiB | ${(agentRss / bareRss).toFixed(2)} |`,
  );
  console.log(
    `| server RSS growth with ${AGENTS} agents heartbeating | ${mib(peakRss - idleServerRss)} MiB (${((peakRss - idleServerRss) / AGENTS / 1024).toFixed(1)} KiB per agent) | idle server ${mib(idleServerRss)} MiB | - |`,
  );
  console.log(
    `| server CPU at the real rhythm (${(AGENTS / 15).toFixed(0)} heartbeats/s) | ${((cpuUsed / rhythmSeconds) * 100).toFixed(1)}% of one core | - | - |`,
  );
  console.log(
    `| ${AGENTS} agents long-polling for work at once (${pollSeconds.toFixed(0)} s) | server RSS +${mib(pollPeak - pollRss0)} MiB, CPU ${((pollCpu / pollSeconds) * 100).toFixed(1)}% of one core | - | - |`,
  );
  console.log(
    `| heartbeats/s, 32 at a time | ${beats.toFixed(0)} | GET /healthz ${healthz.toFixed(0)}/s | ${(beats / healthz).toFixed(2)} |`,
  );
} finally {
  for (const child of children) child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
}
