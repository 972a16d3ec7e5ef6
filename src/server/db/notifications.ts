/**
 * PostgreSQL's LISTEN/NOTIFY between replicas: a replica that queues steps, or revokes agents,
 * says for which targets, in the same transaction (`pg_notify` is delivered only if it commits),
 * and every replica listening acts on them (wakes the long-polls it holds, forgets the agents'
 * credentials). One connection per server listens on every channel, and is opened again (every
 * second) when it drops; while it is down, the listeners fall back to asking the database.
 */
import { randomUUID } from 'node:crypto';
import { type Kysely, sql } from 'kysely';
import pg from 'pg';
import type { Tables } from './schema.ts';

/**
 * One listening connection for every channel a server listens on: each `subscribe` adds a channel
 * (and its handlers) to it. The connection is opened with the first subscription and closed with
 * the last, and opened again (every second) when it drops, listening on every channel again.
 */
export class PgListener {
  private client: pg.Client | undefined;
  private connecting: Promise<void> | undefined;
  private retry: NodeJS.Timeout | undefined;
  private readonly subscriptions = new Set<PgSubscription>();

  constructor(private readonly config: pg.ClientConfig) {}

  /** Listens on `channel` too; the subscription's `start` begins it and `close` ends it. */
  subscribe(
    channel: string,
    onNotify: (payload: string) => void,
    /** Told on every (re)connection: what was sent while it was down is lost, so look again. */
    onConnected: () => void,
  ): PgSubscription {
    return new PgSubscription(this, channel, onNotify, onConnected);
  }

  /** @internal */
  add(subscription: PgSubscription): void {
    this.subscriptions.add(subscription);
    const client = this.client;
    if (client) void this.listenOn(client, [subscription]);
    else if (!this.connecting && !this.retry) this.connecting = this.connect();
  }

  /** @internal */
  async remove(subscription: PgSubscription): Promise<void> {
    this.subscriptions.delete(subscription);
    const client = this.client;
    if (this.subscriptions.size > 0) {
      const stillHeard = [...this.subscriptions].some((s) => s.channel === subscription.channel);
      if (client && !stillHeard) await client.query(`unlisten "${subscription.channel}"`).catch(() => {});
      return;
    }
    // The last one: the connection goes.
    clearTimeout(this.retry);
    this.retry = undefined;
    await this.connecting;
    // Another came while the connection was being opened: it stays.
    if (this.subscriptions.size > 0) return;
    const last = this.client;
    this.client = undefined;
    await last?.end().catch(() => {});
  }

  private async listenOn(client: pg.Client, subscriptions: PgSubscription[]): Promise<void> {
    try {
      for (const channel of new Set(subscriptions.map((s) => s.channel)))
        await client.query(`listen "${channel}"`);
    } catch {
      // The connection is failing: its 'end' arranges the next, which listens on every channel.
      return;
    }
    if (this.client !== client) return;
    for (const s of subscriptions) if (this.subscriptions.has(s)) s.heard();
  }

  private async connect(): Promise<void> {
    // Keepalive, and a query every 30 s: a connection that died without a word (a half-open
    // TCP connection) would otherwise go on looking connected while hearing nothing.
    const client = new pg.Client({
      ...this.config,
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
      query_timeout: 10_000,
    });
    client.on('notification', (message) => {
      if (!message.payload) return;
      for (const s of this.subscriptions) if (s.channel === message.channel) s.notify(message.payload);
    });
    // A dropped connection ends the client; 'end' arranges the next attempt.
    client.on('error', () => {});
    client.on('end', () => {
      if (this.client !== client) return;
      this.client = undefined;
      for (const s of this.subscriptions) s.lost();
      this.later();
    });
    try {
      await client.connect();
    } catch {
      await client.end().catch(() => {});
      this.connecting = undefined;
      this.later();
      return;
    }
    this.connecting = undefined;
    if (this.subscriptions.size === 0) {
      await client.end().catch(() => {});
      return;
    }
    this.client = client;
    await this.listenOn(client, [...this.subscriptions]);
    const probe = setInterval(() => {
      if (this.client !== client) return clearInterval(probe);
      // A probe that fails ends the client; its 'end' arranges the next connection.
      client.query('select 1').catch(() => client.end().catch(() => {}));
    }, 30_000);
    probe.unref();
  }

  private later(): void {
    if (this.subscriptions.size === 0) return;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      this.connecting = this.connect();
    }, 1000);
    this.retry.unref();
  }
}

/** One channel heard on a server's listening connection (`PgListener.subscribe`). */
export class PgSubscription {
  /** Listening now: the connection is up and has said `LISTEN` for this channel. */
  connected = false;
  private started = false;
  private markReady: () => void = () => {};
  /** Resolves once it first listens. */
  readonly ready = new Promise<void>((resolve) => {
    this.markReady = resolve;
  });

  constructor(
    private readonly hub: PgListener,
    readonly channel: string,
    private readonly onNotify: (payload: string) => void,
    private readonly onConnected: () => void,
  ) {}

  start(): void {
    if (this.started) return;
    this.started = true;
    this.hub.add(this);
  }

  close(): Promise<void> {
    this.connected = false;
    return this.hub.remove(this);
  }

  /** @internal */
  notify(payload: string): void {
    if (this.connected) this.onNotify(payload);
  }

  /** @internal The connection listens on this channel (again). */
  heard(): void {
    this.connected = true;
    this.markReady();
    this.onConnected();
  }

  /** @internal The connection dropped. */
  lost(): void {
    this.connected = false;
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
  private readonly listener: PgSubscription;

  constructor(
    open: (channel: string, onNotify: (payload: string) => void, onConnected: () => void) => PgSubscription,
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
