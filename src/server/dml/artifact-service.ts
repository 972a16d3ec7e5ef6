/**
 * The definitive media library: artifacts go in once, byte for byte, and come out only while
 * their bytes still match their digest. Uploads stream to disk (never whole in memory); the row
 * and its audit entry are written only after the bytes are durable under their content address.
 */
import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import {
  type ArtifactKind,
  contentProblem,
  selectForRetention,
  signedStatement,
  sniffContent,
} from '../../core/artifacts.ts';
import { GantryError, isGantryError } from '../../core/errors.ts';
import { type Failpoints, NO_FAILPOINTS } from '../../support/failpoints.ts';
import { type AuditActor, SYSTEM_ACTOR } from '../audit/audit-log.ts';
import { actorOf, type Principal } from '../auth/principal.ts';
import { lockAuditChain } from '../db/database.ts';
import { isUniqueViolation } from '../db/db-errors.ts';
import { EventLog } from '../events/event-log.ts';
import { PublisherKeyStore, verifyEd25519 } from '../keys/publisher-keys.ts';
import { inTransaction, type TransactionDeps } from '../unit-of-work.ts';
import { type Artifact, type ArtifactFilter, ArtifactStore } from './artifact-store.ts';
import type { FsBlobStore } from './fs-blob-store.ts';
import type { FileDigest, StreamHandle } from './hash-pool.ts';

export interface UploadInput {
  component: string;
  version: string;
  kind?: ArtifactKind | undefined;
  filename?: string | undefined;
  /** Declared `sha256:<hex>`; the upload is refused when the bytes differ. */
  digest?: string | undefined;
  builder?: string | undefined;
  sourceRepo?: string | undefined;
  revision?: string | undefined;
  builtAt?: string | undefined;
}

export interface SignatureCheck {
  keyId: string;
  keyName: string | null;
  trusted: boolean;
  problem: string | null;
  addedAt: string;
  addedBy: string;
}

export interface ArtifactWithSignatures extends Artifact {
  signatures: SignatureCheck[];
}

export interface VerifyOutcome {
  id: string;
  ok: boolean;
  digest: string;
  actualDigest: string | null;
  state: string;
  message: string;
}

export interface Usage {
  releases: string[];
  changes: string[];
  deployments: string[];
  targets: string[];
}

export interface ArtifactServiceDeps extends TransactionDeps {
  blobs: FsBlobStore;
  maxBytes: number;
  /** Bytes of artifacts one user may have in the media library (0: no quota). */
  userQuotaBytes?: number | undefined;
  failpoints?: Failpoints | undefined;
}

export const withDigestPrefix = (hex: string) => `sha256:${hex}`;

export class ArtifactService {
  private readonly failpoints: Failpoints;

  constructor(private readonly deps: ArtifactServiceDeps) {
    this.failpoints = deps.failpoints ?? NO_FAILPOINTS;
  }

  private store() {
    return new ArtifactStore(this.deps.database.db);
  }

