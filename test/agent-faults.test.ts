/**
 * A real agent behind the loopback fault proxy (H2), against a real server: the agent enrolls,
 * heartbeats, polls and downloads through the proxy while a test breaks the network under it.
 * B08 (a byte flipped in transit), F20 (partition during polling), F21 (flapping network during a
 * download), F22 (a server sending more than the declared length, or dripping).
 *
 * The tests run concurrently, each with its own proxy, agent and target. The server heartbeats
 * every 3 s (GANTRY_HEARTBEAT_SECONDS) and agents give a download 8 s
 * (GANTRY_AGENT_DOWNLOAD_TIMEOUT_SECONDS), so the waits for "stale" and for a trickle are short.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { makeTarGz } from './helpers/archives.ts';
import { type FaultMode, type FaultProxy, startFaultProxy } from './helpers/fault-proxy.ts';
import {
  eventually,
  gantryJson,
  type LongProcess,
  partialDownloads,
  type ServerProcess,
  startGantry,
  startServer,
} from './helpers/processes.ts';

const TOKEN = `gnt_faults_${'f'.repeat(40)}`;
const MiB = 1024 * 1024;

interface Package {
  component: string;
  version: string;
  size: number;
  digest: string;
  /** The one file inside, to compare after unpacking. */
  content: Buffer;
}

