/**
 * Running one step on the target. Releases live in `<data>/releases/<component>/<version>`; the
 * active one is the `current` link beside them, switched atomically (a new link renamed over the
 * old). Every step can be run again after a crash and ends the same way: an install that finds its
 * release in place is done, an activation that finds the link already right is done.
 */
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, readlink, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Failpoints } from '../support/failpoints.ts';
import { type AgentState, badRefusal, markBad, type SlotName, writeState } from './agent-state.ts';
import { checkHealth, runHook } from './hooks.ts';
import { send } from './http-client.ts';
import { extractSafely, readManifest } from './lazy.ts';
import type { Manifest } from './manifest.ts';
import { type DownloadSink, memorySink, SinkFullError } from './memory-sink.ts';
import { routeBack, routeTo } from './routes.ts';
import { DEFAULT_KEEP_SECONDS, stage, superviseSlots, switchBack, switchLink, switchTo } from './slots.ts';
import type { Supervisor } from './supervisor.ts';

export interface StepToRun {
  id: string;
  kind: 'install' | 'activate' | 'rollback' | 'remove' | 'logs' | 'stage' | 'switch' | 'route';
  component: string;
  version: string | null;
  digest: string | null;
  /** Declared length of the package, for install. */
  size: number | null;
  /** switch: how long the old slot keeps running for an instant switch back. */
  keepSeconds?: number | null | undefined;
  /** route: the group traffic moves to, the one it leaves, and the group's healthy targets. */
  route?:
    | { slot: SlotName; previousSlot: SlotName | null; targets: string[]; previousTargets: string[] }
    | undefined;
}

export interface StepOutcome {
  outcome: 'succeeded' | 'failed';
  message: string;
  active?: { component: string; version: string };
}

export interface StepContext {
  server: string;
  dataDir: string;
  state: AgentState;
  failpoints: Failpoints;
  supervisor: Supervisor;
  /** How long a download may be silent or trickle before it is given up (default 60 s). */
  downloadTimeoutMs?: number | undefined;
  /** Packages up to this many bytes are downloaded into memory (default IN_MEMORY_DOWNLOAD_MAX). */
  inMemoryDownloadMax?: number | undefined;
}

const SAFE_NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/;

/** What is wrong with a route from the server (its names go to a hook's environment), or null. */
function routeRefusal(route: StepToRun['route'], forward: boolean): string | null {
  const group = (g: unknown) => g === 'blue' || g === 'green';
  const names = (list: unknown) =>
    Array.isArray(list) && list.every((t) => typeof t === 'string' && SAFE_NAME.test(t));
  if (
    !route ||
    !group(route.slot) ||
    !(route.previousSlot === null || (group(route.previousSlot) && route.previousSlot !== route.slot)) ||
    !names(route.targets) ||
    !names(route.previousTargets) ||
    (forward && route.targets.length === 0)
  )
    return 'refused: the route must name a group (blue or green) other than the one before, and the group’s targets by safe names';
  return null;
}

