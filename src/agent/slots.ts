/**
 * Blue-green on one target: two slots, `blue` and `green`, each a running copy of the component
 * with its own settings (typically its own port, from `slots:` in `gantry.yaml`). A new version is
 * staged into the idle slot, started and checked there while the live slot keeps serving; `switch`
 * then runs the package's `switch` hook (for example: point an nginx upstream at the new port and
 * reload) and the slots trade places. The old slot keeps running for a set time, so switching
 * back is instant; after that it is stopped (its release stays on disk, so switching back still
 * works, only with a start and a health check first).
 *
 * Each slot's service runs under the name `<component>@<slot>` (its log and pid file too); the
 * `current` link always names the live version.
 */
import { rename, rm, stat, symlink } from 'node:fs/promises';
import path from 'node:path';
import {
  type AgentState,
  badRefusal,
  markBad,
  type SlotName,
  type Slots,
  writeState,
} from './agent-state.ts';
import { checkHealth, type HookContext, runHook } from './hooks.ts';
import { readManifest } from './lazy.ts';
import type { Manifest } from './manifest.ts';
import type { StepContext, StepOutcome } from './steps.ts';

const other = (slot: SlotName): SlotName => (slot === 'blue' ? 'green' : 'blue');

/** How long the old slot is kept running after a switch unless the step says otherwise. */
export const DEFAULT_KEEP_SECONDS = 3600;

/** Points `link` at `version` atomically: a new link renamed over the old. */
export async function switchLink(link: string, version: string): Promise<void> {
  const temp = `${link}.${process.pid}.tmp`;
  await rm(temp, { force: true });
  await symlink(version, temp);
  await rename(temp, link);
}

function slotsOf(state: AgentState, component: string): Slots {
  return state.components?.[component]?.slots ?? { live: null };
}

function save(
  ctx: StepContext,
  component: string,
  slots: Slots,
  extra: { current?: string | null; previous?: string | null } = {},
) {
  const known = ctx.state.components?.[component];
  ctx.state.components = {
    ...ctx.state.components,
    [component]: {
      current: extra.current !== undefined ? extra.current : (known?.current ?? null),
      previous: extra.previous !== undefined ? extra.previous : (known?.previous ?? null),
      slots,
    },
  };
  writeState(ctx.dataDir, ctx.state);
}

function hookContext(
  ctx: StepContext,
  component: string,
  releases: string,
  version: string,
  manifest: Manifest,
  slot: SlotName,
): HookContext {
  return {
    dataDir: ctx.dataDir,
    component: `${component}@${slot}`,
    releaseDir: path.join(releases, version),
    env: { ...manifest.env, ...(manifest.slots?.[slot] ?? {}), GANTRY_SLOT: slot },
  };
}

async function startSlot(
  ctx: StepContext,
  component: string,
  releases: string,
  version: string,
  manifest: Manifest,
  slot: SlotName,
): Promise<string | null> {
  const hook = hookContext(ctx, component, releases, version, manifest, slot);
  await switchLink(path.join(releases, `slot-${slot}`), version);
  let failed: string | null = null;
  if (manifest.start && manifest.supervise)
    ctx.supervisor.start(hook.component, version, hook.releaseDir, manifest.start, hook.env);
  else if (manifest.start) failed = await runHook(hook, 'start', manifest.start);
  return failed ?? (manifest.health ? await checkHealth(hook, manifest.health) : null);
}

async function stopSlot(
  ctx: StepContext,
  component: string,
  releases: string,
  slot: SlotName,
  version: string,
) {
  const manifest = await readManifest(path.join(releases, version)).catch(() => undefined);
  if (manifest?.supervise) await ctx.supervisor.stop(`${component}@${slot}`);
  else if (manifest?.stop)
    await runHook(hookContext(ctx, component, releases, version, manifest, slot), 'stop', manifest.stop);
}

async function runSwitch(
  ctx: StepContext,
  component: string,
  releases: string,
  version: string,
  manifest: Manifest,
  slot: SlotName,
  from: SlotName | null,
): Promise<string | null> {
  const hook = hookContext(ctx, component, releases, version, manifest, slot);
  hook.env.GANTRY_PREVIOUS_SLOT = from ?? '';
  return runHook(hook, 'switch', manifest.switch as string);
}

/** Needs `slots` and `switch` in the manifest: what to refuse with, or null. */
function unfit(component: string, version: string, manifest: Manifest | undefined): string | null {
  if (manifest?.slots && manifest.switch) return null;
  return `refused: ${component} ${version} cannot be deployed blue-green: its gantry.yaml needs 'slots' (the settings of blue and green) and 'switch' (the command that moves traffic)`;
}

