/**
 * Gantry against a shell loop and Ansible, the same work in the same run: a 10 MiB package (random
 * bytes and an index file, as .tar.gz) goes to BENCH_ANSIBLE_TARGETS (default 200) local targets,
 * each a directory under a temporary one: download, verify its SHA-256, unpack into a release
 * directory, switch `current` atomically, health check (`index.html` is there). Time per target.
 *
 * - Gantry: a real `gantry server` (SQLite) and a real big-bang deployment driven by its engine. The
 *   agents of all targets run in this one process on the real protocol (long-poll, report), each
 *   step run by the agent's own step code (`runStep` from src/agent/steps.ts: download from
 *   /api/v1/agent/blobs with the agent's credential, digest checked while streaming, the safe
 *   extraction, crash-safe state in agent.json, the link renamed over `current`, the manifest's
 *   health command).
 * - Shell: a bash script per target (curl from a local static HTTP server, `sha256sum -c`,
 *   `tar xzf` into releases/<v>, `ln -sfn` + `mv -T`, `test -f`), serially and with `xargs -P 2`.
 * - Ansible: Debian's `ansible-playbook`, `connection: local`, an inventory of N hosts
 *   (ansible_host=localhost, each with its own target_dir): get_url with checksum, unarchive,
 *   file state=link, command; at BENCH_ANSIBLE_FORKS (default 5,20,50) forks. Ansible missing is
 *   installed with apt-get when running as root (BENCH_INSTALL_ANSIBLE=0 turns that off); if it
 *   cannot be had, that part is skipped and the reason printed.
 * BENCH_ANSIBLE_SHELL=0 leaves the shell loops out and BENCH_ANSIBLE_FORKS=0 Ansible, for trying a
 * change on Gantry alone.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { AgentsInput } from './ansible-agents.ts';
import {
  Client,
  cpuSeconds,
  enroll,
  finished,
  mib,
  procStatus,
  seconds,
  sleep,
  startServer,
  uploadPackage,
} from './support.ts';

const TARGETS = Number(process.env.BENCH_ANSIBLE_TARGETS ?? 200);
const FORKS = (process.env.BENCH_ANSIBLE_FORKS ?? '5,20,50').split(',').map(Number).filter(Boolean);
const PACKAGE_MIB = 10;
/** The simulated agents run in this many processes, each running at most PARALLEL steps at once. */
const PROCESSES = Number(process.env.BENCH_ANSIBLE_PROCESSES ?? os.cpus().length);
const PARALLEL = Number(process.env.BENCH_ANSIBLE_PARALLEL ?? 2);
const VERSION = '1.0.0';
const root = mkdtempSync(path.join(os.tmpdir(), 'gantry-ansible-bench-'));
const pad = (i: number) => String(i).padStart(5, '0');

interface Way {
  name: string;
  seconds: number | null;
  note: string;
}
const ways: Way[] = [];

/** The package: random bytes (they do not compress), an index file and a manifest with a health check. */
function makePackage(): { file: string; sha256: string } {
  const src = path.join(root, 'package');
  mkdirSync(src);
  writeFileSync(path.join(src, 'data.bin'), randomBytes(PACKAGE_MIB * 1024 * 1024));
  writeFileSync(path.join(src, 'index.html'), `<h1>site ${VERSION}</h1>\n`);
  writeFileSync(
    path.join(src, 'gantry.yaml'),
    'health:\n  command: test -f index.html\n  retries: 1\n  interval: 1\n  timeout: 5\n',
  );
  const file = path.join(root, 'www', `site-${VERSION}.tar.gz`);
  mkdirSync(path.dirname(file));
  execFileSync('tar', ['-czf', file, '-C', src, 'data.bin', 'index.html', 'gantry.yaml']);
  const sha256 = execFileSync('sha256sum', [file]).toString().split(' ')[0] as string;
  return { file, sha256 };
}

/** Every target ends with `current` → this version, and its index file reachable through it. */
function verify(dirs: string[], link: (dir: string) => string, expected: (dir: string) => string): string {
  let bad = 0;
  for (const dir of dirs) {
    try {
      if (readlinkSync(link(dir)) !== expected(dir) || !existsSync(path.join(link(dir), 'index.html'))) bad++;
    } catch {
      bad++;
    }
  }
  return bad === 0 ? `all ${dirs.length} verified` : `${bad} of ${dirs.length} NOT in place`;
}