  async upload(
    by: Principal,
    input: UploadInput,
    body: Readable,
    declaredLength: number | undefined,
  ): Promise<{ artifact: ArtifactWithSignatures; created: boolean }> {
    const actor = actorOf(by);
    const subject = `artifact:${input.component}@${input.version}`;
    const fail = async (reason: string, error: GantryError): Promise<never> => {
      await inTransaction(this.deps, actor, (uow) =>
        uow.audit({
          action: 'artifact.upload_failed',
          subject,
          details: { reason, code: error.code, message: error.message },
        }),
      );
      throw error;
    };

    if (declaredLength !== undefined && declaredLength > this.deps.maxBytes) {
      await fail(
        'too_large',
        new GantryError(
          'PAYLOAD_TOO_LARGE',
          `The artifact is ${declaredLength} bytes; the limit is ${this.deps.maxBytes}.`,
          { maxBytes: this.deps.maxBytes },
        ),
      );
    }
    const existing = await this.store().findByNameVersion(input.component, input.version);
    if (existing && input.digest !== undefined && input.digest !== withDigestPrefix(existing.digest)) {
      await fail('immutable_version', immutable(existing));
    }
    // The per-user quota: what this user already stored, plus this upload, within the quota. The
    // stream is cut off as soon as it would pass it, like the size limit.
    let limit = this.deps.maxBytes;
    const quota = this.deps.userQuotaBytes ?? 0;
    if (quota > 0) {
      const used = await this.bytesStoredBy(actor.actor);
      const left = Math.max(0, quota - used);
      if (declaredLength !== undefined ? declaredLength > left : left === 0)
        await fail(
          'quota',
          new GantryError(
            'PAYLOAD_TOO_LARGE',
            `Your media library quota is ${quota} bytes and ${used} are used; this upload${declaredLength !== undefined ? ` of ${declaredLength} bytes` : ''} does not fit. Delete old artifacts (gantry artifact prune) or ask an admin.`,
            { quotaBytes: quota, usedBytes: used },
          ),
        );
      limit = Math.min(limit, left);
    }

    let blob: Awaited<ReturnType<FsBlobStore['receive']>>;
    try {
      blob = await this.deps.blobs.receive(body, limit);
    } catch (error) {
      const gantry = isGantryError(error)
        ? error
        : new GantryError(
            'VALIDATION',
            'The upload was cut off before it was complete; nothing was stored. Send it again.',
            { cause: (error as { code?: string }).code ?? null },
          );
      return fail(gantry.code === 'VALIDATION' ? 'aborted' : gantry.code.toLowerCase(), gantry);
    }

    const digest = withDigestPrefix(blob.digest);
    if (declaredLength !== undefined && blob.size !== declaredLength) {
      await this.deps.blobs.discard(blob);
      await fail(
        'length_mismatch',
        new GantryError(
          'VALIDATION',
          `Received ${blob.size} bytes but Content-Length said ${declaredLength}.`,
        ),
      );
    }
    if (input.digest !== undefined && input.digest !== digest) {
      await this.deps.blobs.discard(blob);
      await fail(
        'digest_mismatch',
        new GantryError(
          'DIGEST_MISMATCH',
          `The bytes received hash to ${digest}, not the declared ${input.digest}; nothing was stored.`,
          {
            declared: input.digest,
            actual: digest,
          },
        ),
      );
    }
    const content = sniffContent(blob.head);
    const kind = input.kind ?? inferKind(input.filename, content);
    const problem = contentProblem(kind, content, input.filename);
    if (problem) {
      await this.deps.blobs.discard(blob);
      await fail(
        'unsupported_type',
        new GantryError('UNSUPPORTED_ARTIFACT_TYPE', `Refused: ${problem}.`, { kind, content }),
      );
    }
    if (existing) {
      await this.deps.blobs.discard(blob);
      if (existing.digest === blob.digest)
        return { artifact: await this.withSignatures(existing), created: false };
      await fail('immutable_version', immutable(existing));
    }

    const artifact: Artifact = {
      id: randomUUID(),
      component: input.component,
      version: input.version,
      kind,
      digest: blob.digest,
      size: blob.size,
      filename: input.filename ?? null,
      state: 'available',
      quarantineReason: null,
      provenance: {
        builder: input.builder ?? null,
        sourceRepo: input.sourceRepo ?? null,
        revision: input.revision ?? null,
        builtAt: input.builtAt ?? null,
      },
      createdAt: this.deps.clock.now().toISOString(),
      createdBy: actor.actor,
      verifiedAt: this.deps.clock.now().toISOString(),
    };
    try {
      await inTransaction(this.deps, actor, async (uow) => {
        // The bytes go to their address under the same lock as the row: a delete of another
        // artifact with the same bytes cannot remove them in between.
        await this.deps.blobs.commit(blob);
        await this.failpoints.hit('dml.before_db_commit');
        await new ArtifactStore(uow.db).insert({ ...artifact, createdAt: uow.now.toISOString() });
        await uow.audit({
          action: 'artifact.uploaded',
          subject: `artifact:${artifact.id}`,
          details: {
            component: artifact.component,
            version: artifact.version,
            kind,
            digest,
            size: artifact.size,
            provenance: artifact.provenance,
          },
        });
      });
    } catch (error) {
      await this.deps.blobs.discard(blob);
      if (isGantryError(error) && (error.code === 'DML_NO_SPACE' || error.code === 'UNAVAILABLE')) {
        await fail(error.code.toLowerCase(), error);
      }
      if (!isUniqueViolation(error)) throw error;
      // Another upload of the same name and version won the race.
      const winner = await this.store().findByNameVersion(input.component, input.version);
      if (winner && winner.digest === blob.digest)
        return { artifact: await this.withSignatures(winner), created: false };
      throw winner ? immutable(winner) : error;
    }
    return { artifact: await this.withSignatures(artifact), created: true };
  }

