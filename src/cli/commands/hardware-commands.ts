/** gantry hardware add | import | list | show | move */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { HARDWARE_STATES } from '../../core/hardware.ts';
import type { HardwareItemView } from '../../protocol/hardware.ts';
import type { CliContext } from '../context.ts';
import { CliError, EXIT } from '../exit-codes.ts';
import { keyValues, renderTable } from '../output.ts';

interface Move {
  at: string;
  actor: string;
  fromState: string;
  toState: string;
  toLocation: string;
  target: string | null;
  changeId: string | null;
  note: string | null;
}

function itemTable(items: HardwareItemView[]): string {
  return renderTable(
    ['ASSET TAG', 'MODEL', 'VENDOR', 'SERIAL', 'FIRMWARE', 'STATE', 'LOCATION', 'TARGET'],
    items.map((i) => [
      i.assetTag,
      i.model,
      i.vendor,
      i.serial,
      i.firmwareVersion,
      i.state,
      i.location,
      i.target,
    ]),
  );
}

function showItem(detail: { item: HardwareItemView; moves: Move[] }): string {
  const i = detail.item;
  const head = keyValues([
    ['asset tag', i.assetTag],
    ['model', `${i.vendor} ${i.model}`],
    ['serial', i.serial],
    ['firmware', i.firmwareVersion],
    ['state', i.state],
    ['location', i.location],
    ['target', i.target],
    ['id', i.id],
  ]);
  const moves = detail.moves.length
    ? renderTable(
        ['WHEN (UTC)', 'WHO', 'FROM', 'TO', 'LOCATION', 'TARGET', 'CHANGE', 'NOTE'],
        detail.moves.map((m) => [
          m.at,
          m.actor,
          m.fromState,
          m.toState,
          m.toLocation,
          m.target,
          m.changeId,
          m.note,
        ]),
      )
    : 'no moves yet\n';
  return `${head}\nHistory:\n${moves}`;
}

export function addHardwareCommands(program: Command, ctx: CliContext): void {
  const hw = program
    .command('hardware')
    .description('The hardware store: spare items, their firmware and their moves');

  hw.command('add')
    .description('Add an item to the store')
    .requiredOption('--asset-tag <tag>', 'unique asset tag')
    .requiredOption('--model <model>', 'model')
    .requiredOption('--vendor <vendor>', 'vendor')
    .requiredOption('--serial <serial>', 'serial number')
    .requiredOption('--location <location>', 'where it is kept')
    .option('--firmware <version>', 'firmware version it carries')
    .action(async (o: Record<string, string | undefined>, command: Command) => {
      const item = await ctx.client(command).request<HardwareItemView>('POST', '/api/v1/hardware', {
        assetTag: o.assetTag,
        model: o.model,
        vendor: o.vendor,
        serial: o.serial,
        location: o.location,
        ...(o.firmware ? { firmwareVersion: o.firmware } : {}),
      });
      ctx.out(
        command,
        item,
        () => `Added ${item.assetTag} (${item.vendor} ${item.model}) in ${item.location}.\n`,
      );
    });

  hw.command('import')
    .description(
      'Import items from CSV: header asset_tag,model,vendor,serial,firmware_version,location; all or nothing',
    )
    .argument('<file>', 'CSV file')
    .action(async (file: string, _o: unknown, command: Command) => {
      const csv = await readFile(file, 'utf8').catch(() => {
        throw new CliError(EXIT.usage, `Cannot read ${file}.`);
      });
      const client = ctx.client(command);
      try {
        const result = await client.requestText<{ imported: number; items: HardwareItemView[] }>(
          'POST',
          '/api/v1/hardware/import',
          csv,
          'text/csv',
        );
        ctx.out(command, result, () => `Imported ${result.imported} items.\n`);
      } catch (error) {
        const details = (error as CliError).body as
          | { error?: { details?: Array<{ line: number | null; message: string }> } }
          | undefined;
        if (error instanceof CliError && Array.isArray(details?.error?.details) && !ctx.json(command)) {
          ctx.io.stderr(
            renderTable(
              ['LINE', 'PROBLEM'],
              details.error.details.map((d) => [d.line, d.message]),
            ),
          );
        }
        throw error;
      }
    });

  hw.command('list')
    .description('List items')
    .option('--state <state>', HARDWARE_STATES.join(', '))
    .option('--model <model>', 'only this model')
    .option('--firmware <version>', 'only items carrying this firmware')
    .option('--location <location>', 'only items here')
    .action(async (o: Record<string, string | undefined>, command: Command) => {
      const body = await ctx
        .client(command)
        .request<{ items: HardwareItemView[] }>('GET', '/api/v1/hardware', undefined, {
          state: o.state,
          model: o.model,
          firmwareVersion: o.firmware,
          location: o.location,
        });
      ctx.out(command, body, () => itemTable(body.items));
    });

  hw.command('show')
    .description('Show an item and its history')
    .argument('<item>', 'asset tag or id')
    .action(async (ref: string, _o: unknown, command: Command) => {
      const detail = await ctx
        .client(command)
        .request<{ item: HardwareItemView; moves: Move[] }>(
          'GET',
          `/api/v1/hardware/${encodeURIComponent(ref)}`,
        );
      ctx.out(command, detail, () => showItem(detail));
    });

  hw.command('move')
    .description('Move an item: reserved, deployed (to a target or site), returned, in_store or retired')
    .argument('<item>', 'asset tag or id')
    .requiredOption('--to <state>', HARDWARE_STATES.join(', '))
    .option('--location <location>', 'where it goes')
    .option('--target <target>', 'the target it is deployed to')
    .option('--change <id>', 'the change request this move is part of')
    .option('--firmware <version>', 'firmware it carries after the move')
    .option('--note <text>', 'a note for the history')
    .action(async (ref: string, o: Record<string, string | undefined>, command: Command) => {
      const detail = await ctx
        .client(command)
        .request<{ item: HardwareItemView; moves: Move[] }>(
          'POST',
          `/api/v1/hardware/${encodeURIComponent(ref)}/moves`,
          {
            to: o.to,
            ...(o.location ? { location: o.location } : {}),
            ...(o.target ? { target: o.target } : {}),
            ...(o.change ? { changeId: o.change } : {}),
            ...(o.firmware ? { firmwareVersion: o.firmware } : {}),
            ...(o.note ? { note: o.note } : {}),
          },
        );
      ctx.out(command, detail, () => showItem(detail));
    });
}
