/**
 * Time in change control: change windows and freezes are written in a time zone (a window
 * "Tuesday 22:00–23:00 Europe/Berlin", a freeze "every Friday 18:00 for 62 hours"), and decided
 * against instants. Everything here is pure: `now` is always passed in.
 */
import { CronExpressionParser } from 'cron-parser';
import { DateTime, IANAZone } from 'luxon';

/** The longest a single window, booking or one-off freeze may last. */
export const MAX_SPAN_DAYS = 92;

export interface ZonedSpan {
  /** ISO-8601 local date-time (`2026-11-24T22:00`) or with an offset (`…Z`, `…+01:00`). */
  start: string;
  end: string;
  /** IANA time zone the local times are read in; `UTC` when omitted. */
  timeZone?: string | undefined;
}

export interface Instant {
  start: Date;
  end: Date;
}

export type Resolved<T> = { ok: T } | { problem: string };

export function isValidTimeZone(zone: string): boolean {
  return IANAZone.isValidZone(zone);
}

/** Reads a span in its time zone; refuses a bad zone, a bad time, or an end not after the start. */
export function resolveSpan(span: ZonedSpan, what = 'window'): Resolved<Instant> {
  const zone = span.timeZone ?? 'UTC';
  if (!isValidTimeZone(zone))
    return { problem: `time zone '${zone}' is not an IANA time zone (e.g. Europe/Berlin, UTC)` };
  const start = DateTime.fromISO(span.start, { zone });
  const end = DateTime.fromISO(span.end, { zone });
  if (!start.isValid) return { problem: `${what} start '${span.start}' is not an ISO-8601 date-time` };
  if (!end.isValid) return { problem: `${what} end '${span.end}' is not an ISO-8601 date-time` };
  if (end <= start)
    return { problem: `the ${what} ends (${span.end}) before or when it starts (${span.start})` };
  if (end.diff(start, 'days').days > MAX_SPAN_DAYS)
    return { problem: `the ${what} lasts longer than ${MAX_SPAN_DAYS} days` };
  return { ok: { start: start.toUTC().toJSDate(), end: end.toUTC().toJSDate() } };
}

export function contains(span: Instant, at: Date): boolean {
  return span.start.getTime() <= at.getTime() && at.getTime() < span.end.getTime();
}

export function overlaps(a: Instant, b: Instant): boolean {
  return a.start.getTime() < b.end.getTime() && b.start.getTime() < a.end.getTime();
}

export type FreezeSchedule =
  | { kind: 'once'; start: Date; end: Date }
  | { kind: 'recurring'; cron: string; durationMinutes: number; timeZone: string };

/** Checks a recurring freeze's cron expression (five fields, read in its time zone). */
export function cronProblem(cron: string, timeZone: string): string | null {
  if (!isValidTimeZone(timeZone)) return `time zone '${timeZone}' is not an IANA time zone`;
  if (cron.trim().split(/\s+/).length !== 5)
    return `'${cron}' is not a five-field cron expression (minute hour day-of-month month day-of-week), e.g. '0 18 * * 5'`;
  try {
    CronExpressionParser.parse(cron, { tz: timeZone, strict: false });
    return null;
  } catch (error) {
    return `'${cron}' is not a valid cron expression: ${(error as Error).message}`;
  }
}

/** The freeze occurrence covering `at`, if any. */
export function freezeOccurrenceAt(schedule: FreezeSchedule, at: Date): Instant | null {
  if (schedule.kind === 'once') {
    const span = { start: schedule.start, end: schedule.end };
    return contains(span, at) ? span : null;
  }
  // The latest start at or before `at` has the latest end of all earlier ones (same duration).
  const expression = CronExpressionParser.parse(schedule.cron, {
    tz: schedule.timeZone,
    currentDate: new Date(at.getTime() + 1000),
  });
  if (!expression.hasPrev()) return null;
  const start = expression.prev().toDate();
  const span = { start, end: new Date(start.getTime() + schedule.durationMinutes * 60_000) };
  return contains(span, at) ? span : null;
}

/** Every occurrence that overlaps [from, to), for calendars; at most `limit`. */
export function freezeOccurrences(schedule: FreezeSchedule, from: Date, to: Date, limit = 500): Instant[] {
  const range = { start: from, end: to };
  if (schedule.kind === 'once') {
    const span = { start: schedule.start, end: schedule.end };
    return overlaps(span, range) ? [span] : [];
  }
  const out: Instant[] = [];
  const first = freezeOccurrenceAt(schedule, from);
  if (first) out.push(first);
  const expression = CronExpressionParser.parse(schedule.cron, {
    tz: schedule.timeZone,
    currentDate: from,
    endDate: to,
  });
  while (out.length < limit && expression.hasNext()) {
    const start = expression.next().toDate();
    if (start.getTime() >= to.getTime()) break;
    if (first && start.getTime() === first.start.getTime()) continue;
    out.push({ start, end: new Date(start.getTime() + schedule.durationMinutes * 60_000) });
  }
  return out;
}
