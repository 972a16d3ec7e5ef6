/**
 * Journey 5, continuous delivery, on every database: a new release goes to test by itself, after a
 * soak to staging under a standard change raised from a template, and stops at production's door
 * until a person gives it an approved change. Agents are simulated on the real protocol.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeTarGz } from '../../../test/helpers/archives.ts';
import { eventually } from '../../../test/helpers/processes.ts';
import { ADMIN_TOKEN, startTestApp, type TestApp } from '../../../test/helpers/test-app.ts';
import { testDatabases } from '../../../test/helpers/test-databases.ts';

const FACTS = { os: 'linux', arch: 'x64', freeDiskBytes: 5e9, nodeVersion: 'v20.20.2', hostname: 'h' };
const ENVS = ['test', 'staging', 'production'];

for (const kind of testDatabases()) {
  describe(`pipelines on ${kind.name}`, () => {
    let t: TestApp;
    let deployer: string;
    let authority: string;
    const credentials = new Map<string, string>();

    beforeEach(async () => {
      t = await startTestApp(kind);
      deployer = (await t.userWithToken('deployer')).token;
      authority = (await t.userWithToken('change-authority')).token;
      for (const env of ENVS) {
        await t.call('POST', '/api/v1/environments', { token: ADMIN_TOKEN, body: { name: env } });
        const token = await t.call('POST', '/api/v1/enrollment-tokens', {
          token: ADMIN_TOKEN,
          body: { environment: env },
        });
        const agent = await t.call('POST', '/api/v1/agent/enroll', {
          body: { token: token.body.secret, name: `${env}-1`, facts: FACTS },
        });
        credentials.set(env, agent.body.credential);
      }
      for (const env of ['staging', 'production'])
        await t.call('PATCH', `/api/v1/environments/${env}`, {
          token: ADMIN_TOKEN,
          body: { policy: { changeRequired: true } },
        });
      await t.call('POST', '/api/v1/change-templates', {
        token: authority,
        body: { name: 'web-auto', components: ['web'], environments: ['test', 'staging'] },
      });
      await t.call('POST', '/api/v1/artifacts?component=web&version=2.4.0', {
        token: ADMIN_TOKEN,
        rawBody: makeTarGz({ 'index.html': '2.4.0' }),
        headers: { 'content-type': 'application/octet-stream' },
      });
    });
    afterEach(async () => t.close());

    async function settle() {
      let idle = 0;
      for (let round = 0; round < 40; round++) {
        t.app.engine.kick();
        await t.app.engine.idle();
        let moved = false;
        for (const credential of credentials.values()) {
          const next = await t.call('GET', '/api/v1/agent/steps/next?wait=0', { token: credential });
          if (next.status !== 200) continue;
          moved = true;
          await t.call('POST', `/api/v1/agent/steps/${next.body.id}/result`, {
            token: credential,
            body: {
              outcome: 'succeeded',
              ...(next.body.kind === 'activate'
                ? { active: { component: 'web', version: next.body.version } }
                : {}),
            },
          });
        }
        if (!moved) {
          // Two quiet rounds in a row: work started by the last one (a new run, a new wave) shows.
          idle += 1;
          if (idle >= 2) return;
        } else idle = 0;
      }
    }
    const run = async () =>
      (await t.call('GET', '/api/v1/pipelines/web-cd', { token: deployer })).body.runs[0];

    it('journey 5: test, then staging after a soak under a standard change, then waits at production for a person', async () => {
      const bad = await t.call('POST', '/api/v1/pipelines', {
        token: deployer,
        body: { name: 'x', releaseName: 'shop', stages: [{ environment: 'moon', strategy: 'big-bang' }] },
      });
      expect(bad.status).toBe(400);
      // Options of another strategy are refused when the pipeline is made, not when it runs.
      const misfit = await t.call('POST', '/api/v1/pipelines', {
        token: deployer,
        body: {
          name: 'x',
          releaseName: 'shop',
          stages: [{ environment: 'test', strategy: 'rolling', options: { groupLabel: 'slot' } }],
        },
      });
      expect(misfit.status).toBe(400);
      expect(misfit.body.error.message).toContain('test: groupLabel is for blue-green, not for rolling');
      const made = await t.call('POST', '/api/v1/pipelines', {
        token: deployer,
        body: {
          name: 'web-cd',
          releaseName: 'shop',
          stages: [
            { environment: 'test', strategy: 'big-bang', soakSeconds: 1800 },
            { environment: 'staging', strategy: 'big-bang', template: 'web-auto' },
            { environment: 'production', strategy: 'big-bang' },
          ],
        },
      });
      expect(made.status, JSON.stringify(made.body)).toBe(201);

      // A new release of `shop` starts a run by itself.
      await t.call('POST', '/api/v1/releases', {
        token: ADMIN_TOKEN,
        body: { name: 'shop', version: '2026.11', components: [{ component: 'web', version: '2.4.0' }] },
      });
      await eventually(async () => (await run()) ?? undefined);
      await settle();
      expect(await run()).toMatchObject({ release: 'shop@2026.11', environment: 'test', state: 'soaking' });

      t.clock.advance(1800_000);
      await settle();
      let r = await run();
      expect(r, JSON.stringify(r.history)).toMatchObject({
        environment: 'production',
        state: 'waiting_change',
      });
      expect(r.reason).toContain('production needs an approved change');
      const changes = (await t.call('GET', '/api/v1/changes?environment=staging', { token: deployer })).body
        .changes;
      expect(changes).toEqual([
        expect.objectContaining({ type: 'standard', template: 'web-auto', state: 'implemented' }),
      ]);
      const release = (await t.call('GET', '/api/v1/releases/shop@2026.11', { token: deployer })).body;
      expect(
        release.lifecycle.map(
          (o: { environment: string; outcome: string }) => `${o.environment}:${o.outcome}`,
        ),
      ).toEqual(['test:succeeded', 'staging:succeeded']);

      // A person raises and approves the production change and opens the door.
      const change = await t.call('POST', '/api/v1/changes', {
        token: deployer,
        body: {
          type: 'normal',
          title: 'shop 2026.11 to production',
          release: 'shop@2026.11',
          environments: ['production'],
          windows: [{ start: '2026-11-22T10:00', end: '2026-11-22T14:00' }],
          riskAnswers: { userImpact: 'some', doneBefore: true, backoutTested: true, changesData: false },
        },
      });
      await t.call('POST', `/api/v1/changes/${change.body.id}/submit`, { token: deployer, body: {} });
      await t.call('POST', `/api/v1/changes/${change.body.id}/approve`, { token: authority, body: {} });
      const opened = await t.call('POST', `/api/v1/pipeline-runs/${r.id}/approve`, {
        token: deployer,
        body: { change: change.body.number },
      });
      expect(opened.status).toBe(204);
      await settle();
      r = await run();
      expect(r.state).toBe('succeeded');
      expect(
        r.history.map((h: { event: string; detail: string }) => `${h.event}`),
        JSON.stringify(r.history),
      ).toEqual([
        'started',
        'deploying',
        'deployed',
        'stage_started',
        'deploying',
        'deployed',
        'stage_started',
        'waiting_change',
        'change_given',
        'deploying',
        'deployed',
        'succeeded',
      ]);
      const again = await t.call('POST', '/api/v1/pipelines/web-cd/runs', {
        token: deployer,
        body: { release: 'shop@2026.11' },
      });
      expect(again.status).toBe(409);
    });
  });
}
