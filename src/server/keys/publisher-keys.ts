/**
 * Publisher keys: Ed25519 public keys an admin trusts to sign artifacts. A key's id is derived from
 * the key itself, so the same key always has the same id. Revoked keys stay (old signatures name
 * them) but no longer make anything trusted.
 */
import { createPublicKey, type KeyObject, verify } from 'node:crypto';
import type { Kysely } from 'kysely';
import { GantryError } from '../../core/errors.ts';
import { keyIdOf } from '../../protocol/key-id.ts';
import { actorOf, type Principal } from '../auth/principal.ts';
import type { PublisherKeysTable, Tables } from '../db/schema.ts';
import { inTransaction, type TransactionDeps } from '../unit-of-work.ts';

export interface PublisherKey {
  id: string;
  name: string;
  algorithm: 'ed25519';
  publicKey: string;
  createdAt: string;
  createdBy: string;
  revokedAt: string | null;
}

/** Parses an Ed25519 public key in PEM; refuses anything else with a reason a person can act on. */
export function parseEd25519PublicKey(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch {
    throw new GantryError(
      'VALIDATION',
      'The public key is not a PEM public key. Give the file from `gantry keys generate` (…pub.pem).',
      [{ path: '/publicKey', message: 'not a PEM public key' }],
    );
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new GantryError(
      'VALIDATION',
      `Only Ed25519 keys are accepted; this is ${key.asymmetricKeyType ?? 'unknown'}.`,
      [{ path: '/publicKey', message: 'not ed25519' }],
    );
  }
  return key;
}

export function verifyEd25519(publicKeyPem: string, message: string, signatureBase64: string): boolean {
  try {
    return verify(
      null,
      Buffer.from(message, 'utf8'),
      createPublicKey(publicKeyPem),
      Buffer.from(signatureBase64, 'base64'),
    );
  } catch {
    return false;
  }
}

export class PublisherKeyStore {
  constructor(private readonly db: Kysely<Tables>) {}

  async find(id: string): Promise<PublisherKey | undefined> {
    const row = await this.db
      .selectFrom('publisher_keys')
      .selectAll()
      .where('id', '=', id)
      .executeTakeFirst();
    return row ? toKey(row) : undefined;
  }

  async list(): Promise<PublisherKey[]> {
    return (
      await this.db.selectFrom('publisher_keys').selectAll().orderBy('created_at').orderBy('id').execute()
    ).map(toKey);
  }
}

function toKey(row: PublisherKeysTable): PublisherKey {
  return {
    id: row.id,
    name: row.name,
    algorithm: 'ed25519',
    publicKey: row.public_key,
    createdAt: row.created_at,
    createdBy: row.created_by,
    revokedAt: row.revoked_at,
  };
}

export class PublisherKeyService {
  constructor(private readonly deps: TransactionDeps) {}

  list(): Promise<PublisherKey[]> {
    return new PublisherKeyStore(this.deps.database.db).list();
  }

  async add(by: Principal, input: { name: string; publicKey: string }): Promise<PublisherKey> {
    const key = parseEd25519PublicKey(input.publicKey);
    const id = keyIdOf(key);
    const pem = key.export({ type: 'spki', format: 'pem' }).toString();
    return inTransaction(this.deps, actorOf(by), async (uow) => {
      const existing = await new PublisherKeyStore(uow.db).find(id);
      if (existing) {
        throw new GantryError('CONFLICT', `This key is already registered as '${existing.name}' (${id}).`, {
          id,
        });
      }
      const row = {
        id,
        name: input.name,
        public_key: pem,
        created_at: uow.now.toISOString(),
        created_by: actorOf(by).actor,
        revoked_at: null,
      };
      await uow.db.insertInto('publisher_keys').values(row).execute();
      await uow.audit({ action: 'key.added', subject: `key:${id}`, details: { name: input.name } });
      return toKey(row);
    });
  }

  async revoke(by: Principal, id: string): Promise<PublisherKey> {
    return inTransaction(this.deps, actorOf(by), async (uow) => {
      const store = new PublisherKeyStore(uow.db);
      const key = await store.find(id);
      if (!key)
        throw new GantryError('NOT_FOUND', `No publisher key '${id}'. See \`gantry keys list\`.`, { id });
      if (key.revokedAt === null) {
        await uow.db
          .updateTable('publisher_keys')
          .set({ revoked_at: uow.now.toISOString() })
          .where('id', '=', id)
          .execute();
        await uow.audit({ action: 'key.revoked', subject: `key:${id}`, details: { name: key.name } });
      }
      return (await store.find(id)) as PublisherKey;
    });
  }
}
