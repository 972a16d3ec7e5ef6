/**
 * The hardware store: spare items under control. Every move out of or back into the store keeps
 * its history and is audited; an import is all or nothing.
 */
import { parse } from 'csv-parse/sync';
import { type Kysely, sql } from 'kysely';
import { policyOf } from '../../core/changes.ts';
import { GantryError } from '../../core/errors.ts';
import { type HardwareState, isHardwareState, moveProblem } from '../../core/hardware.ts';
import { actorOf, type Principal } from '../auth/principal.ts';
import { isUniqueViolation } from '../db/db-errors.ts';
import type { HardwareItemsTable, HardwareMovesTable, Tables } from '../db/schema.ts';
import { newSortableId } from '../ids.ts';
import { inTransaction, type TransactionDeps, type UnitOfWork } from '../unit-of-work.ts';

export interface HardwareItem {
  id: string;
  assetTag: string;
  model: string;
  vendor: string;
  serial: string;
  firmwareVersion: string | null;
  location: string;
  state: HardwareState;
  target: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface HardwareMove {
  id: string;
  at: string;
  actor: string;
  fromState: HardwareState;
  toState: HardwareState;
  fromLocation: string;
  toLocation: string;
  target: string | null;
  changeId: string | null;
  note: string | null;
}

export interface NewItem {
  assetTag: string;
  model: string;
  vendor: string;
  serial: string;
  firmwareVersion?: string | undefined;
  location: string;
}

export interface MoveInput {
  to: HardwareState;
  location?: string | undefined;
  target?: string | undefined;
  changeId?: string | undefined;
  note?: string | undefined;
  firmwareVersion?: string | undefined;
  /** The environment a site deployment goes into, when there is no target to tell. */
  environment?: string | undefined;
}

const CSV_COLUMNS = ['asset_tag', 'model', 'vendor', 'serial', 'firmware_version', 'location'] as const;
const MAX_IMPORT_ROWS = 10_000;
const TAG = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** What a hardware move into a controlled environment must show: an approved change for it. */
export interface ChangeGate {
  requireActiveChange(uow: UnitOfWork, envName: string, ref: string | undefined, what: string): Promise<void>;
}

export class HardwareService {
  constructor(
    private readonly deps: TransactionDeps,
    private readonly changes: ChangeGate,
  ) {}

  async list(filter: {
    state?: HardwareState | undefined;
    model?: string | undefined;
    firmwareVersion?: string | undefined;
    location?: string | undefined;
  }) {
    let query = this.deps.database.db.selectFrom('hardware_items').selectAll();
    if (filter.state) query = query.where('state', '=', filter.state);
    if (filter.model) query = query.where('model', '=', filter.model);
    if (filter.firmwareVersion) query = query.where('firmware_version', '=', filter.firmwareVersion);
    if (filter.location) query = query.where('location', '=', filter.location);
    return (await query.orderBy('asset_tag').execute()).map(toItem);
  }

  /** By id or by asset tag. */
  async show(ref: string): Promise<{ item: HardwareItem; moves: HardwareMove[] }> {
    const item = await findItem(this.deps.database.db, ref);
    if (!item) throw notFound(ref);
    const moves = await this.deps.database.db
      .selectFrom('hardware_moves')
      .selectAll()
      .where('item_id', '=', item.id)
      .orderBy('at')
      .orderBy('id')
      .execute();
    return { item, moves: moves.map(toMove) };
  }

  async add(by: Principal, input: NewItem): Promise<HardwareItem> {
    try {
      return await inTransaction(this.deps, actorOf(by), async (uow) => {
        const item = await insertItem(uow.db, input, uow.now.toISOString());
        await uow.audit({
          action: 'hardware.added',
          subject: `hardware:${item.id}`,
          details: { assetTag: item.assetTag, model: item.model, serial: item.serial },
        });
        return item;
      });
    } catch (error) {
      if (isUniqueViolation(error))
        throw new GantryError('CONFLICT', `Asset tag '${input.assetTag}' is already in the hardware store.`, {
          field: '/assetTag',
        });
      throw error;
    }
  }

