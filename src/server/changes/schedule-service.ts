/**
 * The change calendar: freezes (one-off or recurring, in a time zone), environment bookings for
 * test cycles, and the iCalendar feed that shows them beside change windows.
 */
import icalModule, { type ICalCalendar } from 'ical-generator';
import type { Kysely } from 'kysely';
import { policyOf } from '../../core/changes.ts';
import { GantryError } from '../../core/errors.ts';
import {
  cronProblem,
  freezeOccurrenceAt,
  freezeOccurrences,
  type Instant,
  overlaps,
  resolveSpan,
} from '../../core/schedule.ts';
import { actorOf, type Principal } from '../auth/principal.ts';
import type { BookingsTable, FreezesTable, Tables } from '../db/schema.ts';
import { newSortableId } from '../ids.ts';
import { supplierScope } from '../inventory/inventory-service.ts';
import { environmentByName } from '../releases/release-service.ts';
import { inTransaction, type TransactionDeps } from '../unit-of-work.ts';
import { instantsOf, namesEnvironment, scheduleOf } from './change-service.ts';

// The package's CommonJS build exposes the factory as the default export.
const ical = icalModule as unknown as (options: { name: string; prodId: string }) => ICalCalendar;

const DAY = 86_400_000;

export interface FreezeInput {
  environment: string;
  name: string;
  reason?: string | undefined;
  start?: string | undefined;
  end?: string | undefined;
  cron?: string | undefined;
  durationMinutes?: number | undefined;
  timeZone?: string | undefined;
}

export interface BookingInput {
  environment: string;
  team: string;
  purpose?: string | undefined;
  start: string;
  end: string;
  timeZone?: string | undefined;
  allowOverlap?: boolean | undefined;
}

export class ScheduleService {
  constructor(private readonly deps: TransactionDeps) {}

  async freezes(filter: { environment?: string | undefined }) {
    const db = this.deps.database.db;
    let query = db
      .selectFrom('freezes as f')
      .innerJoin('environments as e', 'e.id', 'f.environment_id')
      .selectAll('f')
      .select('e.name as environment')
      .where('f.removed_at', 'is', null);
    if (filter.environment) query = query.where('e.name', '=', filter.environment);
    const rows = await query.orderBy('e.position').orderBy('f.created_at').execute();
    const now = this.deps.clock.now();
    return rows.map((r) => freezeView(r, r.environment, now));
  }

  async addFreeze(by: Principal, input: FreezeInput) {
    const once = input.start !== undefined || input.end !== undefined;
    const recurring = input.cron !== undefined || input.durationMinutes !== undefined;
    const zone = input.timeZone ?? 'UTC';
    const problems: Array<{ path: string; message: string }> = [];
    let span: Instant | undefined;
    if (once === recurring) {
      problems.push({
        path: '/',
        message: 'give either start and end (a one-off freeze) or cron and durationMinutes (a recurring one)',
      });
    } else if (once) {
      if (!input.start || !input.end)
        problems.push({ path: '/end', message: 'a one-off freeze needs start and end' });
      else {
        const resolved = resolveSpan({ start: input.start, end: input.end, timeZone: zone }, 'freeze');
        if ('problem' in resolved) problems.push({ path: '/start', message: resolved.problem });
        else span = resolved.ok;
      }
    } else {
      if (!input.cron || !input.durationMinutes)
        problems.push({ path: '/cron', message: 'a recurring freeze needs cron and durationMinutes' });
      else {
        const problem = cronProblem(input.cron, zone);
        if (problem) problems.push({ path: '/cron', message: problem });
      }
    }
    if (problems.length > 0)
      throw new GantryError(
        'VALIDATION',
        `The freeze is not valid: ${problems.map((p) => p.message).join('; ')}.`,
        problems,
      );
    return inTransaction(this.deps, actorOf(by), async (uow) => {
      const env = await environmentByName(uow.db, input.environment);
      const row: FreezesTable = {
        id: newSortableId(),
        environment_id: env.id,
        name: input.name,
        reason: input.reason ?? '',
        kind: span ? 'once' : 'recurring',
        start_at: span ? span.start.toISOString() : null,
        end_at: span ? span.end.toISOString() : null,
        cron: span ? null : (input.cron ?? null),
        duration_minutes: span ? null : (input.durationMinutes ?? null),
        time_zone: zone,
        created_by: actorOf(by).actor,
        created_at: uow.now.toISOString(),
        removed_at: null,
      };
      await uow.db.insertInto('freezes').values(row).execute();
      await uow.audit({
        action: 'freeze.added',
        subject: `freeze:${row.id}`,
        details: {
          environment: env.name,
          name: row.name,
          kind: row.kind,
          start: row.start_at,
          end: row.end_at,
          cron: row.cron,
          durationMinutes: row.duration_minutes,
          timeZone: zone,
        },
      });
      return freezeView(row, env.name, uow.now);
    });
  }

