/**
 * Malicious archive factory (test plan H7): raw ustar headers written byte by byte, so an archive
 * can hold anything a hostile publisher might put in it — paths with `..`, absolute paths, links,
 * devices — which no well-behaved tar tool would produce.
 */
import { gzipSync } from 'node:zlib';

export interface RawEntry {
  name: string;
  /** ustar typeflag: '0' file, '1' hard link, '2' symlink, '3' char device, '4' block device, '5' directory, '6' FIFO */
  type?: '0' | '1' | '2' | '3' | '4' | '5' | '6';
  mode?: number;
  content?: Buffer | string;
  linkname?: string;
  /** Declared size, when it should differ from the content's. */
  size?: number;
}

function field(header: Buffer, offset: number, length: number, value: string): void {
  header.write(value.slice(0, length), offset, length, 'utf8');
}

function octal(header: Buffer, offset: number, length: number, value: number): void {
  field(header, offset, length, `${value.toString(8).padStart(length - 1, '0')}\0`);
}

export function rawEntry(entry: RawEntry): Buffer {
  const content = Buffer.isBuffer(entry.content) ? entry.content : Buffer.from(entry.content ?? '');
  const header = Buffer.alloc(512, 0);
  let name = entry.name;
  let prefix = '';
  if (Buffer.byteLength(name) > 100) {
    const cut = name.lastIndexOf('/', 154);
    prefix = name.slice(0, cut);
    name = name.slice(cut + 1);
  }
  field(header, 0, 100, name);
  octal(header, 100, 8, entry.mode ?? 0o644);
  octal(header, 108, 8, 0);
  octal(header, 116, 8, 0);
  octal(header, 124, 12, entry.size ?? content.length);
  octal(header, 136, 12, 1_700_000_000);
  header.write('        ', 148, 8, 'ascii');
  header.write(entry.type ?? '0', 156, 1, 'ascii');
  field(header, 157, 100, entry.linkname ?? '');
  header.write('ustar\0', 257, 6, 'ascii');
  header.write('00', 263, 2, 'ascii');
  field(header, 345, 155, prefix);
  let sum = 0;
  for (const byte of header) sum += byte;
  field(header, 148, 8, `${sum.toString(8).padStart(6, '0')}\0 `);
  const padded = Buffer.alloc(Math.ceil(content.length / 512) * 512, 0);
  content.copy(padded);
  return Buffer.concat([header, padded]);
}

export function rawTar(entries: RawEntry[], options: { gzip?: boolean } = {}): Buffer {
  const tar = Buffer.concat([...entries.map(rawEntry), Buffer.alloc(1024, 0)]);
  return options.gzip ? gzipSync(tar) : tar;
}
