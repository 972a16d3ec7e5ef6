/**
 * Loopback fault proxy (test plan H2): a `net` TCP proxy on 127.0.0.1 in front of one host:port,
 * whose behaviour a test switches while traffic flows. It needs no root and no network namespace.
 *
 * Modes (`proxy.set(mode)`), applied to every connection, old and new, from the moment they are set:
 * - `pass`: bytes flow untouched.
 * - `blackhole`: connections are accepted but nothing moves in either direction; bytes are held
 *   (as TCP would keep retransmitting them) and flow again once another mode is set.
 * - `rst`: every open connection is reset at once, and new ones are reset as they arrive.
 * - `latency`: each chunk, in both directions, is delivered `ms` after it arrived.
 * - `bandwidth`: server→client bytes are capped at `bytesPerSecond` per connection.
 * - `cut`: a connection's server→client stream ends after `afterBytes` bytes (counted from the
 *   connection's start) and the connection is closed.
 * - `flip`: the server→client byte at `offset` (counted per connection) is inverted — on the first
 *   connection whose stream reaches it, or on every one with `every: true`.
 * - `drip`: server→client bytes go out `bytes` (default 1) at a time every `intervalMs`, once the
 *   connection's stream is past `fromOffset` (default 0).
 * - `oversize`: the first answer on a connection declaring `content-length: <contentLength>` is
 *   re-declared longer and followed by `extra` bytes of zeros after its body (`'endless'`: zeros
 *   without end) — a server sending more than the length the client was told to expect.
 */
import net from 'node:net';

export type FaultMode =
  | { kind: 'pass' }
  | { kind: 'blackhole' }
  | { kind: 'rst' }
  | { kind: 'latency'; ms: number }
  | { kind: 'bandwidth'; bytesPerSecond: number }
  | { kind: 'cut'; afterBytes: number }
  | { kind: 'flip'; offset: number; every?: boolean }
  | { kind: 'drip'; intervalMs: number; bytes?: number; fromOffset?: number }
  | { kind: 'oversize'; contentLength: number; extra: number | 'endless' };

export interface FaultProxyStats {
  /** Connections accepted so far. */
  connections: number;
  /** Connections open now. */
  open: number;
  /** Connections reset by `rst`. */
  resets: number;
  /** Connections closed by `cut`. */
  cuts: number;
  /** Bytes flipped by `flip`. */
  flips: number;
  /** Bytes delivered client→server and server→client, over all connections. */
  bytesUp: number;
  bytesDown: number;
  /** The most server→client bytes any one connection carried. */
  maxConnectionDown: number;
  /** The most server→client bytes a connection had carried when `rst` or `cut` ended it. */
  maxDownAtBreak: number;
}

export interface FaultProxy {
  /** `http://127.0.0.1:<port>` */
  url: string;
  port: number;
  set(mode: FaultMode): void;
  mode(): FaultMode;
  stats(): FaultProxyStats;
  /** The most server→client bytes an open connection has carried so far (a transfer under way). */
  activeDown(): number;
  close(): Promise<void>;
}

interface Chunk {
  data: Buffer;
  at: number;
}

const HIGH_WATER = 256 * 1024;

