/** gantry freeze add | list | remove; gantry booking add | list | cancel; gantry calendar */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Static } from '@sinclair/typebox';
import type { Command } from 'commander';
import type { BookingSchema, FreezeSchema } from '../../protocol/changes.ts';
import type { CliContext } from '../context.ts';
import { CliError, EXIT } from '../exit-codes.ts';
import { formatDuration, inZone, parseDuration, utc } from '../option-parsers.ts';
import { renderTable } from '../output.ts';

type FreezeView = Static<typeof FreezeSchema>;
type BookingView = Static<typeof BookingSchema>;

function when(f: FreezeView): string {
  if (f.kind === 'once' && f.start && f.end)
    return `${inZone(f.start, f.timeZone)} – ${inZone(f.end, f.timeZone)}`;
  return `cron '${f.cron}' for ${formatDuration(f.durationMinutes ?? 0)} (${f.timeZone})`;
}

function freezeTable(freezes: FreezeView[]): string {
  return renderTable(
    ['ENVIRONMENT', 'NAME', 'WHEN', 'NOW', 'CURRENT/NEXT (UTC)', 'REASON', 'ID'],
    freezes.map((f) => [
      f.environment,
      f.name,
      when(f),
      f.activeNow ? 'FROZEN' : 'open',
      f.next ? `${utc(f.next.start)} – ${utc(f.next.end)}` : 'none ahead',
      f.reason || null,
      f.id,
    ]),
  );
}

