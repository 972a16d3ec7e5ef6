/**
 * The media library with real server processes: a crash in the middle of an upload (F10), a full
 * disk (F17), an upload cut off half-way, and the CLI's push → sign → pull → verify journey.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { makeTarGz } from './helpers/archives.ts';
import { gantryJson, runGantry, type ServerProcess, startServer } from './helpers/processes.ts';
import { canMountTmpfs, mountTmpfs, unmount } from './helpers/tmpfs.ts';

const TOKEN = `gnt_dml_${'d'.repeat(40)}`;

async function upload(url: string, bytes: Buffer, query: string) {
  const res = await fetch(`${url}/api/v1/artifacts?${query}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/octet-stream' },
    body: bytes,
  });
  const body = (await res.json().catch(() => null)) as { error?: { code: string } } | null;
  return { status: res.status, body };
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

describe('media library under crashes, full disks and cut-off uploads', () => {
  let dir: string;
  let server: ServerProcess | undefined;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-dmlp-'));
  });
  afterEach(async () => {
    await server?.stop('SIGKILL');
    server = undefined;
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  for (const failpoint of ['dml.after_blob_write', 'dml.before_db_commit']) {
    it(`F10: a server killed at ${failpoint} leaves no artifact, cleans up at start, and takes the same upload again`, async () => {
      const data = path.join(dir, failpoint);
      const env = { GANTRY_BOOTSTRAP_ADMIN_TOKEN: TOKEN };
      server = await startServer(['--data-dir', data], { ...env, FAILPOINTS: `${failpoint}=kill` });
      const bytes = Buffer.from(`firmware for ${failpoint}`);
      const crashed = await upload(server.url, bytes, 'component=fw&version=1.0.0&kind=file').catch(
        (e: Error) => e,
      );
      expect(crashed).toBeInstanceOf(Error);
      expect(await server.stop('SIGKILL')).toBeNull();

      server = await startServer(['--data-dir', data], env);
      expect(listDir(path.join(data, 'blobs', 'tmp'))).toEqual([]);
      const list = await gantryJson(['artifact', 'list'], { GANTRY_URL: server.url, GANTRY_TOKEN: TOKEN });
      expect(list.artifacts).toEqual([]);
      const again = await upload(server.url, bytes, 'component=fw&version=1.0.0&kind=file');
      expect(again.status).toBe(201);
      const verify = await gantryJson(['dml', 'verify'], { GANTRY_URL: server.url, GANTRY_TOKEN: TOKEN });
      expect(verify).toMatchObject({ checked: 1, failed: 0 });
    });
  }

  it('an upload cut off half-way leaves no row and no file', async () => {
    const data = path.join(dir, 'cutoff');
    server = await startServer(['--data-dir', data], { GANTRY_BOOTSTRAP_ADMIN_TOKEN: TOKEN });
    const { port } = new URL(server.url);
    await new Promise<void>((resolve, reject) => {
      const socket = net.connect(Number(port), '127.0.0.1', () => {
        socket.write(
          `POST /api/v1/artifacts?component=half&version=1&kind=file HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\n` +
            'Content-Type: application/octet-stream\r\nContent-Length: 2000000\r\n\r\n',
        );
        socket.write(Buffer.alloc(1_000_000, 1), () => setTimeout(() => socket.destroy(), 200));
      });
      socket.on('close', () => resolve());
      socket.on('error', reject);
    });
    await new Promise((r) => setTimeout(r, 300));
    expect(listDir(path.join(data, 'blobs', 'tmp'))).toEqual([]);
    expect(listDir(path.join(data, 'blobs', 'sha256'))).toEqual([]);
    const list = await gantryJson(['artifact', 'list'], { GANTRY_URL: server.url, GANTRY_TOKEN: TOKEN });
    expect(list.artifacts).toEqual([]);
    const audit = await gantryJson(['audit', 'list', '--action', 'artifact.upload_failed'], {
      GANTRY_URL: server.url,
      GANTRY_TOKEN: TOKEN,
    });
    expect(audit.entries[0].details.reason).toBe('aborted');
  });

  it.skipIf(!canMountTmpfs)(
    'F17: a full media library disk gives 507 DML_NO_SPACE, removes the partial file, and nothing else breaks',
    async () => {
      const data = path.join(dir, 'full');
      const blobs = path.join(data, 'blobs');
      mkdirSync(blobs, { recursive: true });
      mountTmpfs(blobs, '8m');
      try {
        server = await startServer(['--data-dir', data], { GANTRY_BOOTSTRAP_ADMIN_TOKEN: TOKEN });
        const full = await upload(
          server.url,
          Buffer.alloc(12 * 1024 * 1024, 3),
          'component=big&version=1&kind=file',
        );
        expect(full.status).toBe(507);
        expect(full.body?.error?.code).toBe('DML_NO_SPACE');
        expect(listDir(path.join(blobs, 'tmp'))).toEqual([]);
        const env = { GANTRY_URL: server.url, GANTRY_TOKEN: TOKEN };
        expect((await gantryJson(['artifact', 'list'], env)).artifacts).toEqual([]);
        const small = await upload(
          server.url,
          Buffer.from('small config'),
          'component=conf&version=1&kind=file',
        );
        expect(small.status).toBe(201);
        const audit = await gantryJson(['audit', 'list', '--action', 'artifact.upload_failed'], env);
        expect(audit.entries[0].details).toMatchObject({ reason: 'dml_no_space', code: 'DML_NO_SPACE' });
      } finally {
        await server?.stop('SIGKILL');
        server = undefined;
        unmount(blobs);
      }
    },
  );
});

describe('the artifact CLI journey', () => {
  let dir: string;
  let server: ServerProcess;
  let env: Record<string, string>;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-dmlcli-'));
    server = await startServer(['--data-dir', path.join(dir, 'data')], {
      GANTRY_BOOTSTRAP_ADMIN_TOKEN: TOKEN,
    });
    env = { GANTRY_URL: server.url, GANTRY_TOKEN: TOKEN };
  });
  afterAll(async () => {
    await server?.stop('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('generates and trusts a key, pushes and signs a package, pulls it back verified', async () => {
    const key = await gantryJson(['keys', 'generate', '--out', path.join(dir, 'ci')], env);
    expect(readFileSync(path.join(dir, 'ci.key'), 'utf8')).toContain('PRIVATE KEY');
    await gantryJson(['keys', 'add', 'ci signing', '--public-key', path.join(dir, 'ci.pub.pem')], env);
    const tgz = makeTarGz({ 'index.html': '<h1>shop</h1>' });
    writeFileSync(path.join(dir, 'web-2.4.0.tar.gz'), tgz);
    const pushed = await gantryJson(
      [
        'artifact',
        'push',
        path.join(dir, 'web-2.4.0.tar.gz'),
        '--component',
        'web',
        '--version',
        '2.4.0',
        '--sign',
        path.join(dir, 'ci.key'),
        '--revision',
        'abc123',
      ],
      env,
    );
    expect(pushed).toMatchObject({ kind: 'package', size: tgz.length, provenance: { revision: 'abc123' } });
    expect(pushed.signatures).toEqual([expect.objectContaining({ keyId: key.keyId, trusted: true })]);
    const out = path.join(dir, 'pulled.tar.gz');
    await gantryJson(['artifact', 'pull', 'web@2.4.0', '-o', out], env);
    expect(readFileSync(out).equals(tgz)).toBe(true);
    const shown = await runGantry(['artifact', 'show', 'web@2.4.0'], { env });
    expect(shown.stdout).toMatch(/signatures\s+ci signing: trusted/);
    const other = await runGantry(
      ['artifact', 'push', path.join(dir, 'ci.pub.pem'), '--component', 'web', '--version', '2.4.0'],
      { env },
    );
    expect(other.code).toBe(3);
    expect(other.stderr).toContain('IMMUTABLE_VERSION');
  });

  it('imports hardware from CSV and moves an item, with the history shown', async () => {
    const csv = path.join(dir, 'spares.csv');
    writeFileSync(
      csv,
      'asset_tag,model,vendor,serial,firmware_version,location\nHW-1,SSD-4T,Acme,S1,1.0,store-1\nHW-2,SSD-4T,Acme,S2,1.0,store-1\n',
    );
    expect((await gantryJson(['hardware', 'import', csv], env)).imported).toBe(2);
    await gantryJson(
      ['hardware', 'move', 'HW-1', '--to', 'deployed', '--target', 'storage-07', '--change', 'CHG-1'],
      env,
    );
    const shown = await runGantry(['hardware', 'show', 'HW-1'], { env });
    expect(shown.stdout).toMatch(/state\s+deployed/);
    expect(shown.stdout).toContain('CHG-1');
    const bad = path.join(dir, 'bad.csv');
    writeFileSync(
      bad,
      'asset_tag,model,vendor,serial,firmware_version,location\nHW-3,SSD,Acme,S3,1.0,store\nHW-1,SSD,Acme,S4,1.0,store\n',
    );
    const refused = await runGantry(['hardware', 'import', bad], { env });
    expect(refused.code).toBe(3);
    expect(refused.stderr).toContain("asset tag 'HW-1' is already in the store");
  });
});
