/**
 * Unpacking a package on a target, safely (the test plan's extraction profile). The archive has
 * already been checked against its digest. Every entry is judged before it is written, and one
 * bad entry refuses the whole archive: only regular files and directories;
 * no absolute paths, drive letters, backslashes or `..`; bounded depth, entry count, sizes and
 * decompression ratio. Extraction then goes into a fresh 0700 directory next to the releases,
 * with ownership forced to the agent's user and set-id, sticky and world-writable bits stripped.
 * Any failure removes that directory.
 */
import { chmod, lstat, mkdtemp, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
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
  archive: string,
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
      await tar.x({
        file: archive,
        cwd: staging,
        strict: true,
        preservePaths: false,
        preserveOwner: false,
        ...owner,
        maxDepth: limits.maxDepth,
        maxDecompressionRatio: limits.maxDecompressionRatio,
        // Read in 1 MiB pieces (node-tar's default is 16 MiB: a package held whole, in memory).
        maxReadSize: 1024 * 1024,
        onwarn: (_code: string, message: string) => refuse(null, message),
        filter: (_path, entry) => ('type' in entry ? judge(entry.path, entry.type, entry.size ?? 0) : false),
      });
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
