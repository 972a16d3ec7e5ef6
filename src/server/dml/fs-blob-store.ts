/**
 * Artifact bytes on disk, addressed by their SHA-256: `<root>/sha256/ab/<digest>`. A blob is
 * received into `<root>/tmp` while it is hashed and counted, fsynced, and only then renamed into
 * place (and the directory fsynced), so a path under `sha256/` always holds complete bytes.
 * Nothing is held whole in memory.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, type ReadStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import { GantryError } from '../../core/errors.ts';
import { type Failpoints, NO_FAILPOINTS } from '../failpoints.ts';

export interface ReceivedBlob {
  /** Hex SHA-256 of what was received. */
  digest: string;
  size: number;
  /** The first 512 bytes, to tell what the content is. */
  head: Buffer;
  tempPath: string;
}

const HEAD_BYTES = 512;
/** Reads and writes of blob bytes go in pieces of this size. */
const WRITE_BYTES = 1024 * 1024;

export class FsBlobStore {
  private readonly tmpDir: string;

  constructor(
    readonly root: string,
    private readonly failpoints: Failpoints = NO_FAILPOINTS,
  ) {
    this.tmpDir = path.join(root, 'tmp');
  }

  /** Creates the folders and removes what an interrupted upload left in `tmp` (row F10). */
  async init(): Promise<void> {
    await mkdir(path.join(this.root, 'sha256'), { recursive: true, mode: 0o700 });
    await rm(this.tmpDir, { recursive: true, force: true });
    await mkdir(this.tmpDir, { recursive: true, mode: 0o700 });
  }

  pathOf(digest: string): string {
    return path.join(this.root, 'sha256', digest.slice(0, 2), digest);
  }

  /**
   * Streams `source` into a temporary file, hashing and counting as it goes. More than `maxBytes`
   * aborts at once with PAYLOAD_TOO_LARGE; a full disk gives DML_NO_SPACE. On any failure the
   * temporary file is gone.
   */
  async receive(source: Readable, maxBytes: number): Promise<ReceivedBlob> {
    const tempPath = path.join(this.tmpDir, `${randomBytes(12).toString('hex')}.part`);
    const writer = new HashWriter(tempPath);
    let size = 0;
    const headChunks: Buffer[] = [];
    let headLength = 0;
    let staging = Buffer.allocUnsafeSlow(WRITE_BYTES);
    let used = 0;
    try {
      // Read without letting an early stop destroy the request: an oversized upload is answered
      // with 413 (and the connection closed) instead of a reset the client cannot read.
      for await (const chunk of source.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > maxBytes) {
          throw new GantryError(
            'PAYLOAD_TOO_LARGE',
            `The artifact is larger than the limit of ${maxBytes} bytes.`,
            { maxBytes },
          );
        }
        if (headLength < HEAD_BYTES) {
          headChunks.push(Buffer.from(chunk.subarray(0, HEAD_BYTES - headLength)));
          headLength += Math.min(chunk.length, HEAD_BYTES - headLength);
        }
        // Socket reads arrive in small pieces; the disk is far faster written in large ones.
        let offset = 0;
        while (offset < chunk.length) {
          const n = chunk.copy(staging, used, offset);
          used += n;
          offset += n;
          if (used === WRITE_BYTES) {
            await writer.write(staging);
            staging = Buffer.allocUnsafeSlow(WRITE_BYTES);
            used = 0;
          }
        }
      }
      if (used > 0) await writer.write(staging.subarray(0, used));
      await this.failpoints.hit('dml.after_blob_write');
      const digest = await writer.finish();
      return { digest, size, head: Buffer.concat(headChunks), tempPath };
    } catch (error) {
      await writer.abort();
      await unlink(tempPath).catch(() => {});
      throw translateFsError(error);
    }
  }

  /** Moves a received blob to its content address. Identical bytes already there are kept. */
  async commit(blob: ReceivedBlob): Promise<void> {
    const finalPath = this.pathOf(blob.digest);
    try {
      await this.failpoints.hit('dml.before_rename');
      await mkdir(path.dirname(finalPath), { recursive: true, mode: 0o700 });
      await rename(blob.tempPath, finalPath);
      const dir = await open(path.dirname(finalPath), 'r');
      try {
        await dir.sync();
      } finally {
        await dir.close();
      }
    } catch (error) {
      await unlink(blob.tempPath).catch(() => {});
      throw translateFsError(error);
    }
  }

  async discard(blob: ReceivedBlob): Promise<void> {
    await unlink(blob.tempPath).catch(() => {});
  }

  /** Size on disk, or null when the blob is missing. */
  async size(digest: string): Promise<number | null> {
    try {
      return (await stat(this.pathOf(digest))).size;
    } catch {
      return null;
    }
  }

  open(digest: string, range?: { start: number; end: number }): ReadStream {
    return createReadStream(this.pathOf(digest), {
      highWaterMark: WRITE_BYTES,
      ...(range ? { start: range.start, end: range.end } : {}),
    });
  }

  /** Re-reads the whole blob and returns its SHA-256, or null when it is missing. */
  async hash(digest: string): Promise<string | null> {
    const hash = createHash('sha256');
    try {
      for await (const chunk of createReadStream(this.pathOf(digest), { highWaterMark: WRITE_BYTES }))
        hash.update(chunk as Buffer);
    } catch (error) {
      if ((error as { code?: string }).code === 'ENOENT') return null;
      throw error;
    }
    return hash.digest('hex');
  }

  async remove(digest: string): Promise<void> {
    await rm(this.pathOf(digest), { force: true });
  }

  /** Every digest stored, for garbage collection of blobs no artifact names. */
  async *digests(): AsyncGenerator<{ digest: string; mtimeMs: number }> {
    const base = path.join(this.root, 'sha256');
    for (const prefix of await readdir(base).catch(() => [] as string[])) {
      for (const name of await readdir(path.join(base, prefix)).catch(() => [] as string[])) {
        const info = await stat(path.join(base, prefix, name)).catch(() => null);
        if (info?.isFile()) yield { digest: name, mtimeMs: info.mtimeMs };
      }
    }
  }
}

