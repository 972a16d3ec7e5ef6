/**
 * What the agent keeps on disk between runs: which server, its own ids and its credential. Written
 * atomically (temporary file, fsync, rename) with mode 0600, so a crash never leaves half a file.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import path from 'node:path';

export interface AgentState {
  version: 1;
  server: string;
  agentId: string;
  targetId: string;
  name: string;
  credential: string;
  /** Per component: the active version and the one before it (for rollback). */
  components?: Record<string, { current: string | null; previous: string | null }>;
  /**
   * An activation in progress, written before anything is switched. Found after a restart, it
   * means the new version was never confirmed healthy: the version before is put back.
   */
  pending?: { component: string; version: string; before: string | null; phase: 'switching' | 'checking' };
  /** What a restart undid, to be reported for the step that was interrupted. */
  recovered?: { component: string; version: string; message: string };
}

export function statePath(dataDir: string): string {
  return path.join(dataDir, 'agent.json');
}

export function readState(dataDir: string): AgentState | undefined {
  let text: string;
  try {
    text = readFileSync(statePath(dataDir), 'utf8');
  } catch {
    return undefined;
  }
  try {
    const state = JSON.parse(text) as Partial<AgentState>;
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
  throw new Error(
    `${statePath(dataDir)} is damaged; move it away and enroll the agent again with a new token.`,
  );
}

export function writeState(dataDir: string, state: AgentState): void {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const file = statePath(dataDir);
  const temp = `${file}.tmp`;
  const fd = openSync(temp, 'w', 0o600);
  try {
    writeSync(fd, `${JSON.stringify(state, null, 2)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temp, file);
  const dir = openSync(dataDir, 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}
