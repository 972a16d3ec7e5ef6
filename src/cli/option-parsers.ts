/** Turning command-line text into API values; every problem is a usage error (exit 2) that says what to write. */
import { DateTime } from 'luxon';
import { CliError, EXIT } from './exit-codes.ts';

/** Commander's collector for a repeatable option. */
export const collect = (value: string, previous: string[] = []) => [...previous, value];

/** `a,b , c` → ['a', 'b', 'c']; an empty text is an empty list. */
export function commaList(text: string): string[] {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

export function wholeNumber(text: string | undefined, flag: string, min = 0): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isInteger(n) || n < min)
    throw new CliError(EXIT.usage, `${flag} must be a whole number${min > 0 ? `, ${min} or more` : ''}.`);
  return n;
}

/**
 * Two opposite flags (`--passed` / `--failed`): true, false, or undefined when neither is given.
 * Both at once is a usage error.
 */
export function eitherFlag(
  yes: boolean | undefined,
  no: boolean | undefined,
  names: [string, string],
): boolean | undefined {
  if (yes && no) throw new CliError(EXIT.usage, `Give ${names[0]} or ${names[1]}, not both.`);
  if (yes) return true;
  if (no) return false;
  return undefined;
}

/** `90m`, `62h`, `3d`, `1h30m` (or a bare number of minutes) → minutes. */
export function parseDuration(text: string, flag = '--duration'): number {
  const trimmed = text.trim();
  if (/^\d+$/.test(trimmed) && Number(trimmed) > 0) return Number(trimmed);
  const parts = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?$/.exec(trimmed);
  if (!parts || trimmed === '')
    throw new CliError(
      EXIT.usage,
      `${flag} '${text}' is not a duration: write minutes, hours or days, e.g. 90m, 62h, 3d, 1h30m.`,
    );
  const minutes = Number(parts[1] ?? 0) * 1440 + Number(parts[2] ?? 0) * 60 + Number(parts[3] ?? 0);
  if (minutes <= 0) throw new CliError(EXIT.usage, `${flag} must be longer than nothing.`);
  return minutes;
}

/** Minutes as the shortest exact text: 3720 → `62h`, 90 → `1h30m`, 4320 → `3d`. */
export function formatDuration(minutes: number): string {
  if (minutes <= 0) return '0m';
  const days = minutes % 1440 === 0 ? minutes / 1440 : 0;
  if (days) return `${days}d`;
  const hours = Math.floor(minutes / 60);
  const rest = minutes % 60;
  return `${hours ? `${hours}h` : ''}${rest ? `${rest}m` : ''}`;
}

/** `START/END`, each an ISO-8601 date-time read in `timeZone` unless it carries an offset. */
export function parseWindow(
  text: string,
  timeZone: string | undefined,
): { start: string; end: string; timeZone?: string } {
  const slash = text.indexOf('/');
  const start = text.slice(0, slash).trim();
  const end = text.slice(slash + 1).trim();
  if (slash <= 0 || start === '' || end === '' || end.includes('/'))
    throw new CliError(
      EXIT.usage,
      `--window '${text}' must read START/END, e.g. 2026-11-24T22:00/2026-11-24T23:00 (local to --tz).`,
    );
  return { start, end, ...(timeZone ? { timeZone } : {}) };
}

/** An instant shown in a time zone, with that zone's offset then: `2026-11-24 22:00 +01:00`. */
export function inZone(iso: string, timeZone: string): string {
  const at = DateTime.fromISO(iso, { zone: 'utc' }).setZone(timeZone);
  return at.isValid ? at.toFormat('yyyy-MM-dd HH:mm ZZ') : iso;
}

/** An instant in UTC, to the minute: `2026-11-24 21:00Z`. */
export function utc(iso: string): string {
  const at = DateTime.fromISO(iso, { zone: 'utc' });
  return at.isValid ? `${at.toFormat('yyyy-MM-dd HH:mm')}Z` : iso;
}

/** `0`, `45s`, `5m`, `1h30m`, `2d` → seconds. A unit is required (except for 0), so `5` is never misread. */
export function parseSeconds(text: string, flag: string): number {
  const trimmed = text.trim();
  if (trimmed === '0') return 0;
  const parts = /^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(trimmed);
  if (!parts || trimmed === '')
    throw new CliError(
      EXIT.usage,
      `${flag} '${text}' is not a duration: write it with a unit, e.g. 30s, 5m, 1h30m, 2d (or 0).`,
    );
  return (
    Number(parts[1] ?? 0) * 86_400 +
    Number(parts[2] ?? 0) * 3600 +
    Number(parts[3] ?? 0) * 60 +
    Number(parts[4] ?? 0)
  );
}

/** Seconds as the shortest exact text: 300 → `5m`, 5400 → `1h30m`, 0 → `0s`. */
export function formatSeconds(seconds: number): string {
  if (seconds <= 0) return '0s';
  const units: Array<[string, number]> = [
    ['d', 86_400],
    ['h', 3600],
    ['m', 60],
    ['s', 1],
  ];
  let left = seconds;
  let out = '';
  for (const [unit, size] of units) {
    const n = Math.floor(left / size);
    if (n > 0) out += `${n}${unit}`;
    left -= n * size;
  }
  return out;
}