  async get(id: string): Promise<ArtifactWithSignatures> {
    return this.withSignatures(await this.require(id));
  }

  async list(filter: ArtifactFilter): Promise<ArtifactWithSignatures[]> {
    return Promise.all((await this.store().list(filter)).map((a) => this.withSignatures(a)));
  }

  async findByDigest(hexDigest: string): Promise<Artifact> {
    const artifact = await this.store().findByDigest(hexDigest);
    if (!artifact) throw new GantryError('NOT_FOUND', `No artifact with digest sha256:${hexDigest}.`);
    return artifact;
  }

  /** Re-hashes the stored bytes; on a mismatch the artifact is quarantined and an exception event recorded. */
  async verify(by: AuditActor, id: string): Promise<VerifyOutcome> {
    const artifact = await this.require(id);
    const actual = (await this.deps.blobs.hash(artifact.digest))?.digest ?? null;
    const base = {
      id,
      digest: withDigestPrefix(artifact.digest),
      actualDigest: actual === null ? null : withDigestPrefix(actual),
    };
    if (actual === artifact.digest) {
      await this.store().markVerified(id, this.deps.clock.now().toISOString());
      const state = artifact.state;
      return {
        ...base,
        ok: true,
        state,
        message:
          state === 'quarantined'
            ? 'bytes match, but the artifact stays quarantined'
            : 'bytes match the digest',
      };
    }
    const reason =
      actual === null
        ? 'the stored bytes are missing'
        : `the stored bytes hash to sha256:${actual}, not ${base.digest}`;
    await this.quarantine(by, artifact, reason);
    return { ...base, ok: false, state: 'quarantined', message: reason };
  }

  /** Marks an artifact as never to be served again and says why, to the audit chain and as an event. */
  async quarantine(by: AuditActor, artifact: Artifact, reason: string): Promise<void> {
    await inTransaction(this.deps, by, async (uow) => {
      const current = await new ArtifactStore(uow.db).findById(artifact.id);
      if (!current || current.state === 'quarantined') return;
      await new ArtifactStore(uow.db).quarantine(artifact.id, reason, uow.now.toISOString());
      await uow.audit({
        action: 'artifact.quarantined',
        subject: `artifact:${artifact.id}`,
        details: { reason, digest: withDigestPrefix(artifact.digest) },
      });
      await new EventLog(uow.db).record({
        at: uow.now.toISOString(),
        severity: 'exception',
        kind: 'artifact.integrity',
        subject: `artifact:${artifact.id}`,
        message: `${artifact.component} ${artifact.version} quarantined: ${reason}`,
        details: {
          component: artifact.component,
          version: artifact.version,
          digest: withDigestPrefix(artifact.digest),
        },
      });
    });
  }

