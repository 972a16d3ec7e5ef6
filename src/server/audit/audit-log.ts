/**
 * The audit log: append-only, hash-chained. `append` must run inside the transaction of the
 * change it records, so the entry and the change are committed together or not at all. There is
 * deliberately no update or delete here, nor anywhere else in Gantry.
 */
import { createHash } from 'node:crypto';
import { type Kysely, sql } from 'kysely';
import { type AuditEntry, chainEntry, GENESIS_HASH } from '../../core/audit-chain.ts';
import type { Clock } from '../clock.ts';
import { type Dialect, lockAuditChain } from '../db/database.ts';
import type { AuditLogTable, Tables } from '../db/schema.ts';

export interface AuditActor {
  /** `user:<name>`, `system`, … */
  actor: string;
  /** Client address, or null for the server itself. */
  source: string | null;
}

export const SYSTEM_ACTOR: AuditActor = { actor: 'system', source: null };

export interface AuditRecord {
  /** Who did it, when one transaction acts for several (a batch of agents' requests). */
  by?: AuditActor | undefined;
  action: string;
  subject: string;
  details?: Record<string, unknown>;
}

export interface AuditFilter {
  action?: string | undefined;
  actor?: string | undefined;
  subject?: string | undefined;
  since?: string | undefined;
  until?: string | undefined;
  after?: number | undefined;
  limit: number;
}

export const sha256Hex = (text: string): string => createHash('sha256').update(text, 'utf8').digest('hex');

/**
 * The last entry of the chain as the transaction that holds the chain's lock knows it: read once,
 * then carried forward by each append, so appends need no lock or read of their own.
 */
export interface ChainHead {
  last: { seq: number; hash: string } | null | undefined;
  /**
   * Entries appended but not yet written: the transaction writes them all at once before it
   * commits (one statement for many entries, not one each).
   */
  pending?: AuditLogTable[];
}

export class AuditLog {
  constructor(
    private readonly db: Kysely<Tables>,
    private readonly dialect: Dialect,
    private readonly clock: Clock,
    /** Given by a transaction that already holds the chain's lock. */
    private readonly chain?: ChainHead,
  ) {}

  /** Appends one entry. Call inside the transaction that makes the change. */
  async append(by: AuditActor, record: AuditRecord): Promise<AuditEntry> {
    let last = this.chain?.last;
    if (last === undefined) {
      if (!this.chain) await lockAuditChain(this.db, this.dialect);
      last =
        (await this.db
          .selectFrom('audit_log')
          .select(['seq', 'hash'])
          .orderBy('seq', 'desc')
          .limit(1)
          .executeTakeFirst()) ?? null;
    }
    const entry = chainEntry(
      {
        seq: (last?.seq ?? 0) + 1,
        at: this.clock.now().toISOString(),
        actor: by.actor,
        source: by.source,
        action: record.action,
        subject: record.subject,
        details: record.details ?? {},
      },
      last?.hash ?? GENESIS_HASH,
      sha256Hex,
    );
    const row: AuditLogTable = {
      seq: entry.seq,
      at: entry.at,
      actor: entry.actor,
      source: entry.source,
      action: entry.action,
      subject: entry.subject,
      details: JSON.stringify(entry.details),
      prev_hash: entry.prevHash,
      hash: entry.hash,
    };
    if (this.chain?.pending) this.chain.pending.push(row);
    else await this.db.insertInto('audit_log').values(row).execute();
    if (this.chain) this.chain.last = { seq: entry.seq, hash: entry.hash };
    return entry;
  }

  /** Writes the entries a transaction has appended but not yet written (see `ChainHead.pending`). */
  static async flush(db: Kysely<Tables>, chain: ChainHead): Promise<void> {
    const rows = chain.pending ?? [];
    // 9 columns a row: 500 rows stay well under every bound on statement parameters.
    for (let i = 0; i < rows.length; i += 500)
      await db
        .insertInto('audit_log')
        .values(rows.slice(i, i + 500))
        .execute();
    rows.length = 0;
  }

  async list(filter: AuditFilter): Promise<AuditEntry[]> {
    let query = this.db.selectFrom('audit_log').selectAll();
    if (filter.action !== undefined) {
      // `deploy.*` style prefixes are handy for auditors; anything else is an exact match.
      query = filter.action.endsWith('.*')
        ? query.where(
            sql<string>`substr(action, 1, ${filter.action.length - 1})`,
            '=',
            filter.action.slice(0, -1),
          )
        : query.where('action', '=', filter.action);
    }
    if (filter.actor !== undefined) query = query.where('actor', '=', filter.actor);
    if (filter.subject !== undefined) query = query.where('subject', '=', filter.subject);
    if (filter.since !== undefined) query = query.where('at', '>=', filter.since);
    if (filter.until !== undefined) query = query.where('at', '<', filter.until);
    if (filter.after !== undefined) query = query.where('seq', '>', filter.after);
    const rows = await query.orderBy('seq', 'asc').limit(filter.limit).execute();
    return rows.map(toEntry);
  }

  async head(): Promise<{ seq: number; hash: string } | null> {
    const row = await this.db
      .selectFrom('audit_log')
      .select(['seq', 'hash'])
      .orderBy('seq', 'desc')
      .limit(1)
      .executeTakeFirst();
    return row ? { seq: Number(row.seq), hash: row.hash } : null;
  }
}

function toEntry(row: AuditLogTable): AuditEntry {
  let details: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(row.details);
    details =
      typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)
        ? (parsed as Record<string, unknown>)
        : { value: parsed };
  } catch {
    // A row edited outside Gantry: keep the raw text so verification reports the mismatch.
    details = { unparseable: row.details };
  }
  return {
    seq: Number(row.seq),
    at: row.at,
    actor: row.actor,
    source: row.source,
    action: row.action,
    subject: row.subject,
    details,
    prevHash: row.prev_hash,
    hash: row.hash,
  };
}
