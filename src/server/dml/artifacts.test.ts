/**
 * The media library through the real HTTP stack on every database: uploads, downloads, immutable
 * versions, integrity, signatures, retention (rows B05, B06, B07, B09, B10 of the test plan).
 */
import { createHash, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ELF_BYTES, makeTarGz, ZIP_BYTES } from '../../../test/helpers/archives.ts';
import { ADMIN_TOKEN, type CallResult, startTestApp, type TestApp } from '../../../test/helpers/test-app.ts';
import { testDatabases } from '../../../test/helpers/test-databases.ts';
import { signedStatement } from '../../core/artifacts.ts';
import { keyIdOf } from '../../protocol/key-id.ts';

const LIMIT = 1024 * 1024;
const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/**
 * A GET over a real socket: the answer's status, headers and whole body, or the error the client
 * saw (a body cut off). A slow reader waits before reading and after every MiB, so the server's
 * writes back up and wait for the socket.
 */
function httpGet(
  base: string,
  url: string,
  token: string,
  slow = false,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: Buffer } | Error> {
  return new Promise((resolve) => {
    const req = http.get(new URL(url, base), { headers: { authorization: `Bearer ${token}` } }, (res) => {
      const pieces: Buffer[] = [];
      let sinceWait = 0;
      const wait = (ms: number) => {
        res.pause();
        setTimeout(() => res.resume(), ms);
      };
      if (slow) wait(300);
      res.on('data', (piece: Buffer) => {
        pieces.push(piece);
        sinceWait += piece.length;
        if (slow && sinceWait >= 1024 * 1024) {
          sinceWait = 0;
          wait(20);
        }
      });
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(pieces) }),
      );
      res.on('error', resolve);
    });
    req.on('error', resolve);
  });
}

