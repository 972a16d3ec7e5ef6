/**
 * Unpacking a package on a target, safely (the test plan's extraction profile). The archive has
 * already been checked against its digest. Every entry is judged before it is written, and one
 * bad entry refuses the whole archive: only regular files and directories;
 * no absolute paths, drive letters, backslashes or `..`; bounded depth, entry count, sizes and
 * decompression ratio. Extraction then goes into a fresh 0700 directory next to the releases,
 * with ownership forced to the agent's user and set-id, sticky and world-writable bits stripped.
 * Any failure removes that directory.
 */
import { once } from 'node:events';
import { createReadStream, type Stats } from 'node:fs';
import { chmod, lstat, mkdtemp, open, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import * as tar from 'tar';

export interface ExtractLimits {
  maxEntries: number;
  maxEntryBytes: number;
  maxTotalBytes: number;
  maxDepth: number;
  maxDecompressionRatio: number;
}

export const DEFAULT_LIMITS: ExtractLimits = {
  maxEntries: 100_000,
  maxEntryBytes: 2 * 1024 ** 3,
  maxTotalBytes: 4 * 1024 ** 3,
  maxDepth: 64,
  maxDecompressionRatio: 200,
};

const REGULAR = new Set(['File', 'OldFile', 'ContiguousFile']);

export class UnsafeArchiveError extends Error {
  constructor(
    readonly entry: string | null,
    readonly reason: string,
  ) {
    super(entry === null ? `unsafe archive: ${reason}` : `unsafe archive entry '${entry}': ${reason}`);
    this.name = 'UnsafeArchiveError';
  }
}

/** Why an entry path is not acceptable, or null. */
export function pathProblem(entryPath: string, maxDepth: number): string | null {
  if (entryPath.includes('\0')) return 'contains a NUL character';
  if (entryPath.includes('\\')) return 'contains a backslash';
  if (entryPath.startsWith('/')) return 'is an absolute path';
  if (/^[A-Za-z]:/.test(entryPath)) return 'starts with a drive letter';
  const parts = entryPath.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) return 'climbs out with ..';
  if (parts.length > maxDepth) return `is nested deeper than ${maxDepth} levels`;
  if (entryPath.length > 4096) return 'is longer than 4096 characters';
  return null;
}

/**
 * Unpacks `archive` into a new directory inside `stagingParent` and returns that directory. One
 * pass: each entry is judged as it is read, before it is written; a bad one is not written, and
 * refuses the whole archive — the staging directory, which nothing else can see, is removed.
 */
export async function extractSafely(
  archive: string | Buffer[],
  stagingParent: string,
  limits: ExtractLimits = DEFAULT_LIMITS,
): Promise<string> {
  let entries = 0;
  let total = 0;
  let problem: UnsafeArchiveError | null = null;
  const refuse = (entry: string | null, reason: string) => {
    problem ??= new UnsafeArchiveError(entry, reason);
  };
  /** Whether `entry` may be written; a bad one is refused (and so is every entry after it). */
  const judge = (name: string, type: string, size: number): boolean => {
    entries += 1;
    total += size;
    if (!REGULAR.has(type) && type !== 'Directory')
      refuse(name, `is a ${type}; only files and directories are allowed`);
    const bad = pathProblem(name, limits.maxDepth);
    if (bad) refuse(name, bad);
    if (size > limits.maxEntryBytes) refuse(name, `is larger than ${limits.maxEntryBytes} bytes`);
    if (entries > limits.maxEntries) refuse(null, `has more than ${limits.maxEntries} entries`);
    if (total > limits.maxTotalBytes) refuse(null, `unpacks to more than ${limits.maxTotalBytes} bytes`);
    return problem === null;
  };
  const staging = await mkdtemp(path.join(stagingParent, '.staging-'));
  await chmod(staging, 0o700);
  try {
    const owner =
      typeof process.getuid === 'function' && typeof process.getgid === 'function'
        ? { uid: process.getuid(), gid: process.getgid() }
        : {};
    try {
      const unpack = tar.x({
        cwd: staging,
        strict: true,
        preservePaths: false,
        preserveOwner: false,
        ...owner,
        maxDepth: limits.maxDepth,
        maxDecompressionRatio: limits.maxDecompressionRatio,
        onwarn: (_code: string, message: string) => refuse(null, message),
        filter: (_path: string, entry: tar.ReadEntry | Stats) =>
          'type' in entry ? judge(entry.path, entry.type, entry.size ?? 0) : false,
      });
      await unpackFrom(archive, unpack, limits.maxDecompressionRatio);
    } catch (error) {
      refuse(null, `cannot be read as a tar archive (${(error as Error).message})`);
    }
    if (problem) throw problem;
    await sanitise(staging);
    return staging;
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    if (error instanceof UnsafeArchiveError) throw error;
    throw new UnsafeArchiveError(null, `could not be unpacked (${(error as Error).message})`);
  }
}

