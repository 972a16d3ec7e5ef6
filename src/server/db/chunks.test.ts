import { describe, expect, it } from 'vitest';
import { inChunks } from './chunks.ts';

describe('inChunks', () => {
  it('keeps every row once, in order, in power-of-two chunks no larger than the maximum', () => {
    for (const n of [0, 1, 2, 3, 7, 255, 256, 257, 1000]) {
      const rows = Array.from({ length: n }, (_, i) => i);
      const chunks = [...inChunks(rows, 256)];
      expect(chunks.flat()).toEqual(rows);
      for (const c of chunks) {
        expect(c.length).toBeGreaterThan(0);
        expect(c.length).toBeLessThanOrEqual(256);
        expect(Number.isInteger(Math.log2(c.length))).toBe(true);
      }
    }
    expect([...inChunks([1, 2, 3, 4, 5, 6, 7], 4)].map((c) => c.length)).toEqual([4, 2, 1]);
  });
});
