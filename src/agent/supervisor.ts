/**
 * Supervision of a package's service, for a manifest that says `supervise: true`: the agent runs
 * `start` as a long-lived child in its own process group, appends its output to
 * `<data-dir>/logs/<component>.log`, and starts it again with a growing pause (1 s, 2 s, 4 s … up
 * to 60 s; back to 1 s after a minute of running) whenever it exits. Stopping sends SIGTERM to the
 * group and SIGKILL after a grace period. The child's pid is kept in `<data-dir>/run/<component>.pid`
 * so an agent that restarts finds a service still running and does not start a second one.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { appendFileSync, closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';

interface Supervised {
  component: string;
  version: string;
  child: ChildProcess | null;
  /** A process found running at start, from an earlier agent: watched by polling. */
  adoptedPid: number | null;
  stopping: boolean;
  restarts: number;
  startedAt: number;
  timer: NodeJS.Timeout | null;
}

const MAX_PAUSE_MS = 60_000;

export class Supervisor {
  private readonly services = new Map<string, Supervised>();

  constructor(private readonly dataDir: string) {}

  /** Starts (or, after an agent restart, adopts) the service of `component` at `version`. */
  start(
    component: string,
    version: string,
    releaseDir: string,
    command: string,
    env: Record<string, string>,
  ): void {
    const existing = this.services.get(component);
    if (existing && !existing.stopping) return;
    const alive = this.alivePid(component);
    const service: Supervised = {
      component,
      version,
      child: null,
      adoptedPid: alive,
      stopping: false,
      restarts: 0,
      startedAt: Date.now(),
      timer: null,
    };
    this.services.set(component, service);
    if (alive !== null) {
      this.note(
        component,
        `found ${component} ${version} still running (pid ${alive}); supervising it again`,
      );
      this.watchAdopted(service, releaseDir, command, env);
      return;
    }
    this.launch(service, releaseDir, command, env);
  }

  /** Stops the service of `component`; resolves once it has exited (SIGKILL after `graceMs`). */
  async stop(component: string, graceMs = 10_000): Promise<void> {
    const service = this.services.get(component);
    const pid = service?.child?.pid ?? service?.adoptedPid ?? this.alivePid(component);
    if (service) {
      service.stopping = true;
      if (service.timer) clearTimeout(service.timer);
    }
    this.services.delete(component);
    if (pid === null || pid === undefined) return;
    signalGroup(pid, 'SIGTERM');
    const until = Date.now() + graceMs;
    while (isAlive(pid) && Date.now() < until) await sleep(100);
    if (isAlive(pid)) signalGroup(pid, 'SIGKILL');
    while (isAlive(pid) && Date.now() < until + 2000) await sleep(50);
    rmSync(this.pidFile(component), { force: true });
    this.note(component, `stopped ${component}`);
  }

  /** What runs under supervision now. */
  status(): Array<{ component: string; version: string; pid: number | null; restarts: number }> {
    return [...this.services.values()].map((s) => ({
      component: s.component,
      version: s.version,
      pid: s.child?.pid ?? s.adoptedPid,
      restarts: s.restarts,
    }));
  }

  /** Leaves services running (the agent is going away; a restarted agent adopts them). */
  detach(): void {
    for (const s of this.services.values()) {
      if (s.timer) clearTimeout(s.timer);
      s.stopping = true;
      s.child?.unref();
    }
    this.services.clear();
  }

  private launch(
    service: Supervised,
    releaseDir: string,
    command: string,
    env: Record<string, string>,
  ): void {
    const logs = path.join(this.dataDir, 'logs');
    mkdirSync(logs, { recursive: true, mode: 0o700 });
    const log = openSync(path.join(logs, `${service.component}.log`), 'a', 0o600);
    const child = spawn('/bin/sh', ['-c', `exec ${command}`], {
      cwd: releaseDir,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/', ...env },
      stdio: ['ignore', log, log],
      detached: true,
    });
    closeSync(log);
    service.child = child;
    service.startedAt = Date.now();
    if (child.pid !== undefined) {
      mkdirSync(path.join(this.dataDir, 'run'), { recursive: true, mode: 0o700 });
      // With the process's start time: after a reboot the same pid may be another process.
      writeFileSync(this.pidFile(service.component), `${child.pid} ${startTimeOf(child.pid) ?? ''}\n`, {
        mode: 0o600,
      });
    }
    child.on('error', (error) => this.note(service.component, `could not start: ${error.message}`));
    child.on('exit', (code, signal) => {
      if (service.stopping || this.services.get(service.component) !== service) return;
      this.scheduleRestart(service, `exited (${signal ?? `code ${code}`})`, () =>
        this.launch(service, releaseDir, command, env),
      );
    });
  }

  private watchAdopted(
    service: Supervised,
    releaseDir: string,
    command: string,
    env: Record<string, string>,
  ): void {
    const poll = () => {
      if (service.stopping || this.services.get(service.component) !== service) return;
      if (service.adoptedPid !== null && isAlive(service.adoptedPid)) {
        service.timer = setTimeout(poll, 1000);
        service.timer.unref();
        return;
      }
      service.adoptedPid = null;
      this.scheduleRestart(service, 'exited', () => this.launch(service, releaseDir, command, env));
    };
    poll();
  }

  private scheduleRestart(service: Supervised, why: string, restart: () => void): void {
    // A service that ran a minute or more starts over at the shortest pause.
    if (Date.now() - service.startedAt >= 60_000) service.restarts = 0;
    const pause = Math.min(MAX_PAUSE_MS, 1000 * 2 ** service.restarts);
    service.restarts += 1;
    this.note(service.component, `${service.component} ${why}; starting it again in ${pause / 1000} s`);
    service.timer = setTimeout(() => {
      service.timer = null;
      if (!service.stopping && this.services.get(service.component) === service) restart();
    }, pause);
    service.timer.unref();
  }

  private alivePid(component: string): number | null {
    try {
      const [pidText, started] = readFileSync(this.pidFile(component), 'utf8').trim().split(/\s+/);
      const pid = Number(pidText);
      if (!Number.isInteger(pid) || pid <= 1 || !isAlive(pid)) return null;
      // A pid that now belongs to a process started at another time is not our service.
      if (started && startTimeOf(pid) !== started) return null;
      return pid;
    } catch {
      return null;
    }
  }

  private pidFile(component: string): string {
    return path.join(this.dataDir, 'run', `${component}.pid`);
  }

  private note(component: string, text: string): void {
    try {
      mkdirSync(path.join(this.dataDir, 'logs'), { recursive: true, mode: 0o700 });
      appendFileSync(
        path.join(this.dataDir, 'logs', `${component}.log`),
        `[gantry-agent ${new Date().toISOString()}] ${text}\n`,
        {
          mode: 0o600,
        },
      );
    } catch {}
  }
}

/** The process's start time in clock ticks since boot (Linux `/proc`), or null where unknown. */
function startTimeOf(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The fields after the command name (which is in parentheses and may hold spaces); start time is the 22nd field.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try {
      process.kill(pid, signal);
    } catch {}
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
