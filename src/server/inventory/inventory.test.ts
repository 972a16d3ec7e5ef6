/** Environments, suppliers, targets and agent enrollment through the real HTTP stack on every database. */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, startTestApp, type TestApp } from '../../../test/helpers/test-app.ts';
import { testDatabases } from '../../../test/helpers/test-databases.ts';
import type { GantryError } from '../../core/errors.ts';
import {
  AGENT_IDENTITY_TTL_MS,
  AGENT_IDENTITY_UNHEARD_TTL_MS,
  EnrollmentService,
} from './enrollment-service.ts';

const FACTS = { os: 'linux', arch: 'x64', freeDiskBytes: 5e9, nodeVersion: 'v20.20.2', hostname: 'web-1' };

for (const kind of testDatabases()) {
  describe(`inventory and enrollment on ${kind.name}`, () => {
    let t: TestApp;
    beforeEach(async () => {
      t = await startTestApp(kind);
      for (const name of ['test', 'production']) {
        expect(
          (await t.call('POST', '/api/v1/environments', { token: ADMIN_TOKEN, body: { name } })).status,
        ).toBe(201);
      }
    });
    afterEach(async () => t.close());

    async function enroll(
      name: string,
      body: Record<string, unknown> = { environment: 'production', labels: { region: 'eu' } },
    ) {
      const token = await t.call('POST', '/api/v1/enrollment-tokens', { token: ADMIN_TOKEN, body });
      expect(token.status).toBe(201);
      const res = await t.call('POST', '/api/v1/agent/enroll', {
        body: { token: token.body.secret, name, facts: FACTS },
      });
      expect(res.status).toBe(201);
      return { ...res.body, enrollmentSecret: token.body.secret as string };
    }

    it('keeps environments in order and refuses a second of the same name', async () => {
      const list = await t.call('GET', '/api/v1/environments', { token: ADMIN_TOKEN });
      expect(list.body.environments.map((e: { name: string }) => e.name)).toEqual(['test', 'production']);
      expect(
        (await t.call('POST', '/api/v1/environments', { token: ADMIN_TOKEN, body: { name: 'test' } })).status,
      ).toBe(409);
      await t.call('PATCH', '/api/v1/environments/production', { token: ADMIN_TOKEN, body: { position: 1 } });
      const reordered = await t.call('GET', '/api/v1/environments', { token: ADMIN_TOKEN });
      expect(reordered.body.environments.map((e: { name: string }) => e.name)).toEqual([
        'production',
        'test',
      ]);
    });

    it('an agent enrolls once with its token, then its heartbeats keep its target online with its facts', async () => {
      const agent = await enroll('web-1');
      expect(agent.credential).toMatch(/^gna_/);
      const again = await t.call('POST', '/api/v1/agent/enroll', {
        body: { token: agent.enrollmentSecret, name: 'web-2', facts: FACTS },
      });
      expect(again.status).toBe(401);
      t.clock.advance(5 * 60_000);
      expect((await t.call('GET', '/api/v1/targets/web-1', { token: ADMIN_TOKEN })).body.state).toBe(
        'offline',
      );
      const beat = await t.call('POST', '/api/v1/agent/heartbeat', {
        token: agent.credential,
        body: { facts: { ...FACTS, freeDiskBytes: 4e9 } },
      });
      expect(beat.status).toBe(200);
      const target = await t.call('GET', '/api/v1/targets/web-1', { token: ADMIN_TOKEN });
      expect(target.body).toMatchObject({
        environment: 'production',
        labels: { region: 'eu' },
        state: 'online',
        facts: { freeDiskBytes: 4e9 },
      });
      const rows = JSON.stringify(await t.db.database.db.selectFrom('agents').selectAll().execute());
      expect(rows).not.toContain(agent.credential);
      const audit = await t.call('GET', '/api/v1/audit?action=agent.enrolled', { token: ADMIN_TOKEN });
      expect(audit.body.entries[0]).toMatchObject({
        actor: 'agent:web-1',
        subject: `target:${agent.targetId}`,
      });
    });

    it('refuses an expired enrollment token, and a user token on agent routes', async () => {
      const token = await t.call('POST', '/api/v1/enrollment-tokens', {
        token: ADMIN_TOKEN,
        body: { environment: 'test', expiresInHours: 1 },
      });
      t.clock.advance(3_600_001);
      const late = await t.call('POST', '/api/v1/agent/enroll', {
        body: { token: token.body.secret, name: 'late', facts: FACTS },
      });
      expect(late.status).toBe(401);
      expect(late.body.error.message).toContain('expired');
      expect(
        (await t.call('POST', '/api/v1/agent/heartbeat', { token: ADMIN_TOKEN, body: { facts: FACTS } }))
          .status,
      ).toBe(401);
    });

    it('a retired target or a revoked agent cannot send heartbeats any more', async () => {
      const a = await enroll('db-1');
      const b = await enroll('db-2');
      // Accepted first, so the server remembers their credentials: the refusal must not wait for that to lapse.
      for (const agent of [a, b]) {
        const res = await t.call('POST', '/api/v1/agent/heartbeat', {
          token: agent.credential,
          body: { facts: FACTS },
        });
        expect(res.status).toBe(200);
      }
      await t.call('POST', '/api/v1/targets/db-1/retire', { token: ADMIN_TOKEN });
      await t.call('POST', '/api/v1/targets/db-2/revoke-agent', { token: ADMIN_TOKEN });
      for (const agent of [a, b]) {
        const res = await t.call('POST', '/api/v1/agent/heartbeat', {
          token: agent.credential,
          body: { facts: FACTS },
        });
        expect(res.status).toBe(401);
      }
      expect((await t.call('GET', '/api/v1/targets/db-1', { token: ADMIN_TOKEN })).body.state).toBe(
        'retired',
      );
    });

    it('flags targets that miss their environment’s platform standards, with the reasons', async () => {
      await t.call('PATCH', '/api/v1/environments/production', {
        token: ADMIN_TOKEN,
        body: { standards: { os: ['linux'], minFreeDiskBytes: 1e10, minNodeMajor: 22 } },
      });
      await enroll('small-1');
      const target = await t.call('GET', '/api/v1/targets/small-1', { token: ADMIN_TOKEN });
      expect(target.body.standardsProblems).toHaveLength(2);
      expect(target.body.standardsProblems.join(' ')).toContain('free disk');
    });

    it('a supplier sees only its own targets; another supplier’s target answers like a missing one', async () => {
      for (const name of ['storage-vendor', 'network-vendor'])
        await t.call('POST', '/api/v1/suppliers', { token: ADMIN_TOKEN, body: { name } });
      await enroll('san-1', { environment: 'production', supplier: 'storage-vendor' });
      await enroll('switch-1', { environment: 'production', supplier: 'network-vendor' });
      await enroll('web-9');
      const created = await t.call('POST', '/api/v1/users', {
        token: ADMIN_TOKEN,
        body: { username: 'vendor-eng', role: 'supplier', supplier: 'storage-vendor' },
      });
      expect(created.body.supplierId).not.toBeNull();
      const token = await t.call('POST', '/api/v1/tokens', {
        token: ADMIN_TOKEN,
        body: { name: 'x', userId: created.body.id },
      });
      const vendor = token.body.secret as string;
      const seen = await t.call('GET', '/api/v1/targets', { token: vendor });
      expect(seen.body.targets.map((x: { name: string }) => x.name)).toEqual(['san-1']);
      const other = await t.call('GET', '/api/v1/targets/switch-1', { token: vendor });
      const missing = await t.call('GET', '/api/v1/targets/nothing-here', { token: vendor });
      expect(other.status).toBe(404);
      expect(missing.status).toBe(404);
      expect(other.body.error.message.replace('switch-1', 'X')).toBe(
        missing.body.error.message.replace('nothing-here', 'X'),
      );
      const all = await t.call('GET', '/api/v1/targets', { token: ADMIN_TOKEN });
      expect(all.body.targets).toHaveLength(3);
      const envs = await t.call('GET', '/api/v1/environments', { token: vendor });
      expect(envs.body.environments.map((e: { name: string }) => e.name)).toEqual(['production']);
      expect((await t.call('GET', '/api/v1/environments/test', { token: vendor })).status).toBe(404);
    });

    it('records a supplier’s own change in the ledger, and refuses one on another supplier’s target', async () => {
      for (const name of ['storage-vendor', 'network-vendor'])
        await t.call('POST', '/api/v1/suppliers', { token: ADMIN_TOKEN, body: { name } });
      await enroll('san-2', { environment: 'production', supplier: 'storage-vendor' });
      await enroll('switch-2', { environment: 'production', supplier: 'network-vendor' });
      const user = await t.call('POST', '/api/v1/users', {
        token: ADMIN_TOKEN,
        body: { username: 'san-eng', role: 'supplier', supplier: 'storage-vendor' },
      });
      const vendor = (
        await t.call('POST', '/api/v1/tokens', {
          token: ADMIN_TOKEN,
          body: { name: 'x', userId: user.body.id },
        })
      ).body.secret as string;
      const record = (target: string, version: string) =>
        t.call('POST', '/api/v1/ledger/external', {
          token: vendor,
          body: { target, component: 'san-firmware', version, reference: 'VENDOR-7781' },
        });
      expect((await record('san-2', '4.1')).status).toBe(201);
      t.clock.advance(1000);
      const second = await record('san-2', '4.2');
      expect(second.body).toMatchObject({
        version: '4.2',
        previousVersion: '4.1',
        source: 'external',
        recordedBy: 'user:san-eng',
      });
      expect((await record('switch-2', '9.9')).status).toBe(404);
      const ledger = await t.call('GET', '/api/v1/ledger?component=san-firmware', { token: ADMIN_TOKEN });
      expect(ledger.body.positions).toEqual([
        expect.objectContaining({ target: 'san-2', version: '4.2', previousVersion: '4.1', drift: null }),
      ]);
      const history = await t.call('GET', '/api/v1/targets/san-2/ledger', { token: vendor });
      expect(history.body.entries.map((e: { version: string }) => e.version)).toEqual(['4.1', '4.2']);
      const audit = await t.call('GET', '/api/v1/audit?action=ledger.external_recorded', {
        token: ADMIN_TOKEN,
      });
      expect(audit.body.entries).toHaveLength(2);
    });

    it('notices drift once when an agent runs what the ledger does not expect, and clears it when recorded', async () => {
      const agent = await enroll('app-1');
      await t.call('POST', '/api/v1/ledger/external', {
        token: ADMIN_TOKEN,
        body: { target: 'app-1', component: 'api', version: '1.9.1', reference: 'CHG-1' },
      });
      const beat = () =>
        t.call('POST', '/api/v1/agent/heartbeat', {
          token: agent.credential,
          body: { facts: FACTS, installed: [{ component: 'api', version: '1.9.2-hotfix' }] },
        });
      expect((await beat()).status).toBe(200);
      expect((await beat()).status).toBe(200);
      const ledger = await t.call('GET', '/api/v1/ledger?target=app-1', { token: ADMIN_TOKEN });
      expect(ledger.body.positions[0].drift).toMatchObject({ reportedVersion: '1.9.2-hotfix' });
      const events = await t.call('GET', '/api/v1/events?severity=warning', { token: ADMIN_TOKEN });
      expect(events.body.events.filter((e: { kind: string }) => e.kind === 'inventory.drift')).toHaveLength(
        1,
      );
      await t.call('POST', '/api/v1/ledger/external', {
        token: ADMIN_TOKEN,
        body: { target: 'app-1', component: 'api', version: '1.9.2-hotfix', reference: 'INC-5 hand fix' },
      });
      const after = await t.call('GET', '/api/v1/ledger?target=app-1', { token: ADMIN_TOKEN });
      expect(after.body.positions[0]).toMatchObject({ version: '1.9.2-hotfix', drift: null });
    });
  });
}

