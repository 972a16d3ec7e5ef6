import { describe, expect, it } from 'vitest';
import {
  contains,
  cronProblem,
  type FreezeSchedule,
  freezeOccurrenceAt,
  freezeOccurrences,
  type Instant,
  isValidTimeZone,
  MAX_SPAN_DAYS,
  overlaps,
  resolveSpan,
} from './schedule.ts';

const at = (iso: string) => new Date(iso);
const span = (start: string, end: string): Instant => ({ start: at(start), end: at(end) });
const HOUR = 3_600_000;

describe('resolveSpan', () => {
  it('reads local times in the named zone (winter, CET = UTC+1)', () => {
    expect(
      resolveSpan({ start: '2026-11-24T22:00', end: '2026-11-24T23:00', timeZone: 'Europe/Berlin' }),
    ).toEqual({
      ok: span('2026-11-24T21:00:00Z', '2026-11-24T22:00:00Z'),
    });
  });

  it('reads local times in the named zone (summer, CEST = UTC+2)', () => {
    expect(
      resolveSpan({ start: '2026-07-01T22:00', end: '2026-07-01T23:00', timeZone: 'Europe/Berlin' }),
    ).toEqual({
      ok: span('2026-07-01T20:00:00Z', '2026-07-01T21:00:00Z'),
    });
  });

  it('reads local times as UTC when no zone is given', () => {
    expect(resolveSpan({ start: '2026-11-24T22:00', end: '2026-11-24T23:00' })).toEqual({
      ok: span('2026-11-24T22:00:00Z', '2026-11-24T23:00:00Z'),
    });
  });

  it('a span across the autumn DST change in Europe/Berlin (2026-10-25) lasts one hour longer', () => {
    // 01:00 is still CEST (+2), 04:00 is already CET (+1): three local hours are four real ones.
    const result = resolveSpan({
      start: '2026-10-25T01:00',
      end: '2026-10-25T04:00',
      timeZone: 'Europe/Berlin',
    });
    expect(result).toEqual({ ok: span('2026-10-24T23:00:00Z', '2026-10-25T03:00:00Z') });
    if ('ok' in result) expect(result.ok.end.getTime() - result.ok.start.getTime()).toBe(4 * HOUR);
  });

  it('a span across the spring DST change in Europe/Berlin (2026-03-29) lasts one hour shorter', () => {
    const result = resolveSpan({
      start: '2026-03-29T01:00',
      end: '2026-03-29T04:00',
      timeZone: 'Europe/Berlin',
    });
    expect(result).toEqual({ ok: span('2026-03-29T00:00:00Z', '2026-03-29T02:00:00Z') });
  });

  it('an explicit offset wins over the zone', () => {
    const result = resolveSpan({
      start: '2026-11-24T22:00Z',
      end: '2026-11-25T01:00+01:00',
      timeZone: 'America/New_York',
    });
    expect(result).toEqual({ ok: span('2026-11-24T22:00:00Z', '2026-11-25T00:00:00Z') });
  });

  it('refuses an end before or equal to the start', () => {
    const before = resolveSpan({
      start: '2026-11-24T23:00',
      end: '2026-11-24T22:00',
      timeZone: 'Europe/Berlin',
    });
    expect(before).toEqual({
      problem: 'the window ends (2026-11-24T22:00) before or when it starts (2026-11-24T23:00)',
    });
    const equal = resolveSpan({ start: '2026-11-24T22:00', end: '2026-11-24T22:00' }, 'booking');
    expect(equal).toEqual({
      problem: 'the booking ends (2026-11-24T22:00) before or when it starts (2026-11-24T22:00)',
    });
  });

  it('refuses an end that is before the start only once read in its zone', () => {
    // 23:30 Berlin is 22:30Z, before 23:00Z.
    expect(
      resolveSpan({ start: '2026-11-24T23:00Z', end: '2026-11-24T23:30', timeZone: 'Europe/Berlin' }),
    ).toHaveProperty('problem');
  });

  it('refuses a zone that is not an IANA zone', () => {
    expect(
      resolveSpan({ start: '2026-11-24T22:00', end: '2026-11-24T23:00', timeZone: 'Mars/Olympus' }),
    ).toEqual({
      problem: "time zone 'Mars/Olympus' is not an IANA time zone (e.g. Europe/Berlin, UTC)",
    });
    expect(isValidTimeZone('Europe/Berlin')).toBe(true);
    expect(isValidTimeZone('CEST')).toBe(false);
  });

  it('refuses a start or end that is not ISO-8601', () => {
    expect(resolveSpan({ start: 'next tuesday', end: '2026-11-24T23:00' })).toEqual({
      problem: "window start 'next tuesday' is not an ISO-8601 date-time",
    });
    expect(resolveSpan({ start: '2026-11-24T22:00', end: '2026-13-01T00:00' }, 'freeze')).toEqual({
      problem: "freeze end '2026-13-01T00:00' is not an ISO-8601 date-time",
    });
    expect(resolveSpan({ start: '24.11.2026 22:00', end: '2026-11-24T23:00' })).toHaveProperty('problem');
  });

  it(`allows exactly ${MAX_SPAN_DAYS} days and refuses anything longer`, () => {
    expect(resolveSpan({ start: '2026-01-01T00:00', end: '2026-04-03T00:00' })).toEqual({
      ok: span('2026-01-01T00:00:00Z', '2026-04-03T00:00:00Z'),
    });
    expect(resolveSpan({ start: '2026-01-01T00:00', end: '2026-04-03T00:01' })).toEqual({
      problem: `the window lasts longer than ${MAX_SPAN_DAYS} days`,
    });
    expect(resolveSpan({ start: '2026-01-01T00:00', end: '2026-12-31T00:00' })).toHaveProperty('problem');
  });
});

