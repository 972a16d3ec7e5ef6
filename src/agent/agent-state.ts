/**
 * What the agent keeps on disk between runs: which server, its own ids and its credential. Written
 * atomically (temporary file, fsync, rename) with mode 0600, so a crash never leaves half a file.
 */
import { createHash } from 'node:crypto';
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from 'node:fs';
import path from 'node:path';

export interface AgentState {
  version: 1;
  server: string;
  agentId: string;
  targetId: string;
  name: string;
  credential: string;
  /** Per component: the active version and the one before it (for rollback); its slots if blue-green. */
  components?: Record<
    string,
    { current: string | null; previous: string | null; slots?: Slots; route?: Route }
  >;
  /**
   * An activation in progress, written before anything is switched. Found after a restart, it
   * means the new version was never confirmed healthy: the version before is put back.
   */
  pending?: { component: string; version: string; before: string | null; phase: 'switching' | 'checking' };
  /** What a restart undid, to be reported for the step that was interrupted. */
  recovered?: { component: string; version: string; message: string };
  /** Versions whose health check failed here (row F05): not activated again unless installed again. */
  bad?: Array<{ component: string; version: string; reason: string; at: string }>;
}

export type SlotName = 'blue' | 'green';

/**
 * Blue-green by two target groups, on a router: the group its switch hook last moved traffic to,
 * the one before (null before the first switch), and the group's targets it was given.
 */
export interface Route {
  slot: SlotName;
  previous: SlotName | null;
  targets: string[];
  previousTargets: string[];
}
/** One blue-green slot: the version staged there, whether it runs, and until when a kept one runs. */
export interface SlotState {
  version: string;
  running: boolean;
  retireAt: string | null;
}
export interface Slots {
  /** The slot that takes traffic (null before the first switch). */
  live: SlotName | null;
  blue?: SlotState;
  green?: SlotState;
}

/**
 * Why `version` of `component` may not be started here — it was marked bad (row F05) — or null.
 * Installing it again clears the mark.
 */
export function badRefusal(state: AgentState, component: string, version: string): string | null {
  const bad = state.bad?.find((b) => b.component === component && b.version === version);
  return bad
    ? `refused: ${component} ${version} is marked bad on this target since ${bad.at} (${bad.reason}); it is not tried again automatically — install it again to try once more`
    : null;
}

/** Marks `version` of `component` bad here, in memory: the caller writes the state. */
export function markBad(state: AgentState, component: string, version: string, reason: string): void {
  state.bad = [
    ...(state.bad ?? []).filter((b) => !(b.component === component && b.version === version)),
    { component, version, reason, at: new Date().toISOString() },
  ];
}

export function statePath(dataDir: string): string {
  return path.join(dataDir, 'agent.json');
}

function backupPath(dataDir: string): string {
  return path.join(dataDir, 'agent.json.bak');
}

/**
 * The agent's state, or undefined before enrollment. A file that is torn, truncated or fails its
 * checksum is replaced by the copy written after it (`agent.json.bak`), marked `restored` so the
 * agent re-reads what actually runs from disk (row F07). Only when both are damaged does it stop,
 * with what to do.
 */
export function readState(dataDir: string): (AgentState & { restored?: boolean }) | undefined {
  const main = readOne(statePath(dataDir));
  if (main !== 'missing' && main !== 'damaged') return main;
  const backup = readOne(backupPath(dataDir));
  if (backup !== 'missing' && backup !== 'damaged')
    return { ...backup, restored: main === 'damaged' || undefined };
  if (main === 'missing' && backup === 'missing') return undefined;
  throw new Error(
    `${statePath(dataDir)} and its copy are damaged; move them away and enroll the agent again with a new token.`,
  );
}

function readOne(file: string): AgentState | 'missing' | 'damaged' {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return 'missing';
  }
  try {
    const { checksum, ...state } = JSON.parse(text) as Partial<AgentState> & { checksum?: string };
    if (checksum !== undefined && checksum !== checksumOf(state)) return 'damaged';
    if (
      state.version === 1 &&
      state.server &&
      state.agentId &&
      state.targetId &&
      state.credential &&
      state.name
    )
      return state as AgentState;
  } catch {
    // fall through
  }
  return 'damaged';
}

function checksumOf(state: object): string {
  return createHash('sha256').update(JSON.stringify(state)).digest('hex');
}

/** Forgets the state and its copy (before enrolling again). */
export function forgetState(dataDir: string): void {
  for (const file of [statePath(dataDir), backupPath(dataDir)]) rmSync(file, { force: true });
}

/** Writes the state and then its copy, each atomically (temporary file, fsync, rename, fsync). */
export function writeState(dataDir: string, state: AgentState): void {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const { restored: _restored, ...clean } = state as AgentState & { restored?: boolean };
  const text = `${JSON.stringify({ ...clean, checksum: checksumOf(clean) }, null, 2)}\n`;
  for (const file of [statePath(dataDir), backupPath(dataDir)]) writeAtomically(file, text);
  // One fsync of the directory makes both renames durable before this returns.
  const dir = openSync(dataDir, 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

function writeAtomically(file: string, text: string): void {
  const temp = `${file}.tmp`;
  const fd = openSync(temp, 'w', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temp, file);
}
