/** The blob store and the background checks that run on it, against real files and SQLite. */
import { existsSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TestClock } from '../../../test/helpers/test-app.ts';
import { type TestDatabase, testDatabases } from '../../../test/helpers/test-databases.ts';
import type { Principal } from '../auth/principal.ts';
import { ensureFirstAdmin } from '../bootstrap.ts';
import { UserStore } from '../users/user-store.ts';
import { ArtifactService } from './artifact-service.ts';
import { FsBlobStore } from './fs-blob-store.ts';

const [sqlite] = testDatabases();

describe('blob store and background checks', () => {
  let dir: string;
  let db: TestDatabase;
  let blobs: FsBlobStore;
  let service: ArtifactService;
  let admin: Principal;
  const clock = new TestClock();

  beforeEach(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-blobs-'));
    db = await (sqlite as NonNullable<typeof sqlite>).open();
    await ensureFirstAdmin({ database: db.database, clock }, { dataDir: dir, bootstrapToken: undefined });
    const user = await new UserStore(db.database.db).findByUsername('admin');
    admin = {
      user: user as NonNullable<typeof user>,
      via: 'token',
      tokenId: null,
      session: null,
      source: null,
    };
    blobs = new FsBlobStore(path.join(dir, 'blobs'));
    await blobs.init();
    service = new ArtifactService({ database: db.database, clock, blobs, maxBytes: 1 << 20 });
  });
  afterEach(async () => {
    await blobs.close();
    await db.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it('empties tmp at start, which is where an interrupted upload leaves its bytes', async () => {
    writeFileSync(path.join(dir, 'blobs', 'tmp', 'abc.part'), 'half an upload');
    await blobs.init();
    expect(readdirSync(path.join(dir, 'blobs', 'tmp'))).toEqual([]);
  });

  it('the background scrub re-verifies the artifact checked longest ago and quarantines a changed one', async () => {
    const a = await service.upload(
      admin,
      { component: 'a', version: '1', kind: 'file' },
      Readable.from([Buffer.from('alpha')]),
      undefined,
    );
    const b = await service.upload(
      admin,
      { component: 'b', version: '1', kind: 'file' },
      Readable.from([Buffer.from('beta')]),
      undefined,
    );
    writeFileSync(blobs.pathOf(b.artifact.digest), 'BETA');
    clock.advance(60_000);
    const first = await service.scrubOne();
    clock.advance(60_000);
    const second = await service.scrubOne();
    expect([first?.id, second?.id].sort()).toEqual([a.artifact.id, b.artifact.id].sort());
    expect((await service.get(b.artifact.id)).state).toBe('quarantined');
    expect((await service.get(a.artifact.id)).state).toBe('available');
  });

  it('removes blobs no artifact names once they are old enough, and keeps the rest', async () => {
    const kept = await service.upload(
      admin,
      { component: 'k', version: '1', kind: 'file' },
      Readable.from([Buffer.from('kept')]),
      undefined,
    );
    const orphan = 'f'.repeat(64);
    const orphanPath = blobs.pathOf(orphan);
    const { mkdirSync } = await import('node:fs');
    mkdirSync(path.dirname(orphanPath), { recursive: true });
    writeFileSync(orphanPath, 'left by a crash');
    expect(await service.collectOrphanBlobs(3_600_000)).toBe(0);
    const old = new Date(Date.now() - 2 * 3_600_000);
    utimesSync(orphanPath, old, old);
    utimesSync(blobs.pathOf(kept.artifact.digest), old, old);
    expect(await service.collectOrphanBlobs(3_600_000)).toBe(1);
    expect(existsSync(orphanPath)).toBe(false);
    expect(existsSync(blobs.pathOf(kept.artifact.digest))).toBe(true);
  });
});
