/**
 * Deployments through the real HTTP stack on every database, with agents simulated on the real
 * agent protocol (enroll, long-poll for steps, report results) and time moved by the test clock:
 * gates at creation (A04), a window closing mid-rollout (F26), two deployments racing for one
 * target (L04), manual gates, pause and resume, retry, abort, scheduled starts, and executed vs
 * approved.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { makeTarGz } from '../../../test/helpers/archives.ts';
import { ADMIN_TOKEN, startTestApp, type TestApp } from '../../../test/helpers/test-app.ts';
import { testDatabases } from '../../../test/helpers/test-databases.ts';
import { EventLog } from '../events/event-log.ts';

const FACTS = { os: 'linux', arch: 'x64', freeDiskBytes: 5e9, nodeVersion: 'v20.20.2', hostname: 'h' };
const RISK = { userImpact: 'none', doneBefore: true, backoutTested: true, changesData: false };

interface SimAgent {
  name: string;
  credential: string;
  /**
   * What this agent does with each step: succeed (default), fail, report another version, or fail
   * only the activation of one component or only the `route` step (a router's switch).
   */
  behaviour:
    | 'succeed'
    | 'fail'
    | { activates: string }
    | { fails: { component: string } | 'route' | 'install' };
  ran: Array<{
    kind: string;
    component?: string;
    version: string | null;
    keepSeconds?: number;
    route?: unknown;
  }>;
}