describe('contains and overlaps', () => {
  const a = span('2026-11-24T21:00:00Z', '2026-11-24T22:00:00Z');

  it('contains is half-open: start in, end out', () => {
    expect(contains(a, a.start)).toBe(true);
    expect(contains(a, new Date(a.end.getTime() - 1))).toBe(true);
    expect(contains(a, a.end)).toBe(false);
    expect(contains(a, new Date(a.start.getTime() - 1))).toBe(false);
  });

  it('spans that only touch do not overlap', () => {
    expect(overlaps(a, span('2026-11-24T22:00:00Z', '2026-11-24T23:00:00Z'))).toBe(false);
    expect(overlaps(span('2026-11-24T20:00:00Z', '2026-11-24T21:00:00Z'), a)).toBe(false);
  });

  it('spans sharing any instant overlap, in either order', () => {
    const late = span('2026-11-24T21:59:00Z', '2026-11-24T23:00:00Z');
    const inner = span('2026-11-24T21:10:00Z', '2026-11-24T21:20:00Z');
    expect(overlaps(a, late)).toBe(true);
    expect(overlaps(late, a)).toBe(true);
    expect(overlaps(a, inner)).toBe(true);
    expect(overlaps(inner, a)).toBe(true);
    expect(overlaps(a, a)).toBe(true);
  });
});

describe('cronProblem', () => {
  it('accepts a five-field expression in a valid zone', () => {
    expect(cronProblem('0 18 * * 5', 'Europe/Berlin')).toBeNull();
    expect(cronProblem('30 6 1 */3 1-5', 'UTC')).toBeNull();
  });

  it('refuses anything but five fields', () => {
    expect(cronProblem('0 18 * *', 'UTC')).toContain('is not a five-field cron expression');
    expect(cronProblem('0 0 18 * * 5', 'UTC')).toContain('is not a five-field cron expression');
    expect(cronProblem('@weekly', 'UTC')).toContain('is not a five-field cron expression');
    expect(cronProblem('', 'UTC')).toContain('is not a five-field cron expression');
  });

  it('refuses out-of-range or garbage fields', () => {
    expect(cronProblem('61 * * * *', 'UTC')).toMatch(/^'61 \* \* \* \*' is not a valid cron expression: /);
    expect(cronProblem('0 25 * * *', 'UTC')).toContain('is not a valid cron expression');
    expect(cronProblem('0 18 * * 9', 'UTC')).toContain('is not a valid cron expression');
    expect(cronProblem('a b c d e', 'UTC')).toContain('is not a valid cron expression');
  });

  it('refuses a bad zone', () => {
    expect(cronProblem('0 18 * * 5', 'Europe/Atlantis')).toBe(
      "time zone 'Europe/Atlantis' is not an IANA time zone",
    );
  });
});

