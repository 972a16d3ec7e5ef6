/** gantry audit list | verify */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
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
    .option(
      '--against <file>',
      'also compare with a copy of the chain (the server’s GANTRY_AUDIT_FILE), which finds entries removed from the end or rewritten with fresh hashes',
    )
    .option(
      '--expect-head <seq:hash>',
      'also require the chain to contain this entry, e.g. a head you noted earlier',
    )
    .action(async (o: { against?: string; expectHead?: string }, command: Command) => {
      const client = ctx.client(command);
      const copy = o.against !== undefined ? await readCopy(o.against) : undefined;
      const expected = o.expectHead !== undefined ? parseHead(o.expectHead) : undefined;
      if (expected) copy?.set(expected.seq, expected.hash);
      const anchors =
        copy ?? (expected ? new Map([[expected.seq, expected.hash]]) : new Map<number, string>());
      let cursor: ChainCursor = CHAIN_START;
      let broken: ChainBreak | null = null;
      let mismatch: string | null = null;
      const showProgress = !ctx.json(command) && process.stderr.isTTY;
      for (;;) {
        const page = await client.request<AuditPage>('GET', '/api/v1/audit', undefined, {
          after: cursor.nextSeq - 1,
          limit: 1000,
        });
        const result = verifyChainPage(cursor, page.entries, sha256Hex);
        for (const entry of page.entries.slice(0, result.cursor.checked - cursor.checked)) {
          const anchored = anchors.get(entry.seq);
          if (mismatch === null && anchored !== undefined && anchored !== entry.hash) {
            mismatch = `entry ${entry.seq} differs from the copy: the chain was rewritten from there on`;
          }
        }
        cursor = result.cursor;
        broken = result.broken;
        if (showProgress) ctx.io.stderr(`\rchecked ${cursor.checked} entries`);
        if (broken || page.nextAfter === null) break;
      }
      if (showProgress) ctx.io.stderr('\n');
      const head = cursor.checked > 0 ? { seq: cursor.nextSeq - 1, hash: cursor.prevHash } : null;
      const lastAnchored = Math.max(0, ...anchors.keys());
      if (!broken && mismatch === null && lastAnchored > (head?.seq ?? 0)) {
        mismatch = `the chain ends at entry ${head?.seq ?? 0} but the copy goes on to entry ${lastAnchored}: entries were removed from the end`;
      }
      const ok = broken === null && mismatch === null;
      const result = {
        ok,
        checked: cursor.checked,
        head,
        broken: broken
          ? { seq: broken.seq, kind: broken.kind, message: describeChainBreak(broken) }
          : mismatch
            ? { seq: head?.seq ?? 0, kind: 'copy_mismatch', message: mismatch }
            : null,
        comparedWithCopy: copy !== undefined ? copy.size : null,
      };
      ctx.out(command, result, () =>
        broken
          ? `Audit chain BROKEN at entry ${broken.seq}: ${describeChainBreak(broken)}.\n${cursor.checked} entries before it verify.\n`
          : mismatch
            ? `Audit chain BROKEN: ${mismatch}.\n`
            : keyValues([
                ['audit chain', 'intact'],
                ['entries', cursor.checked],
                ['head', head ? `#${head.seq} ${head.hash}` : '(empty)'],
                ...(copy !== undefined
                  ? ([['copy', `${copy.size} entries match`]] as Array<[string, string]>)
                  : []),
              ]),
      );
      if (!ok) throw new CliError(EXIT.failed, 'the audit chain is broken', result, true);
    });
}

/** Human tables keep one line per entry; --json has everything. */
function shorten(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** Reads a JSON-lines copy of the chain into seq → hash. */
async function readCopy(file: string): Promise<Map<number, string>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    throw new CliError(EXIT.usage, `Cannot read ${file}.`);
  }
  const copy = new Map<number, string>();
  text.split('\n').forEach((line, index) => {
    if (line.trim() === '') return;
    let entry: { seq?: unknown; hash?: unknown };
    try {
      entry = JSON.parse(line);
    } catch {
      throw new CliError(
        EXIT.usage,
        `${file} line ${index + 1} is not JSON; give the server's GANTRY_AUDIT_FILE.`,
      );
    }
    if (typeof entry.seq !== 'number' || typeof entry.hash !== 'string') {
      throw new CliError(EXIT.usage, `${file} line ${index + 1} is not an audit entry.`);
    }
    copy.set(entry.seq, entry.hash);
  });
  return copy;
}

function parseHead(text: string): { seq: number; hash: string } {
  const match = /^(\d+):([0-9a-f]{64})$/.exec(text);
  if (!match)
    throw new CliError(
      EXIT.usage,
      '--expect-head must read SEQ:HASH, e.g. 42:9f86d08…, as `gantry audit verify` prints it.',
    );
  return { seq: Number(match[1]), hash: match[2] as string };
}

function normaliseTime(value: string | undefined, flag: string): string | undefined {
  if (value === undefined) return undefined;
  const parsed = new Date(value);
  if (Number.isNaN(parsed.getTime()))
    throw new CliError(EXIT.usage, `${flag} '${value}' is not a time; use e.g. 2026-10-01T00:00:00Z.`);
  return parsed.toISOString();
}