export async function runStep(ctx: StepContext, step: StepToRun): Promise<StepOutcome> {
  // Names come from the server; they still must not steer a path out of the data directory.
  if (!SAFE_NAME.test(step.component) || (step.version !== null && !SAFE_NAME.test(step.version))) {
    return {
      outcome: 'failed',
      message: `refused: '${step.component}' '${step.version}' is not a safe name`,
    };
  }
  const releases = path.join(ctx.dataDir, 'releases', step.component);
  switch (step.kind) {
    case 'install':
      return install(ctx, step, releases);
    case 'activate': {
      const recovered = ctx.state.recovered;
      if (recovered && recovered.component === step.component && recovered.version === step.version) {
        // This activation was interrupted and undone at start: say so, once, instead of trying again.
        ctx.state.recovered = undefined;
        writeState(ctx.dataDir, ctx.state);
        return { outcome: 'failed', message: recovered.message };
      }
      return activate(ctx, step.component, step.version as string, releases);
    }
    case 'stage':
      return stage(ctx, step.component, step.version as string, releases);
    case 'switch':
      return switchTo(
        ctx,
        step.component,
        step.version as string,
        releases,
        step.keepSeconds ?? DEFAULT_KEEP_SECONDS,
      );
    case 'route': {
      const refusal = routeRefusal(step.route, true);
      if (refusal || !step.route) return { outcome: 'failed', message: refusal ?? '' };
      return routeTo(ctx, step.component, step.version as string, releases, step.route);
    }
    case 'rollback': {
      if (ctx.state.components?.[step.component]?.route) {
        const refusal = step.route ? routeRefusal(step.route, false) : null;
        if (refusal) return { outcome: 'failed', message: refusal };
        return routeBack(ctx, step.component, step.version, releases, step.route);
      }
      if (ctx.state.components?.[step.component]?.slots)
        return switchBack(ctx, step.component, step.version, releases);
      const previous = ctx.state.components?.[step.component]?.previous;
      if (!previous)
        return {
          outcome: 'failed',
          message: `nothing to roll back to: no earlier version of ${step.component} was active here`,
        };
      if (!(await stat(path.join(releases, previous)).catch(() => null)))
        return {
          outcome: 'failed',
          message: `failed_needs_attention: cannot roll back ${step.component} to ${previous}: its release is gone from this target; ${ctx.state.components?.[step.component]?.current ?? 'what runs'} keeps running`,
        };
      return activate(ctx, step.component, previous, releases);
    }
    case 'logs':
      return logsOf(ctx, step.component);
    case 'remove': {
      if (ctx.state.components?.[step.component]?.current === step.version) {
        return {
          outcome: 'failed',
          message: `${step.component} ${step.version} is active; activate another version before removing it`,
        };
      }
      await rm(path.join(releases, step.version as string), { recursive: true, force: true });
      return { outcome: 'succeeded', message: `removed ${step.component} ${step.version}` };
    }
  }
}