  async addSignature(
    by: Principal,
    id: string,
    input: { keyId: string; signature: string },
  ): Promise<ArtifactWithSignatures> {
    const artifact = await this.require(id);
    return inTransaction(this.deps, actorOf(by), async (uow) => {
      const key = await new PublisherKeyStore(uow.db).find(input.keyId);
      if (!key) {
        throw new GantryError(
          'SIGNATURE_INVALID',
          `No publisher key '${input.keyId}' is registered. An admin adds it with \`gantry keys add\`.`,
          { keyId: input.keyId },
        );
      }
      if (key.revokedAt !== null) {
        throw new GantryError(
          'SIGNATURE_INVALID',
          `The key '${key.name}' (${key.id}) was revoked at ${key.revokedAt}; sign with a current key.`,
          { keyId: key.id },
        );
      }
      if (!verifyEd25519(key.publicKey, statementOf(artifact), input.signature)) {
        throw new GantryError(
          'SIGNATURE_INVALID',
          `The signature does not verify with key '${key.name}' for ${artifact.component} ${artifact.version} (${withDigestPrefix(artifact.digest)}). Was it made for another artifact?`,
          { keyId: key.id },
        );
      }
      const store = new ArtifactStore(uow.db);
      if ((await store.signatures(id)).some((s) => s.keyId === key.id)) {
        throw new GantryError('CONFLICT', `The artifact is already signed with key '${key.name}'.`, {
          keyId: key.id,
        });
      }
      await store.addSignature(id, {
        keyId: key.id,
        signature: input.signature,
        createdAt: uow.now.toISOString(),
        createdBy: actorOf(by).actor,
      });
      await uow.audit({
        action: 'artifact.signed',
        subject: `artifact:${id}`,
        details: { keyId: key.id, keyName: key.name },
      });
      return this.withSignatures(artifact, uow.db);
    });
  }

  /** Bytes of artifacts `actor` (`user:<name>`) has in the media library. */
  async bytesStoredBy(actor: string): Promise<number> {
    const row = await this.deps.database.db
      .selectFrom('artifacts')
      .select((eb) => eb.fn.sum<number | string | null>('size').as('total'))
      .where('created_by', '=', actor)
      .executeTakeFirst();
    return Number(row?.total ?? 0);
  }

  /**
   * The artifact of `component` with `digest` (sha256:…), with its signatures checked now; what
   * releases name and gates weigh.
   */
  async findPiece(component: string, digest: string): Promise<ArtifactWithSignatures | undefined> {
    const row = await this.deps.database.db
      .selectFrom('artifacts')
      .select('id')
      .where('component', '=', component)
      .where('digest', '=', digest.replace(/^sha256:/, ''))
      .executeTakeFirst();
    return row ? this.get(row.id) : undefined;
  }

  /** What refers to an artifact: releases (and the changes for them), and the targets that run it. */
  async usage(id: string, db = this.deps.database.db): Promise<Usage> {
    const artifact = await this.require(id);
    const digest = withDigestPrefix(artifact.digest);
    // Components are JSON text; the digest is matched there and then checked exactly.
    const releases = (
      await db
        .selectFrom('releases')
        .select(['id', 'name', 'version', 'components'])
        .where('components', 'like', `%${artifact.digest}%`)
        .execute()
    ).filter((r) =>
      (JSON.parse(r.components) as Array<{ component: string; digest: string }>).some(
        (p) => p.component === artifact.component && p.digest === digest,
      ),
    );
    const changes =
      releases.length === 0
        ? []
        : await db
            .selectFrom('changes')
            .select(['number', 'state'])
            .where(
              'release_id',
              'in',
              releases.map((r) => r.id),
            )
            .where('state', 'not in', ['closed', 'cancelled', 'rejected'])
            .execute();
    const deployments =
      releases.length === 0
        ? []
        : await db
            .selectFrom('deployments')
            .select(['number', 'state'])
            .where(
              'release_id',
              'in',
              releases.map((r) => r.id),
            )
            .orderBy('number')
            .execute();
    // The targets whose latest ledger entry for the component is this artifact: they run it now.
    const entries = await db
      .selectFrom('ledger_entries as l')
      .innerJoin('targets as t', 't.id', 'l.target_id')
      .select(['t.name', 'l.digest', 'l.at', 'l.id'])
      .where('l.component', '=', artifact.component)
      .where('t.retired_at', 'is', null)
      .orderBy('l.at')
      .orderBy('l.id')
      .execute();
    const latest = new Map<string, string | null>();
    for (const e of entries) latest.set(e.name, e.digest);
    const targets = [...latest].filter(([, d]) => d === digest).map(([name]) => ({ name }));
    return {
      releases: releases.map((r) => `release ${r.name}@${r.version}`),
      changes: changes.map((c) => `change CHG-${c.number} (${c.state})`),
      deployments: deployments.map((d) => `deployment DEP-${d.number} (${d.state})`),
      targets: targets.map((t) => t.name).sort(),
    };
  }

