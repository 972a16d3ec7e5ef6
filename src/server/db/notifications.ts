/**
 * PostgreSQL's LISTEN/NOTIFY between replicas: a replica that queues steps, or revokes agents,
 * says for which targets, in the same transaction (`pg_notify` is delivered only if it commits),
 * and every replica listening acts on them (wakes the long-polls it holds, forgets the agents'
 * credentials). One connection of its own listens per channel, and is opened again (every
 * second) when it drops; while it is down, the listeners fall back to asking the database.
 */
import { randomUUID } from 'node:crypto';
import { type Kysely, sql } from 'kysely';
import pg from 'pg';
import type { Tables } from './schema.ts';

export class PgListener {
  private client: pg.Client | undefined;
  private retry: NodeJS.Timeout | undefined;
  private closed = false;
  connected = false;
  private markReady: () => void = () => {};
  /** Resolves once the first connection listens. */
  readonly ready = new Promise<void>((resolve) => {
    this.markReady = resolve;
  });

  constructor(
    private readonly config: pg.ClientConfig,
    readonly channel: string,
    private readonly onNotify: (payload: string) => void,
    /** Told on every (re)connection: what was sent while it was down is lost, so look again. */
    private readonly onConnected: () => void,
  ) {}

  start(): void {
    void this.connect();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retry);
    const client = this.client;
    this.client = undefined;
    this.connected = false;
    await client?.end().catch(() => {});
  }

  private async connect(): Promise<void> {
    if (this.closed) return;
    // Keepalive, and a query every 30 s: a connection that died without a word (a half-open
    // TCP connection) would otherwise go on looking connected while hearing nothing.
    const client = new pg.Client({
      ...this.config,
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
      query_timeout: 10_000,
    });
    client.on('notification', (message) => {
      if (message.channel === this.channel && message.payload) this.onNotify(message.payload);
    });
    // A dropped connection ends the client; 'end' arranges the next attempt.
    client.on('error', () => {});
    client.on('end', () => {
      if (this.client !== client) return;
      this.client = undefined;
      this.connected = false;
      this.later();
    });
    try {
      await client.connect();
      await client.query(`listen "${this.channel}"`);
    } catch {
      await client.end().catch(() => {});
      this.later();
      return;
    }
    if (this.closed) {
      await client.end().catch(() => {});
      return;
    }
    this.client = client;
    this.connected = true;
    this.markReady();
    this.onConnected();
    const probe = setInterval(() => {
      if (this.client !== client) return clearInterval(probe);
      // A probe that fails ends the client; its 'end' arranges the next connection.
      client.query('select 1').catch(() => client.end().catch(() => {}));
    }, 30_000);
    probe.unref();
  }

  private later(): void {
    if (this.closed) return;
    this.retry = setTimeout(() => void this.connect(), 1000);
    this.retry.unref();
  }
}

/** A channel name per schema, so that databases shared by several Gantry schemas do not cross. */
export function channelFor(base: string, schema: string | undefined): string {
  return `${base}_${(schema ?? 'public').replace(/[^a-zA-Z0-9_]/g, '_')}`.slice(0, 63);
}

/**
 * Target ids announced between replicas on one channel: `announce` sends them in the caller's
 * transaction, and every other replica's `onTargets` hears them (never this replica's own).
 */
export class TargetAnnouncements {
  private readonly replica = randomUUID();
  private readonly listener: PgListener;

  constructor(
    open: (channel: string, onNotify: (payload: string) => void, onConnected: () => void) => PgListener,
    channel: string,
    onTargets: (targetIds: string[]) => void,
    /** Told on every (re)connection: what was announced while it was down is lost. */
    onConnected: () => void,
  ) {
    this.listener = open(
      channel,
      (payload) => {
        const [from, ...targets] = payload.split(',');
        if (from !== this.replica) onTargets(targets);
      },
      onConnected,
    );
    this.listener.start();
  }

  get ready(): Promise<void> {
    return this.listener.ready;
  }

  get connected(): boolean {
    return this.listener.connected;
  }

  close(): Promise<void> {
    return this.listener.close();
  }

  /** Announces the targets when the transaction of `db` commits. */
  async announce(db: Kysely<Tables>, targetIds: Iterable<string>): Promise<void> {
    let payload = this.replica;
    const send = async () => {
      await sql`select pg_notify(${this.listener.channel}, ${payload})`.execute(db);
      payload = this.replica;
    };
    // A notification carries at most 8000 bytes.
    for (const id of new Set(targetIds)) {
      if (payload.length + id.length + 1 > 7000) await send();
      payload += `,${id}`;
    }
    if (payload !== this.replica) await send();
  }
}