describe('recurring freezes', () => {
  // Every Friday 18:00 Berlin, for 62 hours: until Monday 08:00.
  const weekend: FreezeSchedule = {
    kind: 'recurring',
    cron: '0 18 * * 5',
    durationMinutes: 62 * 60,
    timeZone: 'Europe/Berlin',
  };
  const nov20 = span('2026-11-20T17:00:00Z', '2026-11-23T07:00:00Z');

  it('covers Saturday noon (Berlin) with the occurrence that started Friday 18:00 local', () => {
    expect(freezeOccurrenceAt(weekend, at('2026-11-21T11:00:00Z'))).toEqual(nov20);
  });

  it('does not cover Thursday noon', () => {
    expect(freezeOccurrenceAt(weekend, at('2026-11-19T11:00:00Z'))).toBeNull();
    expect(freezeOccurrenceAt(weekend, at('2026-11-26T11:00:00Z'))).toBeNull();
  });

  it('starts at Friday 18:00 local and ends (exclusive) Monday 08:00 local', () => {
    expect(freezeOccurrenceAt(weekend, at('2026-11-20T16:59:59Z'))).toBeNull();
    expect(freezeOccurrenceAt(weekend, at('2026-11-20T17:00:00Z'))).toEqual(nov20);
    expect(freezeOccurrenceAt(weekend, at('2026-11-23T06:59:59.999Z'))).toEqual(nov20);
    expect(freezeOccurrenceAt(weekend, at('2026-11-23T07:00:00Z'))).toBeNull();
  });

  it('reads the cron in local time on both sides of a DST change', () => {
    // Friday 2026-10-23 18:00 is CEST (16:00Z); Friday 2026-10-30 18:00 is CET (17:00Z).
    expect(freezeOccurrenceAt(weekend, at('2026-10-24T12:00:00Z'))?.start).toEqual(
      at('2026-10-23T16:00:00Z'),
    );
    expect(freezeOccurrenceAt(weekend, at('2026-10-31T12:00:00Z'))?.start).toEqual(
      at('2026-10-30T17:00:00Z'),
    );
  });

  it('lists the occurrences over three weeks, with no duplicate when `from` falls inside one', () => {
    const from = at('2026-11-21T11:00:00Z'); // Saturday, inside the Nov 20 occurrence
    const to = new Date(from.getTime() + 21 * 24 * HOUR);
    const list = freezeOccurrences(weekend, from, to);
    expect(list.map((o) => o.start.toISOString())).toEqual([
      '2026-11-20T17:00:00.000Z',
      '2026-11-27T17:00:00.000Z',
      '2026-12-04T17:00:00.000Z',
      '2026-12-11T17:00:00.000Z',
    ]);
    expect(new Set(list.map((o) => o.start.getTime())).size).toBe(list.length);
    for (const o of list) expect(o.end.getTime() - o.start.getTime()).toBe(62 * HOUR);
  });

  it('lists three occurrences over three weeks starting outside a freeze', () => {
    const from = at('2026-11-23T08:00:00Z'); // Monday, after the Nov 20 occurrence ended
    const to = new Date(from.getTime() + 21 * 24 * HOUR);
    expect(freezeOccurrences(weekend, from, to).map((o) => o.start.toISOString())).toEqual([
      '2026-11-27T17:00:00.000Z',
      '2026-12-04T17:00:00.000Z',
      '2026-12-11T17:00:00.000Z',
    ]);
  });

  it('has no duplicate when `from` is exactly an occurrence start, and excludes one starting at `to`', () => {
    const from = nov20.start;
    const to = new Date(from.getTime() + 21 * 24 * HOUR); // exactly the Dec 11 start
    expect(freezeOccurrences(weekend, from, to).map((o) => o.start.toISOString())).toEqual([
      '2026-11-20T17:00:00.000Z',
      '2026-11-27T17:00:00.000Z',
      '2026-12-04T17:00:00.000Z',
    ]);
  });

  it('lists the occurrence at `from` once for a `from` just before, at, or just after its start', () => {
    for (const iso of [
      '2026-11-20T16:59:59.999Z',
      '2026-11-20T17:00:00.000Z',
      '2026-11-20T17:00:00.500Z',
      '2026-11-20T17:00:59Z',
    ]) {
      const starts = freezeOccurrences(weekend, at(iso), at('2026-11-28T00:00:00Z')).map((o) =>
        o.start.toISOString(),
      );
      expect(starts, iso).toEqual(['2026-11-20T17:00:00.000Z', '2026-11-27T17:00:00.000Z']);
    }
  });

  it('stops at the limit', () => {
    expect(
      freezeOccurrences(weekend, at('2026-01-01T00:00:00Z'), at('2026-12-31T00:00:00Z'), 5),
    ).toHaveLength(5);
    expect(freezeOccurrences(weekend, at('2026-01-01T00:00:00Z'), at('2026-12-31T00:00:00Z'))).toHaveLength(
      52,
    );
  });
});

describe('one-off freezes', () => {
  const once: FreezeSchedule = {
    kind: 'once',
    start: at('2026-12-20T00:00:00Z'),
    end: at('2027-01-02T00:00:00Z'),
  };
  const whole = span('2026-12-20T00:00:00Z', '2027-01-02T00:00:00Z');

  it('covers its span, half-open', () => {
    expect(freezeOccurrenceAt(once, at('2026-12-19T23:59:59Z'))).toBeNull();
    expect(freezeOccurrenceAt(once, at('2026-12-20T00:00:00Z'))).toEqual(whole);
    expect(freezeOccurrenceAt(once, at('2026-12-25T12:00:00Z'))).toEqual(whole);
    expect(freezeOccurrenceAt(once, at('2027-01-02T00:00:00Z'))).toBeNull();
  });

  it('is listed once when it overlaps the range, and not when it only touches or misses it', () => {
    expect(freezeOccurrences(once, at('2026-12-01T00:00:00Z'), at('2026-12-21T00:00:00Z'))).toEqual([whole]);
    expect(freezeOccurrences(once, at('2027-01-01T00:00:00Z'), at('2027-02-01T00:00:00Z'))).toEqual([whole]);
    expect(freezeOccurrences(once, at('2026-12-01T00:00:00Z'), at('2026-12-20T00:00:00Z'))).toEqual([]);
    expect(freezeOccurrences(once, at('2027-01-02T00:00:00Z'), at('2027-02-01T00:00:00Z'))).toEqual([]);
  });
});
