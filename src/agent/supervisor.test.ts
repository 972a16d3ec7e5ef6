/**
 * Adoption after an agent restart goes by the pid file, which holds the pid and the process's
 * start time: a pid that now belongs to another process (reused after a reboot) is neither
 * adopted nor signalled, and the service is started afresh.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Supervisor } from './supervisor.ts';

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe.runIf(process.platform === 'linux')('supervisor adoption', () => {
  let dir: string;
  let stranger: ChildProcess | undefined;
  let supervisor: Supervisor | undefined;
  afterEach(async () => {
    await supervisor?.stop('web', 2000);
    stranger?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('adopts its own service, and not a stranger that has the same pid', async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-supervisor-'));
    const release = path.join(dir, 'release');
    mkdirSync(release);
    mkdirSync(path.join(dir, 'run'));
    // Another process holds the pid the file names, but it started at another time.
    stranger = spawn('sleep', ['60'], { stdio: 'ignore' });
    const strangerPid = stranger.pid as number;
    writeFileSync(path.join(dir, 'run', 'web.pid'), `${strangerPid} 1\n`);
    supervisor = new Supervisor(dir);
    supervisor.start('web', '1.0.0', release, 'sleep 60', {});
    const launched = supervisor.status()[0]?.pid as number;
    expect(launched).not.toBe(strangerPid);
    const [pid, started] = readFileSync(path.join(dir, 'run', 'web.pid'), 'utf8')
      .trim()
      .split(' ');
    expect(Number(pid)).toBe(launched);
    expect(started).toMatch(/^\d+$/);

    // A new supervisor (an agent restarted) adopts the service it finds by pid and start time.
    supervisor.detach();
    supervisor = new Supervisor(dir);
    supervisor.start('web', '1.0.0', release, 'sleep 60', {});
    expect(supervisor.status()[0]?.pid).toBe(launched);
    await supervisor.stop('web', 2000);
    expect(alive(launched)).toBe(false);
    expect(alive(strangerPid)).toBe(true);
  });
});