/**
 * Feeds an archive (a file read in 1 MiB pieces, or the pieces held in memory) to the unpacker.
 * A gzipped one is inflated here, off the main thread and into 1 MiB pieces (node-tar would
 * inflate it on the main thread into 16 KiB pieces, one file write each), with the same bound on
 * how far it may grow: no more than `maxRatio` times the compressed bytes read so far. The stages
 * are piped in flowing mode, so each piece goes on as it is (an async iterator would join pieces
 * that had gathered into a new buffer: a copy of the package).
 */
async function unpackFrom(archive: string | Buffer[], unpack: tar.Unpack, maxRatio: number): Promise<void> {
  const done = new Promise<void>((resolve, reject) => {
    unpack.on('close', resolve);
    unpack.on('error', reject);
  });
  // Awaited below; an error while a piece waits is thrown from there, not left unhandled.
  done.catch(() => {});
  const feed = new Writable({
    write(piece: Buffer, _encoding, next) {
      if (unpack.write(piece)) return next();
      // An unpacker that failed takes no more (and would never drain): its error ends this.
      Promise.race([once(unpack, 'drain'), done]).then(() => next(), next);
    },
    final(next) {
      unpack.end();
      done.then(() => next(), next);
    },
  });
  const source = () =>
    typeof archive === 'string'
      ? createReadStream(archive, { highWaterMark: PIECE })
      : Readable.from(inPieces(archive), { objectMode: false });
  if (!(await isGzip(archive))) return pipeline(source(), feed);
  let compressed = 0;
  let inflated = 0;
  // node-tar would inflate a second layer by itself, under a ratio limit of its own that
  // multiplies with this one: a package compressed twice is refused. (The first bytes are
  // gathered across pieces: a crafted stream may hand them over one at a time.)
  let head = Buffer.alloc(0);
  await pipeline(
    source(),
    new Transform({
      transform(piece: Buffer, _encoding, next) {
        compressed += piece.length;
        next(null, piece);
      },
    }),
    createGunzip({ chunkSize: PIECE }),
    new Transform({
      transform(piece: Buffer, _encoding, next) {
        if (head.length < ZSTD_MAGIC.length) {
          head = Buffer.concat([head, piece.subarray(0, ZSTD_MAGIC.length - head.length)]);
          if (startsWith(head, GZIP_MAGIC) || startsWith(head, ZSTD_MAGIC))
            return next(new Error('it is compressed twice; pack it as one .tar.gz'));
        }
        inflated += piece.length;
        if (inflated / compressed > maxRatio)
          return next(
            new Error(
              `max decompression ratio exceeded: ${(inflated / compressed).toFixed(2)} > ${maxRatio}`,
            ),
          );
        next(null, piece);
      },
    }),
    feed,
  );
}

/** Parts of any size cut and joined into pieces of 1 MiB (copied only where a piece spans parts). */
function* inPieces(parts: Buffer[]): Generator<Buffer> {
  let group: Buffer[] = [];
  let length = 0;
  const joined = () => (group.length === 1 ? (group[0] as Buffer) : Buffer.concat(group, length));
  for (const part of parts) {
    for (let at = 0; at < part.length; ) {
      const take = Math.min(PIECE - length, part.length - at);
      group.push(part.subarray(at, at + take));
      length += take;
      at += take;
      if (length === PIECE) {
        yield joined();
        group = [];
        length = 0;
      }
    }
  }
  if (length > 0) yield joined();
}

const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);
const startsWith = (piece: Buffer, magic: Buffer) =>
  piece.length >= magic.length && piece.subarray(0, magic.length).equals(magic);

async function isGzip(archive: string | Buffer[]): Promise<boolean> {
  const head = Buffer.alloc(2);
  if (typeof archive === 'string') {
    const handle = await open(archive, 'r');
    try {
      await handle.read(head, 0, 2, 0);
    } finally {
      await handle.close();
    }
  } else {
    // The first two bytes, wherever the pieces split them (not a copy of a whole piece).
    let at = 0;
    for (const piece of archive) {
      at += piece.copy(head, at, 0, Math.min(piece.length, 2 - at));
      if (at === 2) break;
    }
  }
  return head[0] === 0x1f && head[1] === 0x8b;
}

const PIECE = 1024 * 1024;

/** Checks what landed on disk and strips set-id, sticky and world-writable bits. */
async function sanitise(dir: string): Promise<void> {
  for (const name of await readdir(dir)) {
    const full = path.join(dir, name);
    const info = await lstat(full);
    if (info.isDirectory()) {
      await chmod(full, 0o755);
      await sanitise(full);
    } else if (info.isFile()) {
      await chmod(full, info.mode & 0o755);
    } else {
      throw new UnsafeArchiveError(
        path.relative(dir, full),
        'is neither a file nor a directory after unpacking',
      );
    }
  }
}