/** Runs a command to its end; resolves with the seconds taken and the exit code. */
function timed(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; cwd?: string; log: string },
): Promise<{ seconds: number; code: number | null }> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const out = openSync(options.log, 'a');
    const child = spawn(command, args, {
      env: options.env ?? process.env,
      cwd: options.cwd ?? root,
      stdio: ['ignore', out, out],
    });
    closeSync(out);
    child.on('error', reject);
    child.on('exit', (code) => resolve({ seconds: (performance.now() - t0) / 1000, code }));
  });
}

/** A plain static HTTP server for the shell loop and Ansible to download from. */
async function staticServer(dir: string): Promise<{ url: string; stop(): void }> {
  const child = spawn(
    'python3',
    ['-u', '-m', 'http.server', '0', '--bind', '127.0.0.1', '--directory', dir],
    {
      stdio: ['ignore', 'pipe', 'ignore'],
    },
  );
  let out = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  for (let i = 0; i < 100 && !/port (\d+)/.test(out); i++) await sleep(50);
  const port = /port (\d+)/.exec(out)?.[1];
  if (!port) {
    child.kill('SIGKILL');
    throw new Error(`python3 -m http.server did not start: ${out}`);
  }
  return { url: `http://127.0.0.1:${port}`, stop: () => child.kill('SIGKILL') };
}

// (a) Gantry: a real server and deployment; every target's agent work done by the agent's code.
async function gantry(pkg: { file: string; sha256: string }): Promise<void> {
  const dir = path.join(root, 'gantry');
  const server = await startServer(path.join(dir, 'server'));
  const client = new Client(server.base, TARGETS + 16);
  try {
    await client.json('POST', '/api/v1/environments', { name: 'bench' });
    await uploadPackage(server.base, readFileSync(pkg.file), 'site', VERSION);
    await client.json('POST', '/api/v1/releases', {
      name: 'site',
      version: VERSION,
      components: [{ component: 'site', version: VERSION }],
    });
    const enrolled = await enroll(client, 'bench', TARGETS, 16, (i) => `t-${pad(i)}`);
    const dataDirs = enrolled.agents.map((_, i) => path.join(dir, 'targets', `t-${pad(i)}`));
    const agents = await startAgentProcesses(
      server.base.toString(),
      enrolled.agents.map((a, i) => ({ ...a, name: `t-${pad(i)}`, dataDir: dataDirs[i] as string })),
      dir,
    );
    const serverCpu0 = cpuSeconds(server.pid);
    const agentsCpu0 = agents.cpu();
    const t0 = Date.now();
    const created = await client.json('POST', '/api/v1/deployments', {
      release: `site@${VERSION}`,
      environment: 'bench',
      strategy: 'big-bang',
    });
    const view = await finished(
      client,
      created.id as string,
      30 * 60_000,
      () => true,
      () => `the agents said: ${agents.said().slice(-500)}`,
    );
    const wall = (Date.parse(view.finishedAt as string) - t0) / 1000;
    const serverCpu = cpuSeconds(server.pid) - serverCpu0;
    const agentsCpu = agents.cpu() - agentsCpu0;
    const peak = agents.peakRss();
    const counts = await agents.stop();
    const check = verify(
      dataDirs,
      (d) => path.join(d, 'releases', 'site', 'current'),
      () => VERSION,
    );
    ways.push({
      name: `Gantry: server + big-bang deployment, ${TARGETS} agents in ${PROCESSES} processes running the agent's step code`,
      seconds: view.state === 'succeeded' ? wall : null,
      note: `${view.state}, ${JSON.stringify(view.counts)}; ${check}; server CPU ${serverCpu.toFixed(1)} s, agents' processes CPU ${agentsCpu.toFixed(1)} s (peak RSS ${peak.map((n) => mib(n)).join(' + ')} MiB); ${counts.errors} failed requests retried`,
    });
  } finally {
    client.agent.destroy();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The simulated agents, split over PROCESSES processes (bench/ansible-agents.ts), each running
 * at most PARALLEL steps at once. Resolves once every agent polls.
 */
async function startAgentProcesses(server: string, all: AgentsInput['agents'], dir: string) {
  const script = path.join(import.meta.dirname, 'ansible-agents.ts');
  const children = await Promise.all(
    Array.from({ length: PROCESSES }, async (_, p) => {
      const input: AgentsInput = {
        server,
        parallel: PARALLEL,
        agents: all.filter((_, i) => i % PROCESSES === p),
      };
      const file = path.join(dir, `agents-${p}.json`);
      writeFileSync(file, JSON.stringify(input));
      const profile = process.env.BENCH_PROFILE_DIR
        ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE_DIR}`]
        : [];
      const child = spawn(process.execPath, [...process.execArgv, ...profile, script, file], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let said = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
      });
      child.stderr.on('data', (d: Buffer) => {
        said = (said + d.toString()).slice(-4000);
      });
      for (let i = 0; i < 600 && !out.includes('ready'); i++) {
        if (child.exitCode !== null) throw new Error(`an agents' process ended: ${said}`);
        await sleep(100);
      }
      return { child, out: () => out, said: () => said };
    }),
  );
  return {
    cpu: () => children.reduce((sum, c) => sum + cpuSeconds(c.child.pid as number), 0),
    peakRss: () => children.map((c) => procStatus(c.child.pid as number, 'VmHWM')),
    said: () => children.map((c) => c.said()).join('\n'),
    async stop(): Promise<{ steps: number; errors: number }> {
      const counts = await Promise.all(
        children.map(async (c) => {
          const exited = new Promise((resolve) => c.child.once('exit', resolve));
          c.child.kill('SIGTERM');
          await exited;
          const last = c.out().trim().split('\n').at(-1) ?? '{}';
          return JSON.parse(last.startsWith('{') ? last : '{}') as { steps?: number; errors?: number };
        }),
      );
      return {
        steps: counts.reduce((n, c) => n + (c.steps ?? 0), 0),
        errors: counts.reduce((n, c) => n + (c.errors ?? 0), 0),
      };
    },
  };
}

