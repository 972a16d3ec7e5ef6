/**
 * A copy of the audit chain outside the database (row A10: events exported to a separate sink),
 * so that someone with write access to the database alone cannot rewrite history unseen. Entries
 * are handed over after their transaction commits; the database stays the record of truth, and a
 * sink that fails is reported in the server log without failing the change.
 */
import { appendFileSync } from 'node:fs';
import type { AuditEntry } from '../../core/audit-chain.ts';

export interface AuditSink {
  write(entries: readonly AuditEntry[]): void;
}

/** Appends one JSON line per entry to a file (mode 0600), for a log shipper to collect. */
export class FileAuditSink implements AuditSink {
  constructor(
    private readonly file: string,
    private readonly onError: (error: unknown) => void,
  ) {}

  write(entries: readonly AuditEntry[]): void {
    if (entries.length === 0) return;
    try {
      appendFileSync(this.file, entries.map((e) => `${JSON.stringify(e)}\n`).join(''), { mode: 0o600 });
    } catch (error) {
      this.onError(error);
    }
  }
}
