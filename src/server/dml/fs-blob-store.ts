/**
 * Artifact bytes on disk, addressed by their SHA-256: `<root>/sha256/ab/<digest>`. A blob is
 * received into `<root>/tmp` while it is hashed and counted, fsynced, and only then renamed into
 * place (and the directory fsynced), so a path under `sha256/` always holds complete bytes.
 * Nothing is held whole in memory.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, type ReadStream } from 'node:fs';
import { type FileHandle, mkdir, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { GantryError } from '../../core/errors.ts';
import { type Failpoints, NO_FAILPOINTS } from '../../support/failpoints.ts';
import { type FileDigest, HashPool, type StreamHandle, type StreamHandlers } from './hash-pool.ts';

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
/** An upload's written bytes are flushed to the disk in the background every this many. */
const FLUSH_BYTES = 32 * 1024 * 1024;

export class FsBlobStore {
  private readonly tmpDir: string;
  private readonly hashes = new HashPool();

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
    const hash = createHash('sha256');
    let size = 0;
    const headChunks: Buffer[] = [];
    let headLength = 0;
    // Read without letting an early stop destroy the request: an oversized upload is answered
    // with 413 (and the connection closed) instead of a reset the client cannot read.
    // Socket reads arrive in small pieces; the disk is far faster written in large ones. They are
    // gathered in one buffer that is reused for the whole upload: a new large buffer per write
    // would cost a fresh mapping and its page faults every time.
    const gather = Buffer.allocUnsafeSlow(WRITE_BYTES);
    async function* metered(): AsyncGenerator<Buffer> {
      let filled = 0;
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
        hash.update(chunk);
        for (let offset = 0; offset < chunk.length; ) {
          const copied = chunk.copy(gather, filled, offset);
          filled += copied;
          offset += copied;
          if (filled === gather.length) {
            // The consumer writes the piece before asking for the next, so the buffer is free again.
            yield gather;
            filled = 0;
          }
        }
      }
      if (filled > 0) yield gather.subarray(0, filled);
    }
    let file: FileHandle | undefined;
    try {
      file = await open(tempPath, 'wx', 0o600);
      // The page cache would otherwise hold the whole upload until the final fsync and only then
      // write it out; a flush started every FLUSH_BYTES keeps the disk writing while bytes arrive.
      let flushing: Promise<void> | null = null;
      let flushError: unknown = null;
      let unflushed = 0;
      for await (const piece of metered()) {
        for (let offset = 0; offset < piece.length; ) {
          const { bytesWritten } = await file.write(piece, offset, piece.length - offset);
          offset += bytesWritten;
        }
        if (flushError !== null) throw flushError;
        unflushed += piece.length;
        if (unflushed >= FLUSH_BYTES && flushing === null) {
          unflushed = 0;
          flushing = file.datasync().then(
            () => {
              flushing = null;
            },
            (error: unknown) => {
              flushError = error;
              flushing = null;
            },
          );
        }
      }
      await flushing;
      if (flushError !== null) throw flushError;
      await this.failpoints.hit('dml.after_blob_write');
      await file.sync();
      await file.close();
      file = undefined;
    } catch (error) {
      await file?.close().catch(() => {});
      await unlink(tempPath).catch(() => {});
      throw translateFsError(error);
    }
    return { digest: hash.digest('hex'), size, head: Buffer.concat(headChunks), tempPath };
  }

  /** Moves a received blob to its content address. Identical bytes already there are kept. */
  async commit(blob: ReceivedBlob): Promise<void> {
    const finalPath = this.pathOf(blob.digest);
    try {
      await this.failpoints.hit('dml.before_rename');
      const created = await mkdir(path.dirname(finalPath), { recursive: true, mode: 0o700 });
      await rename(blob.tempPath, finalPath);
      await fsyncDir(path.dirname(finalPath));
      // A shard folder made just now must itself survive a power loss.
      if (created !== undefined) await fsyncDir(path.dirname(path.dirname(finalPath)));
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

  /**
   * Reads the whole blob on a worker thread that hashes each piece before handing it over (see
   * `HashPool.stream`): what the handlers are given is exactly what was hashed.
   */
  stream(digest: string, pieces: number, handlers: StreamHandlers): StreamHandle {
    return this.hashes.stream(this.pathOf(digest), pieces, handlers);
  }

  /**
   * Re-reads the whole blob on a worker thread and returns its SHA-256 and length, or null when
   * it is missing. The event loop goes on serving meanwhile.
   */
  async hash(digest: string): Promise<FileDigest | null> {
    try {
      return await this.hashes.hashFile(this.pathOf(digest));
    } catch (error) {
      if ((error as { code?: string }).code === 'ENOENT') return null;
      throw error;
    }
  }

  /** Stops the hashing workers. */
  async close(): Promise<void> {
    await this.hashes.close();
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

async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
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
