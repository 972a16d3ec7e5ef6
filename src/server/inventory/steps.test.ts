/**
 * Agents' asks and results arrive many at a time and are taken and recorded together (one
 * transaction, a few statements for all): each agent must still get its own step, once, in order,
 * and each result must be judged on its own — through the real HTTP stack on every database.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, startTestApp, type TestApp } from '../../../test/helpers/test-app.ts';
import { testDatabases } from '../../../test/helpers/test-databases.ts';
import { SYSTEM_ACTOR } from '../audit/audit-log.ts';
import { inTransaction } from '../unit-of-work.ts';
import { InventoryService } from './inventory-service.ts';
import { StepService } from './step-service.ts';

const FACTS = { os: 'linux', arch: 'x64', freeDiskBytes: 5e9, nodeVersion: 'v20.20.2', hostname: 'h' };
const NAMES = ['web-1', 'web-2', 'web-3', 'web-4', 'web-5', 'web-6'];

for (const kind of testDatabases()) {
  describe(`agent steps taken and recorded in batches on ${kind.name}`, () => {
    let t: TestApp;
    const credentials = new Map<string, string>();
    beforeEach(async () => {
      t = await startTestApp(kind);
      await t.call('POST', '/api/v1/environments', { token: ADMIN_TOKEN, body: { name: 'production' } });
      for (const name of NAMES) {
        const token = await t.call('POST', '/api/v1/enrollment-tokens', {
          token: ADMIN_TOKEN,
          body: { environment: 'production' },
        });
        const enrolled = await t.call('POST', '/api/v1/agent/enroll', {
          body: { token: token.body.secret, name, facts: FACTS },
        });
        expect(enrolled.status).toBe(201);
        credentials.set(name, enrolled.body.credential);
      }
    });
    afterEach(async () => t.close());

    const queue = async (target: string, version: string) => {
      const res = await t.call('POST', `/api/v1/targets/${target}/steps`, {
        token: ADMIN_TOKEN,
        body: { kind: 'activate', component: 'web', version },
      });
      expect(res.status).toBe(201);
      return res.body.id as string;
    };
    const next = (target: string) =>
      t.call('GET', '/api/v1/agent/steps/next?wait=0', { token: credentials.get(target) });
    const report = (target: string, step: string, body: Record<string, unknown>) =>
      t.call('POST', `/api/v1/agent/steps/${step}/result`, { token: credentials.get(target), body });
    /** Queues web-1's activate of 2.0.0 the way the deployment engine does, in a transaction of its own. */
    const queueAsEngine = (service: StepService, targetId: string) =>
      inTransaction({ database: t.db.database, clock: t.clock }, SYSTEM_ACTOR, async (uow) => {
        const [id] = await service.enqueueMany(uow, [
          {
            targetId,
            targetName: 'web-1',
            kind: 'activate',
            component: 'web',
            version: '2.0.0',
            digest: null,
            size: null,
            requestedBy: 'test',
            reference: 'test',
          },
        ]);
        return id as string;
      });

    it('many agents asking and reporting at once: each takes its own step once, each result is judged alone', async () => {
      const queued = new Map<string, string>();
      for (const name of NAMES) queued.set(name, await queue(name, '1.0.0'));
      // web-1 asks twice at once: both asks get the same step, started once.
      const asks = await Promise.all([...NAMES, 'web-1'].map((name) => next(name)));
      for (const [i, name] of [...NAMES, 'web-1'].entries()) {
        expect(asks[i]?.status).toBe(200);
        expect(asks[i]?.body).toMatchObject({ id: queued.get(name), target: name, state: 'running' });
      }
      const started = await t.call('GET', '/api/v1/audit?action=step.started', { token: ADMIN_TOKEN });
      expect(started.body.entries.map((e: { actor: string }) => e.actor).sort()).toEqual(
        NAMES.map((n) => `agent:${n}`),
      );

      const web1 = queued.get('web-1') as string;
      const results = await Promise.all([
        // First in the same moment: another agent reporting web-1's step (not its own); web-1's
        // own report below must still be recorded.
        report('web-2', web1, { outcome: 'failed' }),
        ...NAMES.map((name) =>
          report(name, queued.get(name) as string, {
            outcome: 'succeeded',
            message: `done on ${name}`,
            active: { component: 'web', version: '1.0.0' },
          }),
        ),
        // In the same moment: the same result again (no change), a different one (refused).
        report('web-1', web1, { outcome: 'succeeded', active: { component: 'web', version: '1.0.0' } }),
        report('web-1', web1, { outcome: 'failed', message: 'late' }),
      ]);
      expect(results.map((r) => r.status)).toEqual([404, 200, 200, 200, 200, 200, 200, 200, 409]);
      expect(results[1]?.body).toMatchObject({ id: web1, state: 'succeeded', message: 'done on web-1' });
      expect(results[8]?.body.error.message).toContain('already reported as succeeded');

      const recorded = await t.call('GET', '/api/v1/audit?action=step.succeeded', { token: ADMIN_TOKEN });
      expect(recorded.body.entries).toHaveLength(NAMES.length);
      for (const name of NAMES) {
        const ledger = await t.call('GET', `/api/v1/targets/${name}/ledger`, { token: ADMIN_TOKEN });
        expect(ledger.body.entries.map((e: { version: string }) => e.version)).toEqual(['1.0.0']);
      }
      const verify = await t.call('GET', '/api/v1/audit/verify', { token: ADMIN_TOKEN });
      expect(verify.body.ok).toBe(true);
    });

    it('agents looking at once each find their own step: the one they were given, else their oldest queued', async () => {
      // web-1: two queued; web-2: one given (running) and one queued after it; web-3: nothing;
      // web-4: three queued.
      const w1 = [await queue('web-1', '1.0.0'), await queue('web-1', '1.1.0')];
      const w2 = [await queue('web-2', '1.0.0'), await queue('web-2', '1.1.0')];
      expect((await next('web-2')).body.id).toBe(w2[0]);
      const w4 = [
        await queue('web-4', '3.0.0'),
        await queue('web-4', '2.0.0'),
        await queue('web-4', '1.0.0'),
      ];
      const names = ['web-1', 'web-2', 'web-3', 'web-4', 'web-2', 'web-1'];
      const asks = await Promise.all(names.map((name) => next(name)));
      expect(asks.map((a) => [a.status, a.body?.id])).toEqual([
        [200, w1[0]],
        [200, w2[0]],
        [204, undefined],
        [200, w4[0]],
        [200, w2[0]],
        [200, w1[0]],
      ]);
      await report('web-1', w1[0] as string, { outcome: 'succeeded' });
      const again = await Promise.all(['web-1', 'web-3'].map((name) => next(name)));
      expect(again.map((a) => [a.status, a.body?.id])).toEqual([
        [200, w1[1]],
        [204, undefined],
      ]);
    });

    it('a long-poll whose time is up with no wake answers 204 without looking again; the next poll looks', async () => {
      const agent = (await t.call('GET', '/api/v1/targets/web-1', { token: ADMIN_TOKEN })).body;
      const polling = t.call('GET', '/api/v1/agent/steps/next?wait=1', { token: credentials.get('web-1') });
      // A step written while the poll waits, with no wake for it (as if its announcement were lost).
      await new Promise((resolve) => setTimeout(resolve, 300));
      await t.db.database.db
        .insertInto('steps')
        .values({
          id: '0000000000000000000000ZZZZ',
          target_id: agent.id,
          kind: 'activate',
          component: 'web',
          version: '1.0.0',
          digest: null,
          size: null,
          state: 'queued',
          message: null,
          requested_by: 'test',
          created_at: t.clock.now().toISOString(),
          updated_at: t.clock.now().toISOString(),
        })
        .execute();
      expect((await polling).status).toBe(204);
      // Not taken by the poll that ended without it: still queued, and the next poll gets it.
      const row = await t.db.database.db
        .selectFrom('steps')
        .select('state')
        .where('target_id', '=', agent.id)
        .execute();
      expect(row.map((r) => r.state)).toEqual(['queued']);
      expect((await next('web-1')).body).toMatchObject({
        id: '0000000000000000000000ZZZZ',
        state: 'running',
      });
    });

    it('a ledger that already says so gains no entry; a new version names the one before', async () => {
      const first = await queue('web-1', '1.0.0');
      await next('web-1');
      await report('web-1', first, { outcome: 'succeeded', active: { component: 'web', version: '1.0.0' } });
      const same = await queue('web-1', '1.0.0');
      await next('web-1');
      await report('web-1', same, { outcome: 'succeeded', active: { component: 'web', version: '1.0.0' } });
      const newer = await queue('web-1', '2.0.0');
      await next('web-1');
      await report('web-1', newer, { outcome: 'succeeded', active: { component: 'web', version: '2.0.0' } });
      const ledger = await t.call('GET', '/api/v1/targets/web-1/ledger', { token: ADMIN_TOKEN });
      expect(
        ledger.body.entries.map((e: { version: string; previousVersion: string | null }) => [
          e.version,
          e.previousVersion,
        ]),
      ).toEqual([
        ['1.0.0', null],
        ['2.0.0', '1.0.0'],
      ]);
    });

    it('a step handed over by a wake is not taken while an older one is open for the target', async () => {
      const older = await queue('web-1', '1.0.0');
      const deps = { database: t.db.database, clock: t.clock };
      const service = new StepService(deps, new InventoryService(deps));
      const agent = (await t.call('GET', '/api/v1/targets/web-1', { token: ADMIN_TOKEN })).body;
      // A newer step queued the way the deployment engine queues, and handed to the agent's wait.
      const newer = await queueAsEngine(service, agent.id);
      const identity = { agentId: 'a', targetId: agent.id, targetName: 'web-1' };
      const waiting = service.waitForWork(agent.id, 10_000, new AbortController().signal);
      service.wake(agent.id);
      const hint = await waiting;
      expect(hint?.id).toBe(newer);
      // Handed the newer one, the agent still gets the older first, and the newer after it.
      expect((await service.next(identity, hint))?.id).toBe(older);
      await report('web-1', older, { outcome: 'succeeded' });
      expect((await service.next(identity))?.id).toBe(newer);
    });

    it('a step queued while an agent’s look-up is on its way ends the wait that follows at once', async () => {
      const deps = { database: t.db.database, clock: t.clock };
      const service = new StepService(deps, new InventoryService(deps));
      const agent = (await t.call('GET', '/api/v1/targets/web-1', { token: ADMIN_TOKEN })).body;
      const identity = { agentId: 'a', targetId: agent.id, targetName: 'web-1' };
      const within = (ms: number, waiting: Promise<unknown>) =>
        Promise.race([
          waiting.then(() => 'woken'),
          new Promise((resolve) => setTimeout(() => resolve('still waiting'), ms)),
        ]);
      const stop = new AbortController();
      try {
        // The long-poll's look-up finds nothing; before its wait begins, a step is queued and woken for.
        const mark = service.mark(agent.id);
        expect(await service.next(identity)).toBeNull();
        const queued = await queueAsEngine(service, agent.id);
        service.wake(agent.id);
        expect(await within(5000, service.waitForWork(agent.id, 60_000, stop.signal, mark))).toBe('woken');
        expect((await service.next(identity))?.id).toBe(queued);
        // Marked after that wake, a wait waits for the next one.
        const later = service.mark(agent.id);
        expect(await within(300, service.waitForWork(agent.id, 60_000, stop.signal, later))).toBe(
          'still waiting',
        );
      } finally {
        stop.abort();
      }
    });
  });
}

