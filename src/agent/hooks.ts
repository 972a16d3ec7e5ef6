/**
 * Running a package's hook commands and health checks, each with a time limit. Output goes to
 * `<data-dir>/logs/<component>.log`, never into the server's records.
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import path from 'node:path';
import { send } from './http-client.ts';
import type { HealthCheck } from './manifest.ts';

export interface HookContext {
  dataDir: string;
  component: string;
  releaseDir: string;
  env: Record<string, string>;
}

/** Runs `command` in the release directory; resolves to null on success or the reason it failed. */
export function runHook(
  ctx: HookContext,
  name: string,
  command: string,
  timeoutSeconds = 120,
): Promise<string | null> {
  const logs = path.join(ctx.dataDir, 'logs');
  mkdirSync(logs, { recursive: true, mode: 0o700 });
  const log = openSync(path.join(logs, `${ctx.component}.log`), 'a', 0o600);
  return new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', command], {
      cwd: ctx.releaseDir,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? '/', ...ctx.env },
      stdio: ['ignore', log, log],
      // Its own process group: what the hook starts in the background outlives it, and a hook
      // that runs too long is stopped with everything it started in the foreground.
      detached: true,
    });
    const timer = setTimeout(() => {
      try {
        process.kill(-(child.pid as number), 'SIGKILL');
      } catch {}
    }, timeoutSeconds * 1000);
    child.on('error', (error) => {
      clearTimeout(timer);
      closeSync(log);
      resolve(`${name} could not run: ${error.message}`);
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      closeSync(log);
      if (code === 0) resolve(null);
      else
        resolve(
          signal
            ? `${name} was stopped after ${timeoutSeconds} s`
            : `${name} exited with ${code} (see logs/${ctx.component}.log)`,
        );
    });
    child.unref();
  });
}

/** Checks health until it passes or the tries run out; null when healthy, else the last reason. */
export async function checkHealth(ctx: HookContext, check: HealthCheck): Promise<string | null> {
  let reason = 'not checked';
  for (let attempt = 1; attempt <= check.retries; attempt++) {
    if (check.http) {
      // `${NAME}` in the URL is the hook's setting of that name (a slot's port, say).
      const url = check.http.replace(
        /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g,
        (_, name: string) => ctx.env[name] ?? '',
      );
      try {
        const response = await send('GET', new URL(url), { timeoutMs: check.timeout * 1000 });
        response.body.resume();
        if (response.status >= 200 && response.status < 300) return null;
        reason = `${url} answered ${response.status}`;
      } catch (error) {
        reason = `${url} did not answer (${(error as { code?: string }).code ?? (error as Error).message})`;
      }
    } else if (check.command) {
      const failed = await runHook(ctx, 'health', check.command, check.timeout);
      if (failed === null) return null;
      reason = failed;
    }
    if (attempt < check.retries) await new Promise((resolve) => setTimeout(resolve, check.interval * 1000));
  }
  return `health check failed after ${check.retries} tries: ${reason}`;
}
