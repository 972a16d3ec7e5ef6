/**
 * A server's LISTEN/NOTIFY on PostgreSQL: every channel it hears on one connection, which comes
 * back, listening on every channel again, when the database drops it.
 */
import { sql } from 'kysely';
import { describe, expect, it } from 'vitest';
import { testDatabases } from '../../../test/helpers/test-databases.ts';

const postgres = testDatabases().find((k) => k.name === 'postgres');

const until = async (what: string, check: () => boolean | Promise<boolean>, ms = 10_000) => {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
};

describe('listening on PostgreSQL', () => {
  it.skipIf(!postgres)(
    'hears every channel on one connection, and listens on all again when it is dropped',
    async () => {
      const t = await (postgres as NonNullable<typeof postgres>).open();
      const { database } = t;
      const heard = { steps: [] as string[], agents: [] as string[] };
      const connections = { steps: 0, agents: 0 };
      const open = (name: 'steps' | 'agents') =>
        database.listener?.(
          `gantry_${name}`,
          (payload) => heard[name].push(payload),
          () => {
            connections[name] += 1;
          },
        );
      const steps = open('steps');
      const agents = open('agents');
      if (!steps || !agents) throw new Error('a PostgreSQL database has a listener');
      const schema = t.target.kind === 'postgres' ? (t.target.schema as string) : '';
      // The backends that listen for this schema: the one whose last statement was a LISTEN.
      const listening = async () =>
        (
          await sql<{ pid: number }>`select pid from pg_stat_activity
            where query like ${`listen "%${schema}"`}`.execute(database.db)
        ).rows.map((r) => r.pid);
      const notify = (channel: string, payload: string) =>
        sql`select pg_notify(${channel}, ${payload})`.execute(database.db);
      try {
        steps.start();
        agents.start();
        await Promise.all([steps.ready, agents.ready]);
        expect([steps.connected, agents.connected]).toEqual([true, true]);
        expect(await listening()).toHaveLength(1);

        await notify(steps.channel, 'one');
        await notify(agents.channel, 'two');
        await until('both heard', () => heard.steps.length === 1 && heard.agents.length === 1);
        expect(heard).toEqual({ steps: ['one'], agents: ['two'] });

        // The database drops the connection: both channels are listened on again, and told so.
        const [pid] = await listening();
        await sql`select pg_terminate_backend(${pid})`.execute(database.db);
        await until('both listening again', () => connections.steps === 2 && connections.agents === 2);
        expect([steps.connected, agents.connected]).toEqual([true, true]);
        await until('one connection again', async () => (await listening()).length === 1);
        await notify(steps.channel, 'three');
        await notify(agents.channel, 'four');
        await until('both heard again', () => heard.steps.length === 2 && heard.agents.length === 2);
        expect(heard).toEqual({ steps: ['one', 'three'], agents: ['two', 'four'] });

        // One closed: the other is still heard; both closed: the connection goes.
        await steps.close();
        await notify(steps.channel, 'unheard');
        await notify(agents.channel, 'five');
        await until('agents heard', () => heard.agents.length === 3);
        expect(heard.steps).toEqual(['one', 'three']);
        await agents.close();
        await until('no listening connection', async () => (await listening()).length === 0);
      } finally {
        await steps.close();
        await agents.close();
        await t.cleanup();
      }
    },
  );
});
