import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { memorySink, pooledBuffers, SinkFullError } from './memory-sink.ts';

const collect = async (it: AsyncIterable<Buffer>) => {
  const parts: Buffer[] = [];
  for await (const part of it) parts.push(part);
  return parts;
};

describe('a download held in memory', () => {
  it('keeps exactly the bytes given, in one buffer of the declared size (a peer sending one byte at a time costs no more memory)', async () => {
    const bytes = randomBytes(200_000);
    const sink = memorySink(bytes.length);
    // One byte at a time, then large pieces, then small again.
    const pieces = [
      ...Array.from({ length: 70_000 }, (_, i) => bytes.subarray(i, i + 1)),
      bytes.subarray(70_000, 150_000),
      ...Array.from({ length: 50 }, (_, i) => bytes.subarray(150_000 + i * 1000, 151_000 + i * 1000)),
    ];
    await pipeline(Readable.from(pieces), sink.writable(0));
    const kept = await collect(sink.kept());
    expect(Buffer.concat(kept).equals(bytes)).toBe(true);
    expect(kept.length).toBe(1);
    expect(Buffer.concat(sink.archive() as Buffer[]).equals(bytes)).toBe(true);
  });

  it('taken up from an offset, drops what it kept after it', async () => {
    const bytes = randomBytes(100_000);
    const sink = memorySink(bytes.length);
    await pipeline(
      Readable.from([bytes.subarray(0, 60_000), bytes.subarray(60_000, 61_000)]),
      sink.writable(0),
    );
    // A resumed download asks for the rest from byte 50,000.
    await pipeline(Readable.from([bytes.subarray(50_000)]), sink.writable(50_000));
    expect(Buffer.concat(await collect(sink.kept())).equals(bytes)).toBe(true);
  });

  it('refuses more bytes than it was made for, and keeps none of the excess', async () => {
    const sink = memorySink(1000);
    await expect(
      pipeline(Readable.from([randomBytes(600), randomBytes(600)]), sink.writable(0)),
    ).rejects.toThrow(SinkFullError);
    expect(Buffer.concat(await collect(sink.kept())).length).toBe(600);
    await sink.discard();
  });

  it('gives its buffer back when discarded, and the next download of that size reuses it', async () => {
    const first = memorySink(300_000);
    await pipeline(Readable.from([randomBytes(300_000)]), first.writable(0));
    const buffer = (first.archive() as Buffer[])[0]?.buffer;
    const before = pooledBuffers();
    await first.discard();
    expect(pooledBuffers()).toBe(before + 1);
    expect(() => first.archive()).toThrow(/discarded/);
    const second = memorySink(299_000);
    const bytes = randomBytes(299_000);
    await pipeline(Readable.from([bytes]), second.writable(0));
    const [view] = second.archive() as Buffer[];
    expect(view?.buffer).toBe(buffer);
    // Only the bytes of this download are seen, never what the buffer held before.
    expect(view?.equals(bytes)).toBe(true);
    await second.discard();
  });
});