async function install(ctx: StepContext, step: StepToRun, releases: string): Promise<StepOutcome> {
  const version = step.version as string;
  const final = path.join(releases, version);
  // Installing again is the deliberate way to try a version marked bad once more.
  clearBad(ctx, step.component, version);
  if (await stat(final).catch(() => null))
    return { outcome: 'succeeded', message: `${step.component} ${version} was already installed` };
  if (!step.digest || !/^[0-9a-f]{64}$/.test(step.digest))
    return { outcome: 'failed', message: 'the step names no digest to install' };
  await mkdir(releases, { recursive: true, mode: 0o755 });
  const downloads = path.join(ctx.dataDir, 'downloads');
  const file = path.join(downloads, `${step.digest}.partial`);
  // A package of a known, modest size is held in memory while it is checked (no write of the
  // archive to disk and no read back); a larger one, or one of unknown size, goes to a file.
  const sink =
    step.size !== null && step.size <= (ctx.inMemoryDownloadMax ?? IN_MEMORY_DOWNLOAD_MAX)
      ? memorySink(step.size)
      : await fileSink(downloads, file);
  try {
    let hash = createHash('sha256');
    const limit = step.size ?? Number.POSITIVE_INFINITY;
    let received = 0;
    let halfway = false;
    const failpoints = ctx.failpoints;
    // A download cut off by the network is taken up where it stopped (Range), a few times with a
    // growing pause; what is refused (wrong length, an answer that is not the bytes) is not retried.
    for (let attempt = 1; ; attempt++) {
      const resume = received > 0;
      const response = await send('GET', new URL(`/api/v1/agent/blobs/sha256:${step.digest}`, ctx.server), {
        headers: {
          authorization: `Bearer ${ctx.state.credential}`,
          ...(resume ? { range: `bytes=${received}-` } : {}),
        },
        timeoutMs: ctx.downloadTimeoutMs ?? 60_000,
      }).catch((error: Error) => error);
      if (response instanceof Error) {
        if (!isCutOff(response) || attempt >= DOWNLOAD_ATTEMPTS) throw response;
        await pause(attempt);
        continue;
      }
      if (response.status !== 200 && response.status !== 206) {
        response.body.resume();
        return { outcome: 'failed', message: `download refused: the server answered ${response.status}` };
      }
      if (resume && response.status === 200) {
        // The server sent everything again: start over with it.
        hash = createHash('sha256');
        received = 0;
      }
      try {
        // Streams piped in flowing mode, so each piece goes on as it came (an async iterator over
        // the response would join what had gathered into a new buffer: a copy of the download).
        await pipeline(
          response.body,
          new Transform({
            transform(chunk: Buffer, _encoding, done) {
              received += chunk.length;
              // Never more than the step declares (an endless or padded answer is cut off at once).
              if (received > limit) return done(new DeclaredLengthError(limit));
              hash.update(chunk);
              if (halfway || received * 2 < limit) return done(null, chunk);
              halfway = true;
              failpoints.hit('agent.download.mid').then(
                () => done(null, chunk),
                (error: Error) => done(error),
              );
            },
          }),
          sink.writable(received),
        );
        break;
      } catch (error) {
        if (!isCutOff(error) || attempt >= DOWNLOAD_ATTEMPTS) throw error;
        // Take up from what was kept: count and hash exactly those bytes again.
        hash = createHash('sha256');
        received = 0;
        try {
          for await (const chunk of sink.kept()) {
            hash.update(chunk);
            received += chunk.length;
          }
        } catch {
          hash = createHash('sha256');
          received = 0;
        }
        await pause(attempt);
      }
    }
    if (step.size !== null && received !== step.size) {
      return {
        outcome: 'failed',
        message: `refused: received ${received} bytes, the step declares ${step.size}; nothing was unpacked`,
      };
    }
    const actual = hash.digest('hex');
    // Nothing is unpacked unless the bytes are exactly the ones the step names.
    if (actual !== step.digest)
      return {
        outcome: 'failed',
        message: `refused: the package hashes to sha256:${actual}, not sha256:${step.digest}; nothing was unpacked`,
      };
    await ctx.failpoints.hit('agent.after_download');
    const staging = await extractSafely(sink.archive(), releases);
    await ctx.failpoints.hit('agent.after_extract');
    let manifest: Manifest | undefined;
    try {
      manifest = await readManifest(staging);
    } catch (error) {
      await rm(staging, { recursive: true, force: true });
      return { outcome: 'failed', message: `refused: ${(error as Error).message}; nothing was installed` };
    }
    await rename(staging, final);
    if (manifest?.install) {
      const failed = await runHook(
        { dataDir: ctx.dataDir, component: step.component, releaseDir: final, env: manifest.env },
        'install',
        manifest.install,
      );
      if (failed) {
        await rm(final, { recursive: true, force: true });
        return { outcome: 'failed', message: `install hook failed: ${failed}; the release was removed` };
      }
    }
    return { outcome: 'succeeded', message: `installed ${step.component} ${version}` };
  } catch (error) {
    const text = (error as Error).message;
    // A full disk is named as such (the old version is untouched: nothing was switched).
    if ((error as { code?: string }).code === 'ENOSPC' || /ENOSPC|no space left/i.test(text)) {
      return {
        outcome: 'failed',
        message: `insufficient_disk: the target ran out of space while installing; nothing was activated (${text})`,
      };
    }
    if ((error as Error).name === 'UnsafeArchiveError')
      return { outcome: 'failed', message: `refused: ${text}; nothing was installed` };
    return { outcome: 'failed', message: `install failed: ${text}` };
  } finally {
    await sink.discard();
  }
}

/** Packages up to this size are downloaded into memory; larger ones into a file. */
export const IN_MEMORY_DOWNLOAD_MAX = 64 * 1024 * 1024;

async function fileSink(downloads: string, file: string): Promise<DownloadSink> {
  await mkdir(downloads, { recursive: true, mode: 0o700 });
  return {
    writable: (offset) => createWriteStream(file, { mode: 0o600, flags: offset > 0 ? 'a' : 'w' }),
    async *kept() {
      for await (const chunk of createReadStream(file)) yield chunk as Buffer;
    },
    archive: () => file,
    discard: () => rm(file, { force: true }),
  };
}

