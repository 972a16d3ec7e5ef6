/** Rows of `artifacts` and `artifact_signatures`. */
import type { Kysely } from 'kysely';
import type { ArtifactKind } from '../../core/artifacts.ts';
import { GantryError } from '../../core/errors.ts';
import type { ArtifactsTable, Tables } from '../db/schema.ts';

export interface Provenance {
  builder: string | null;
  sourceRepo: string | null;
  revision: string | null;
  builtAt: string | null;
}

export interface Artifact {
  id: string;
  component: string;
  version: string;
  kind: ArtifactKind;
  /** Hex SHA-256. */
  digest: string;
  size: number;
  filename: string | null;
  state: 'available' | 'quarantined';
  quarantineReason: string | null;
  provenance: Provenance;
  createdAt: string;
  createdBy: string;
  verifiedAt: string | null;
}

export interface StoredSignature {
  keyId: string;
  signature: string;
  createdAt: string;
  createdBy: string;
}

export interface ArtifactFilter {
  component?: string | undefined;
  version?: string | undefined;
  kind?: ArtifactKind | undefined;
  state?: 'available' | 'quarantined' | undefined;
  after?: string | undefined;
  limit: number;
}

export class ArtifactStore {
  constructor(private readonly db: Kysely<Tables>) {}

  async insert(a: Artifact): Promise<void> {
    await this.db
      .insertInto('artifacts')
      .values({
        id: a.id,
        component: a.component,
        version: a.version,
        kind: a.kind,
        digest: a.digest,
        size: a.size,
        filename: a.filename,
        state: a.state,
        quarantine_reason: a.quarantineReason,
        provenance: JSON.stringify(a.provenance),
        created_at: a.createdAt,
        created_by: a.createdBy,
        verified_at: a.verifiedAt,
      })
      .execute();
  }

  async findById(id: string): Promise<Artifact | undefined> {
    const row = await this.db.selectFrom('artifacts').selectAll().where('id', '=', id).executeTakeFirst();
    return row ? toArtifact(row) : undefined;
  }

  async findByNameVersion(component: string, version: string): Promise<Artifact | undefined> {
    const row = await this.db
      .selectFrom('artifacts')
      .selectAll()
      .where('component', '=', component)
      .where('version', '=', version)
      .executeTakeFirst();
    return row ? toArtifact(row) : undefined;
  }

  async findByDigest(digest: string): Promise<Artifact | undefined> {
    const row = await this.db
      .selectFrom('artifacts')
      .selectAll()
      .where('digest', '=', digest)
      .orderBy('created_at')
      .limit(1)
      .executeTakeFirst();
    return row ? toArtifact(row) : undefined;
  }

  async countByDigest(digest: string): Promise<number> {
    const row = await this.db
      .selectFrom('artifacts')
      .select((eb) => eb.fn.countAll<string | number>().as('n'))
      .where('digest', '=', digest)
      .executeTakeFirstOrThrow();
    return Number(row.n);
  }

  /** In upload order; `after` is the id of the last artifact of the previous page. */
  async list(filter: ArtifactFilter): Promise<Artifact[]> {
    let query = this.db.selectFrom('artifacts').selectAll();
    if (filter.component !== undefined) query = query.where('component', '=', filter.component);
    if (filter.version !== undefined) query = query.where('version', '=', filter.version);
    if (filter.kind !== undefined) query = query.where('kind', '=', filter.kind);
    if (filter.state !== undefined) query = query.where('state', '=', filter.state);
    if (filter.after !== undefined) {
      const after = await this.db
        .selectFrom('artifacts')
        .select(['created_at', 'id'])
        .where('id', '=', filter.after)
        .executeTakeFirst();
      if (!after) {
        throw new GantryError(
          'VALIDATION',
          `The cursor '${filter.after}' names no artifact (it may have been deleted); start the listing again.`,
          [{ in: 'querystring', path: '/after', message: 'unknown cursor' }],
        );
      }
      query = query.where((eb) =>
        eb.or([
          eb('created_at', '>', after.created_at),
          eb.and([eb('created_at', '=', after.created_at), eb('id', '>', after.id)]),
        ]),
      );
    }
    const rows = await query.orderBy('created_at').orderBy('id').limit(filter.limit).execute();
    return rows.map(toArtifact);
  }

  /** The available artifact checked longest ago (never-checked first), for the background scrub. */
  async leastRecentlyVerified(): Promise<Artifact | undefined> {
    const never = await this.db
      .selectFrom('artifacts')
      .selectAll()
      .where('state', '=', 'available')
      .where('verified_at', 'is', null)
      .limit(1)
      .executeTakeFirst();
    if (never) return toArtifact(never);
    const row = await this.db
      .selectFrom('artifacts')
      .selectAll()
      .where('state', '=', 'available')
      .orderBy('verified_at')
      .limit(1)
      .executeTakeFirst();
    return row ? toArtifact(row) : undefined;
  }

  async markVerified(id: string, at: string): Promise<void> {
    await this.db.updateTable('artifacts').set({ verified_at: at }).where('id', '=', id).execute();
  }

  async quarantine(id: string, reason: string, at: string): Promise<void> {
    await this.db
      .updateTable('artifacts')
      .set({ state: 'quarantined', quarantine_reason: reason, verified_at: at })
      .where('id', '=', id)
      .execute();
  }

  async delete(id: string): Promise<void> {
    await this.db.deleteFrom('artifact_signatures').where('artifact_id', '=', id).execute();
    await this.db.deleteFrom('artifacts').where('id', '=', id).execute();
  }

  async signatures(artifactId: string): Promise<StoredSignature[]> {
    const rows = await this.db
      .selectFrom('artifact_signatures')
      .selectAll()
      .where('artifact_id', '=', artifactId)
      .orderBy('created_at')
      .orderBy('key_id')
      .execute();
    return rows.map((r) => ({
      keyId: r.key_id,
      signature: r.signature,
      createdAt: r.created_at,
      createdBy: r.created_by,
    }));
  }

  async addSignature(artifactId: string, signature: StoredSignature): Promise<void> {
    await this.db
      .insertInto('artifact_signatures')
      .values({
        artifact_id: artifactId,
        key_id: signature.keyId,
        signature: signature.signature,
        created_at: signature.createdAt,
        created_by: signature.createdBy,
      })
      .execute();
  }
}

function toArtifact(row: ArtifactsTable): Artifact {
  return {
    id: row.id,
    component: row.component,
    version: row.version,
    kind: row.kind as ArtifactKind,
    digest: row.digest,
    size: Number(row.size),
    filename: row.filename,
    state: row.state === 'quarantined' ? 'quarantined' : 'available',
    quarantineReason: row.quarantine_reason,
    provenance: JSON.parse(row.provenance) as Provenance,
    createdAt: row.created_at,
    createdBy: row.created_by,
    verifiedAt: row.verified_at,
  };
}