  async delete(by: Principal, id: string): Promise<Artifact> {
    const artifact = await this.require(id);
    const usage = await this.usage(id);
    const refs = [...usage.releases, ...usage.changes, ...usage.deployments];
    if (refs.length > 0) {
      throw new GantryError(
        'IN_USE',
        `${artifact.component} ${artifact.version} is referred to by ${refs.join(', ')}; it cannot be deleted.`,
        usage,
      );
    }
    await inTransaction(this.deps, actorOf(by), async (uow) => {
      const store = new ArtifactStore(uow.db);
      if (!(await store.findById(id)))
        throw new GantryError('NOT_FOUND', `No artifact with id '${id}'.`, { id });
      await store.delete(id);
      await uow.audit({
        action: 'artifact.deleted',
        subject: `artifact:${id}`,
        details: {
          component: artifact.component,
          version: artifact.version,
          digest: withDigestPrefix(artifact.digest),
        },
      });
      // Last, under the lock every upload takes to place its bytes: no other row needs these.
      if ((await store.countByDigest(artifact.digest)) === 0) await this.deps.blobs.remove(artifact.digest);
    });
    return artifact;
  }

  /** Removes all but the newest `keep` versions of each component, never one that is referred to. */
  async applyRetention(
    by: Principal,
    input: { keep: number; component?: string | undefined; dryRun?: boolean | undefined },
  ) {
    const all: Artifact[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await this.store().list({ component: input.component, after, limit: 1000 });
      all.push(...page);
      if (page.length < 1000) break;
      after = page[page.length - 1]?.id;
    }
    const candidates = await Promise.all(
      all.map(async (a) => {
        const u = await this.usage(a.id);
        return {
          id: a.id,
          component: a.component,
          version: a.version,
          createdAt: a.createdAt,
          referencedBy: [...u.releases, ...u.changes, ...u.deployments],
        };
      }),
    );
    const doomed = selectForRetention(candidates, input.keep);
    if (!input.dryRun) for (const a of doomed) await this.delete(by, a.id);
    return {
      dryRun: input.dryRun === true,
      removed: doomed.map((a) => ({ id: a.id, component: a.component, version: a.version })),
    };
  }

  /**
   * Writes the artifact's bytes to `out` (whose headers are set; they go out with the first
   * piece), ending it only if they hash to the digest: the last piece is held back until the hash
   * is known, so a reader of tampered bytes never gets a complete response, and the artifact is
   * quarantined. `fail` answers an error, or cuts the response off once bytes have gone out.
   */
  writeVerified(artifact: Artifact, out: ServerResponse, fail: (error: Error) => void): void {
    // Read and hashed by a worker thread, piece by piece, and the very pieces it hashed are sent:
    // serving runs at the speed of reading and writing, not of hashing on the same core as the
    // socket writes.
    new VerifiedWrite(
      this.deps.blobs,
      artifact,
      out,
      (problem) => {
        void this.quarantine(SYSTEM_ACTOR, artifact, `${problem} while being served`).catch(() => {});
      },
      fail,
    );
  }