for (const kind of testDatabases()) {
  describe(`media library on ${kind.name}`, () => {
    let t: TestApp;
    beforeEach(async () => {
      t = await startTestApp(kind, { dmlMaxBytes: LIMIT });
    });
    afterEach(async () => t.close());

    const blobDir = () => path.join(t.dataDir, 'blobs');
    const storedFiles = () => {
      const base = path.join(blobDir(), 'sha256');
      return readdirSync(base).flatMap((p) => readdirSync(path.join(base, p)));
    };
    const tmpFiles = () => readdirSync(path.join(blobDir(), 'tmp'));

    async function upload(bytes: Buffer, query: string, token = ADMIN_TOKEN) {
      return t.call('POST', `/api/v1/artifacts?${query}`, {
        token,
        rawBody: bytes,
        headers: { 'content-type': 'application/octet-stream' },
      });
    }

    /** Waits until the artifact is quarantined (written as a transfer stops), not for a fixed time. */
    async function quarantinedState(app: TestApp, id: string): Promise<CallResult> {
      let after = await app.call('GET', `/api/v1/artifacts/${id}`, { token: ADMIN_TOKEN });
      for (let i = 0; i < 100 && after.body.state !== 'quarantined'; i++) {
        await new Promise((r) => setTimeout(r, 20));
        after = await app.call('GET', `/api/v1/artifacts/${id}`, { token: ADMIN_TOKEN });
      }
      return after;
    }

    /**
     * An app that takes artifacts of up to 32 MiB, with `bytes` uploaded as a file and listening on
     * a real socket; closed after `use`.
     */
    async function withLargeArtifact(
      bytes: Buffer,
      version: string,
      use: (big: TestApp, up: CallResult, base: string) => Promise<void>,
    ): Promise<void> {
      const big = await startTestApp(kind, { dmlMaxBytes: 32 * 1024 * 1024 });
      try {
        const up = await big.call('POST', `/api/v1/artifacts?component=disk&version=${version}&kind=file`, {
          token: ADMIN_TOKEN,
          rawBody: bytes,
          headers: { 'content-type': 'application/octet-stream' },
        });
        expect(up.status).toBe(201);
        await use(big, up, await big.app.listen({ port: 0, host: '127.0.0.1' }));
      } finally {
        await big.close();
      }
    }

    it('stores a package and serves it back byte for byte, with the digest as ETag', async () => {
      const tgz = makeTarGz({ 'gantry.yaml': 'start: ./run\n', run: 'echo hi\n' });
      const res = await upload(
        tgz,
        `component=web&version=2.4.0&filename=web-2.4.0.tar.gz&digest=${sha(tgz)}&builder=ci-42&revision=abc123`,
      );
      expect(res.status).toBe(201);
      expect(res.body).toMatchObject({
        component: 'web',
        version: '2.4.0',
        kind: 'package',
        digest: sha(tgz),
        size: tgz.length,
        state: 'available',
      });
      expect(res.body.provenance).toEqual({
        builder: 'ci-42',
        sourceRepo: null,
        revision: 'abc123',
        builtAt: null,
      });
      const down = await t.app.inject({
        method: 'GET',
        url: `/api/v1/artifacts/${res.body.id}/content`,
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      });
      expect(down.statusCode).toBe(200);
      expect(down.rawPayload.equals(tgz)).toBe(true);
      expect(down.headers.etag).toBe(`"${sha(tgz)}"`);
      const byDigest = await t.app.inject({
        method: 'GET',
        url: `/api/v1/blobs/${sha(tgz)}`,
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      });
      expect(byDigest.rawPayload.equals(tgz)).toBe(true);
      const cached = await t.call('GET', `/api/v1/artifacts/${res.body.id}/content`, {
        token: ADMIN_TOKEN,
        headers: { 'if-none-match': `"${sha(tgz)}"` },
      });
      expect(cached.status).toBe(304);
      const audit = await t.call('GET', '/api/v1/audit?action=artifact.uploaded', { token: ADMIN_TOKEN });
      expect(audit.body.entries[0].details).toMatchObject({
        component: 'web',
        version: '2.4.0',
        digest: sha(tgz),
      });
    });

    it('serves byte ranges and refuses a range outside the artifact with 416', async () => {
      const bytes = Buffer.from('0123456789abcdef');
      const res = await upload(bytes, 'component=conf&version=1&kind=file');
      const part = await t.app.inject({
        method: 'GET',
        url: `/api/v1/artifacts/${res.body.id}/content`,
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, range: 'bytes=4-9' },
      });
      expect(part.statusCode).toBe(206);
      expect(part.body).toBe('456789');
      expect(part.headers['content-range']).toBe('bytes 4-9/16');
      const outside = await t.call('GET', `/api/v1/artifacts/${res.body.id}/content`, {
        token: ADMIN_TOKEN,
        headers: { range: 'bytes=100-200' },
      });
      expect(outside.status).toBe(416);
      expect(outside.body.error.code).toBe('RANGE_NOT_SATISFIABLE');
    });

    it('B10: identical bytes again answer with the existing artifact; different bytes for that version get 409', async () => {
      const first = await upload(Buffer.from('config v1'), 'component=conf&version=1.0.0&kind=file');
      const again = await upload(Buffer.from('config v1'), 'component=conf&version=1.0.0&kind=file');
      expect(again.status).toBe(200);
      expect(again.body.id).toBe(first.body.id);
      const other = await upload(Buffer.from('config v2'), 'component=conf&version=1.0.0&kind=file');
      expect(other.status).toBe(409);
      expect(other.body.error.code).toBe('IMMUTABLE_VERSION');
      const declared = await upload(
        Buffer.from('config v3'),
        `component=conf&version=1.0.0&kind=file&digest=${sha(Buffer.from('config v3'))}`,
      );
      expect(declared.body.error.code).toBe('IMMUTABLE_VERSION');
      expect(storedFiles()).toHaveLength(1);
      expect(tmpFiles()).toEqual([]);
    });

    it('B09: bytes that do not match the declared digest are refused, leaving no row and no file', async () => {
      const res = await upload(
        Buffer.from('tampered in transit'),
        `component=conf&version=2&kind=file&digest=${sha(Buffer.from('original'))}`,
      );
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('DIGEST_MISMATCH');
      expect((await t.call('GET', '/api/v1/artifacts', { token: ADMIN_TOKEN })).body.artifacts).toEqual([]);
      expect(storedFiles()).toEqual([]);
      expect(tmpFiles()).toEqual([]);
      const audit = await t.call('GET', '/api/v1/audit?action=artifact.upload_failed', {
        token: ADMIN_TOKEN,
      });
      expect(audit.body.entries[0].details.reason).toBe('digest_mismatch');
    });

    it('B06: a package that is really a zip or an executable is refused, as is a name that lies about the content', async () => {
      for (const [bytes, query] of [
        [ZIP_BYTES, 'component=web&version=1&kind=package'],
        [ELF_BYTES, 'component=web&version=2&filename=web.tar.gz'],
        [ZIP_BYTES, 'component=doc&version=1&kind=document&filename=manual.tar.gz'],
        [Buffer.from('plain text'), 'component=web&version=3&filename=web.tgz'],
      ] as const) {
        const res = await upload(bytes, query);
        expect(res.status, query).toBe(415);
        expect(res.body.error.code).toBe('UNSUPPORTED_ARTIFACT_TYPE');
      }
      expect(storedFiles()).toEqual([]);
    });

    it('refuses names and versions with path characters', async () => {
      for (const query of [
        'component=../etc&version=1',
        'component=web&version=1/../../x',
        'component=web/x&version=1',
        'component=.hidden&version=1',
        'component=web&version=..',
      ]) {
        const res = await upload(Buffer.from('x'), `${query}&kind=file`);
        expect(res.status, query).toBe(400);
        expect(res.body.error.code).toBe('VALIDATION');
      }
    });

    it('B05: an upload over the limit is refused early by its length, and cut off when it has none', async () => {
      const big = Buffer.alloc(LIMIT + 1, 7);
      const declared = await upload(big, 'component=big&version=1&kind=file');
      expect(declared.status).toBe(413);
      expect(declared.body.error.code).toBe('PAYLOAD_TOO_LARGE');
      const { Readable } = await import('node:stream');
      const chunked = await t.app.inject({
        method: 'POST',
        url: '/api/v1/artifacts?component=big&version=2&kind=file',
        headers: {
          authorization: `Bearer ${ADMIN_TOKEN}`,
          'content-type': 'application/octet-stream',
          'transfer-encoding': 'chunked',
        },
        payload: Readable.from(
          (function* () {
            for (let i = 0; i < 40; i++) yield Buffer.alloc(64 * 1024, i);
          })(),
        ),
      });
      expect(chunked.statusCode).toBe(413);
      expect(tmpFiles()).toEqual([]);
      expect(storedFiles()).toEqual([]);
    });

    it('B05: the per-user quota refuses an upload that does not fit, by its length or while streaming', async () => {
      const quoted = await startTestApp(kind, { dmlUserQuotaBytes: 100_000 });
      try {
        const publisher = await quoted.userWithToken('release-manager');
        const send = (bytes: Buffer, query: string, token: string) =>
          quoted.call('POST', `/api/v1/artifacts?${query}`, {
            token,
            rawBody: bytes,
            headers: { 'content-type': 'application/octet-stream' },
          });
        expect(
          (await send(Buffer.alloc(60_000, 1), 'component=a&version=1&kind=file', publisher.token)).status,
        ).toBe(201);
        const over = await send(Buffer.alloc(50_000, 2), 'component=a&version=2&kind=file', publisher.token);
        expect(over.status).toBe(413);
        expect(over.body.error.message).toContain('quota is 100000 bytes and 60000 are used');
        const { Readable } = await import('node:stream');
        const chunked = await quoted.app.inject({
          method: 'POST',
          url: '/api/v1/artifacts?component=a&version=3&kind=file',
          headers: {
            authorization: `Bearer ${publisher.token}`,
            'content-type': 'application/octet-stream',
            'transfer-encoding': 'chunked',
          },
          payload: Readable.from(
            (function* () {
              for (let i = 0; i < 10; i++) yield Buffer.alloc(10_000, i);
            })(),
          ),
        });
        expect(chunked.statusCode).toBe(413);
        // Another user has a quota of their own.
        expect(
          (await send(Buffer.alloc(60_000, 3), 'component=b&version=1&kind=file', ADMIN_TOKEN)).status,
        ).toBe(201);
        expect(
          (await send(Buffer.alloc(30_000, 4), 'component=a&version=4&kind=file', publisher.token)).status,
        ).toBe(201);
      } finally {
        await quoted.close();
      }
    });

    it('B07: bytes changed on disk are never served complete; the artifact is quarantined with an exception event', async () => {
      const tgz = makeTarGz({ a: 'a'.repeat(5000) });
      const res = await upload(tgz, 'component=web&version=9.9.9');
      const file = path.join(blobDir(), 'sha256', res.body.digest.slice(7, 9), res.body.digest.slice(7));
      const tampered = Buffer.from(tgz);
      tampered[20] = (tampered[20] ?? 0) ^ 0xff;
      writeFileSync(file, tampered);
      // Over a real socket. Smaller than one piece, so nothing has gone out when the digest is
      // known: the answer is the error, as any refusal gives it.
      const base = await t.app.listen({ port: 0, host: '127.0.0.1' });
      const down = await httpGet(base, `/api/v1/artifacts/${res.body.id}/content`, ADMIN_TOKEN);
      if (down instanceof Error) throw down;
      expect(down.status).toBe(409);
      expect(down.headers['content-type']).toContain('application/json');
      expect(JSON.parse(down.body.toString()).error.code).toBe('QUARANTINED');
      const after = await quarantinedState(t, res.body.id);
      expect(after.body.state).toBe('quarantined');
      expect(after.body.quarantineReason).toContain('hash to');
      const again = await t.call('GET', `/api/v1/artifacts/${res.body.id}/content`, { token: ADMIN_TOKEN });
      expect(again.status).toBe(409);
      expect(again.body.error.code).toBe('QUARANTINED');
      const events = await t.call('GET', '/api/v1/events?severity=exception', { token: ADMIN_TOKEN });
      expect(events.body.events[0]).toMatchObject({
        kind: 'artifact.integrity',
        subject: `artifact:${res.body.id}`,
      });
      const audit = await t.call('GET', `/api/v1/audit?action=artifact.quarantined`, { token: ADMIN_TOKEN });
      expect(audit.body.entries).toHaveLength(1);
    });

    it('serves a download of many pieces byte for byte to a slow reader over a real socket, two at once', async () => {
      // Larger than the worker's ring (4 pieces of 1 MiB) and than what the sockets buffer, so
      // every ring slot is read into again while earlier writes still wait for the reader.
      const bytes = randomBytes(24 * 1024 * 1024 + 12345);
      await withLargeArtifact(bytes, '1', async (_big, up, base) => {
        const [slow, fast] = await Promise.all([
          httpGet(base, `/api/v1/artifacts/${up.body.id}/content`, ADMIN_TOKEN, true),
          httpGet(base, `/api/v1/artifacts/${up.body.id}/content`, ADMIN_TOKEN),
        ]);
        if (slow instanceof Error) throw slow;
        if (fast instanceof Error) throw fast;
        for (const down of [slow, fast]) {
          expect(down.status).toBe(200);
          expect(down.body.length).toBe(bytes.length);
          expect(sha(down.body)).toBe(up.body.digest);
        }
        expect(slow.headers).toMatchObject({
          'content-length': String(bytes.length),
          etag: `"${up.body.digest}"`,
          'cache-control': 'no-store',
          'x-content-type-options': 'nosniff',
          'content-type': 'application/octet-stream',
        });
        expect(slow.headers['x-request-id']).toBeTruthy();
      });
    });

    it('a client that goes away mid-download stops the read: the blob is closed, stays available and is served whole next time', async () => {
      const bytes = randomBytes(24 * 1024 * 1024 + 99);
      await withLargeArtifact(bytes, '3', async (big, up, base) => {
        const digest = up.body.digest as string;
        const file = path.join(big.dataDir, 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7));
        // The descriptors of this process (the server and its hashing workers) open on the blob.
        const openOnBlob = () =>
          readdirSync('/proc/self/fd').filter((fd) => {
            try {
              return readlinkSync(`/proc/self/fd/${fd}`) === file;
            } catch {
              return false; // closed while listed
            }
          }).length;
        const until = async (what: () => boolean, label: string) => {
          for (let i = 0; i < 250 && !what(); i++) await new Promise((r) => setTimeout(r, 20));
          if (!what()) throw new Error(`timed out waiting until ${label}`);
        };
        let received = 0;
        const req = http.get(
          new URL(`/api/v1/artifacts/${up.body.id}/content`, base),
          { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } },
          (res) => {
            expect(res.statusCode).toBe(200);
            res.once('data', (piece: Buffer) => {
              received += piece.length;
              // Read no more: the server's writes back up behind the socket, with the blob open.
              res.pause();
            });
          },
        );
        req.on('error', () => {});
        await until(() => received > 0, 'the first bytes came');
        await until(() => openOnBlob() > 0, 'the blob is open');
        expect(received).toBeLessThan(bytes.length);
        req.destroy();
        await until(() => openOnBlob() === 0, 'the server closed the blob');
        // Going away is not a fault of the bytes: nothing is quarantined, no event is raised.
        const after = await big.call('GET', `/api/v1/artifacts/${up.body.id}`, { token: ADMIN_TOKEN });
        expect(after.body.state).toBe('available');
        const events = await big.call('GET', '/api/v1/events?severity=exception', { token: ADMIN_TOKEN });
        expect(events.body.events).toEqual([]);
        const again = await httpGet(base, `/api/v1/artifacts/${up.body.id}/content`, ADMIN_TOKEN);
        if (again instanceof Error) throw again;
        expect(again.status).toBe(200);
        expect(sha(again.body)).toBe(digest);
        expect(openOnBlob()).toBe(0);
      });
    });

    it('B07: a blob of many pieces changed at its end is cut off after its first pieces, never served complete', async () => {
      const bytes = randomBytes(3 * 1024 * 1024 + 7);
      await withLargeArtifact(bytes, '2', async (big, up, base) => {
        const digest = up.body.digest as string;
        const file = path.join(big.dataDir, 'blobs', 'sha256', digest.slice(7, 9), digest.slice(7));
        const tampered = Buffer.from(bytes);
        tampered[tampered.length - 1] = (tampered[tampered.length - 1] ?? 0) ^ 0xff;
        writeFileSync(file, tampered);
        const down = await httpGet(base, `/api/v1/artifacts/${up.body.id}/content`, ADMIN_TOKEN);
        // The headers and the first pieces went out; the end never came.
        expect(down).toBeInstanceOf(Error);
        expect((await quarantinedState(big, up.body.id)).body.state).toBe('quarantined');
      });
    });

    it('B07: a range request checks the whole blob first, and verify finds a changed blob', async () => {
      const res = await upload(Buffer.from('firmware image v1'), 'component=fw&version=1&kind=file');
      const file = path.join(blobDir(), 'sha256', res.body.digest.slice(7, 9), res.body.digest.slice(7));
      writeFileSync(file, 'firmware image v2');
      const part = await t.call('GET', `/api/v1/artifacts/${res.body.id}/content`, {
        token: ADMIN_TOKEN,
        headers: { range: 'bytes=0-3' },
      });
      expect(part.status).toBe(409);
      const verify = await t.call('POST', `/api/v1/artifacts/${res.body.id}/verify`, { token: ADMIN_TOKEN });
      expect(verify.body).toMatchObject({ ok: false, state: 'quarantined' });
    });

    it('signatures: a trusted key’s signature counts; unknown, revoked and moved signatures are refused', async () => {
      const { privateKey, publicKey } = generateKeyPairSync('ed25519');
      const keyPem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
      const key = await t.call('POST', '/api/v1/keys', {
        token: ADMIN_TOKEN,
        body: { name: 'ci', publicKey: keyPem },
      });
      expect(key.status).toBe(201);
      expect(key.body.id).toBe(keyIdOf(publicKey));
      const a = (await upload(Buffer.from('app one'), 'component=app&version=1.0.0&kind=file')).body;
      const b = (await upload(Buffer.from('app two'), 'component=app&version=2.0.0&kind=file')).body;
      const sigFor = (x: { component: string; version: string; kind: 'file'; digest: string }) =>
        sign(null, Buffer.from(signedStatement(x)), privateKey).toString('base64');

      const moved = await t.call('POST', `/api/v1/artifacts/${b.id}/signatures`, {
        token: ADMIN_TOKEN,
        body: { keyId: key.body.id, signature: sigFor(a) },
      });
      expect(moved.status).toBe(400);
      expect(moved.body.error.code).toBe('SIGNATURE_INVALID');
      expect(moved.body.error.message).toContain('another artifact');
      const unknown = await t.call('POST', `/api/v1/artifacts/${a.id}/signatures`, {
        token: ADMIN_TOKEN,
        body: { keyId: 'ed25519:00', signature: sigFor(a) },
      });
      expect(unknown.body.error.code).toBe('SIGNATURE_INVALID');
      const good = await t.call('POST', `/api/v1/artifacts/${a.id}/signatures`, {
        token: ADMIN_TOKEN,
        body: { keyId: key.body.id, signature: sigFor(a) },
      });
      expect(good.status).toBe(201);
      expect(good.body.signatures).toEqual([
        expect.objectContaining({ keyName: 'ci', trusted: true, problem: null }),
      ]);

      await t.call('DELETE', `/api/v1/keys/${encodeURIComponent(key.body.id)}`, { token: ADMIN_TOKEN });
      const revoked = await t.call('POST', `/api/v1/artifacts/${b.id}/signatures`, {
        token: ADMIN_TOKEN,
        body: { keyId: key.body.id, signature: sigFor(b) },
      });
      expect(revoked.body.error.message).toContain('revoked');
      const shown = await t.call('GET', `/api/v1/artifacts/${a.id}`, { token: ADMIN_TOKEN });
      expect(shown.body.signatures[0]).toMatchObject({ trusted: false });
      expect(shown.body.signatures[0].problem).toContain('revoked');
    });

    it('refuses a public key that is not Ed25519', async () => {
      const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      const res = await t.call('POST', '/api/v1/keys', {
        token: ADMIN_TOKEN,
        body: { name: 'ec', publicKey: publicKey.export({ type: 'spki', format: 'pem' }).toString() },
      });
      expect(res.status).toBe(400);
      expect(res.body.error.message).toContain('Ed25519');
    });

    it('deletes an unreferenced artifact with its bytes, and keeps the newest N per component by version order', async () => {
      for (const v of ['1.9.0', '1.10.0', '1.2.0', '2.0.0-rc.1'])
        await upload(Buffer.from(`svc ${v}`), `component=svc&version=${v}&kind=file`);
      await upload(Buffer.from('other'), 'component=other&version=1&kind=file');
      const dry = await t.call('POST', '/api/v1/dml/retention', {
        token: ADMIN_TOKEN,
        body: { keep: 2, component: 'svc', dryRun: true },
      });
      expect(dry.body.removed.map((r: { version: string }) => r.version).sort()).toEqual(['1.2.0', '1.9.0']);
      expect(
        (await t.call('GET', '/api/v1/artifacts?component=svc', { token: ADMIN_TOKEN })).body.artifacts,
      ).toHaveLength(4);
      await t.call('POST', '/api/v1/dml/retention', {
        token: ADMIN_TOKEN,
        body: { keep: 2, component: 'svc' },
      });
      const left = await t.call('GET', '/api/v1/artifacts', { token: ADMIN_TOKEN });
      expect(left.body.artifacts.map((a: { version: string }) => a.version).sort()).toEqual([
        '1',
        '1.10.0',
        '2.0.0-rc.1',
      ]);
      expect(storedFiles()).toHaveLength(3);
      const audit = await t.call('GET', '/api/v1/audit?action=artifact.deleted', { token: ADMIN_TOKEN });
      expect(audit.body.entries).toHaveLength(2);
    });
  });
}