export async function startFaultProxy(target: { host?: string; port: number }): Promise<FaultProxy> {
  let mode: FaultMode = { kind: 'pass' };
  const connections = new Set<Connection>();
  const stats: FaultProxyStats = {
    connections: 0,
    open: 0,
    resets: 0,
    cuts: 0,
    flips: 0,
    bytesUp: 0,
    bytesDown: 0,
    maxConnectionDown: 0,
    maxDownAtBreak: 0,
  };
  const targetHost = target.host ?? '127.0.0.1';

  class Pipe {
    queue: Chunk[] = [];
    queued = 0;
    ended = false;
    finished = false;
    /** Bytes delivered in this direction on this connection. */
    offset = 0;
    timer: NodeJS.Timeout | undefined;
    waitingForDrain = false;
    nextDripAt = 0;
    tokens = 0;
    tokensAt = Date.now();
    // oversize: where the inflated answer stands.
    oversize: { bodyLeft: number; extraLeft: number } | undefined;
    oversizeDone = false;

    constructor(
      readonly conn: Connection,
      readonly down: boolean,
    ) {}

    get src(): net.Socket | undefined {
      return this.down ? this.conn.upstream : this.conn.client;
    }
    get dst(): net.Socket | undefined {
      return this.down ? this.conn.client : this.conn.upstream;
    }

    push(data: Buffer): void {
      this.queue.push({ data, at: Date.now() });
      this.queued += data.length;
      if (this.queued > HIGH_WATER) this.src?.pause();
      this.pump();
    }

    end(): void {
      this.ended = true;
      this.pump();
    }

    schedule(ms: number): void {
      if (this.timer) return;
      this.timer = setTimeout(
        () => {
          this.timer = undefined;
          this.pump();
        },
        Math.max(1, ms),
      );
    }

    reset(): void {
      clearTimeout(this.timer);
      this.timer = undefined;
    }

    /** Delivers what the current mode lets through now, and arranges to be called again. */
    pump(): void {
      if (this.conn.dead || this.timer || this.waitingForDrain || this.finished) return;
      for (;;) {
        const m = mode;
        if (m.kind === 'blackhole' || m.kind === 'rst') return;
        if (!this.down && !this.conn.upstream) {
          if (this.queue.length > 0 || this.ended) this.conn.connectUpstream();
          return;
        }
        if (!this.down && !this.conn.upstreamReady) return;
        const dst = this.dst;
        if (!dst || dst.destroyed) return;
        if (this.down && m.kind === 'oversize' && this.oversize && this.oversize.bodyLeft === 0) {
          // The declared body is through: now the bytes the client was never told about.
          const extra = this.oversize;
          if (extra.extraLeft > 0) {
            const n = Math.min(extra.extraLeft, 64 * 1024);
            extra.extraLeft -= Number.isFinite(extra.extraLeft) ? n : 0;
            if (!this.write(dst, Buffer.alloc(n))) return;
            continue;
          }
          this.oversize = undefined;
        }
        const head = this.queue[0];
        if (!head) break;
        const now = Date.now();
        if (m.kind === 'latency' && now < head.at + m.ms) {
          this.schedule(head.at + m.ms - now);
          return;
        }
        let n = head.data.length;
        if (this.down) {
          if (m.kind === 'drip' && this.offset >= (m.fromOffset ?? 0)) {
            if (now < this.nextDripAt) {
              this.schedule(this.nextDripAt - now);
              return;
            }
            n = Math.min(n, m.bytes ?? 1);
            this.nextDripAt = now + m.intervalMs;
          } else if (m.kind === 'drip') {
            n = Math.min(n, (m.fromOffset ?? 0) - this.offset);
          }
          if (m.kind === 'bandwidth') {
            this.tokens = Math.min(
              m.bytesPerSecond / 10,
              this.tokens + ((now - this.tokensAt) * m.bytesPerSecond) / 1000,
            );
            this.tokensAt = now;
            if (this.tokens < 1) {
              this.schedule(Math.ceil(((1 - this.tokens) * 1000) / m.bytesPerSecond));
              return;
            }
            n = Math.min(n, Math.floor(this.tokens));
            this.tokens -= n;
          }
          if (m.kind === 'cut') {
            const left = m.afterBytes - this.offset;
            if (left <= 0) {
              this.conn.cut();
              return;
            }
            n = Math.min(n, left);
          }
          if (m.kind === 'oversize' && this.oversize) n = Math.min(n, this.oversize.bodyLeft);
        }
        let data = head.data.subarray(0, n);
        if (n === head.data.length) this.queue.shift();
        else head.data = head.data.subarray(n);
        this.queued -= n;
        if (this.down) data = this.alter(m, data);
        this.offset += n;
        if (this.down) {
          stats.bytesDown += n;
          stats.maxConnectionDown = Math.max(stats.maxConnectionDown, this.offset);
        } else stats.bytesUp += n;
        if (this.queued < HIGH_WATER / 2) this.src?.resume();
        if (this.down && m.kind === 'cut' && this.offset >= m.afterBytes) {
          // The last byte allowed, then the connection closes once it has left.
          dst.write(data, () => this.conn.cut());
          return;
        }
        if (!this.write(dst, data)) return;
      }
      if (this.ended && this.queue.length === 0 && !this.oversize) {
        this.finished = true;
        this.dst?.end();
      }
    }

    /** Writes, and when the socket is full waits for it to drain before pumping again. */
    write(dst: net.Socket, data: Buffer): boolean {
      if (dst.write(data)) return true;
      this.waitingForDrain = true;
      dst.once('drain', () => {
        this.waitingForDrain = false;
        this.pump();
      });
      return false;
    }

    alter(m: FaultMode, data: Buffer): Buffer {
      if (m.kind === 'flip') {
        const at = m.offset - this.offset;
        if (at >= 0 && at < data.length && (m.every || stats.flips === 0)) {
          const copy = Buffer.from(data);
          copy[at] = (copy[at] as number) ^ 0xff;
          stats.flips += 1;
          return copy;
        }
      }
      if (m.kind === 'oversize' && !this.oversize && !this.oversizeDone) {
        const text = data.toString('latin1');
        const marker = new RegExp(`\\r\\ncontent-length: *${m.contentLength}\\r\\n`, 'i');
        const found = marker.exec(text);
        const headerEnd = text.indexOf('\r\n\r\n');
        if (found && headerEnd > found.index) {
          this.oversizeDone = true;
          const declared = m.extra === 'endless' ? 1024 ** 4 : m.contentLength + m.extra;
          const rewritten = text.replace(marker, `\r\ncontent-length: ${declared}\r\n`);
          const bodyHere = data.length - (headerEnd + 4);
          this.oversize = {
            bodyLeft: m.contentLength - bodyHere,
            extraLeft: m.extra === 'endless' ? Number.POSITIVE_INFINITY : m.extra,
          };
          return Buffer.from(rewritten, 'latin1');
        }
      }
      if (this.oversize) this.oversize.bodyLeft -= data.length;
      return data;
    }
  }

  class Connection {
    upstream: net.Socket | undefined;
    upstreamReady = false;
    dead = false;
    readonly up: Pipe;
    readonly down: Pipe;

    constructor(readonly client: net.Socket) {
      this.up = new Pipe(this, false);
      this.down = new Pipe(this, true);
      client.on('data', (data: Buffer) => this.up.push(data));
      client.on('end', () => this.up.end());
      client.on('error', () => this.kill());
      client.on('close', () => this.kill());
      if (mode.kind !== 'blackhole') this.connectUpstream();
    }

    connectUpstream(): void {
      if (this.upstream || this.dead) return;
      const upstream = net.connect({ host: targetHost, port: target.port, allowHalfOpen: true });
      this.upstream = upstream;
      upstream.on('connect', () => {
        this.upstreamReady = true;
        this.up.pump();
      });
      upstream.on('data', (data: Buffer) => this.down.push(data));
      upstream.on('end', () => this.down.end());
      upstream.on('error', () => this.kill());
      upstream.on('close', () => {
        // What the server sent before closing still reaches the client.
        if (this.down.queue.length === 0 && !this.down.oversize) this.kill();
      });
    }

    pump(): void {
      this.up.reset();
      this.down.reset();
      this.up.pump();
      this.down.pump();
    }

    reset(): void {
      if (this.dead) return;
      stats.resets += 1;
      stats.maxDownAtBreak = Math.max(stats.maxDownAtBreak, this.down.offset);
      this.client.resetAndDestroy();
      this.kill();
    }

    cut(): void {
      if (this.dead) return;
      stats.cuts += 1;
      stats.maxDownAtBreak = Math.max(stats.maxDownAtBreak, this.down.offset);
      this.kill();
    }

    kill(): void {
      if (this.dead) return;
      this.dead = true;
      this.up.reset();
      this.down.reset();
      this.client.destroy();
      this.upstream?.destroy();
      connections.delete(this);
      stats.open = connections.size;
    }
  }

  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: false }, (client) => {
    stats.connections += 1;
    if (mode.kind === 'rst') {
      stats.resets += 1;
      client.on('error', () => {});
      client.resetAndDestroy();
      return;
    }
    const conn = new Connection(client);
    connections.add(conn);
    stats.open = connections.size;
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    set(next: FaultMode) {
      mode = next;
      for (const conn of [...connections]) {
        if (next.kind === 'rst') conn.reset();
        else {
          if (next.kind !== 'blackhole') conn.connectUpstream();
          conn.pump();
        }
      }
    },
    mode: () => mode,
    stats: () => ({ ...stats }),
    activeDown: () => Math.max(0, ...[...connections].map((conn) => conn.down.offset)),
    async close() {
      for (const conn of [...connections]) conn.kill();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
