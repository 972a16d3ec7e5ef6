import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { memorySink } from './steps.ts';

const collect = async (it: AsyncIterable<Buffer>) => {
  const parts: Buffer[] = [];
  for await (const part of it) parts.push(part);
  return parts;
};

describe('a download held in memory', () => {
  it('keeps exactly the bytes given, joining small pieces (a peer sending one byte at a time costs no more memory)', async () => {
    const bytes = randomBytes(200_000);
    const sink = memorySink();
    // One byte at a time, then large pieces, then small again.
    const pieces = [
      ...Array.from({ length: 70_000 }, (_, i) => bytes.subarray(i, i + 1)),
      bytes.subarray(70_000, 150_000),
      ...Array.from({ length: 50 }, (_, i) => bytes.subarray(150_000 + i * 1000, 151_000 + i * 1000)),
    ];
    await pipeline(Readable.from(pieces), sink.writable(0));
    const kept = await collect(sink.kept());
    expect(Buffer.concat(kept).equals(bytes)).toBe(true);
    expect(kept.length).toBeLessThan(10);
    expect(Buffer.concat(sink.archive() as Buffer[]).equals(bytes)).toBe(true);
  });

  it('taken up from an offset, drops what it kept after it', async () => {
    const bytes = randomBytes(100_000);
    const sink = memorySink();
    await pipeline(
      Readable.from([bytes.subarray(0, 60_000), bytes.subarray(60_000, 61_000)]),
      sink.writable(0),
    );
    // A resumed download asks for the rest from byte 50,000.
    await pipeline(Readable.from([bytes.subarray(50_000)]), sink.writable(50_000));
    expect(Buffer.concat(await collect(sink.kept())).equals(bytes)).toBe(true);
  });
});
