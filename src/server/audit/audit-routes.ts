/** /api/v1/audit: read-only, by design. */
import {
  CHAIN_START,
  type ChainBreak,
  type ChainCursor,
  describeChainBreak,
  verifyChainPage,
} from '../../core/audit-chain.ts';
import { GantryError } from '../../core/errors.ts';
import { AuditListQuery, AuditPage, AuditVerifyResult } from '../../protocol/audit.ts';
import type { Clock } from '../clock.ts';
import type { Database } from '../db/database.ts';
import { type App, responses } from '../http/route-kit.ts';
import { AuditLog, sha256Hex } from './audit-log.ts';

const PAGE = 1000;

/** Stored times are always `toISOString()`; a filter must be too, or text comparison misorders. */
function normaliseTime(value: string | undefined, field: string): string | undefined {
  if (value === undefined) return undefined;
  const time = new Date(value);
  if (Number.isNaN(time.getTime()) || !value.startsWith(time.toISOString().slice(0, 10))) {
    throw new GantryError(
      'VALIDATION',
      `${field} '${value}' is not a real time; use e.g. 2026-10-01T00:00:00Z.`,
      [{ in: 'querystring', path: `/${field}`, message: 'not a real time' }],
    );
  }
  return time.toISOString();
}

export function registerAuditRoutes(app: App, deps: { database: Database; clock: Clock }): void {
  const log = () => new AuditLog(deps.database.db, deps.database.dialect, deps.clock);

  app.get(
    '/api/v1/audit',
    {
      config: { permission: 'audit:read' },
      schema: {
        tags: ['audit'],
        summary:
          'List audit entries in sequence order; filter by action (`user.*` for a prefix), actor, subject, time',
        querystring: AuditListQuery,
        response: responses(AuditPage),
      },
    },
    async (request) => {
      const limit = request.query.limit ?? 100;
      const entries = await log().list({
        ...request.query,
        since: normaliseTime(request.query.since, 'since'),
        until: normaliseTime(request.query.until, 'until'),
        limit,
      });
      const last = entries[entries.length - 1];
      return { entries, nextAfter: entries.length === limit && last ? last.seq : null };
    },
  );

  app.get(
    '/api/v1/audit/verify',
    {
      config: { permission: 'audit:read' },
      schema: {
        tags: ['audit'],
        summary: 'Recompute the whole hash chain on the server',
        response: responses(AuditVerifyResult),
      },
    },
    async () => {
      const audit = log();
      let cursor: ChainCursor = CHAIN_START;
      let broken: ChainBreak | null = null;
      for (;;) {
        const page = await audit.list({ after: cursor.nextSeq - 1, limit: PAGE });
        // A gap right at a page boundary shows as a first entry with the wrong number.
        const result = verifyChainPage(cursor, page, sha256Hex);
        cursor = result.cursor;
        broken = result.broken;
        if (broken || page.length < PAGE) break;
      }
      return {
        ok: broken === null,
        checked: cursor.checked,
        head: cursor.checked > 0 ? { seq: cursor.nextSeq - 1, hash: cursor.prevHash } : null,
        broken: broken ? { seq: broken.seq, kind: broken.kind, message: describeChainBreak(broken) } : null,
      };
    },
  );
}