  /** Checks size, then (for ranges, which cannot be checked on the fly) the whole digest, before serving. */
  async assertServable(artifact: Artifact, fullCheck: boolean): Promise<void> {
    if (artifact.state === 'quarantined') {
      throw new GantryError(
        'QUARANTINED',
        `${artifact.component} ${artifact.version} is quarantined and is not served: ${artifact.quarantineReason}.`,
        {
          reason: artifact.quarantineReason,
        },
      );
    }
    const size = await this.deps.blobs.size(artifact.digest);
    let problem: string | null = null;
    if (size === null) problem = 'the stored bytes are missing';
    else if (size !== artifact.size) problem = `the stored bytes are ${size} long, not ${artifact.size}`;
    else if (fullCheck) {
      const actual = (await this.deps.blobs.hash(artifact.digest))?.digest ?? null;
      if (actual === null) problem = 'the stored bytes are missing';
      else if (actual !== artifact.digest) problem = `the stored bytes hash to sha256:${actual}`;
    }
    if (problem) {
      await this.quarantine(SYSTEM_ACTOR, artifact, problem);
      throw new GantryError(
        'QUARANTINED',
        `${artifact.component} ${artifact.version} failed its integrity check and is now quarantined: ${problem}.`,
        {
          reason: problem,
        },
      );
    }
  }

  /** One step of the background check: re-verify the artifact checked longest ago. */
  async scrubOne(): Promise<VerifyOutcome | null> {
    const next = await this.store().leastRecentlyVerified();
    return next ? this.verify(SYSTEM_ACTOR, next.id) : null;
  }

  /** Removes blobs no artifact names (left by a crash between rename and commit), older than `minAgeMs`. */
  async collectOrphanBlobs(minAgeMs: number): Promise<number> {
    let removed = 0;
    const cutoff = Date.now() - minAgeMs;
    for await (const blob of this.deps.blobs.digests()) {
      if (blob.mtimeMs > cutoff) continue;
      await this.deps.database.db.transaction().execute(async (trx) => {
        await lockAuditChain(trx, this.deps.database.dialect);
        if ((await new ArtifactStore(trx).countByDigest(blob.digest)) === 0) {
          await this.deps.blobs.remove(blob.digest);
          removed += 1;
        }
      });
    }
    return removed;
  }

  private async require(id: string): Promise<Artifact> {
    const artifact = await this.store().findById(id);
    if (!artifact)
      throw new GantryError('NOT_FOUND', `No artifact with id '${id}'. See \`gantry artifact list\`.`, {
        id,
      });
    return artifact;
  }

  private async withSignatures(
    artifact: Artifact,
    db = this.deps.database.db,
  ): Promise<ArtifactWithSignatures> {
    const store = new ArtifactStore(db);
    const keys = new PublisherKeyStore(db);
    const statement = statementOf(artifact);
    const signatures = await Promise.all(
      (await store.signatures(artifact.id)).map(async (s): Promise<SignatureCheck> => {
        const key = await keys.find(s.keyId);
        let problem: string | null = null;
        if (!key) problem = 'key not registered';
        else if (key.revokedAt !== null) problem = `key revoked at ${key.revokedAt}`;
        else if (!verifyEd25519(key.publicKey, statement, s.signature)) problem = 'signature does not verify';
        return {
          keyId: s.keyId,
          keyName: key?.name ?? null,
          trusted: problem === null,
          problem,
          addedAt: s.createdAt,
          addedBy: s.createdBy,
        };
      }),
    );
    return { ...artifact, signatures };
  }
}

export function statementOf(artifact: Pick<Artifact, 'component' | 'version' | 'kind' | 'digest'>): string {
  return signedStatement({
    component: artifact.component,
    version: artifact.version,
    kind: artifact.kind,
    digest: withDigestPrefix(artifact.digest),
  });
}

function immutable(existing: Artifact): GantryError {
  return new GantryError(
    'IMMUTABLE_VERSION',
    `${existing.component} ${existing.version} already exists with different bytes (${withDigestPrefix(existing.digest)}); versions never change. Upload under a new version.`,
    { id: existing.id, digest: withDigestPrefix(existing.digest) },
  );
}