  /**
   * Imports items from CSV with the header `asset_tag,model,vendor,serial,firmware_version,location`.
   * Every line is checked first; when any is bad, nothing is imported and each problem is listed
   * with its line number.
   */
  async importCsv(by: Principal, csv: string): Promise<HardwareItem[]> {
    let records: string[][];
    let lineOf: number[] = [];
    try {
      // `info` gives each record's real line number: blank lines and quoted line breaks shift them.
      const parsed = parse(csv, {
        skip_empty_lines: true,
        trim: true,
        relax_column_count: true,
        info: true,
      }) as unknown as Array<{
        record: string[];
        info: { lines: number };
      }>;
      records = parsed.map((p) => p.record);
      lineOf = parsed.map((p) => p.info.lines);
    } catch (error) {
      throw new GantryError('VALIDATION', `The CSV cannot be read: ${(error as Error).message}`, [
        { line: null, message: (error as Error).message },
      ]);
    }
    const [header, ...rows] = records;
    const expected = CSV_COLUMNS.join(',');
    if (!header || header.map((h) => h.toLowerCase()).join(',') !== expected) {
      throw new GantryError('VALIDATION', `The first line must be the header '${expected}'.`, [
        { line: 1, message: `expected header ${expected}` },
      ]);
    }
    if (rows.length === 0)
      throw new GantryError('VALIDATION', 'The CSV has a header but no items.', [
        { line: 2, message: 'no items' },
      ]);
    if (rows.length > MAX_IMPORT_ROWS)
      throw new GantryError('VALIDATION', `At most ${MAX_IMPORT_ROWS} items per import.`, [
        { line: null, message: 'too many lines' },
      ]);

    const problems: Array<{ line: number; message: string }> = [];
    const items: NewItem[] = [];
    const seen = new Map<string, number>();
    rows.forEach((row, index) => {
      const line = lineOf[index + 1] ?? index + 2;
      if (row.length !== CSV_COLUMNS.length) {
        problems.push({ line, message: `expected ${CSV_COLUMNS.length} fields, found ${row.length}` });
        return;
      }
      const [assetTag, model, vendor, serial, firmwareVersion, location] = row as [
        string,
        string,
        string,
        string,
        string,
        string,
      ];
      const missing = (['asset_tag', 'model', 'vendor', 'serial', 'location'] as const).filter(
        (_, i) => [assetTag, model, vendor, serial, location][i] === '',
      );
      if (missing.length) problems.push({ line, message: `empty ${missing.join(', ')}` });
      if (assetTag && !TAG.test(assetTag))
        problems.push({ line, message: `asset tag '${assetTag}' may hold only letters, digits and . _ -` });
      // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused.
      if (row.some((f) => /[\u0000-\u001f]/.test(f) || f.length > 200))
        problems.push({ line, message: 'a field has control characters or is longer than 200 characters' });
      const earlier = seen.get(assetTag);
      if (assetTag && earlier !== undefined)
        problems.push({ line, message: `asset tag '${assetTag}' repeats line ${earlier}` });
      seen.set(assetTag, line);
      items.push({
        assetTag,
        model,
        vendor,
        serial,
        firmwareVersion: firmwareVersion || undefined,
        location,
      });
    });
    if (problems.length === 0) {
      const tags = items.map((i) => i.assetTag);
      for (let i = 0; i < tags.length; i += 500) {
        const existing = await this.deps.database.db
          .selectFrom('hardware_items')
          .select('asset_tag')
          .where('asset_tag', 'in', tags.slice(i, i + 500))
          .execute();
        for (const row of existing)
          problems.push({
            line: seen.get(row.asset_tag) ?? 0,
            message: `asset tag '${row.asset_tag}' is already in the store`,
          });
      }
    }
    if (problems.length > 0) {
      problems.sort((a, b) => a.line - b.line);
      throw new GantryError(
        'VALIDATION',
        `Nothing was imported: ${problems.length} problem(s), first on line ${problems[0]?.line}: ${problems[0]?.message}.`,
        problems,
      );
    }
    try {
      return await inTransaction(this.deps, actorOf(by), async (uow) => {
        const created: HardwareItem[] = [];
        for (const input of items) created.push(await insertItem(uow.db, input, uow.now.toISOString()));
        await uow.audit({
          action: 'hardware.imported',
          subject: 'hardware',
          details: { count: created.length, assetTags: created.map((c) => c.assetTag) },
        });
        return created;
      });
    } catch (error) {
      if (isUniqueViolation(error))
        throw new GantryError(
          'CONFLICT',
          'Another import added some of these asset tags at the same time; nothing was imported. Try again.',
        );
      throw error;
    }
  }

