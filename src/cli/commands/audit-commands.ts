/** gantry audit list | verify */
import { createHash } from 'node:crypto';
import type { Command } from 'commander';
import {
  CHAIN_START,
  type ChainBreak,
  type ChainCursor,
  describeChainBreak,
  verifyChainPage,
} from '../../core/audit-chain.ts';
import type { AuditPage } from '../../protocol/audit.ts';
import type { CliContext } from '../context.ts';
import { CliError, EXIT } from '../exit-codes.ts';
import { keyValues, renderTable } from '../output.ts';

const sha256Hex = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');

export function addAuditCommands(program: Command, ctx: CliContext): void {
  const audit = program.command('audit').description('Read and verify the append-only audit chain');

  audit
    .command('list')
    .description('List audit entries, oldest first')
    .option('--action <action>', 'exact action, or a prefix like `user.*`')
    .option('--actor <actor>', 'e.g. user:alice')
    .option('--subject <subject>', 'e.g. user:<id>')
    .option('--since <time>', 'UTC time, e.g. 2026-10-01T00:00:00Z')
    .option('--until <time>', 'UTC time (exclusive)')
    .option('--after <seq>', 'entries after this sequence number')
    .option('--limit <n>', 'at most this many (1-1000)', '100')
    .action(async (options: Record<string, string | undefined>, command: Command) => {
      const page = await ctx.client(command).request<AuditPage>('GET', '/api/v1/audit', undefined, {
        action: options.action,
        actor: options.actor,
        subject: options.subject,
        since: normaliseTime(options.since, '--since'),
        until: normaliseTime(options.until, '--until'),
        after: options.after,
        limit: options.limit,
      });
      ctx.out(command, page, () => {
        const table = renderTable(
          ['SEQ', 'TIME (UTC)', 'ACTOR', 'ACTION', 'SUBJECT', 'DETAILS'],
          page.entries.map((e) => [
            e.seq,
            e.at,
            e.actor,
            e.action,
            e.subject,
            shorten(JSON.stringify(e.details), 80),
          ]),
        );
        return page.nextAfter !== null ? `${table}More: --after ${page.nextAfter}\n` : table;
      });
    });

  audit
    .command('verify')
    .description('Fetch the whole chain and recompute every hash here, naming the first broken entry')
    .action(async (_o: unknown, command: Command) => {
      const client = ctx.client(command);
      let cursor: ChainCursor = CHAIN_START;
      let broken: ChainBreak | null = null;
      const showProgress = !ctx.json(command) && process.stderr.isTTY;
      for (;;) {
        const page = await client.request<AuditPage>('GET', '/api/v1/audit', undefined, {
          after: cursor.nextSeq - 1,
          limit: 1000,
        });
        const result = verifyChainPage(cursor, page.entries, sha256Hex);
        cursor = result.cursor;
        broken = result.broken;
        if (showProgress) ctx.io.stderr(`\rchecked ${cursor.checked} entries`);
        if (broken || page.nextAfter === null) break;
      }
      if (showProgress) ctx.io.stderr('\n');
      const head = cursor.checked > 0 ? { seq: cursor.nextSeq - 1, hash: cursor.prevHash } : null;
      const result = {
        ok: broken === null,
        checked: cursor.checked,
        head,
        broken: broken ? { seq: broken.seq, kind: broken.kind, message: describeChainBreak(broken) } : null,
      };
      ctx.out(command, result, () =>
        broken
          ? `Audit chain BROKEN at entry ${broken.seq}: ${describeChainBreak(broken)}.\n${cursor.checked} entries before it verify.\n`
          : keyValues([
              ['audit chain', 'intact'],
              ['entries', cursor.checked],
              ['head', head ? `#${head.seq} ${head.hash}` : '(empty)'],
            ]),
      );
      if (broken) throw new CliError(EXIT.failed, 'the audit chain is broken', result, true);
    });
}

/** Human tables keep one line per entry; --json has everything. */
function shorten(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

function normaliseTime(value: string | undefined, flag: string): string | undefined {
  if (value === undefined) return undefined;
  const parsed = new Date(value);
  if (Number.isNaN(parsed.getTime()))
    throw new CliError(EXIT.usage, `${flag} '${value}' is not a time; use e.g. 2026-10-01T00:00:00Z.`);
  return parsed.toISOString();
}