/** Installs nothing: starts an installed version in the idle slot and checks its health there. */
export async function stage(
  ctx: StepContext,
  component: string,
  version: string,
  releases: string,
): Promise<StepOutcome> {
  if (!(await stat(path.join(releases, version)).catch(() => null)))
    return { outcome: 'failed', message: `${component} ${version} is not installed here; install it first` };
  const bad = badRefusal(ctx.state, component, version);
  if (bad) return { outcome: 'failed', message: bad };
  let manifest: Manifest | undefined;
  try {
    manifest = await readManifest(path.join(releases, version));
  } catch (error) {
    return { outcome: 'failed', message: `refused: ${(error as Error).message}` };
  }
  const refusal = unfit(component, version, manifest);
  if (refusal || !manifest) return { outcome: 'failed', message: refusal ?? '' };
  const slots = slotsOf(ctx.state, component);
  if (slots.live && slots[slots.live]?.version === version)
    return { outcome: 'succeeded', message: `${component} ${version} already serves from ${slots.live}` };
  const idle: SlotName = slots.live ? other(slots.live) : 'blue';
  const there = slots[idle];
  // The idle slot may still hold the version before the last switch: staging ends that.
  if (there?.running && there.version !== version)
    await stopSlot(ctx, component, releases, idle, there.version);
  save(ctx, component, { ...slots, [idle]: { version, running: true, retireAt: null } });
  const unhealthy = await startSlot(ctx, component, releases, version, manifest, idle);
  const live = slots.live
    ? `${slots.live} keeps serving ${slots[slots.live]?.version}`
    : 'nothing was switched';
  if (unhealthy) {
    await stopSlot(ctx, component, releases, idle, version);
    markBad(ctx.state, component, version, unhealthy);
    save(ctx, component, { ...slots, [idle]: { version, running: false, retireAt: null } });
    return {
      outcome: 'failed',
      message: `${component} ${version} in ${idle}: ${unhealthy}; stopped it, ${live}; marked bad on this target`,
    };
  }
  const settings = Object.entries(manifest.slots?.[idle] ?? {})
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
  return {
    outcome: 'succeeded',
    message: `${component} ${version} staged in ${idle}${settings ? ` (${settings})` : ''}${manifest.health ? ' and healthy' : ''}; ${live}`,
  };
}

/** Moves traffic to the slot where `version` is staged; the old slot is kept for `keepSeconds`. */
export async function switchTo(
  ctx: StepContext,
  component: string,
  version: string,
  releases: string,
  keepSeconds: number,
): Promise<StepOutcome> {
  const slots = slotsOf(ctx.state, component);
  const slot = (['blue', 'green'] as const).find((s) => slots[s]?.version === version && slots[s]?.running);
  if (!slot)
    return {
      outcome: 'failed',
      message: `${component} ${version} is not staged in a running slot here; stage it first`,
    };
  if (slots.live === slot)
    return {
      outcome: 'succeeded',
      message: `${component} ${version} already serves from ${slot}`,
      active: { component, version },
    };
  const manifest = await readManifest(path.join(releases, version)).catch(() => undefined);
  const refusal = unfit(component, version, manifest);
  if (refusal || !manifest) return { outcome: 'failed', message: refusal ?? '' };
  const from = slots.live;
  const failed = await runSwitch(ctx, component, releases, version, manifest, slot, from);
  if (failed) {
    // Point traffic back where it was, in case the hook got half-way.
    const back = from ? slots[from] : undefined;
    if (from && back) {
      const old = await readManifest(path.join(releases, back.version)).catch(() => undefined);
      if (old?.switch) await runSwitch(ctx, component, releases, back.version, old, from, slot);
    }
    return {
      outcome: 'failed',
      message: `the switch to ${slot} failed: ${failed}; traffic was left on ${from ?? 'what served before'}`,
    };
  }
  const known = ctx.state.components?.[component];
  const keepUntil = new Date(Date.now() + keepSeconds * 1000).toISOString();
  const next: Slots = { ...slots, live: slot };
  if (from && slots[from])
    next[from] = { ...(slots[from] as NonNullable<Slots[SlotName]>), retireAt: keepUntil };
  await switchLink(path.join(releases, 'current'), version);
  // A version that ran outside the slots before the first switch is stopped now: it serves nothing.
  if (!from && known?.current && known.current !== version) {
    const legacy = await readManifest(path.join(releases, known.current)).catch(() => undefined);
    if (legacy?.supervise) await ctx.supervisor.stop(component);
    else if (legacy?.stop)
      await runHook(
        { dataDir: ctx.dataDir, component, releaseDir: path.join(releases, known.current), env: legacy.env },
        'stop',
        legacy.stop,
      );
  }
  save(ctx, component, next, { current: version, previous: known?.current ?? null });
  return {
    outcome: 'succeeded',
    message: `traffic for ${component} moved to ${slot} (${version})${from ? `; ${from} keeps ${slots[from]?.version} running until ${keepUntil} for an instant switch back` : ''}`,
    active: { component, version },
  };
}

/**
 * Rollback with slots: a version only staged is stopped (traffic never moved); a live one hands
 * traffic back to the other slot — at once while that slot still runs, else after starting it.
 */
