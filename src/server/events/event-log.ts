/**
 * Events: what Gantry observed (informational, warning, exception), tied to the subject they are
 * about. The monitoring work adds rules, alerts and incidents on top of this table.
 */
import type { Kysely } from 'kysely';
import type { Tables } from '../db/schema.ts';
import { newSortableId } from '../ids.ts';

export type Severity = 'informational' | 'warning' | 'exception';

export interface GantryEvent {
  id: string;
  at: string;
  severity: Severity;
  kind: string;
  subject: string;
  message: string;
  details: Record<string, unknown>;
}

export class EventLog {
  constructor(private readonly db: Kysely<Tables>) {}

  async record(event: Omit<GantryEvent, 'id'>): Promise<GantryEvent> {
    const full = { id: newSortableId(), ...event };
    await this.db
      .insertInto('events')
      .values({ ...full, details: JSON.stringify(full.details) })
      .execute();
    return full;
  }

  async list(filter: {
    severity?: Severity | undefined;
    subject?: string | undefined;
    limit: number;
  }): Promise<GantryEvent[]> {
    let query = this.db.selectFrom('events').selectAll();
    if (filter.severity) query = query.where('severity', '=', filter.severity);
    if (filter.subject) query = query.where('subject', '=', filter.subject);
    const rows = await query.orderBy('id', 'desc').limit(filter.limit).execute();
    return rows.map((r) => ({
      ...r,
      severity: r.severity as Severity,
      details: JSON.parse(r.details) as Record<string, unknown>,
    }));
  }
}