async function activate(
  ctx: StepContext,
  component: string,
  version: string,
  releases: string,
): Promise<StepOutcome> {
  if (!(await stat(path.join(releases, version)).catch(() => null))) {
    return { outcome: 'failed', message: `${component} ${version} is not installed here; install it first` };
  }
  const bad = badRefusal(ctx.state, component, version);
  if (bad) return { outcome: 'failed', message: bad };
  const link = path.join(releases, 'current');
  const before = await readlink(link).catch(() => null);
  const hooks = (v: string, manifest: Manifest | undefined) => ({
    dataDir: ctx.dataDir,
    component,
    releaseDir: path.join(releases, v),
    env: manifest?.env ?? {},
  });
  let next: Manifest | undefined;
  let old: Manifest | undefined;
  try {
    next = await readManifest(path.join(releases, version));
    old = before && before !== version ? await readManifest(path.join(releases, before)) : undefined;
  } catch (error) {
    return { outcome: 'failed', message: `refused: ${(error as Error).message}` };
  }
  const known = ctx.state.components?.[component];
  if (known?.slots?.live)
    return {
      outcome: 'failed',
      message: `refused: ${component} runs blue-green here (${known.slots.live} serves ${known.current}); deploy it with the blue-green strategy`,
    };
  if (before === version && known?.current === version) {
    // Run again after a restart that came after confirmation: nothing to do but say so.
    return {
      outcome: 'succeeded',
      message: `${component} ${version} was already active`,
      active: { component, version },
    };
  }
  // Written before anything changes: a restart from here on puts the version before back.
  ctx.state.pending = { component, version, before, phase: 'switching' };
  writeState(ctx.dataDir, ctx.state);
  if (before !== version) {
    if (before && old?.supervise) await ctx.supervisor.stop(component);
    else if (before && old?.stop) {
      const failed = await runHook(hooks(before, old), 'stop', old.stop);
      if (failed) {
        clearPending(ctx);
        return {
          outcome: 'failed',
          message: `the active ${component} ${before} did not stop (${failed}); nothing was switched`,
        };
      }
    }
    await ctx.failpoints.hit('agent.before_switch');
    await switchLink(link, version);
    await ctx.failpoints.hit('agent.after_switch');
  }
  // Not written: a restart in either phase puts the version before back.
  ctx.state.pending = { component, version, before, phase: 'checking' };
  let started: string | null = null;
  if (next?.start && next.supervise) {
    ctx.supervisor.start(component, version, path.join(releases, version), next.start, next.env);
  } else if (next?.start) started = await runHook(hooks(version, next), 'start', next.start);
  const unhealthy = started ?? (next?.health ? await checkHealth(hooks(version, next), next.health) : null);
  await ctx.failpoints.hit('agent.during_health');
  if (unhealthy) {
    const done = await putBack(ctx, component, version, before, releases);
    // Marked bad for this target (row F05): no automatic retry loop.
    markBad(ctx.state, component, version, unhealthy);
    writeState(ctx.dataDir, ctx.state);
    return {
      outcome: 'failed',
      message: `${component} ${version}: ${unhealthy}; ${done}; marked bad on this target`,
    };
  }
  // Confirmed: the new version and the end of the activation are written together.
  ctx.state.components = {
    ...ctx.state.components,
    [component]: { current: version, previous: known?.current ?? before },
  };
  ctx.state.pending = undefined;
  writeState(ctx.dataDir, ctx.state);
  await ctx.failpoints.hit('agent.before_report');
  return {
    outcome: 'succeeded',
    message: `${component} ${version} is active${next?.health ? ' and healthy' : ''}`,
    active: { component, version },
  };
}

/** Stops `version`, switches back to `before` and starts it again; says what was done. */
async function putBack(
  ctx: StepContext,
  component: string,
  version: string,
  before: string | null,
  releases: string,
): Promise<string> {
  const link = path.join(releases, 'current');
  const manifestOf = async (v: string) => readManifest(path.join(releases, v)).catch(() => undefined);
  if (before && before !== version && !(await stat(path.join(releases, before)).catch(() => null))) {
    // Nothing to go back to (row F06): keep what still runs, and say it needs a person.
    clearPending(ctx);
    return `failed_needs_attention: cannot go back to ${before}, its release is gone from this target; ${version} keeps running`;
  }
  const next = await manifestOf(version);
  if (next?.supervise) await ctx.supervisor.stop(component);
  else if (next?.stop)
    await runHook(
      { dataDir: ctx.dataDir, component, releaseDir: path.join(releases, version), env: next.env },
      'stop',
      next.stop,
    );
  let message = 'there was no earlier version to go back to';
  if (before && before !== version) {
    await switchLink(link, before);
    const old = await manifestOf(before);
    if (old?.start && old.supervise)
      ctx.supervisor.start(component, before, path.join(releases, before), old.start, old.env);
    else if (old?.start)
      await runHook(
        { dataDir: ctx.dataDir, component, releaseDir: path.join(releases, before), env: old.env },
        'start',
        old.start,
      );
    message = `rolled back to ${before}`;
  }
  clearPending(ctx);
  return message;
}

function clearPending(ctx: StepContext): void {
  ctx.state.pending = undefined;
  writeState(ctx.dataDir, ctx.state);
}

