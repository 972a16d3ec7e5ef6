/**
 * PostgreSQL's LISTEN/NOTIFY between replicas: a replica that queues steps says for which
 * targets, in the same transaction (`pg_notify` is delivered only if it commits), and every
 * replica listening wakes the long-polls it holds for them. One connection of its own listens,
 * and is opened again (every second) when it drops; while it is down, long-polls fall back to
 * asking the database every few seconds.
 */
import pg from 'pg';

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