interface StepView {
  id: string;
  state: string;
  message: string | null;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The agent's resident memory, from /proc. */
function rss(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
}

/** The agent's JSON log lines with this message. */
function logged(agent: LongProcess, msg: string): Array<Record<string, unknown>> {
  return agent
    .output()
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((entry) => entry.msg === msg);
}

describe.concurrent('the agent through a faulty network (H2 fault proxy)', () => {
  let dir: string;
  let server: ServerProcess;
  let env: Record<string, string>;
  const proxies: FaultProxy[] = [];
  const agents: LongProcess[] = [];
  const packages: Record<string, Package> = {};

  /**
   * The API as admin. Polling loops and most set-up go through it rather than through the CLI:
   * six tests run at once on a small machine, and a CLI process costs a second of CPU to start.
   */
  // biome-ignore lint/suspicious/noExplicitAny: tests read whatever the server answered.
  const api = async (url: string, body?: unknown): Promise<any> => {
    const res = await fetch(`${server.url}${url}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: {
        authorization: `Bearer ${TOKEN}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    if (res.status !== 200 && res.status !== 201) throw new Error(`${url} answered ${res.status}`);
    return res.json();
  };

  async function push(component: string, content: Buffer): Promise<Package> {
    const file = path.join(dir, `${component}.tar.gz`);
    const archive = makeTarGz({ 'data.bin': content });
    writeFileSync(file, archive);
    await gantryJson(['artifact', 'push', file, '--component', component, '--version', '1.0.0'], env);
    return {
      component,
      version: '1.0.0',
      size: archive.length,
      digest: createHash('sha256').update(archive).digest('hex'),
      content,
    };
  }

  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-faults-'));
    // Heartbeats every 3 s (stale after 9 s) and an 8 s download budget keep the waits short; the
    // behaviour under test is the same at the defaults (15 s, 60 s).
    server = await startServer(['--data-dir', path.join(dir, 'server')], {
      GANTRY_BOOTSTRAP_ADMIN_TOKEN: TOKEN,
      GANTRY_HEARTBEAT_SECONDS: '3',
    });
    env = { GANTRY_URL: server.url, GANTRY_TOKEN: TOKEN };
    await gantryJson(['env', 'create', 'production'], env);
    // Random bytes do not compress: the archive is as large as its content.
    [packages.site, packages.bulk, packages.blob] = await Promise.all([
      push('site', randomBytes(512 * 1024)),
      push('bulk', randomBytes(20 * MiB)),
      push('blob', randomBytes(2 * MiB)),
    ]);
  });
  afterAll(async () => {
    await Promise.all(agents.map((agent) => agent.stop('SIGKILL')));
    await Promise.all(proxies.map((proxy) => proxy.close()));
    await server?.stop('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  /** A proxy in front of the server, and an agent enrolled through it (its --server is the proxy). */
  async function agentBehindProxy(name: string, env: Record<string, string> = {}) {
    const proxy = await startFaultProxy({ port: Number(new URL(server.url).port) });
    proxies.push(proxy);
    const dataDir = path.join(dir, name);
    // As startEnrolledAgent, through the API.
    const token = await api('/api/v1/enrollment-tokens', { environment: 'production' });
    const agent = startGantry(['agent', '--server', proxy.url, '--data-dir', dataDir, '--name', name], {
      GANTRY_ENROLL_TOKEN: token.secret,
      GANTRY_AGENT_DOWNLOAD_TIMEOUT_SECONDS: '8',
      ...env,
    });
    agents.push(agent);
    // Enrolled (created and seen at once), then seen again: the first heartbeat went through.
    await eventually(async () => {
      const target = await api(`/api/v1/targets/${name}`);
      return target.state === 'online' && target.lastSeenAt !== target.createdAt ? true : undefined;
    });
    if (JSON.parse(readFileSync(path.join(dataDir, 'agent.json'), 'utf8')).server !== proxy.url)
      throw new Error(`${name} does not talk to the server through the proxy`);
    return {
      proxy,
      agent,
      dataDir,
      releases: (component: string) => path.join(dataDir, 'releases', component),
      downloads: () => partialDownloads(dataDir),
    };
  }

  const queueInstall = (target: string, pkg: Package): Promise<StepView> =>
    api(`/api/v1/targets/${target}/steps`, {
      kind: 'install',
      component: pkg.component,
      version: pkg.version,
    });
  const finished = (target: string, id: string, timeoutMs = 20_000): Promise<StepView> =>
    eventually(async () => {
      const list = await api(`/api/v1/targets/${target}/steps`);
      return (list.steps as StepView[]).find(
        (s) => s.id === id && (s.state === 'succeeded' || s.state === 'failed'),
      );
    }, timeoutMs);
  const reports = async (id: string) =>
    (await api(`/api/v1/audit?subject=step:${id}&limit=1000`)).entries.filter((e: { action: string }) =>
      ['step.succeeded', 'step.failed'].includes(e.action),
    );
  const targetState = async (name: string): Promise<string> =>
    (await gantryJson(['targets', 'show', name], env)).state;

  // The two long waits (F20 and the drip) come first, so they start at once: vitest runs at most
  // five tests of a file at a time.
  it('F20: a partition during polling: polls time out and are retried with backoff, the target goes stale, and once healed the agent heartbeats and runs a queued step', {
    timeout: 90_000,
  }, async ({ expect }) => {
    const { proxy, agent, releases } = await agentBehindProxy('f20-1');
    const lastSeen = Date.parse((await api('/api/v1/targets/f20-1')).lastSeenAt);
    const partitioned = Date.now();
    proxy.set({ kind: 'blackhole' });

    // The long-poll in flight (wait ≤ 3 s, answer within wait + 15 s) times out: the first failure.
    await eventually(
      async () => (logged(agent, 'heartbeat failed; retrying').length >= 1 ? true : undefined),
      35_000,
    );
    const first = logged(agent, 'heartbeat failed; retrying')[0] as {
      err: string;
      failures: number;
      retryInMs: number;
    };
    expect(Date.now() - partitioned).toBeLessThan(32_000);
    expect(first.err).toMatch(/no answer within \d+ ms/);
    expect(first.failures).toBe(1);
    expect(first.retryInMs).toBeLessThanOrEqual(2_000);
    expect(agent.proc.exitCode).toBeNull();

    // The server calls the target stale after 3 missed heartbeat intervals (9 s).
    await eventually(
      async () => ((await api('/api/v1/targets/f20-1')).state === 'stale' ? true : undefined),
      lastSeen + 50_000 - Date.now(),
    );
    expect(Date.now() - lastSeen).toBeGreaterThan(9_000);
    expect(await targetState('f20-1')).toBe('stale');
    // Meanwhile the next heartbeat times out too, and the backoff grows.
    const failures = await eventually(async () => {
      const all = logged(agent, 'heartbeat failed; retrying');
      return all.length >= 2
        ? (all as Array<{ failures: number; retryInMs: number; err: string }>)
        : undefined;
    }, 20_000);
    expect(failures[1]?.failures).toBe(2);
    expect(failures[1]?.err).toBe('no answer within 15000 ms');
    expect(failures[1]?.retryInMs).toBeLessThanOrEqual(4_000);
    expect(agent.proc.exitCode).toBeNull();

    // Work queued during the partition runs once it heals.
    const step = await queueInstall('f20-1', packages.site as Package);
    proxy.set({ kind: 'pass' });
    const healed = Date.now();
    expect((await finished('f20-1', step.id, 25_000)).state).toBe('succeeded');
    await eventually(async () => (logged(agent, 'server reachable again').length > 0 ? true : undefined));
    expect(await targetState('f20-1')).toBe('online');
    expect(Date.now() - healed).toBeLessThan(25_000);
    expect(readdirSync(releases('site'))).toEqual(['1.0.0']);
    expect(await reports(step.id)).toHaveLength(1);
  });

  it('F22: a download dripping one byte at a time is given up rather than held forever, in flat memory, and retried cleanly', {
    timeout: 90_000,
  }, async ({ expect }) => {
    const { proxy, agent, releases, downloads } = await agentBehindProxy('f22-2');
    const pkg = packages.blob as Package;
    const pid = agent.proc.pid as number;
    // Past the first 16 KiB of a connection (inside the 2 MiB body, whatever small answers the
    // connection carried before), one byte every 50 ms: the socket is never idle for long, so
    // an idle timeout alone never fires.
    proxy.set({ kind: 'drip', intervalMs: 50, fromOffset: 16 * 1024 });
    const started = Date.now();
    const step = await queueInstall('f22-2', pkg);
    let peak = rss(pid);
    const idle = peak;
    const done = await eventually(async () => {
      peak = Math.max(peak, rss(pid));
      const list = await api('/api/v1/targets/f22-2/steps');
      return (list.steps as StepView[]).find((s) => s.id === step.id && s.state === 'failed');
    }, 80_000);
    expect(Date.now() - started).toBeLessThan(30_000);
    // The download's budget (8 s here, 60 s by default): the trickle is given up when it runs out.
    expect(done.message).toMatch(/^install failed: the answer is too slow: \d+ bytes in 8000 ms/);
    // Flat: a minute of trickle costs no memory to speak of (sampled every ~200 ms).
    expect(peak).toBeLessThan(150 * MiB);
    expect(peak - idle).toBeLessThan(16 * MiB);
    expect(readdirSync(releases('blob'))).toEqual([]);
    expect(downloads()).toEqual([]);
    expect(agent.proc.exitCode).toBeNull();

    proxy.set({ kind: 'pass' });
    const again = await queueInstall('f22-2', pkg);
    expect((await finished('f22-2', again.id)).state).toBe('succeeded');
    expect(readdirSync(releases('blob'))).toEqual(['1.0.0']);
  });

  it('B08: a byte flipped in transit is refused before anything is unpacked; a clean retry installs', async ({
    expect,
  }) => {
    const { proxy, agent, releases, downloads } = await agentBehindProxy('b08-1');
    const pkg = packages.site as Package;
    // Offset 100 000 of the connection lies inside the 512 KiB body whatever small answers the
    // connection carried before.
    proxy.set({ kind: 'flip', offset: 100_000 });
    const step = await queueInstall('b08-1', pkg);
    const done = await finished('b08-1', step.id);
    expect(proxy.stats().flips).toBe(1);
    expect(done.state).toBe('failed');
    expect(done.message).toContain(`not sha256:${pkg.digest}`);
    expect(done.message).toContain('nothing was unpacked');
    expect(existsSync(path.join(releases('site'), '1.0.0'))).toBe(false);
    expect(readdirSync(releases('site'))).toEqual([]);
    expect(downloads()).toEqual([]);
    expect(agent.proc.exitCode).toBeNull();
    expect(await reports(step.id)).toHaveLength(1);

    proxy.set({ kind: 'pass' });
    const again = await queueInstall('b08-1', pkg);
    expect((await finished('b08-1', again.id)).state).toBe('succeeded');
    expect(readdirSync(releases('site'))).toEqual(['1.0.0']);
    expect(readFileSync(path.join(releases('site'), '1.0.0', 'data.bin')).equals(pkg.content)).toBe(true);
  });

  /**
   * Queues the 20 MiB install and flaps the network under its download: capped at 4 MiB/s it
   * needs 5 s, and once it is under way the network goes down for 1 s and up for 1 s, three
   * times, so no up-time is long enough for it. Then the network settles.
   */
  async function flapDuringDownload(name: string, env: Record<string, string> = {}) {
    const setup = await agentBehindProxy(name, env);
    const { proxy } = setup;
    const up: FaultMode = { kind: 'bandwidth', bytesPerSecond: 4 * MiB };
    proxy.set(up);
    const queued = queueInstall(name, packages.bulk as Package);
    await eventually(async () => (setup.proxy.activeDown() > 1 * MiB ? true : undefined));
    for (let flap = 0; flap < 3; flap++) {
      proxy.set({ kind: 'rst' });
      await sleep(1000);
      proxy.set(up);
      await sleep(1000);
    }
    proxy.set({ kind: 'pass' });
    return { ...setup, step: await queued };
  }

  // Kept in memory (the default up to 64 MiB), and in a file (GANTRY_AGENT_MEMORY_DOWNLOAD_MIB=0).
  it.for<[string, Record<string, string>]>([
    ['in memory', {}],
    ['to a file', { GANTRY_AGENT_MEMORY_DOWNLOAD_MIB: '0' }],
  ])(
    'F21: a network flapping during a 20 MiB download (%s) is ridden out: the one step resumes where it was cut and ends in one verified install',
    {
      timeout: 60_000,
    },
    async ([how, env], { expect }) => {
      const name = how === 'in memory' ? 'f21-1' : 'f21-2';
      const { proxy, agent, releases, downloads, step } = await flapDuringDownload(name, env);
      const pkg = packages.bulk as Package;
      // The download was cut part-way.
      expect(proxy.stats().maxDownAtBreak).toBeGreaterThan(1 * MiB);
      expect(proxy.stats().maxDownAtBreak).toBeLessThan(pkg.size);
      const done = await finished(name, step.id, 45_000);
      expect(agent.proc.exitCode).toBeNull();
      expect(done.state, String(done.message)).toBe('succeeded');
      expect(done.message).toBe('installed bulk 1.0.0');
      // Reported once, although reports were cut too.
      expect(await reports(step.id)).toHaveLength(1);
      expect(readdirSync(releases('bulk'))).toEqual(['1.0.0']);
      expect(readFileSync(path.join(releases('bulk'), '1.0.0', 'data.bin')).equals(pkg.content)).toBe(true);
      expect(downloads()).toEqual([]);
      // It resumed rather than starting over each time: far fewer bytes than one copy per cut.
      expect(proxy.stats().bytesDown).toBeLessThan(pkg.size * 2);
    },
  );

  it('F22: an answer longer than the step declares, without end, is cut off at the declared length', async ({
    expect,
  }) => {
    const { proxy, agent, releases, downloads } = await agentBehindProxy('f22-1');
    const pkg = packages.blob as Package;
    const pid = agent.proc.pid as number;
    proxy.set({ kind: 'oversize', contentLength: pkg.size, extra: 'endless' });
    const step = await queueInstall('f22-1', pkg);
    let peak = rss(pid);
    const done = await eventually(async () => {
      peak = Math.max(peak, rss(pid));
      const list = await api('/api/v1/targets/f22-1/steps');
      return (list.steps as StepView[]).find((s) => s.id === step.id && s.state === 'failed');
    });
    expect(done.message).toContain(`more than the ${pkg.size} bytes the step declares`);
    // Stopped at once: not much past the declared length went through the proxy.
    expect(proxy.stats().maxConnectionDown).toBeLessThan(pkg.size + 4 * MiB);
    expect(peak).toBeLessThan(150 * MiB);
    expect(readdirSync(releases('blob'))).toEqual([]);
    expect(downloads()).toEqual([]);
    expect(agent.proc.exitCode).toBeNull();

    proxy.set({ kind: 'pass' });
    const again = await queueInstall('f22-1', pkg);
    expect((await finished('f22-1', again.id)).state).toBe('succeeded');
    expect(readdirSync(releases('blob'))).toEqual(['1.0.0']);
  });
});