function inferKind(filename: string | undefined, content: ReturnType<typeof sniffContent>): ArtifactKind {
  const name = (filename ?? '').toLowerCase();
  if (name.endsWith('.tar.gz') || name.endsWith('.tgz') || name.endsWith('.tar')) return 'package';
  if (!filename && (content === 'gzip' || content === 'tar')) return 'package';
  return 'file';
}

/** Pieces a download's worker may read and hash ahead of what the client has taken. */
const RING_PIECES = 4;

/**
 * Writes the stored bytes of an artifact to a response, each piece hashed (on a worker) before it
 * is written, the last held back until the whole is known to hash to the artifact's digest; on a
 * mismatch the response is cut off instead of ending (or, before its first byte, answered with the
 * error), so a client never receives a complete copy of wrong bytes. Each piece is written
 * straight from the worker's ring, and its slot is given back only when the socket has taken it
 * (the write's callback): no copy of the download is made. A client that goes away stops the read.
 */
class VerifiedWrite {
  /** The newest piece: written once the next one (or the digest) has come. */
  private held: { bytes: Buffer; slot: number } | null = null;
  private stopped = false;
  private sent = 0;
  private readonly handle: StreamHandle;
  private readonly socket: Socket;
  private readonly gone = () => {
    if (!this.out.writableFinished) this.stop(null);
  };

  constructor(
    blobs: FsBlobStore,
    private readonly artifact: Artifact,
    private readonly out: ServerResponse,
    private readonly onMismatch: (problem: string) => void,
    /** Answers or cuts off the response for an error (headers may or may not have gone out). */
    private readonly fail: (error: Error) => void,
  ) {
    this.socket = out.req.socket;
    this.handle = blobs.stream(artifact.digest, RING_PIECES, {
      piece: (bytes, slot) => {
        if (this.stopped) return;
        this.sent += bytes.length;
        // Never more than the artifact's length, even from a file that grew since it was checked.
        if (this.sent > artifact.size) {
          this.mismatch(`the stored bytes are longer than ${artifact.size}`);
          return;
        }
        const previous = this.held;
        this.held = { bytes, slot };
        if (previous) this.write(previous);
      },
      end: (actual) => this.finish(actual),
      error: (error) => this.stop(error),
    });
    // The client may have gone while the request was being checked.
    if (out.destroyed || this.socket.destroyed) {
      this.stop(null);
      return;
    }
    // A response still queued behind another on its connection has no socket of its own yet, and
    // sees no 'close' when the client goes: the connection's own close stops it too.
    out.once('close', this.gone);
    this.socket.once('close', this.gone);
  }

  private write(piece: { bytes: Buffer; slot: number }): void {
    // The socket holds the ring's own memory until the write's callback: only then may the worker
    // read into that slot again. A write that failed means the client is gone.
    this.out.write(piece.bytes, (error) => {
      if (error) this.stop(null);
      else this.handle.free(piece.slot);
    });
  }

  private finish(actual: FileDigest): void {
    if (this.stopped) return;
    const problem =
      actual.digest !== this.artifact.digest
        ? `the stored bytes hash to sha256:${actual.digest}`
        : actual.size !== this.artifact.size
          ? `the stored bytes are ${actual.size} long, not ${this.artifact.size}`
          : null;
    if (problem !== null) {
      this.mismatch(problem);
      return;
    }
    const last = this.held;
    this.held = null;
    this.socket.off('close', this.gone);
    if (last) this.out.end(last.bytes);
    else this.out.end();
  }

  private mismatch(problem: string): void {
    this.onMismatch(problem);
    this.stop(
      new GantryError(
        'QUARANTINED',
        'The stored bytes no longer match their digest; the transfer was stopped.',
      ),
    );
  }

  /** Stops reading; for an error, answers it or cuts the response off; for a client gone, closes. */
  private stop(error: Error | null): void {
    if (this.stopped) return;
    this.stopped = true;
    this.held = null;
    this.handle.cancel();
    this.socket.off('close', this.gone);
    this.out.off('close', this.gone);
    if (error) this.fail(error);
    else this.out.destroy();
  }
}