export function addScheduleCommands(program: Command, ctx: CliContext): void {
  const freeze = program
    .command('freeze')
    .description('Freezes: times when an environment takes no changes (one-off or recurring)');
  freeze
    .command('add')
    .description(
      'Freeze an environment once (--start/--end) or on a schedule (--cron/--duration) (change authority)',
    )
    .requiredOption('--env <name>', 'environment')
    .requiredOption('--name <name>', 'e.g. "year-end"')
    .option('--reason <text>', 'why')
    .option('--start <time>', 'one-off: start, e.g. 2026-12-20T00:00 (local to --tz)')
    .option('--end <time>', 'one-off: end')
    .option('--cron <expr>', 'recurring: when each freeze starts, five fields, e.g. "0 18 * * 5"')
    .option('--duration <d>', 'recurring: how long each lasts, e.g. 90m, 62h, 3d')
    .option('--tz <zone>', 'IANA time zone for the times or the cron (default UTC), e.g. Europe/Berlin')
    .action(
      async (
        o: {
          env: string;
          name: string;
          reason?: string;
          start?: string;
          end?: string;
          cron?: string;
          duration?: string;
          tz?: string;
        },
        command: Command,
      ) => {
        const once = o.start !== undefined || o.end !== undefined;
        const recurring = o.cron !== undefined || o.duration !== undefined;
        if (once === recurring)
          throw new CliError(
            EXIT.usage,
            'Give --start and --end (a one-off freeze) or --cron and --duration (a recurring one).',
          );
        if (once && (o.start === undefined || o.end === undefined))
          throw new CliError(EXIT.usage, 'A one-off freeze needs both --start and --end.');
        if (recurring && (o.cron === undefined || o.duration === undefined))
          throw new CliError(EXIT.usage, 'A recurring freeze needs both --cron and --duration.');
        const f = await ctx.client(command).request<FreezeView>('POST', '/api/v1/freezes', {
          environment: o.env,
          name: o.name,
          ...(o.reason !== undefined ? { reason: o.reason } : {}),
          ...(once ? { start: o.start, end: o.end } : {}),
          ...(recurring ? { cron: o.cron, durationMinutes: parseDuration(o.duration ?? '') } : {}),
          ...(o.tz !== undefined ? { timeZone: o.tz } : {}),
        });
        ctx.out(
          command,
          f,
          () =>
            `Added freeze ${f.name} on ${f.environment}: ${when(f)}. ` +
            `${f.activeNow ? 'It holds now' : f.next ? `Next: ${utc(f.next.start)} – ${utc(f.next.end)}` : 'No occurrence ahead'}. (id ${f.id})\n`,
        );
      },
    );
  freeze
    .command('list')
    .description('List freezes: whether each holds now, and its current or next occurrence')
    .option('--env <name>', 'only this environment')
    .action(async (o: { env?: string }, command: Command) => {
      const body = await ctx
        .client(command)
        .request<{ freezes: FreezeView[] }>('GET', '/api/v1/freezes', undefined, { environment: o.env });
      ctx.out(command, body, () => freezeTable(body.freezes));
    });
  freeze
    .command('remove')
    .description('Remove a freeze (change authority)')
    .argument('<id>', 'freeze id (gantry freeze list)')
    .action(async (id: string, _o: unknown, command: Command) => {
      await ctx.client(command).request('DELETE', `/api/v1/freezes/${encodeURIComponent(id)}`);
      ctx.out(command, { removed: id }, () => `Removed freeze ${id}.\n`);
    });

  const booking = program
    .command('booking')
    .description('Bookings: a team holds a non-production environment for a test cycle');
  booking
    .command('add')
    .description(
      'Book an environment for a team (refused when another booking overlaps, unless --allow-overlap)',
    )
    .requiredOption('--env <name>', 'environment (its policy must allow booking)')
    .requiredOption('--team <team>', 'who books it')
    .requiredOption('--start <time>', 'e.g. 2026-11-24T09:00 (local to --tz)')
    .requiredOption('--end <time>', 'e.g. 2026-11-28T18:00')
    .option('--tz <zone>', 'IANA time zone for --start/--end (default UTC)')
    .option('--purpose <text>', 'what for')
    .option('--allow-overlap', 'book even when another booking overlaps; both are flagged')
    .action(
      async (
        o: {
          env: string;
          team: string;
          start: string;
          end: string;
          tz?: string;
          purpose?: string;
          allowOverlap?: boolean;
        },
        command: Command,
      ) => {
        const b = await ctx.client(command).request<BookingView>('POST', '/api/v1/bookings', {
          environment: o.env,
          team: o.team,
          start: o.start,
          end: o.end,
          ...(o.tz !== undefined ? { timeZone: o.tz } : {}),
          ...(o.purpose !== undefined ? { purpose: o.purpose } : {}),
          ...(o.allowOverlap ? { allowOverlap: true } : {}),
        });
        ctx.out(
          command,
          b,
          () =>
            `Booked ${b.environment} for ${b.team}: ${utc(b.start)} – ${utc(b.end)} (id ${b.id}).` +
            `${b.overlaps.length ? ` It overlaps ${b.overlaps.length} other booking(s): ${b.overlaps.join(', ')}.` : ''}\n`,
        );
      },
    );
  booking
    .command('list')
    .description('List bookings')
    .option('--env <name>', 'only this environment')
    .action(async (o: { env?: string }, command: Command) => {
      const body = await ctx
        .client(command)
        .request<{ bookings: BookingView[] }>('GET', '/api/v1/bookings', undefined, { environment: o.env });
      ctx.out(command, body, () =>
        renderTable(
          ['ENVIRONMENT', 'TEAM', 'FROM (UTC)', 'TO (UTC)', 'PURPOSE', 'OVERLAPS', 'BY', 'ID'],
          body.bookings.map((b) => [
            b.environment,
            b.team,
            utc(b.start),
            utc(b.end),
            b.purpose || null,
            b.overlaps.length ? b.overlaps.join(', ') : null,
            b.bookedBy,
            b.id,
          ]),
        ),
      );
    });
  booking
    .command('cancel')
    .description('Cancel a booking')
    .argument('<id>', 'booking id (gantry booking list)')
    .action(async (id: string, _o: unknown, command: Command) => {
      await ctx.client(command).request('DELETE', `/api/v1/bookings/${encodeURIComponent(id)}`);
      ctx.out(command, { cancelled: id }, () => `Cancelled booking ${id}.\n`);
    });

  program
    .command('calendar')
    .description(
      'The change calendar as iCalendar: change windows, freezes and bookings (30 days back, 90 ahead)',
    )
    .option('--env <name>', 'only this environment')
    .option('-o, --output <file>', 'write it to this file instead of printing it')
    .action(async (o: { env?: string; output?: string }, command: Command) => {
      const client = ctx.client(command);
      const ics = await client.getText(
        '/api/v1/calendar.ics',
        { environment: o.env },
        'text/calendar, application/json',
      );
      const events = ics.match(/^BEGIN:VEVENT\r?$/gm)?.length ?? 0;
      if (o.output !== undefined) {
        await writeFile(o.output, ics).catch((error: Error) => {
          throw new CliError(EXIT.failed, `Cannot write ${o.output}: ${error.message}`);
        });
        ctx.out(
          command,
          { file: path.resolve(o.output), events },
          () =>
            `Wrote ${events} event(s) to ${o.output}. Calendar apps can subscribe to ${client.baseUrl}/api/v1/calendar.ics` +
            `${o.env ? `?environment=${o.env}` : ''} (the API token as the Basic password).\n`,
        );
        return;
      }
      // The feed is not JSON; --json wraps it so a script still reads one JSON document.
      ctx.out(command, { events, ics }, () => ics);
    });
}