export async function switchBack(
  ctx: StepContext,
  component: string,
  version: string | null,
  releases: string,
): Promise<StepOutcome> {
  const slots = slotsOf(ctx.state, component);
  const live = slots.live;
  const liveVersion = live ? slots[live]?.version : undefined;
  const staged = (['blue', 'green'] as const).find(
    (s) => s !== live && version !== null && slots[s]?.version === version && slots[s]?.running,
  );
  if (staged && liveVersion !== version) {
    await stopSlot(ctx, component, releases, staged, version as string);
    save(ctx, component, {
      ...slots,
      [staged]: { version: version as string, running: false, retireAt: null },
    });
    return {
      outcome: 'succeeded',
      message: `stopped ${component} ${version} in ${staged}; traffic never moved to it${liveVersion ? ` (${live} serves ${liveVersion})` : ''}`,
      ...(liveVersion ? { active: { component, version: liveVersion } } : {}),
    };
  }
  if (!live || !liveVersion || (version !== null && liveVersion !== version))
    return {
      outcome: 'succeeded',
      message: `${component}: nothing of ${version ?? 'this deployment'} serves here; nothing to switch back`,
      ...(liveVersion ? { active: { component, version: liveVersion } } : {}),
    };
  const back = other(live);
  const kept = slots[back];
  if (!kept || !(await stat(path.join(releases, kept.version)).catch(() => null)))
    return {
      outcome: 'failed',
      message: `failed_needs_attention: cannot switch ${component} back: ${back} holds no earlier version here; ${liveVersion} keeps serving`,
    };
  const manifest = await readManifest(path.join(releases, kept.version)).catch(() => undefined);
  const refusal = unfit(component, kept.version, manifest);
  if (refusal || !manifest) return { outcome: 'failed', message: `failed_needs_attention: ${refusal}` };
  let how = 'at once (it was still running)';
  if (!kept.running) {
    save(ctx, component, { ...slots, [back]: { ...kept, running: true, retireAt: null } });
    const unhealthy = await startSlot(ctx, component, releases, kept.version, manifest, back);
    if (unhealthy) {
      await stopSlot(ctx, component, releases, back, kept.version);
      save(ctx, component, { ...slots, [back]: { ...kept, running: false } });
      return {
        outcome: 'failed',
        message: `failed_needs_attention: ${component} ${kept.version} did not come up again in ${back}: ${unhealthy}; ${liveVersion} keeps serving`,
      };
    }
    how = 'after starting it again';
  }
  const failed = await runSwitch(ctx, component, releases, kept.version, manifest, back, live);
  if (failed)
    return {
      outcome: 'failed',
      message: `failed_needs_attention: the switch back to ${back} failed: ${failed}; ${liveVersion} keeps serving`,
    };
  await switchLink(path.join(releases, 'current'), kept.version);
  // The version switched away from is what failed: it is stopped, not kept.
  await stopSlot(ctx, component, releases, live, liveVersion);
  save(
    ctx,
    component,
    {
      live: back,
      [back]: { ...kept, running: true, retireAt: null },
      [live]: { version: liveVersion, running: false, retireAt: null },
    },
    { current: kept.version, previous: liveVersion },
  );
  return {
    outcome: 'succeeded',
    message: `traffic for ${component} switched back to ${back} (${kept.version}) ${how}; stopped ${liveVersion} in ${live}`,
    active: { component, version: kept.version },
  };
}

/** Stops every kept slot whose time is up. Returns what it stopped. */
export async function retireExpired(ctx: StepContext, now = new Date()): Promise<string[]> {
  const done: string[] = [];
  for (const [component, known] of Object.entries(ctx.state.components ?? {})) {
    const slots = known.slots;
    if (!slots) continue;
    for (const slot of ['blue', 'green'] as const) {
      const s = slots[slot];
      if (slot === slots.live || !s?.running || !s.retireAt || new Date(s.retireAt) > now) continue;
      const releases = path.join(ctx.dataDir, 'releases', component);
      await stopSlot(ctx, component, releases, slot, s.version);
      save(ctx, component, {
        ...slotsOf(ctx.state, component),
        [slot]: { ...s, running: false, retireAt: null },
      });
      done.push(`${component}@${slot} (${s.version})`);
    }
  }
  return done;
}

/** After the agent starts: every slot that should run, runs (or is adopted). */
export async function superviseSlots(ctx: StepContext, component: string, slots: Slots): Promise<void> {
  const releases = path.join(ctx.dataDir, 'releases', component);
  for (const slot of ['blue', 'green'] as const) {
    const s = slots[slot];
    if (!s?.running) continue;
    const manifest = await readManifest(path.join(releases, s.version)).catch(() => undefined);
    if (manifest?.supervise && manifest.start) {
      const hook = hookContext(ctx, component, releases, s.version, manifest, slot);
      ctx.supervisor.start(hook.component, s.version, hook.releaseDir, manifest.start, hook.env);
    }
  }
}
