import { describe, expect, it } from 'vitest';
import { liveness, parseLabels, standardsProblems } from './inventory.ts';

describe('inventory rules', () => {
  it('parses labels and names the first bad one', () => {
    expect(parseLabels(['region=eu', 'role=web'])).toEqual({ labels: { region: 'eu', role: 'web' } });
    expect(parseLabels(['region=eu', 'noequals'])).toEqual({
      problem: "'noequals' is not a label: write key=value, e.g. region=eu",
    });
    expect('problem' in parseLabels(['Bad Key=x'])).toBe(true);
  });

  it('calls a target online, stale or offline from its last heartbeat', () => {
    const now = new Date('2026-11-22T10:00:00Z');
    const ago = (s: number) => new Date(now.getTime() - s * 1000);
    expect(liveness(ago(20), now, 15)).toBe('online');
    expect(liveness(ago(60), now, 15)).toBe('stale');
    expect(liveness(ago(600), now, 15)).toBe('offline');
    expect(liveness(null, now, 15)).toBe('offline');
  });

  it('lists every platform standard a target misses', () => {
    const standards = { os: ['linux'], arch: ['x64', 'arm64'], minFreeDiskBytes: 1e9, minNodeMajor: 20 };
    expect(
      standardsProblems(standards, { os: 'linux', arch: 'x64', freeDiskBytes: 2e9, nodeVersion: 'v20.20.2' }),
    ).toEqual([]);
    expect(
      standardsProblems(standards, { os: 'win32', arch: 'ia32', freeDiskBytes: 5e8, nodeVersion: 'v18.1.0' }),
    ).toHaveLength(4);
  });
});