  async removeFreeze(by: Principal, id: string): Promise<void> {
    await inTransaction(this.deps, actorOf(by), async (uow) => {
      const row = await uow.db
        .selectFrom('freezes')
        .selectAll()
        .where('id', '=', id)
        .where('removed_at', 'is', null)
        .executeTakeFirst();
      if (!row) throw new GantryError('NOT_FOUND', `No freeze '${id}'. See \`gantry freeze list\`.`, { id });
      await uow.db
        .updateTable('freezes')
        .set({ removed_at: uow.now.toISOString() })
        .where('id', '=', id)
        .execute();
      await uow.audit({ action: 'freeze.removed', subject: `freeze:${id}`, details: { name: row.name } });
    });
  }

  async bookings(filter: { environment?: string | undefined }) {
    let query = this.deps.database.db
      .selectFrom('bookings as b')
      .innerJoin('environments as e', 'e.id', 'b.environment_id')
      .selectAll('b')
      .select('e.name as environment')
      .where('b.cancelled_at', 'is', null);
    if (filter.environment) query = query.where('e.name', '=', filter.environment);
    return (await query.orderBy('b.start_at').execute()).map((r) => bookingView(r, r.environment));
  }

  /** Books a non-production environment; an overlap is refused unless asked for, then flagged on both. */
  async book(by: Principal, input: BookingInput) {
    const resolved = resolveSpan({ start: input.start, end: input.end, timeZone: input.timeZone }, 'booking');
    if ('problem' in resolved)
      throw new GantryError('VALIDATION', `The booking is not valid: ${resolved.problem}.`, [
        { path: '/start', message: resolved.problem },
      ]);
    const span = resolved.ok;
    return inTransaction(this.deps, actorOf(by), async (uow) => {
      const env = await environmentByName(uow.db, input.environment);
      if (!policyOf(JSON.parse(env.policy) as Record<string, unknown>).bookable)
        throw new GantryError(
          'FORBIDDEN',
          `${env.name} cannot be booked: its policy says it is not bookable (production-like).`,
        );
      const clashing = (
        await uow.db
          .selectFrom('bookings')
          .selectAll()
          .where('environment_id', '=', env.id)
          .where('cancelled_at', 'is', null)
          .where('start_at', '<', span.end.toISOString())
          .where('end_at', '>', span.start.toISOString())
          .execute()
      ).filter((b) => overlaps(span, { start: new Date(b.start_at), end: new Date(b.end_at) }));
      if (clashing.length > 0 && !input.allowOverlap)
        throw new GantryError(
          'CONFLICT',
          `${env.name} is already booked then: ${clashing.map((b) => `${b.team} ${b.start_at}–${b.end_at}`).join(', ')}. Pick another time, or book anyway (allowOverlap, or --allow-overlap on the command line); both are then flagged.`,
          { overlaps: clashing.map((b) => b.id) },
        );
      const row: BookingsTable = {
        id: newSortableId(),
        environment_id: env.id,
        team: input.team,
        purpose: input.purpose ?? '',
        start_at: span.start.toISOString(),
        end_at: span.end.toISOString(),
        overlaps: JSON.stringify(clashing.map((b) => b.id)),
        booked_by: actorOf(by).actor,
        created_at: uow.now.toISOString(),
        cancelled_at: null,
      };
      await uow.db.insertInto('bookings').values(row).execute();
      for (const other of clashing) {
        const theirs = JSON.parse(other.overlaps) as string[];
        await uow.db
          .updateTable('bookings')
          .set({ overlaps: JSON.stringify([...theirs, row.id]) })
          .where('id', '=', other.id)
          .execute();
      }
      await uow.audit({
        action: 'booking.created',
        subject: `booking:${row.id}`,
        details: {
          environment: env.name,
          team: row.team,
          start: row.start_at,
          end: row.end_at,
          overlaps: clashing.map((b) => b.id),
        },
      });
      return bookingView(row, env.name);
    });
  }

  async cancelBooking(by: Principal, id: string): Promise<void> {
    await inTransaction(this.deps, actorOf(by), async (uow) => {
      const row = await uow.db
        .selectFrom('bookings')
        .selectAll()
        .where('id', '=', id)
        .where('cancelled_at', 'is', null)
        .executeTakeFirst();
      if (!row)
        throw new GantryError('NOT_FOUND', `No booking '${id}'. See \`gantry booking list\`.`, { id });
      await uow.db
        .updateTable('bookings')
        .set({ cancelled_at: uow.now.toISOString() })
        .where('id', '=', id)
        .execute();
      await uow.audit({ action: 'booking.cancelled', subject: `booking:${id}`, details: { team: row.team } });
    });
  }

