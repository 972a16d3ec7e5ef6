/**
 * Blue-green by two target groups, on a router: a target in front of the two groups (typically the
 * load balancer's host). It installs the package only for its `switch` hook, and runs nothing of
 * it otherwise. A `route` step runs the hook with `GANTRY_SLOT` (the group that takes traffic now),
 * `GANTRY_PREVIOUS_SLOT` (the one it leaves) and `GANTRY_SLOT_TARGETS` (the names of the group's
 * healthy targets, space-separated): for example, point an nginx upstream at that group and
 * reload. The group left keeps running, so a rollback moves traffic back at once.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { type Route, type SlotName, writeState } from './agent-state.ts';
import { type HookContext, runHook } from './hooks.ts';
import { readManifest } from './lazy.ts';
import { switchLink } from './slots.ts';
import type { StepContext, StepOutcome } from './steps.ts';

async function runSwitch(
  ctx: StepContext,
  component: string,
  releaseDir: string,
  command: string,
  env: Record<string, string>,
  to: Route,
): Promise<string | null> {
  const hook: HookContext = {
    dataDir: ctx.dataDir,
    component,
    releaseDir,
    env: {
      ...env,
      GANTRY_SLOT: to.slot,
      GANTRY_PREVIOUS_SLOT: to.previous ?? '',
      GANTRY_SLOT_TARGETS: to.targets.join(' '),
      GANTRY_PREVIOUS_SLOT_TARGETS: to.previousTargets.join(' '),
    },
  };
  return runHook(hook, 'switch', command);
}

function save(
  ctx: StepContext,
  component: string,
  current: string | null,
  previous: string | null,
  route: Route,
) {
  ctx.state.components = { ...ctx.state.components, [component]: { current, previous, route } };
  writeState(ctx.dataDir, ctx.state);
}

/** The way back: to the group traffic left, from the one it went to. */
function reversed(route: Route): Route & { slot: SlotName } {
  return {
    slot: route.previous as SlotName,
    previous: route.slot,
    targets: route.previousTargets,
    previousTargets: route.targets,
  };
}

/** Moves traffic to a group by the `switch` hook of `version` (installed here, not started). */
export async function routeTo(
  ctx: StepContext,
  component: string,
  version: string,
  releases: string,
  to: { slot: SlotName; previousSlot: SlotName | null; targets: string[]; previousTargets: string[] },
): Promise<StepOutcome> {
  const dir = path.join(releases, version);
  if (!(await stat(dir).catch(() => null)))
    return { outcome: 'failed', message: `${component} ${version} is not installed here; install it first` };
  const manifest = await readManifest(dir).catch((error: Error) => error);
  if (manifest instanceof Error) return { outcome: 'failed', message: `refused: ${manifest.message}` };
  if (!manifest?.switch)
    return {
      outcome: 'failed',
      message: `refused: ${component} ${version} cannot switch traffic between groups: its gantry.yaml has no 'switch' command`,
    };
  // No shortcut when the route looks done already: the hook runs every time (a switch is meant to
  // be repeatable), so a route a person changed by hand since is put right, not trusted.
  const known = ctx.state.components?.[component];
  const route: Route = {
    slot: to.slot,
    previous: to.previousSlot,
    targets: to.targets,
    previousTargets: to.previousTargets,
  };
  const failed = await runSwitch(ctx, component, dir, manifest.switch, manifest.env, route);
  if (failed) {
    // Point traffic back where it was, in case the hook got half-way.
    if (!route.previous)
      return {
        outcome: 'failed',
        message: `failed_needs_attention: the switch to the ${to.slot} group failed: ${failed}; no group served before, so nothing was switched back, and the hook may have got half-way`,
      };
    const revert = await runSwitch(ctx, component, dir, manifest.switch, manifest.env, reversed(route));
    return {
      outcome: 'failed',
      message: revert
        ? `failed_needs_attention: the switch to the ${to.slot} group failed: ${failed}; switching back to the ${route.previous} group failed too: ${revert}`
        : `the switch to the ${to.slot} group failed: ${failed}; traffic was switched back to the ${route.previous} group`,
    };
  }
  await switchLink(path.join(releases, 'current'), version);
  // A route given again (after a restart) keeps the version before, not this one.
  const before = known?.current === version ? (known?.previous ?? null) : (known?.current ?? null);
  save(ctx, component, version, before, route);
  return {
    outcome: 'succeeded',
    message: `traffic for ${component} moved to the ${to.slot} group (${to.targets.join(', ')}) with ${version}${to.previousSlot ? `; the ${to.previousSlot} group keeps running for an instant switch back` : ''}`,
    active: { component, version },
  };
}

/** Rollback on a router: traffic goes back to the group it left, if `version` moved it. */
export async function routeBack(
  ctx: StepContext,
  component: string,
  version: string | null,
  releases: string,
  undo?: { slot: SlotName; previousSlot: SlotName | null },
): Promise<StepOutcome> {
  const known = ctx.state.components?.[component];
  const route = known?.route;
  const current = known?.current ?? null;
  // Only the route this deployment made is undone: not one a later deployment made since.
  const mine = !undo || (route?.slot === undo.slot && route.previous === undo.previousSlot);
  if (!route || current === null || (version !== null && current !== version) || !mine)
    return {
      outcome: 'succeeded',
      message: `${component}: traffic was not moved by ${version ?? 'this deployment'} here; nothing to switch back`,
      ...(current ? { active: { component, version: current } } : {}),
    };
  if (!route.previous)
    return {
      outcome: 'failed',
      message: `failed_needs_attention: no group took traffic before ${route.slot}; traffic stays on ${route.slot}`,
    };
  // The hook of the version that switched knows both groups; the version before may not exist here.
  const dir = path.join(releases, current);
  const manifest = await readManifest(dir).catch(() => undefined);
  if (!manifest?.switch)
    return {
      outcome: 'failed',
      message: `failed_needs_attention: ${component} ${current} has no 'switch' command here any more; traffic stays on ${route.slot}`,
    };
  const back = reversed(route);
  const failed = await runSwitch(ctx, component, dir, manifest.switch, manifest.env, back);
  if (failed)
    return {
      outcome: 'failed',
      message: `failed_needs_attention: the switch back to the ${route.previous} group failed: ${failed}; traffic may still go to ${route.slot}`,
    };
  const previous = known?.previous ?? null;
  if (previous && (await stat(path.join(releases, previous)).catch(() => null)))
    await switchLink(path.join(releases, 'current'), previous);
  save(ctx, component, previous, current, back);
  return {
    outcome: 'succeeded',
    message: `traffic for ${component} switched back to the ${route.previous} group at once (it kept running)`,
    ...(previous ? { active: { component, version: previous } } : {}),
  };
}