describe('replicas on one PostgreSQL hear of each other’s steps', () => {
  const postgres = testDatabases().find((k) => k.name === 'postgres');
  it.skipIf(!postgres)(
    'a long-poll held by one replica wakes at once for a step another queued',
    async () => {
      const t = await startTestApp(postgres as NonNullable<typeof postgres>);
      const deps = { database: t.db.database, clock: t.clock };
      const here = new StepService(deps, new InventoryService(deps));
      const there = new StepService(deps, new InventoryService(deps));
      try {
        await Promise.all([here.listen(), there.listen()]);
        expect(here.recheckMs).toBe(60_000);
        await t.call('POST', '/api/v1/environments', { token: ADMIN_TOKEN, body: { name: 'production' } });
        const token = await t.call('POST', '/api/v1/enrollment-tokens', {
          token: ADMIN_TOKEN,
          body: { environment: 'production' },
        });
        await t.call('POST', '/api/v1/agent/enroll', {
          body: { token: token.body.secret, name: 'web-1', facts: FACTS },
        });
        const target = (await t.call('GET', '/api/v1/targets/web-1', { token: ADMIN_TOKEN })).body;
        // Waiting here far longer than the test would: only the announcement can end the wait in time.
        const waited = here.waitForWork(target.id, 60_000, new AbortController().signal).then(() => 'woken');
        await inTransaction(deps, SYSTEM_ACTOR, (uow) =>
          there.enqueueMany(uow, [
            {
              targetId: target.id,
              targetName: 'web-1',
              kind: 'activate',
              component: 'web',
              version: '1.0.0',
              digest: null,
              size: null,
              requestedBy: 'test',
              reference: 'test',
            },
          ]),
        );
        const late = new Promise((resolve) =>
          setTimeout(() => resolve('not woken within 5 s'), 5000).unref(),
        );
        expect(await Promise.race([waited, late])).toBe('woken');
      } finally {
        await here.close();
        await there.close();
        await t.close();
      }
    },
  );
});
