/**
 * Artifact bytes on disk, addressed by their SHA-256: `<root>/sha256/ab/<digest>`. A blob is
 * received into `<root>/tmp` while it is hashed and counted, fsynced, and only then renamed into
 * place (and the directory fsynced), so a path under `sha256/` always holds complete bytes.
 * Nothing is held whole in memory.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, type ReadStream } from 'node:fs';
import { mkdir, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { GantryError } from '../../core/errors.ts';
import { type Failpoints, NO_FAILPOINTS } from '../../support/failpoints.ts';

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
    const hash = createHash('sha256');
    let size = 0;
    const headChunks: Buffer[] = [];
    let headLength = 0;
    // Read without letting an early stop destroy the request: an oversized upload is answered
    // with 413 (and the connection closed) instead of a reset the client cannot read.
    async function* metered(): AsyncGenerator<Buffer> {
      // Socket reads arrive in small pieces; the disk is far faster written in large ones.
      let pending: Buffer[] = [];
      let pendingBytes = 0;
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
          headChunks.push(chunk.subarray(0, HEAD_BYTES - headLength));
          headLength += Math.min(chunk.length, HEAD_BYTES - headLength);
        }
        hash.update(chunk);
        pending.push(chunk);
        pendingBytes += chunk.length;
        if (pendingBytes >= WRITE_BYTES) {
          yield Buffer.concat(pending, pendingBytes);
          pending = [];
          pendingBytes = 0;
        }
      }
      if (pendingBytes > 0) yield Buffer.concat(pending, pendingBytes);
    }
    try {
      await pipeline(
        metered(),
        createWriteStream(tempPath, { flags: 'wx', mode: 0o600, highWaterMark: WRITE_BYTES }),
      );
      await this.failpoints.hit('dml.after_blob_write');
      // fsync applies to the file, whichever descriptor asks for it.
      const file = await open(tempPath, 'r');
      try {
        await file.sync();
      } finally {
        await file.close();
      }
    } catch (error) {
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