/** Most bytes handed to the worker and not yet written, before receiving waits for it. */
const MAX_IN_FLIGHT = 8 * WRITE_BYTES;

/**
 * Hashes and writes a blob on a worker thread (hash-write-worker.mjs): on two cores the main
 * thread receives the next bytes while the worker hashes and writes the last ones.
 */
class HashWriter {
  private readonly worker: Worker;
  private inFlight = 0;
  private failure: Error | null = null;
  private wake: (() => void) | null = null;
  private readonly finished: Promise<string>;

  constructor(tempPath: string) {
    this.worker = new Worker(new URL('./hash-write-worker.mjs', import.meta.url), {
      workerData: { path: tempPath },
    });
    this.finished = new Promise<string>((resolve, reject) => {
      this.worker.on(
        'message',
        (message: { acked?: number; done?: string; error?: { code: string | null; message: string } }) => {
          if (message.acked !== undefined) this.inFlight -= message.acked;
          if (message.done !== undefined) resolve(message.done);
          if (message.error) {
            this.failure = Object.assign(new Error(message.error.message), {
              code: message.error.code ?? undefined,
            });
            reject(this.failure);
          }
          this.wake?.();
        },
      );
      this.worker.on('error', (error) => {
        this.failure = error;
        reject(error);
        this.wake?.();
      });
      this.worker.on('exit', () => {
        this.failure ??= new Error('the blob writer stopped');
        reject(this.failure);
        this.wake?.();
      });
    });
    this.finished.catch(() => {});
  }

  /** Hands `chunk` (whose memory moves to the worker) over, waiting while too much is in flight. */
  async write(chunk: Buffer): Promise<void> {
    if (this.failure) throw this.failure;
    const view = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.length);
    this.inFlight += chunk.length;
    this.worker.postMessage({ chunk: view }, [chunk.buffer as ArrayBuffer]);
    while (this.inFlight > MAX_IN_FLIGHT && !this.failure) {
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
    if (this.failure) throw this.failure;
  }

  /** Fsyncs and closes the file; resolves to the hex SHA-256 of everything written. */
  async finish(): Promise<string> {
    this.worker.postMessage({ end: true });
    try {
      return await this.finished;
    } finally {
      await this.worker.terminate();
    }
  }

  async abort(): Promise<void> {
    await this.worker.terminate();
  }
}

function translateFsError(error: unknown): unknown {
  const code = (error as { code?: string }).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new GantryError(
      'DML_NO_SPACE',
      'The media library’s disk is full; the upload was discarded. Free space or prune old artifacts (`gantry artifact prune`).',
    );
  }
  if (code === 'EIO')
    return new GantryError(
      'UNAVAILABLE',
      'The media library’s disk reported an I/O error; the upload was discarded.',
      null,
      30,
    );
  return error;
}