// (b) The shell loop.
const DEPLOY_ONE = `#!/bin/bash
# deploy-one.sh TARGET_DIR URL SHA256 VERSION
set -euo pipefail
t=$1 url=$2 sum=$3 v=$4
mkdir -p "$t/downloads" "$t/releases"
curl -fsS -o "$t/downloads/pkg.tar.gz" "$url"
echo "$sum  $t/downloads/pkg.tar.gz" | sha256sum -c --quiet -
rm -rf "$t/releases/.staging-$v"
mkdir -p "$t/releases/.staging-$v"
tar xzf "$t/downloads/pkg.tar.gz" -C "$t/releases/.staging-$v"
mv -T "$t/releases/.staging-$v" "$t/releases/$v"
ln -sfn "releases/$v" "$t/current.tmp"
mv -T "$t/current.tmp" "$t/current"
test -f "$t/current/index.html"
rm -f "$t/downloads/pkg.tar.gz"
`;

async function shell(url: string, sha256: string, parallel: number): Promise<void> {
  const dir = path.join(root, `shell-${parallel}`);
  mkdirSync(dir);
  const script = path.join(root, 'deploy-one.sh');
  writeFileSync(script, DEPLOY_ONE, { mode: 0o755 });
  const loop =
    parallel === 1
      ? `for i in $(seq -f %05g 0 ${TARGETS - 1}); do ${script} ${dir}/t-$i ${url} ${sha256} ${VERSION}; done`
      : `seq -f %05g 0 ${TARGETS - 1} | xargs -P ${parallel} -I{} ${script} ${dir}/t-{} ${url} ${sha256} ${VERSION}`;
  const log = path.join(root, `shell-${parallel}.log`);
  const run = await timed('bash', ['-c', `set -e; ${loop}`], { log });
  const dirs = Array.from({ length: TARGETS }, (_, i) => path.join(dir, `t-${pad(i)}`));
  const check = verify(
    dirs,
    (d) => path.join(d, 'current'),
    () => `releases/${VERSION}`,
  );
  ways.push({
    name:
      parallel === 1
        ? 'shell loop, serial (curl, sha256sum -c, tar xzf, ln -sfn + mv -T, test -f)'
        : `shell loop, xargs -P ${parallel}`,
    seconds: run.code === 0 ? run.seconds : null,
    note: run.code === 0 ? check : `exit ${run.code}; see the log`,
  });
  rmSync(dir, { recursive: true, force: true });
}

