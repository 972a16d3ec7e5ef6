/**
 * Pure rules of the inventory: names, labels, a target's liveness from its last heartbeat, and
 * whether a target meets its environment's platform standards.
 */

export const NAME_PATTERN = '^[a-z0-9][a-z0-9._-]{0,62}$';
export const LABEL_KEY_PATTERN = '^[a-z0-9][a-z0-9._/-]{0,62}$';
export const LABEL_VALUE_PATTERN = '^[A-Za-z0-9._-]{0,63}$';

export type Labels = Record<string, string>;

/** Parses `key=value` pairs (as the CLI takes them); returns the labels or the first problem. */
export function parseLabels(pairs: readonly string[]): { labels: Labels } | { problem: string } {
  const labels: Labels = {};
  for (const pair of pairs) {
    const at = pair.indexOf('=');
    const key = at > 0 ? pair.slice(0, at) : '';
    const value = at > 0 ? pair.slice(at + 1) : '';
    if (!new RegExp(LABEL_KEY_PATTERN).test(key) || !new RegExp(LABEL_VALUE_PATTERN).test(value)) {
      return { problem: `'${pair}' is not a label: write key=value, e.g. region=eu` };
    }
    labels[key] = value;
  }
  return { labels };
}

export type Liveness = 'online' | 'stale' | 'offline';

/**
 * A target is online while heartbeats arrive, stale after `staleAfter` missed intervals, and
 * offline after `offlineAfter`. Never having been seen counts as offline.
 */
export function liveness(
  lastSeen: Date | null,
  now: Date,
  intervalSeconds: number,
  staleAfter = 3,
  offlineAfter = 10,
): Liveness {
  if (lastSeen === null) return 'offline';
  const missed = (now.getTime() - lastSeen.getTime()) / 1000 / intervalSeconds;
  if (missed <= staleAfter) return 'online';
  if (missed <= offlineAfter) return 'stale';
  return 'offline';
}

export interface PlatformStandards {
  os?: string[] | undefined;
  arch?: string[] | undefined;
  minFreeDiskBytes?: number | undefined;
  /** Lowest Node.js major version, e.g. 20. */
  minNodeMajor?: number | undefined;
}

export interface HostFacts {
  os?: string | undefined;
  arch?: string | undefined;
  freeDiskBytes?: number | undefined;
  nodeVersion?: string | undefined;
}

/** Every way a target's reported facts fall short of the standards; empty when it meets them. */
export function standardsProblems(standards: PlatformStandards, facts: HostFacts): string[] {
  const problems: string[] = [];
  if (standards.os?.length && !standards.os.includes(facts.os ?? '')) {
    problems.push(`operating system ${facts.os ?? 'unknown'} is not one of ${standards.os.join(', ')}`);
  }
  if (standards.arch?.length && !standards.arch.includes(facts.arch ?? '')) {
    problems.push(`architecture ${facts.arch ?? 'unknown'} is not one of ${standards.arch.join(', ')}`);
  }
  if (standards.minFreeDiskBytes !== undefined && (facts.freeDiskBytes ?? 0) < standards.minFreeDiskBytes) {
    problems.push(
      `free disk ${facts.freeDiskBytes ?? 'unknown'} bytes is below ${standards.minFreeDiskBytes}`,
    );
  }
  if (standards.minNodeMajor !== undefined) {
    const major = Number(/^v?(\d+)/.exec(facts.nodeVersion ?? '')?.[1] ?? 0);
    if (major < standards.minNodeMajor)
      problems.push(`Node.js ${facts.nodeVersion ?? 'unknown'} is older than ${standards.minNodeMajor}`);
  }
  return problems;
}
