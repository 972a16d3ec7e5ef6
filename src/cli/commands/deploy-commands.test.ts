import { describe, expect, it } from 'vitest';
import type { DeploymentView } from '../../protocol/deployments.ts';
import { deploymentRequest, summaryLine } from './deploy-commands.ts';

describe('the one-line summary of a deployment', () => {
  it('says how many targets of a wave not started yet installed ahead, and how many failed', () => {
    const targets = (...states: string[]) => states.map((state, i) => ({ name: `web-${i + 1}`, state }));
    const view = {
      number: 'DEP-9',
      state: 'running',
      reason: null,
      scheduledFor: null,
      waves: [
        { index: 0, name: 'wave 1', state: 'baking', targets: targets('succeeded') },
        { index: 1, name: 'wave 2', state: 'pending', targets: targets('installed', 'installing', 'failed') },
      ],
    } as unknown as DeploymentView;
    expect(summaryLine(view)).toBe(
      'DEP-9 running · wave 1/2: 1/1 baking · wave 2/2: 1/3 (1 installed ahead) (1 failed)',
    );
  });
});

describe('deploy --no-install-ahead', () => {
  it('sends installAhead: false for a strategy with waves, and refuses it for one wave', () => {
    const phased = deploymentRequest('shop@2.0.0', {
      env: 'production',
      wave: ['count=1'],
      installAhead: false,
    });
    expect(phased.options).toMatchObject({ installAhead: false });
    // Commander's default for the negated flag is true: nothing is sent then.
    const plain = deploymentRequest('shop@2.0.0', {
      env: 'production',
      wave: ['count=1'],
      installAhead: true,
    });
    expect(plain.options).not.toHaveProperty('installAhead');
    expect(() =>
      deploymentRequest('shop@2.0.0', { env: 'production', strategy: 'big-bang', installAhead: false }),
    ).toThrow('--no-install-ahead is for strategies with more than one wave');
  });
});
