/**
 * A download held in memory while it is checked and unpacked: one buffer of the declared size,
 * taken from a small pool and given back when the install ends. A fresh buffer for each package
 * costs its page faults and, at 10 MiB a time, a full garbage collection every few installs; the
 * pool is emptied once no install has used it for POOL_IDLE_MS, so an idle agent holds none.
 */
import { Writable } from 'node:stream';

/** Where a download's bytes are kept until they are checked and unpacked. */
export interface DownloadSink {
  /** A stream that keeps the bytes from `offset` on (what was kept after it is dropped). */
  writable(offset: number): Writable;
  /** The bytes kept so far. */
  kept(): AsyncIterable<Buffer>;
  /** What the extractor reads: the file, or the bytes themselves. */
  archive(): string | Buffer[];
  discard(): Promise<void>;
}

/** More bytes came than the sink was made for (the step's declared length). */
export class SinkFullError extends Error {
  constructor(readonly capacity: number) {
    super(`the download is longer than the ${capacity} bytes the step declares`);
    this.name = 'SinkFullError';
  }
}

const POOL_MAX = 2;
const POOL_IDLE_MS = 10_000;
const pool: Buffer[] = [];
let emptyLater: NodeJS.Timeout | undefined;

/** A buffer of at least `size` bytes (its contents are whatever it held before). */
function take(size: number): Buffer {
  // The smallest that fits, and not more than twice the size: a large buffer is not held for a
  // small package.
  let best = -1;
  for (let i = 0; i < pool.length; i++) {
    const length = (pool[i] as Buffer).length;
    if (length >= size && length <= 2 * size && (best < 0 || length < (pool[best] as Buffer).length))
      best = i;
  }
  if (best >= 0) return pool.splice(best, 1)[0] as Buffer;
  return Buffer.allocUnsafeSlow(Math.max(size, 1));
}

function giveBack(buffer: Buffer): void {
  if (pool.length >= POOL_MAX) pool.shift();
  pool.push(buffer);
  clearTimeout(emptyLater);
  emptyLater = setTimeout(() => {
    pool.length = 0;
  }, POOL_IDLE_MS);
  emptyLater.unref();
}

/** How many buffers the pool holds now (for tests). */
export function pooledBuffers(): number {
  return pool.length;
}

/**
 * A sink for at most `capacity` bytes. Every piece is copied into the one buffer as it comes, so
 * the socket's pieces are free at once, and the extractor reads views of it, never a copy.
 */
export function memorySink(capacity: number): DownloadSink {
  let buffer: Buffer | null = take(capacity);
  let length = 0;
  const held = () => {
    if (!buffer) throw new Error('the download was already discarded');
    return buffer;
  };
  return {
    writable(offset) {
      // Taken up from `offset`: what was kept after it is dropped.
      length = Math.min(length, offset);
      return new Writable({
        write(chunk: Buffer, _encoding, done) {
          const into = held();
          if (length + chunk.length > capacity) return done(new SinkFullError(capacity));
          chunk.copy(into, length);
          length += chunk.length;
          done();
        },
      });
    },
    async *kept() {
      if (length > 0) yield held().subarray(0, length);
    },
    archive: () => [held().subarray(0, length)],
    async discard() {
      if (buffer) giveBack(buffer);
      buffer = null;
      length = 0;
    },
  };
}