for (const kind of testDatabases()) {
  describe(`deployments on ${kind.name}`, () => {
    let t: TestApp;
    let deployer: string;
    let agents: SimAgent[];

    beforeEach(async () => {
      t = await startTestApp(kind);
      await t.call('POST', '/api/v1/environments', { token: ADMIN_TOKEN, body: { name: 'production' } });
      deployer = (await t.userWithToken('deployer')).token;
      agents = [];
      for (const name of ['web-1', 'web-2', 'web-3']) {
        const token = await t.call('POST', '/api/v1/enrollment-tokens', {
          token: ADMIN_TOKEN,
          body: { environment: 'production', labels: { region: name === 'web-1' ? 'eu' : 'us' } },
        });
        const enrolled = await t.call('POST', '/api/v1/agent/enroll', {
          body: { token: token.body.secret, name, facts: FACTS },
        });
        agents.push({ name, credential: enrolled.body.credential, behaviour: 'succeed', ran: [] });
      }
      for (const version of ['1.0.0', '2.0.0']) {
        await t.call('POST', `/api/v1/artifacts?component=web&version=${version}`, {
          token: ADMIN_TOKEN,
          rawBody: makeTarGz({ 'index.html': version }),
          headers: { 'content-type': 'application/octet-stream' },
        });
        await t.call('POST', '/api/v1/releases', {
          token: ADMIN_TOKEN,
          body: { name: 'shop', version, components: [{ component: 'web', version }] },
        });
      }
    });
    afterEach(async () => t.close());

    /** Lets every agent run what is queued for it, and the engine react, until nothing moves. */
    async function settle(only?: string[]) {
      let idle = 0;
      for (let round = 0; round < 40; round++) {
        t.app.engine.kick();
        await t.app.engine.idle();
        let moved = false;
        for (const agent of agents.filter((a) => !only || only.includes(a.name))) {
          const next = await t.call('GET', '/api/v1/agent/steps/next?wait=0', { token: agent.credential });
          if (next.status !== 200) continue;
          moved = true;
          const step = next.body;
          agent.ran.push({
            kind: step.kind,
            ...(step.component !== 'web' ? { component: step.component } : {}),
            version: step.version,
            ...(step.keepSeconds !== undefined ? { keepSeconds: step.keepSeconds } : {}),
            ...(step.route !== undefined ? { route: step.route } : {}),
          });
          const b = agent.behaviour;
          const fails = typeof b === 'object' && 'fails' in b ? b.fails : undefined;
          const fail =
            (b === 'fail' && (step.kind === 'activate' || step.kind === 'stage')) ||
            (fails === 'route' && step.kind === 'route') ||
            (fails === 'install' && step.kind === 'install') ||
            (typeof fails === 'object' && step.kind === 'activate' && step.component === fails.component);
          const activates = step.kind === 'activate' || step.kind === 'switch' || step.kind === 'route';
          const version = typeof b === 'object' && 'activates' in b && activates ? b.activates : step.version;
          await t.call('POST', `/api/v1/agent/steps/${step.id}/result`, {
            token: agent.credential,
            body: fail
              ? { outcome: 'failed', message: 'health check failed' }
              : {
                  outcome: 'succeeded',
                  ...(activates ? { active: { component: step.component, version } } : {}),
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

    /** A minute later, an exception event on web-1 (as the monitoring would raise it). */
    async function alertOnWeb1InAMinute() {
      const web1 = await t.call('GET', '/api/v1/targets/web-1', { token: deployer });
      t.clock.advance(60_000);
      await new EventLog(t.db.database.db).record({
        at: t.clock.now().toISOString(),
        severity: 'exception',
        kind: 'alert',
        subject: `target:${web1.body.id}`,
        message: '5xx rate high',
        details: {},
      });
    }

    /** suite@2.0.0: web 2.0.0 and api 2.0.0, activated in that order. */
    async function twoComponentRelease() {
      await t.call('POST', '/api/v1/artifacts?component=api&version=2.0.0', {
        token: ADMIN_TOKEN,
        rawBody: makeTarGz({ 'index.html': 'api' }),
        headers: { 'content-type': 'application/octet-stream' },
      });
      await t.call('POST', '/api/v1/releases', {
        token: ADMIN_TOKEN,
        body: {
          name: 'suite',
          version: '2.0.0',
          components: [
            { component: 'web', version: '2.0.0' },
            { component: 'api', version: '2.0.0' },
          ],
        },
      });
    }

    const create = (body: Record<string, unknown>, token = deployer) =>
      t.call('POST', '/api/v1/deployments', {
        token,
        body: { release: 'shop@1.0.0', environment: 'production', strategy: 'big-bang', ...body },
      });
    const show = async (id: string) =>
      (await t.call('GET', `/api/v1/deployments/${id}`, { token: deployer })).body;
    const act = (id: string, action: string, body: Record<string, unknown> = {}) =>
      t.call('POST', `/api/v1/deployments/${id}/${action}`, { token: deployer, body });

    /** shop@1.0.0 on every target, then shop@2.0.0 phased: web-1 baking 600 s, then the other two. */
    async function phased2OverEverywhere1() {
      await settle();
      await create({});
      await settle();
      return create({
        release: 'shop@2.0.0',
        strategy: 'phased',
        options: { waves: [{ count: 1, bakeSeconds: 600 }, { count: 2 }] },
      });
    }

    it('A04: refuses a deployment the gates do not allow, naming every reason, and leaves nothing behind', async () => {
      await t.call('PATCH', '/api/v1/environments/production', {
        token: ADMIN_TOKEN,
        body: { policy: { changeRequired: true, requireSignature: true, strategies: ['phased'] } },
      });
      const refused = await create({});
      expect(refused.status).toBe(409);
      expect(refused.body.error.code).toBe('GATE_REFUSED');
      expect(refused.body.error.details.reasons.map((r: { code: string }) => r.code).sort()).toEqual([
        'change_required',
        'strategy_not_allowed',
        'unsigned_artifact',
      ]);
      expect((await t.call('GET', '/api/v1/deployments', { token: deployer })).body.deployments).toEqual([]);
    });

    it('plans, runs and finishes a phased rollout with a manual gate; the ledger and the release record follow', async () => {
      const made = await create({
        strategy: 'phased',
        options: { waves: [{ selector: { region: 'eu' }, bakeSeconds: 300, gate: 'manual' }, { count: 2 }] },
      });
      expect(made.status, JSON.stringify(made.body)).toBe(201);
      expect(
        made.body.waves.map((w: { name: string; targets: unknown[] }) => [w.name, w.targets.length]),
      ).toEqual([
        ['wave 1', 1],
        ['wave 2', 2],
      ]);
      const early = await act(made.body.id, 'approve-wave');
      expect(early.status).toBe(409); // its wave has not run yet
      await settle();
      let d = await show(made.body.id);
      expect(d.waves[0]).toMatchObject({ state: 'baking' });
      expect(agents[1]?.ran).toEqual([]); // the second wave waits (nothing installs ahead of a manual gate)
      t.clock.advance(300_000);
      await settle();
      d = await show(made.body.id);
      expect(d.waves[0].state).toBe('awaiting_approval');
      expect((await act(made.body.id, 'approve-wave')).status).toBe(200);
      await settle();
      d = await show(made.body.id);
      expect(d.state).toBe('succeeded');
      expect(d.counts).toEqual({ succeeded: 3 });
      for (const a of agents)
        expect(a.ran).toEqual([
          { kind: 'install', version: '1.0.0' },
          { kind: 'activate', version: '1.0.0' },
        ]);
      const ledger = await t.call('GET', '/api/v1/ledger?environment=production', { token: deployer });
      expect(JSON.stringify(ledger.body)).toContain('1.0.0');
      const web = (
        await t.call('GET', '/api/v1/artifacts?component=web&version=1.0.0', { token: ADMIN_TOKEN })
      ).body.artifacts[0];
      const usage = await t.call('GET', `/api/v1/artifacts/${web.id}/usage`, { token: deployer });
      expect(usage.body).toMatchObject({
        releases: ['release shop@1.0.0'],
        deployments: [`deployment ${d.number} (succeeded)`],
        targets: ['web-1', 'web-2', 'web-3'],
      });
      const release = await t.call('GET', '/api/v1/releases/shop@1.0.0', { token: deployer });
      expect(release.body.lifecycle[0]).toMatchObject({
        outcome: 'succeeded',
        source: 'deployment',
        deploymentId: d.id,
      });
      const audit = await t.call('GET', '/api/v1/audit?limit=200', { token: ADMIN_TOKEN });
      const actions = audit.body.entries.map((e: { action: string }) => e.action);
      expect(actions).toEqual(
        expect.arrayContaining([
          'deployment.created',
          'deployment.wave_started',
          'deployment.approve_wave',
          'deployment.succeeded',
        ]),
      );
    });

    it('F26: a window that closes mid-rollout lets in-flight targets finish, starts none, and pauses as window_closed', async () => {
      await t.call('PATCH', '/api/v1/environments/production', {
        token: ADMIN_TOKEN,
        body: { policy: { changeRequired: true } },
      });
      const authority = (await t.userWithToken('change-authority')).token;
      const change = await t.call('POST', '/api/v1/changes', {
        token: deployer,
        body: {
          type: 'normal',
          title: 'shop 1.0.0',
          release: 'shop@1.0.0',
          environments: ['production'],
          windows: [{ start: '2026-11-22T09:30', end: '2026-11-22T10:30' }],
          riskAnswers: RISK,
        },
      });
      await t.call('POST', `/api/v1/changes/${change.body.id}/submit`, { token: deployer, body: {} });
      await t.call('POST', `/api/v1/changes/${change.body.id}/approve`, { token: authority, body: {} });
      const made = await create({
        change: change.body.number,
        strategy: 'rolling',
        options: { batchSize: 1 },
      });
      expect(made.status, JSON.stringify(made.body)).toBe(201);
      expect((await t.call('GET', `/api/v1/changes/${change.body.id}`, { token: deployer })).body.state).toBe(
        'implementing',
      );
      await settle(['web-1']); // wave 1 done, wave 2 (web-2) queued
      // web-2 takes its install step, then the window closes while it works.
      const next = await t.call('GET', '/api/v1/agent/steps/next?wait=0', { token: agents[1]?.credential });
      expect(next.body.kind).toBe('install');
      t.clock.advance(31 * 60_000);
      await t.call('POST', `/api/v1/agent/steps/${next.body.id}/result`, {
        token: agents[1]?.credential,
        body: { outcome: 'succeeded' },
      });
      await settle();
      const d = await show(made.body.id);
      expect(d.state).toBe('paused');
      expect(d.reason).toBe('window_closed');
      expect(d.waves.map((w: { targets: Array<{ state: string }> }) => w.targets[0]?.state)).toEqual([
        'succeeded',
        'succeeded',
        'pending',
      ]);
      expect(agents[2]?.ran).toEqual([]);
      // Resumed outside the window, it pauses again at once.
      await act(made.body.id, 'resume');
      await settle();
      expect((await show(made.body.id)).reason).toBe('window_closed');
    });

    it('L04: two deployments racing for the same targets: exactly one is created', async () => {
      const [a, b] = await Promise.all([create({}), create({ release: 'shop@2.0.0' })]);
      expect([a.status, b.status].sort()).toEqual([201, 409]);
      const loser = a.status === 409 ? a : b;
      expect(loser.body.error.message).toContain('one deployment at a time per target');
      expect((await t.call('GET', '/api/v1/deployments', { token: deployer })).body.deployments).toHaveLength(
        1,
      );
    });

    it('halts on the rule, pauses for a person when asked to, retries the failed target, and finishes', async () => {
      const bad = agents[2] as SimAgent;
      bad.behaviour = 'fail';
      const made = await create({ onFailure: 'pause' });
      await settle();
      let d = await show(made.body.id);
      expect(d.state).toBe('paused');
      expect(d.reason).toContain('halted: 1 of 3 target(s) failed');
      expect(d.counts).toEqual({ succeeded: 2, failed: 1 });
      bad.behaviour = 'succeed';
      expect((await act(made.body.id, 'retry-failed')).status).toBe(200);
      await settle();
      d = await show(made.body.id);
      expect(d.state).toBe('succeeded');
      expect(bad.ran.map((r) => r.kind)).toEqual(['install', 'activate', 'install', 'activate']);
    });

    it('rolls back a finished deployment on request, and freezes when the rule says so', async () => {
      await settle();
      const first = await create({});
      await settle();
      expect((await show(first.body.id)).state).toBe('succeeded');
      const second = await create({ release: 'shop@2.0.0' });
      await settle();
      expect((await act(second.body.id, 'rollback', { reason: 'checkout errors' })).status).toBe(200);
      await settle();
      const d = await show(second.body.id);
      expect(d.state).toBe('rolled_back');
      for (const a of agents) expect(a.ran.at(-1)?.kind).toBe('rollback');

      (agents[0] as SimAgent).behaviour = 'fail';
      const third = await create({
        release: 'shop@2.0.0',
        onFailure: 'freeze',
        haltRule: { maxFailedPercent: 0 },
      });
      await settle();
      const frozen = await show(third.body.id);
      expect(frozen.state).toBe('frozen');
      expect(frozen.finishedAt).not.toBeNull();
      // Frozen means kept as it is: the targets that succeeded are not rolled back.
      expect(frozen.counts.succeeded).toBe(2);
    });

    it('waits for its change window when asked to, then starts by itself', async () => {
      const authority = (await t.userWithToken('change-authority')).token;
      const change = await t.call('POST', '/api/v1/changes', {
        token: deployer,
        body: {
          type: 'normal',
          title: 'tonight',
          release: 'shop@1.0.0',
          environments: ['production'],
          windows: [{ start: '2026-11-22T22:00', end: '2026-11-22T23:00', timeZone: 'UTC' }],
          riskAnswers: RISK,
        },
      });
      await t.call('POST', `/api/v1/changes/${change.body.id}/submit`, { token: deployer, body: {} });
      await t.call('POST', `/api/v1/changes/${change.body.id}/approve`, { token: authority, body: {} });
      const now = await create({ change: change.body.number });
      expect(now.status).toBe(409);
      expect(now.body.error.details.reasons[0].code).toBe('outside_window');
      const later = await create({ change: change.body.number, start: 'window' });
      expect(later.status, JSON.stringify(later.body)).toBe(201);
      expect(later.body).toMatchObject({ state: 'scheduled', scheduledFor: '2026-11-22T22:00:00.000Z' });
      expect((await t.call('GET', `/api/v1/changes/${change.body.id}`, { token: deployer })).body.state).toBe(
        'scheduled',
      );
      const ics = String(
        (await t.call('GET', '/api/v1/calendar.ics?environment=production', { token: deployer })).body,
      );
      expect(ics).toContain(`SUMMARY:${later.body.number} shop@1.0.0 to production (scheduled\\, big-bang)`);
      expect(ics).toContain('DTSTART:20261122T220000Z');
      await settle();
      expect((await show(later.body.id)).state).toBe('scheduled');
      t.clock.advance(12 * 3_600_000);
      await settle();
      expect((await show(later.body.id)).state).toBe('succeeded');
      expect((await t.call('GET', `/api/v1/changes/${change.body.id}`, { token: deployer })).body.state).toBe(
        'implemented',
      );
    });

    it('records an unauthorised change when a target ends up running what the change did not approve', async () => {
      const authority = (await t.userWithToken('change-authority')).token;
      const change = await t.call('POST', '/api/v1/changes', {
        token: deployer,
        body: {
          type: 'normal',
          title: 'x',
          release: 'shop@1.0.0',
          environments: ['production'],
          windows: [{ start: '2026-11-22T09:00', end: '2026-11-22T12:00' }],
          riskAnswers: RISK,
        },
      });
      await t.call('POST', `/api/v1/changes/${change.body.id}/submit`, { token: deployer, body: {} });
      await t.call('POST', `/api/v1/changes/${change.body.id}/approve`, { token: authority, body: {} });
      (agents[1] as SimAgent).behaviour = { activates: '1.0.0-hotfix' };
      await create({ change: change.body.number });
      await settle();
      const events = await t.call('GET', `/api/v1/events?subject=change:${change.body.id}`, {
        token: ADMIN_TOKEN,
      });
      expect(events.body.events).toEqual([
        expect.objectContaining({ severity: 'exception', kind: 'change.unauthorised_change' }),
      ]);
      expect(events.body.events[0].message).toContain('web-2 runs web 1.0.0-hotfix, approved 1.0.0');
    });

    it('F13: once another replica has taken the lease, the old holder writes nothing', async () => {
      const other = await startTestApp(kind, { db: t.db });
      try {
        const made = await create({});
        await t.app.engine.idle(); // this replica took the lease and started the wave
        expect((await show(made.body.id)).waves[0].state).toBe('running');
        t.clock.advance(20_000); // its lease (15 s) runs out unrenewed
        other.clock.advance(20_000);
        // biome-ignore lint/suspicious/noExplicitAny: the takeover itself is what is under test.
        expect(await (other.app.engine as any).takeLease(made.body.id)).toBe(true);
        // The agents finish their installs: there is work to do, and the old holder tries.
        for (const agent of agents) {
          const next = await t.call('GET', '/api/v1/agent/steps/next?wait=0', { token: agent.credential });
          await t.call('POST', `/api/v1/agent/steps/${next.body.id}/result`, {
            token: agent.credential,
            body: { outcome: 'succeeded' },
          });
        }
        await t.app.engine.idle();
        await expect(t.app.engine.reconcile(made.body.id)).rejects.toThrow();
        const queued = async () =>
          (await t.call('GET', '/api/v1/targets/web-1/steps', { token: deployer })).body.steps.map(
            (x: { kind: string }) => x.kind,
          );
        expect(await queued()).toEqual(['install']);
        await other.app.engine.reconcile(made.body.id);
        expect(await queued()).toEqual(['install', 'activate']);
      } finally {
        await other.close();
      }
    });

    it('counts an exception event on a target during its bake as a failure, and rolls back', async () => {
      const made = await phased2OverEverywhere1();
      await settle();
      expect((await show(made.body.id)).waves[0].state).toBe('baking');
      await alertOnWeb1InAMinute();
      await settle();
      const d = await show(made.body.id);
      expect(d.state).toBe('rolled_back');
      expect(d.waves.map((w: { state: string }) => w.state)).toEqual(['stopped', 'skipped']);
      expect(d.waves[0].targets[0]).toMatchObject({ name: 'web-1', state: 'rolled_back' });
      expect(d.reason).toContain('1 of 3 target(s) failed');
      expect(agents[0]?.ran.at(-1)).toEqual({ kind: 'rollback', version: '2.0.0' });
      // The second wave had installed 2.0.0 ahead, activated nothing, and has nothing to put back.
      expect(agents[1]?.ran.filter((r) => r.version === '2.0.0')).toEqual([
        { kind: 'install', version: '2.0.0' },
      ]);
      expect(d.waves[1].targets.map((x: { state: string }) => x.state)).toEqual(['installed', 'installed']);
      // Their activations, held for the wave, were cancelled when the rollback began.
      const web2 = await t.call('GET', '/api/v1/targets/web-2/steps', { token: ADMIN_TOKEN });
      expect(
        web2.body.steps
          .filter((s: { state: string }) => s.state === 'cancelled')
          .map((s: { kind: string; version: string }) => `${s.kind} ${s.version}`),
      ).toEqual(['activate 2.0.0']);
    });

    it('a rollback does not wait for an install ahead that an agent away has not taken; that install is recorded when it comes', async () => {
      const made = await phased2OverEverywhere1();
      await settle(['web-1', 'web-2']); // web-3 is away: its install ahead stays queued
      let d = await show(made.body.id);
      expect(d.waves[1].targets.map((x: { state: string }) => x.state)).toEqual(['installed', 'installing']);
      await alertOnWeb1InAMinute();
      await settle(['web-1', 'web-2']);
      d = await show(made.body.id);
      expect(d.state).toBe('rolled_back');
      expect(d.waves[0].targets[0]).toMatchObject({ name: 'web-1', state: 'rolled_back' });
      // web-3 comes back: it runs the install it was given (nothing that runs changes) and that is recorded.
      await settle();
      d = await show(made.body.id);
      expect(d.waves[1].targets.map((x: { state: string }) => x.state)).toEqual(['installed', 'installed']);
      expect(agents[2]?.ran.filter((r) => r.version === '2.0.0')).toEqual([
        { kind: 'install', version: '2.0.0' },
      ]);
    });

    it('holds the next wave’s activations while this one bakes: given to no agent before their wave starts, released then, cancelled by an abort', async () => {
      const stepsOf = async (target: string) =>
        (await t.call('GET', `/api/v1/targets/${target}/steps`, { token: ADMIN_TOKEN })).body.steps as Array<{
          kind: string;
          version: string | null;
          state: string;
          message: string | null;
        }>;
      const audit = async (action: string) =>
        (await t.call('GET', `/api/v1/audit?action=${action}&limit=500`, { token: ADMIN_TOKEN })).body
          .entries as Array<{ subject: string; details: Record<string, unknown> }>;
      const made = await phased2OverEverywhere1();
      await settle();
      let d = await show(made.body.id);
      expect(d.waves.map((w: { state: string }) => w.state)).toEqual(['baking', 'pending']);
      expect(d.waves[1].targets.map((x: { state: string }) => x.state)).toEqual(['installed', 'installed']);
      // Every agent asked again and again while wave 1 baked: the held activation was given to none.
      for (const agent of agents.slice(1))
        expect(agent.ran.filter((r) => r.version === '2.0.0')).toEqual([
          { kind: 'install', version: '2.0.0' },
        ]);
      const held = (await stepsOf('web-2')).filter((s) => s.version === '2.0.0');
      expect(held.map((s) => `${s.kind} ${s.state}`)).toEqual(['install succeeded', 'activate held']);
      expect(
        (await audit('step.queued')).filter((e) => e.details.held === true).map((e) => e.details.target),
      ).toEqual(['web-2', 'web-3']);
      t.clock.advance(600_000);
      await settle();
      d = await show(made.body.id);
      expect(d.state).toBe('succeeded');
      for (const agent of agents.slice(1))
        expect(agent.ran.filter((r) => r.version === '2.0.0')).toEqual([
          { kind: 'install', version: '2.0.0' },
          { kind: 'activate', version: '2.0.0' },
        ]);
      expect((await stepsOf('web-2')).filter((s) => s.version === '2.0.0').map((s) => s.state)).toEqual([
        'succeeded',
        'succeeded',
      ]);
      const started = (await audit('deployment.wave_started')).filter(
        (e) => e.subject === `deployment:${made.body.id}`,
      );
      expect(started.map((e) => [e.details.wave, e.details.released])).toEqual([
        [1, undefined],
        [2, 2],
      ]);

      // Back to 1.0.0 the same way, aborted while wave 1 bakes: the held activations are cancelled.
      const back = await create({
        strategy: 'phased',
        options: { waves: [{ count: 1, bakeSeconds: 600 }, { count: 2 }] },
      });
      await settle();
      expect((await show(back.body.id)).waves[1].targets.map((x: { state: string }) => x.state)).toEqual([
        'installed',
        'installed',
      ]);
      expect((await act(back.body.id, 'abort')).status).toBe(200);
      t.clock.advance(600_000);
      await settle();
      d = await show(back.body.id);
      expect(d.state).toBe('aborted');
      expect(d.waves[1].targets.map((x: { state: string }) => x.state)).toEqual(['installed', 'installed']);
      const cancelled = (await stepsOf('web-3')).filter((s) => s.state === 'cancelled');
      expect(cancelled).toEqual([
        expect.objectContaining({
          kind: 'activate',
          version: '1.0.0',
          message: `${back.body.number} was aborted before this target's wave started`,
        }),
      ]);
      expect((await audit('step.cancelled')).length).toBe(2);
      // Nothing of it ran: web-2 and web-3 still run 2.0.0.
      for (const agent of agents.slice(1))
        expect(agent.ran.at(-1)).toEqual({ kind: 'install', version: '1.0.0' });
      const ledger = await t.call('GET', '/api/v1/targets/web-3/ledger', { token: deployer });
      expect(ledger.body.entries.at(-1)).toMatchObject({ component: 'web', version: '2.0.0' });
    });

    it('an install ahead that fails does not halt the wave baking: the target installs again when its wave starts, and fails there', async () => {
      const made = await create({
        strategy: 'phased',
        options: { waves: [{ count: 1, bakeSeconds: 600 }, { count: 2 }] },
        haltRule: { maxFailedPercent: 30 },
      });
      (agents[2] as SimAgent).behaviour = { fails: 'install' };
      await settle();
      let d = await show(made.body.id);
      expect(d.state).toBe('running');
      expect(
        d.waves[1].targets.map((x: { state: string; message: string | null }) => [x.state, x.message]),
      ).toEqual([
        ['installed', null],
        ['pending', 'installing ahead failed (health check failed); it installs again when its wave starts'],
      ]);
      t.clock.advance(600_000);
      await settle();
      d = await show(made.body.id);
      // Installed again at its wave's start, failed there: 1 of 3 is more than the 30% allowed.
      expect(agents[2]?.ran).toEqual([
        { kind: 'install', version: '1.0.0' },
        { kind: 'install', version: '1.0.0' },
      ]);
      expect(d.state).toBe('rolled_back');
      expect(d.reason).toContain('1 of 3 target(s) failed');
    });

    it('installs nothing ahead before a manual gate, after a canary wave, or when told not to', async () => {
      const phased = await create({
        strategy: 'phased',
        options: { waves: [{ count: 1, bakeSeconds: 600, gate: 'manual' }, { count: 2 }] },
      });
      await settle();
      expect((await show(phased.body.id)).waves[0].state).toBe('baking');
      expect(agents[1]?.ran).toEqual([]);
      await act(phased.body.id, 'abort');
      await settle();
      const off = await create({
        release: 'shop@2.0.0',
        strategy: 'phased',
        options: { waves: [{ count: 1, bakeSeconds: 600 }, { count: 2 }], installAhead: false },
      });
      expect(off.status, JSON.stringify(off.body)).toBe(201);
      await settle();
      expect((await show(off.body.id)).waves[0].state).toBe('baking');
      expect(agents[1]?.ran).toEqual([]);
      await act(off.body.id, 'abort');
      await settle();
      const canary = await create({
        release: 'shop@2.0.0',
        strategy: 'canary',
        options: { canaryCount: 1, bakeSeconds: 600 },
      });
      expect(canary.status, JSON.stringify(canary.body)).toBe(201);
      await settle();
      expect((await show(canary.body.id)).waves[0].state).toBe('baking');
      expect(agents[1]?.ran).toEqual([]);
      const bigBang = await create({ release: 'shop@2.0.0', options: { installAhead: false } });
      expect(bigBang.status).toBe(400);
      expect(JSON.stringify(bigBang.body)).toContain(
        'installAhead is for strategies with more than one wave',
      );
    });

    it('does not retry a target an exception event made unhealthy during the bake: the same steps would change nothing', async () => {
      const made = await create({
        strategy: 'phased',
        options: { waves: [{ count: 1, bakeSeconds: 600 }, { count: 2 }] },
        onFailure: 'pause',
      });
      await settle();
      await alertOnWeb1InAMinute();
      await settle();
      const d = await show(made.body.id);
      expect(d.state).toBe('paused');
      expect(d.waves[0].targets[0]).toMatchObject({ name: 'web-1', state: 'unhealthy' });
      const retry = await act(made.body.id, 'retry-failed');
      expect(retry.status).toBe(409);
      expect(retry.body.error.message).toContain('no target has failed');
    });

    it('blue-green: nothing switches until every target has staged; then all switch, keeping the old slot', async () => {
      const made = await create({
        release: 'shop@2.0.0',
        strategy: 'blue-green',
        options: { keepSeconds: 120 },
      });
      expect(made.status, JSON.stringify(made.body)).toBe(201);
      expect(made.body.waves).toHaveLength(1);
      await settle(['web-1', 'web-2']);
      let d = await show(made.body.id);
      expect(d.waves[0].targets.map((x: { state: string }) => x.state)).toEqual([
        'staged',
        'staged',
        'installing',
      ]);
      expect(agents[0]?.ran.map((r) => r.kind)).toEqual(['install', 'stage']);
      await settle();
      d = await show(made.body.id);
      expect(d.state).toBe('succeeded');
      for (const agent of agents) {
        expect(agent.ran.map((r) => r.kind)).toEqual(['install', 'stage', 'switch']);
        expect(agent.ran[2]).toEqual({ kind: 'switch', version: '2.0.0', keepSeconds: 120 });
      }
      const ledger = await t.call('GET', '/api/v1/ledger?environment=production', { token: deployer });
      expect(JSON.stringify(ledger.body)).toContain('2.0.0');
      // Rolling back a finished blue-green deployment is a rollback step naming the version undone.
      expect((await act(made.body.id, 'rollback')).status).toBe(200);
      await settle();
      expect((await show(made.body.id)).state).toBe('rolled_back');
      expect(agents[0]?.ran.at(-1)).toEqual({ kind: 'rollback', version: '2.0.0' });
    });

    it('blue-green: a target that fails to stage halts it before any switch; the staged ones are stopped', async () => {
      (agents[2] as SimAgent).behaviour = 'fail';
      const made = await create({ release: 'shop@2.0.0', strategy: 'blue-green' });
      expect(made.status).toBe(201);
      await settle();
      const d = await show(made.body.id);
      expect(d.state).toBe('rolled_back');
      for (const agent of agents) expect(agent.ran.map((r) => r.kind)).not.toContain('switch');
      expect(agents[0]?.ran.map((r) => r.kind)).toEqual(['install', 'stage', 'rollback']);
      expect(agents[2]?.ran.map((r) => r.kind)).toEqual(['install', 'stage']);
    });

    it('a target that activated one component and failed the next is rolled back too', async () => {
      await twoComponentRelease();
      (agents[1] as SimAgent).behaviour = { fails: { component: 'api' } };
      const made = await create({ release: 'suite@2.0.0' });
      expect(made.status, JSON.stringify(made.body)).toBe(201);
      await settle();
      const d = await show(made.body.id);
      expect(d.state).toBe('rolled_back');
      // web-2 activated web, then failed api (its agent put api back): web goes back too.
      expect(agents[1]?.ran.map((r) => `${r.kind} ${r.component ?? 'web'}`)).toEqual([
        'install web',
        'install api',
        'activate web',
        'activate api',
        'rollback web',
      ]);
      expect(agents[0]?.ran.slice(-2).map((r) => `${r.kind} ${r.component ?? 'web'}`)).toEqual([
        'rollback api',
        'rollback web',
      ]);
    });

    it('retries a target that activated one component and failed the next, once a person asks', async () => {
      await twoComponentRelease();
      (agents[1] as SimAgent).behaviour = { fails: { component: 'api' } };
      const made = await create({ release: 'suite@2.0.0', onFailure: 'pause' });
      await settle();
      let d = await show(made.body.id);
      expect(d.state).toBe('paused');
      expect(d.counts).toEqual({ succeeded: 2, unhealthy: 1 });
      (agents[1] as SimAgent).behaviour = 'succeed';
      expect((await act(made.body.id, 'retry-failed')).status).toBe(200);
      await settle();
      d = await show(made.body.id);
      expect(d.state).toBe('succeeded');
      expect(d.counts).toEqual({ succeeded: 3 });
    });

    it('blue-green by groups: a router whose switch fails after another moved traffic rolls back, whatever on-failure says; routers first', async () => {
      await t.call('POST', '/api/v1/environments', { token: ADMIN_TOKEN, body: { name: 'edge' } });
      const edge: SimAgent[] = [];
      for (const [name, slot] of [
        ['g-1', 'green'],
        ['b-1', 'blue'],
        ['lb-1', 'router'],
        ['lb-2', 'router'],
      ] as const) {
        const token = await t.call('POST', '/api/v1/enrollment-tokens', {
          token: ADMIN_TOKEN,
          body: { environment: 'edge', labels: { slot } },
        });
        const enrolled = await t.call('POST', '/api/v1/agent/enroll', {
          body: { token: token.body.secret, name, facts: FACTS },
        });
        edge.push({ name, credential: enrolled.body.credential, behaviour: 'succeed', ran: [] });
      }
      agents = edge;
      const deploy = (release: string) =>
        create({
          release,
          environment: 'edge',
          strategy: 'blue-green',
          options: { groupLabel: 'slot' },
          onFailure: 'pause',
        });
      const first = await deploy('shop@1.0.0');
      expect(first.status, JSON.stringify(first.body)).toBe(201);
      await settle();
      expect((await show(first.body.id)).state).toBe('succeeded');
      (edge[3] as SimAgent).behaviour = { fails: 'route' };
      const second = await deploy('shop@2.0.0');
      expect(second.body.options.groups).toMatchObject({
        group: 'green',
        previous: 'blue',
        previousTargets: ['b-1'],
      });
      await settle();
      const d = await show(second.body.id);
      expect(d.state, JSON.stringify(d)).toBe('rolled_back');
      expect(d.reason).toContain('router lb-2: health check failed; traffic goes back to the blue group');
      // lb-1 moved traffic to green, and moves it back — naming the route it undoes.
      expect(edge[2]?.ran.at(-1)).toEqual({
        kind: 'rollback',
        version: '2.0.0',
        route: { slot: 'green', previousSlot: 'blue', targets: ['g-1'], previousTargets: ['b-1'] },
      });
      // g-1 ran nothing before: it keeps 2.0.0, idle; b-1, the serving group, was not touched.
      expect(edge[0]?.ran.map((r) => r.kind)).toEqual(['install', 'activate']);
      expect(edge[1]?.ran.map((r) => `${r.kind} ${r.version}`)).toEqual(['install 1.0.0', 'activate 1.0.0']);
    });

    it('abort stops a deployment where it is', async () => {
      const made = await create({ strategy: 'rolling', options: { batchSize: 1 } });
      await settle(['web-1']);
      expect((await act(made.body.id, 'abort', { reason: 'wrong build' })).status).toBe(200);
      await settle();
      const d = await show(made.body.id);
      expect(d.state).toBe('aborted');
      expect(agents[2]?.ran).toEqual([]);
      expect((await act(made.body.id, 'resume')).status).toBe(409);
      // Its targets are free again.
      expect((await create({ release: 'shop@2.0.0' })).status).toBe(201);
    });
  });
}