  async move(
    by: Principal,
    ref: string,
    input: MoveInput,
  ): Promise<{ item: HardwareItem; moves: HardwareMove[] }> {
    await inTransaction(this.deps, actorOf(by), async (uow) => {
      const item = await findItem(uow.db, ref);
      if (!item) throw notFound(ref);
      const problem = moveProblem(item.state, input.to);
      if (problem)
        throw new GantryError(
          'ILLEGAL_TRANSITION',
          `${item.assetTag} cannot move to ${input.to}: ${problem}.`,
          { from: item.state, to: input.to },
        );
      if (input.to === 'deployed' && !input.target && !input.location) {
        throw new GantryError('VALIDATION', 'Say where the item is deployed: give a target or a location.', [
          { path: '/target', message: 'required when deploying' },
        ]);
      }
      const toLocation = input.location ?? item.location;
      const target = input.to === 'deployed' ? (input.target ?? null) : null;
      if (input.to === 'deployed') {
        // Into a controlled environment (the target's, or the one named) only under an approved change.
        const env = await environmentOfMove(uow.db, target, input.environment);
        if (env && policyOf(JSON.parse(env.policy) as Record<string, unknown>).changeRequired)
          await this.changes.requireActiveChange(
            uow,
            env.name,
            input.changeId,
            `Deploying hardware ${item.assetTag}`,
          );
      }
      const move: HardwareMovesTable = {
        id: newSortableId(),
        item_id: item.id,
        at: uow.now.toISOString(),
        actor: actorOf(by).actor,
        from_state: item.state,
        to_state: input.to,
        from_location: item.location,
        to_location: toLocation,
        target,
        change_id: input.changeId ?? null,
        note: input.note ?? null,
      };
      await uow.db.insertInto('hardware_moves').values(move).execute();
      await uow.db
        .updateTable('hardware_items')
        .set({
          state: input.to,
          location: toLocation,
          target,
          updated_at: uow.now.toISOString(),
          ...(input.firmwareVersion !== undefined ? { firmware_version: input.firmwareVersion } : {}),
        })
        .where('id', '=', item.id)
        .execute();
      await uow.audit({
        action: 'hardware.moved',
        subject: `hardware:${item.id}`,
        details: {
          assetTag: item.assetTag,
          from: item.state,
          to: input.to,
          location: toLocation,
          target,
          changeId: move.change_id,
        },
      });
    });
    return this.show(ref);
  }
}

async function insertItem(db: Kysely<Tables>, input: NewItem, now: string): Promise<HardwareItem> {
  const row: HardwareItemsTable = {
    id: newSortableId(),
    asset_tag: input.assetTag,
    model: input.model,
    vendor: input.vendor,
    serial: input.serial,
    firmware_version: input.firmwareVersion ?? null,
    location: input.location,
    state: 'in_store',
    target: null,
    created_at: now,
    updated_at: now,
  };
  await db.insertInto('hardware_items').values(row).execute();
  return toItem(row);
}

async function findItem(db: Kysely<Tables>, ref: string): Promise<HardwareItem | undefined> {
  const row = await db
    .selectFrom('hardware_items')
    .selectAll()
    .where((eb) => eb.or([eb('id', '=', ref), eb('asset_tag', '=', ref)]))
    // An id always wins over an asset tag that happens to look like it.
    .orderBy(sql`case when id = ${ref} then 0 else 1 end`)
    .limit(1)
    .executeTakeFirst();
  return row ? toItem(row) : undefined;
}

function notFound(ref: string): GantryError {
  return new GantryError(
    'NOT_FOUND',
    `No hardware item '${ref}' (by id or asset tag). See \`gantry hardware list\`.`,
    { ref },
  );
}

function toItem(row: HardwareItemsTable): HardwareItem {
  if (!isHardwareState(row.state))
    throw new Error(`hardware item ${row.id} has an unknown state '${row.state}'`);
  return {
    id: row.id,
    assetTag: row.asset_tag,
    model: row.model,
    vendor: row.vendor,
    serial: row.serial,
    firmwareVersion: row.firmware_version,
    location: row.location,
    state: row.state,
    target: row.target,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function toMove(row: HardwareMovesTable): HardwareMove {
  return {
    id: row.id,
    at: row.at,
    actor: row.actor,
    fromState: row.from_state as HardwareState,
    toState: row.to_state as HardwareState,
    fromLocation: row.from_location,
    toLocation: row.to_location,
    target: row.target,
    changeId: row.change_id,
    note: row.note,
  };
}

async function environmentOfMove(db: Kysely<Tables>, target: string | null, environment: string | undefined) {
  if (target) {
    const row = await db
      .selectFrom('targets as t')
      .innerJoin('environments as e', 'e.id', 't.environment_id')
      .select(['e.name', 'e.policy'])
      .where('t.name', '=', target)
      .executeTakeFirst();
    if (row) return row;
  }
  if (!environment) return undefined;
  const row = await db
    .selectFrom('environments')
    .select(['name', 'policy'])
    .where('name', '=', environment)
    .executeTakeFirst();
  if (!row) throw new GantryError('NOT_FOUND', `No environment '${environment}'. See \`gantry env list\`.`);
  return row;
}
