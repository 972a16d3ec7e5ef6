/** Human output as plain tables; machine output as JSON on stdout. */
import Table from 'cli-table3';

export interface Io {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** Reads all of standard input (for --password-stdin). */
  readStdin: () => Promise<string>;
  stdinIsTty: boolean;
}

export function printJson(io: Io, value: unknown): void {
  io.stdout(`${JSON.stringify(value, null, 2)}\n`);
}

export function renderTable(
  headers: string[],
  rows: Array<Array<string | number | boolean | null | undefined>>,
): string {
  const table = new Table({
    head: headers,
    style: { head: [], border: [], compact: true, 'padding-left': 0, 'padding-right': 2 },
    chars: {
      top: '',
      'top-mid': '',
      'top-left': '',
      'top-right': '',
      bottom: '',
      'bottom-mid': '',
      'bottom-left': '',
      'bottom-right': '',
      left: '',
      'left-mid': '',
      mid: '',
      'mid-mid': '',
      right: '',
      'right-mid': '',
      middle: '',
    },
  });
  for (const row of rows)
    table.push(row.map((cell) => (cell === null || cell === undefined ? '-' : sanitize(String(cell)))));
  return `${table.toString()}\n`;
}

/** Control characters from the server (names, details) are shown escaped, never interpreted. */
export function sanitize(text: string): string {
  return text.replace(
    // biome-ignore lint/suspicious/noControlCharactersInRegex: escaping them is the point.
    /[\u0000-\u001f\u007f-\u009f]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

export function keyValues(pairs: Array<[string, string | number | boolean | null | undefined]>): string {
  const width = Math.max(...pairs.map(([k]) => k.length));
  return `${pairs.map(([k, v]) => `${k.padEnd(width)}  ${v === null || v === undefined ? '-' : sanitize(String(v))}`).join('\n')}\n`;
}
