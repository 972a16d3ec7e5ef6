import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HashPool } from './hash-pool.ts';

describe('HashPool', () => {
  let dir: string;
  let pool: HashPool;
  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-hash-pool-'));
    pool = new HashPool(2);
  });
  afterEach(async () => {
    await pool.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('hashes files on worker threads, more at once than it has workers, each to its own digest', async () => {
    // Sizes around the worker's 1 MiB read buffer, and an empty file.
    const sizes = [0, 1, 1024 * 1024 - 1, 1024 * 1024, 1024 * 1024 + 1, 3 * 1024 * 1024 + 7];
    const files = sizes.map((size, i) => {
      const bytes = randomBytes(size);
      const file = path.join(dir, `f${i}`);
      writeFileSync(file, bytes);
      return { file, size, digest: createHash('sha256').update(bytes).digest('hex') };
    });
    const results = await Promise.all(files.map((f) => pool.hashFile(f.file)));
    expect(results).toEqual(files.map((f) => ({ digest: f.digest, size: f.size })));
  });

  it('rejects with the file system code for a missing file, and goes on working', async () => {
    await expect(pool.hashFile(path.join(dir, 'missing'))).rejects.toMatchObject({ code: 'ENOENT' });
    writeFileSync(path.join(dir, 'present'), 'abc');
    await expect(pool.hashFile(path.join(dir, 'present'))).resolves.toEqual({
      digest: createHash('sha256').update('abc').digest('hex'),
      size: 3,
    });
  });

  it('streams a file in pieces it hashed, reading ahead only into slots given back', async () => {
    const bytes = randomBytes(5 * 1024 * 1024 + 7);
    const file = path.join(dir, 'big');
    writeFileSync(file, bytes);
    const pieces: Buffer[] = [];
    const result = await new Promise<{ digest: string; size: number }>((resolve, reject) => {
      const handle = pool.stream(file, 2, {
        piece: (piece, slot) => {
          // Copied out, then the slot given back a little later.
          pieces.push(Buffer.from(piece));
          setTimeout(() => handle.free(slot), 5);
        },
        end: resolve,
        error: reject,
      });
    });
    expect(Buffer.concat(pieces).equals(bytes)).toBe(true);
    expect(pieces).toHaveLength(6);
    expect(result).toEqual({ digest: createHash('sha256').update(bytes).digest('hex'), size: bytes.length });
  });

  it('a stream whose slots are not given back stops when its ring is full; a cancelled one tells nothing more', async () => {
    const file = path.join(dir, 'big');
    writeFileSync(file, randomBytes(4 * 1024 * 1024));
    const slots: number[] = [];
    let ended = false;
    const handle = pool.stream(file, 2, {
      piece: (_piece, slot) => slots.push(slot),
      end: () => {
        ended = true;
      },
      error: () => {
        ended = true;
      },
    });
    // Both slots fill (a busy machine may take a while); then nothing more comes while none is free.
    for (let waited = 0; slots.length < 2 && waited < 10_000; waited += 20)
      await new Promise((resolve) => setTimeout(resolve, 20));
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(slots).toEqual([0, 1]);
    handle.cancel();
    handle.free(0);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(slots).toEqual([0, 1]);
    expect(ended).toBe(false);
    // The worker is still there for the next job.
    writeFileSync(path.join(dir, 'small'), 'abc');
    expect((await pool.hashFile(path.join(dir, 'small'))).size).toBe(3);
  });

  it('refuses work once closed', async () => {
    await pool.close();
    await expect(pool.hashFile(path.join(dir, 'any'))).rejects.toThrow(/closed/);
  });
});