// (c) Ansible.
const PLAYBOOK = `- hosts: targets
  gather_facts: false
  tasks:
    - name: release directory
      ansible.builtin.file:
        path: "{{ target_dir }}/releases/{{ version }}"
        state: directory
        mode: "0755"
    - name: download, checked against its SHA-256
      ansible.builtin.get_url:
        url: "{{ package_url }}"
        dest: "{{ target_dir }}/pkg.tar.gz"
        checksum: "sha256:{{ package_sha256 }}"
        mode: "0600"
    - name: unpack
      ansible.builtin.unarchive:
        src: "{{ target_dir }}/pkg.tar.gz"
        dest: "{{ target_dir }}/releases/{{ version }}"
        remote_src: true
    - name: switch current
      ansible.builtin.file:
        src: "{{ target_dir }}/releases/{{ version }}"
        dest: "{{ target_dir }}/current"
        state: link
        force: true
    - name: health check
      ansible.builtin.command: test -f {{ target_dir }}/current/index.html
      changed_when: false
`;

function ansibleAvailable(): { ok: true; version: string } | { ok: false; why: string } {
  const probe = () => spawnSync('ansible-playbook', ['--version'], { encoding: 'utf8' });
  let found = probe();
  if (found.status === 0) return { ok: true, version: found.stdout.split('\n')[0] ?? '' };
  if (process.env.BENCH_INSTALL_ANSIBLE === '0' || process.getuid?.() !== 0)
    return { ok: false, why: 'ansible-playbook is not installed (apt-get install -y ansible)' };
  console.error('ansible-playbook not found: apt-get install -y ansible …');
  const install = spawnSync('apt-get', ['install', '-y', '-q', 'ansible'], {
    encoding: 'utf8',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  found = probe();
  if (found.status === 0) return { ok: true, version: found.stdout.split('\n')[0] ?? '' };
  const said = `${install.stdout ?? ''}${install.stderr ?? ''}`.trim().split('\n').slice(-3).join(' / ');
  return {
    ok: false,
    why: `apt-get install -y ansible failed (${install.error?.message ?? `exit ${install.status}`}): ${said}`,
  };
}

async function ansible(url: string, sha256: string, forks: number): Promise<void> {
  const dir = path.join(root, `ansible-${forks}`);
  mkdirSync(dir);
  const inventory = path.join(root, `inventory-${forks}.ini`);
  const hosts = Array.from(
    { length: TARGETS },
    (_, i) => `t-${pad(i)} ansible_host=localhost target_dir=${dir}/t-${pad(i)}`,
  );
  writeFileSync(
    inventory,
    `[targets]\n${hosts.join('\n')}\n\n[targets:vars]\nansible_connection=local\nansible_python_interpreter=/usr/bin/python3\n`,
  );
  const playbook = path.join(root, 'deploy.yml');
  writeFileSync(playbook, PLAYBOOK);
  const log = path.join(root, `ansible-${forks}.log`);
  const run = await timed(
    'ansible-playbook',
    [
      '-i',
      inventory,
      playbook,
      '--forks',
      String(forks),
      '-e',
      `version=${VERSION} package_url=${url} package_sha256=${sha256}`,
    ],
    {
      log,
      env: {
        ...process.env,
        ANSIBLE_HOST_KEY_CHECKING: 'False',
        ANSIBLE_RETRY_FILES_ENABLED: 'False',
        ANSIBLE_PIPELINING: 'True',
        ANSIBLE_NOCOLOR: '1',
        ANSIBLE_LOCAL_TEMP: path.join(root, 'ansible-tmp'),
        ANSIBLE_REMOTE_TEMP: path.join(root, 'ansible-remote-tmp'),
      },
    },
  );
  const dirs = Array.from({ length: TARGETS }, (_, i) => path.join(dir, `t-${pad(i)}`));
  const check = verify(
    dirs,
    (d) => path.join(d, 'current'),
    (d) => path.join(d, 'releases', VERSION),
  );
  ways.push({
    name: `Ansible ${forks} forks (get_url with checksum, unarchive, file state=link, command)`,
    seconds: run.code === 0 ? run.seconds : null,
    note: run.code === 0 ? check : `exit ${run.code}; see the log`,
  });
  rmSync(dir, { recursive: true, force: true });
}

let skipped = '';
try {
  const pkg = makePackage();
  const www = await staticServer(path.dirname(pkg.file));
  const url = `${www.url}/${path.basename(pkg.file)}`;
  try {
    console.error(`package: ${PACKAGE_MIB} MiB of random bytes + index.html, sha256 ${pkg.sha256}`);
    await gantry(pkg);
    console.error(`gantry: ${seconds((ways.at(-1)?.seconds ?? 0) * 1000)} s`);
    // BENCH_ANSIBLE_SHELL=0 leaves the shell loops out (Gantry alone, when trying a change).
    if (process.env.BENCH_ANSIBLE_SHELL !== '0') {
      await shell(url, pkg.sha256, 1);
      console.error(`shell serial: ${seconds((ways.at(-1)?.seconds ?? 0) * 1000)} s`);
      await shell(url, pkg.sha256, 2);
      console.error(`shell -P 2: ${seconds((ways.at(-1)?.seconds ?? 0) * 1000)} s`);
    }
    const available = ansibleAvailable();
    if (!available.ok) skipped = available.why;
    else {
      console.error(available.version);
      for (const forks of FORKS) {
        await ansible(url, pkg.sha256, forks);
        console.error(`ansible ${forks} forks: ${seconds((ways.at(-1)?.seconds ?? 0) * 1000)} s`);
      }
    }
  } finally {
    www.stop();
  }

  const perTarget = (w: Way) => (w.seconds === null ? null : (w.seconds * 1000) / TARGETS);
  const gantryMs = perTarget(ways[0] as Way);
  console.log(
    `\nGantry vs a shell loop vs Ansible — node ${process.version}, ${os.cpus().length} cores, ${TARGETS} local targets, a ${PACKAGE_MIB} MiB package (download, SHA-256, unpack, atomic switch, health check)`,
  );
  console.log('| way | wall | per target | Gantry ÷ this | this ÷ Gantry | check |');
  console.log('|---|---:|---:|---:|---:|---|');
  for (const w of ways) {
    const ms = perTarget(w);
    console.log(
      `| ${w.name} | ${w.seconds === null ? 'failed' : `${w.seconds.toFixed(1)} s`} | ${ms === null ? '-' : `${ms.toFixed(1)} ms`} | ${ms && gantryMs ? (gantryMs / ms).toFixed(2) : '-'} | ${ms && gantryMs ? (ms / gantryMs).toFixed(1) : '-'} | ${w.note} |`,
    );
  }
  if (skipped) console.log(`| Ansible | skipped | - | - | - | ${skipped} |`);
  const shellSerial = ways.find((w) => w.name.startsWith('shell loop, serial'));
  const ansibleBest = ways
    .filter((w) => w.name.startsWith('Ansible') && w.seconds !== null)
    .sort((a, b) => (a.seconds as number) - (b.seconds as number))[0];
  if (gantryMs !== null && shellSerial?.seconds) {
    const ratio = gantryMs / (perTarget(shellSerial) as number);
    console.log(
      `\nGantry per target ÷ serial shell loop per target: ${ratio.toFixed(2)} (goal ≤ 0.5: ${ratio <= 0.5 ? 'met' : 'not met'})`,
    );
  }
  if (gantryMs !== null && ansibleBest) {
    const ratio = (perTarget(ansibleBest) as number) / gantryMs;
    console.log(
      `Ansible's best (${ansibleBest.name.split(' (')[0]}) per target ÷ Gantry per target: ${ratio.toFixed(1)} (goal ≥ 20: ${ratio >= 20 ? 'met' : 'not met'})`,
    );
  }
} finally {
  rmSync(root, { recursive: true, force: true });
}