  /**
   * The calendar as iCalendar: change windows, scheduled deployments, freeze occurrences and bookings from 30 days back
   * to 90 days ahead, optionally for one environment. A supplier sees its own changes only.
   */
  async calendar(
    by: Principal,
    filter: { environment?: string | undefined },
    baseUrl: string,
  ): Promise<string> {
    const db = this.deps.database.db;
    const now = this.deps.clock.now();
    const from = new Date(now.getTime() - 30 * DAY);
    const to = new Date(now.getTime() + 90 * DAY);
    const calendar = ical({
      name: `Gantry${filter.environment ? ` — ${filter.environment}` : ''}`,
      prodId: '//Gantry//Change calendar//EN',
    });
    const scope = supplierScope(by);
    let changes = db
      .selectFrom('changes as c')
      .innerJoin('releases as r', 'r.id', 'c.release_id')
      .selectAll('c')
      .select(['r.name as release_name', 'r.version as release_version'])
      .where('c.state', 'not in', ['cancelled', 'rejected'])
      .where('c.window_end', '>', from.toISOString())
      .where('c.window_start', '<', to.toISOString());
    if (scope !== undefined) changes = changes.where('c.supplier_id', '=', scope);
    if (filter.environment) changes = changes.where(namesEnvironment('c.environments', filter.environment));
    for (const c of await changes.execute()) {
      for (const [i, w] of instantsOf(c).entries()) {
        calendar.createEvent({
          id: `change-${c.id}-${i}@gantry`,
          start: w.start,
          end: w.end,
          summary: `CHG-${c.number} ${c.title} [${c.state}]`,
          description: `${c.type} change, ${c.risk} risk: ${c.release_name}@${c.release_version} to ${(JSON.parse(c.environments) as string[]).join(', ')}`,
          categories: [{ name: 'change-window' }],
          url: `${baseUrl}/api/v1/changes/CHG-${c.number}`,
        });
      }
    }
    // Deployments waiting for their change window to open.
    let scheduled = db
      .selectFrom('deployments as d')
      .innerJoin('environments as e', 'e.id', 'd.environment_id')
      .innerJoin('releases as r', 'r.id', 'd.release_id')
      .leftJoin('changes as c', 'c.id', 'd.change_id')
      .select([
        'd.id',
        'd.number',
        'd.scheduled_for',
        'd.strategy',
        'e.name as environment',
        'r.name',
        'r.version',
        'c.window_end',
        'c.supplier_id',
      ])
      .where('d.state', '=', 'scheduled')
      .where('d.scheduled_for', 'is not', null);
    if (filter.environment) scheduled = scheduled.where('e.name', '=', filter.environment);
    for (const d of await scheduled.execute()) {
      if (scope !== undefined && d.supplier_id !== scope) continue;
      const start = new Date(d.scheduled_for as string);
      const end =
        d.window_end && d.window_end > (d.scheduled_for as string)
          ? new Date(d.window_end)
          : new Date(start.getTime() + 3_600_000);
      calendar.createEvent({
        id: `deployment-${d.id}@gantry`,
        start,
        end,
        summary: `DEP-${d.number} ${d.name}@${d.version} to ${d.environment} (scheduled, ${d.strategy})`,
        categories: [{ name: 'deployment' }],
        url: `${baseUrl}/api/v1/deployments/DEP-${d.number}`,
      });
    }
    if (scope === undefined) {
      for (const f of await this.freezesIn(db, filter.environment)) {
        for (const o of freezeOccurrences(scheduleOf(f), from, to, 200)) {
          calendar.createEvent({
            id: `freeze-${f.id}-${o.start.getTime()}@gantry`,
            start: o.start,
            end: o.end,
            summary: `Freeze: ${f.name} (${f.environment})`,
            description: f.reason,
            categories: [{ name: 'freeze' }],
          });
        }
      }
      for (const b of await this.bookings(filter)) {
        if (b.end < from.toISOString() || b.start > to.toISOString()) continue;
        calendar.createEvent({
          id: `booking-${b.id}@gantry`,
          start: new Date(b.start),
          end: new Date(b.end),
          summary: `Booked: ${b.environment} by ${b.team}`,
          description: b.purpose,
          categories: [{ name: 'booking' }],
        });
      }
    }
    return calendar.toString();
  }

  private async freezesIn(db: Kysely<Tables>, environment: string | undefined) {
    let query = db
      .selectFrom('freezes as f')
      .innerJoin('environments as e', 'e.id', 'f.environment_id')
      .selectAll('f')
      .select('e.name as environment')
      .where('f.removed_at', 'is', null);
    if (environment) query = query.where('e.name', '=', environment);
    return query.execute();
  }
}

function freezeView(row: FreezesTable, environment: string, now: Date) {
  const schedule = scheduleOf(row);
  const current = freezeOccurrenceAt(schedule, now);
  const next = current ?? freezeOccurrences(schedule, now, new Date(now.getTime() + 400 * DAY), 1)[0] ?? null;
  return {
    id: row.id,
    environment,
    name: row.name,
    reason: row.reason,
    kind: row.kind as 'once' | 'recurring',
    start: row.start_at,
    end: row.end_at,
    cron: row.cron,
    durationMinutes: row.duration_minutes,
    timeZone: row.time_zone,
    activeNow: current !== null,
    next: next ? { start: next.start.toISOString(), end: next.end.toISOString() } : null,
    createdBy: row.created_by,
    createdAt: row.created_at,
  };
}

function bookingView(row: BookingsTable, environment: string) {
  return {
    id: row.id,
    environment,
    team: row.team,
    purpose: row.purpose,
    start: row.start_at,
    end: row.end_at,
    overlaps: JSON.parse(row.overlaps) as string[],
    bookedBy: row.booked_by,
    createdAt: row.created_at,
  };
}
