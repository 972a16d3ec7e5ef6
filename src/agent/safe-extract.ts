/**
 * Unpacking a package on a target, safely (the test plan's extraction profile). The archive has
 * already been checked against its digest. Every entry is inspected first and one bad entry
 * refuses the whole archive, before anything is written: only regular files and directories;
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

async function inspect(archive: string, limits: ExtractLimits): Promise<void> {
  let entries = 0;
  let total = 0;
  let problem: UnsafeArchiveError | null = null;
  const refuse = (entry: string | null, reason: string) => {
    problem ??= new UnsafeArchiveError(entry, reason);
  };
  try {
    await tar.t({
      file: archive,
      strict: true,
      maxDecompressionRatio: limits.maxDecompressionRatio,
      onwarn: (_code: string, message: string) => refuse(null, message),
      onReadEntry: (entry) => {
        entries += 1;
        total += entry.size ?? 0;
        const name = entry.path;
        if (!REGULAR.has(entry.type) && entry.type !== 'Directory')
          refuse(name, `is a ${entry.type}; only files and directories are allowed`);
        const bad = pathProblem(name, limits.maxDepth);
        if (bad) refuse(name, bad);
        if ((entry.size ?? 0) > limits.maxEntryBytes)
          refuse(name, `is larger than ${limits.maxEntryBytes} bytes`);
        if (entries > limits.maxEntries) refuse(null, `has more than ${limits.maxEntries} entries`);
        if (total > limits.maxTotalBytes) refuse(null, `unpacks to more than ${limits.maxTotalBytes} bytes`);
      },
    });
  } catch (error) {
    refuse(null, `cannot be read as a tar archive (${(error as Error).message})`);
  }
  if (problem) throw problem;
}

/** Unpacks `archive` into a new directory inside `stagingParent` and returns that directory. */
export async function extractSafely(
  archive: string,
  stagingParent: string,
  limits: ExtractLimits = DEFAULT_LIMITS,
): Promise<string> {
  await inspect(archive, limits);
  const staging = await mkdtemp(path.join(stagingParent, '.staging-'));
  await chmod(staging, 0o700);
  try {
    const owner =
      typeof process.getuid === 'function' && typeof process.getgid === 'function'
        ? { uid: process.getuid(), gid: process.getgid() }
        : {};
    await tar.x({
      file: archive,
      cwd: staging,
      strict: true,
      preservePaths: false,
      preserveOwner: false,
      ...owner,
      maxDepth: limits.maxDepth,
      maxDecompressionRatio: limits.maxDecompressionRatio,
      // Inspection already refused anything else; this is the second lock on the same door.
      filter: (_path, entry) => 'type' in entry && (REGULAR.has(entry.type) || entry.type === 'Directory'),
    });
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