describe('replicas on one PostgreSQL forget a revoked agent’s credential at once', () => {
  const postgres = testDatabases().find((k) => k.name === 'postgres');
  it.skipIf(!postgres)(
    'a credential another replica believes is refused there once this one revokes or retires',
    async () => {
      const t = await startTestApp(postgres as NonNullable<typeof postgres>);
      const deps = { database: t.db.database, clock: t.clock };
      // Another replica: its own memory of credentials, its own listening connection.
      const there = new EnrollmentService(deps);
      try {
        expect(there.rememberMs).toBe(AGENT_IDENTITY_UNHEARD_TTL_MS);
        await there.listen();
        expect(there.rememberMs).toBe(AGENT_IDENTITY_TTL_MS);
        await t.call('POST', '/api/v1/environments', { token: ADMIN_TOKEN, body: { name: 'production' } });
        const credentials: string[] = [];
        for (const name of ['web-1', 'web-2']) {
          const token = await t.call('POST', '/api/v1/enrollment-tokens', {
            token: ADMIN_TOKEN,
            body: { environment: 'production' },
          });
          const enrolled = await t.call('POST', '/api/v1/agent/enroll', {
            body: { token: token.body.secret, name, facts: FACTS },
          });
          credentials.push(enrolled.body.credential);
        }
        const [one, two] = credentials as [string, string];
        expect((await there.authenticate(one)).targetName).toBe('web-1');
        expect((await there.authenticate(two)).targetName).toBe('web-2');
        // Believed there for 30 s, yet refused as soon as the announcement arrives.
        const refusedWithin = async (credential: string, ms: number) => {
          const until = Date.now() + ms;
          while (Date.now() < until) {
            const outcome = await there.authenticate(credential).then(
              () => 'accepted',
              (error: GantryError) => error.code,
            );
            if (outcome !== 'accepted') return outcome;
            await new Promise((resolve) => setTimeout(resolve, 50));
          }
          return 'still accepted';
        };
        expect(
          (await t.call('POST', '/api/v1/targets/web-1/revoke-agent', { token: ADMIN_TOKEN })).status,
        ).toBe(200);
        expect(await refusedWithin(one, 3000)).toBe('UNAUTHENTICATED');
        expect((await there.authenticate(two)).targetName).toBe('web-2');
        expect((await t.call('POST', '/api/v1/targets/web-2/retire', { token: ADMIN_TOKEN })).status).toBe(
          200,
        );
        expect(await refusedWithin(two, 3000)).toBe('UNAUTHENTICATED');
      } finally {
        await there.close();
        await t.close();
      }
    },
  );
});