/**
 * After a restart: removes what an interrupted install left (staging directories, partial
 * downloads), and undoes an activation that was never confirmed healthy (rows F02, F04).
 */
export async function recover(ctx: StepContext): Promise<string | null> {
  const releasesRoot = path.join(ctx.dataDir, 'releases');
  for (const component of await readdir(releasesRoot).catch(() => [] as string[])) {
    for (const entry of await readdir(path.join(releasesRoot, component)).catch(() => [] as string[])) {
      if (entry.startsWith('.staging-') || entry.endsWith('.tmp'))
        await rm(path.join(releasesRoot, component, entry), { recursive: true, force: true });
    }
  }
  await rm(path.join(ctx.dataDir, 'downloads'), { recursive: true, force: true });
  const pending = ctx.state.pending;
  if (!pending) return null;
  const releases = path.join(releasesRoot, pending.component);
  const done = await putBack(ctx, pending.component, pending.version, pending.before, releases);
  const message = `rolled_back: health_unconfirmed_after_restart (${pending.component} ${pending.version}; ${done})`;
  ctx.state.recovered = { component: pending.component, version: pending.version, message };
  writeState(ctx.dataDir, ctx.state);
  return message;
}

/** The last lines of a component's log (its service's output and the agent's notes), at most 64 KiB. */
async function logsOf(ctx: StepContext, component: string): Promise<StepOutcome> {
  // A blue-green component's service writes to the log of the slot that serves.
  const live = ctx.state.components?.[component]?.slots?.live;
  const file = path.join(ctx.dataDir, 'logs', `${live ? `${component}@${live}` : component}.log`);
  const { open } = await import('node:fs/promises');
  const handle = await open(file, 'r').catch(() => null);
  if (!handle) return { outcome: 'succeeded', message: `(no log for ${component} yet)` };
  try {
    const { size } = await handle.stat();
    const length = Math.min(size, 64 * 1024);
    const buffer = Buffer.alloc(length);
    await handle.read(buffer, 0, length, size - length);
    let text = buffer.toString('utf8');
    if (length < size) text = text.slice(text.indexOf('\n') + 1);
    return { outcome: 'succeeded', message: text };
  } finally {
    await handle.close();
  }
}

/** After the agent starts: every supervised service of an active version runs (or is adopted). */
export async function superviseActive(ctx: StepContext): Promise<void> {
  for (const [component, known] of Object.entries(ctx.state.components ?? {})) {
    if (!SAFE_NAME.test(component)) continue;
    // Slots that run are supervised; a component whose traffic is on a slot has nothing else to run.
    if (known.slots) await superviseSlots(ctx, component, known.slots);
    // A router only runs the switch hook of its version; it serves nothing itself.
    if (known.slots?.live || known.route) continue;
    if (!known.current) continue;
    const dir = path.join(ctx.dataDir, 'releases', component, known.current);
    const manifest = await readManifest(dir).catch(() => undefined);
    if (manifest?.supervise && manifest.start)
      ctx.supervisor.start(component, known.current, dir, manifest.start, manifest.env);
  }
}

function clearBad(ctx: StepContext, component: string, version: string): void {
  if (!ctx.state.bad?.some((b) => b.component === component && b.version === version)) return;
  ctx.state.bad = ctx.state.bad.filter((b) => !(b.component === component && b.version === version));
  writeState(ctx.dataDir, ctx.state);
}

const DOWNLOAD_ATTEMPTS = 8;

class DeclaredLengthError extends Error {
  constructor(limit: number) {
    super(`the server sent more than the ${limit} bytes the step declares`);
  }
}

function pause(attempt: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.min(8000, 500 * 2 ** attempt)));
}

/**
 * A connection cut off or refused (a flapping network) is worth taking up again at once; an
 * answer that is too long, too slow or silent is not — the step fails and is tried again later.
 */
function isCutOff(error: unknown): boolean {
  if (error instanceof DeclaredLengthError || error instanceof SinkFullError) return false;
  const code = (error as { code?: string }).code ?? '';
  const message = (error as Error).message ?? '';
  return (
    ['ECONNRESET', 'EPIPE', 'ECONNREFUSED', 'ERR_STREAM_PREMATURE_CLOSE', 'ECONNABORTED'].includes(code) ||
    /^(aborted|socket hang up|Premature close)$/.test(message)
  );
}
