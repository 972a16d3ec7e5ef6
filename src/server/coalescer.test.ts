import { describe, expect, it } from 'vitest';
import { Coalescer } from './coalescer.ts';

describe('Coalescer', () => {
  it('hands requests that arrive together to one call, and answers each with its own outcome', async () => {
    const calls: number[][] = [];
    const c = new Coalescer<number, number>(async (items) => {
      calls.push(items);
      return items.map((n) =>
        n < 0 ? { ok: false, error: new Error(`negative ${n}`) } : { ok: true, value: n * 2 },
      );
    });
    const results = await Promise.allSettled([1, 2, -3, 4].map((n) => c.submit(n)));
    expect(calls).toEqual([[1, 2, -3, 4]]);
    expect(results.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as Error).message))).toEqual([
      2,
      4,
      'negative -3',
      8,
    ]);
  });

  it('takes what arrives during a batch into the next one, at most `max` at a time', async () => {
    const calls: number[][] = [];
    const c = new Coalescer<number, number>(async (items) => {
      calls.push(items);
      await new Promise((resolve) => setTimeout(resolve, 5));
      return items.map((n) => ({ ok: true, value: n }));
    }, 2);
    const first = c.submit(1);
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setImmediate(resolve));
    const later = [2, 3, 4].map((n) => c.submit(n));
    expect(await Promise.all([first, ...later])).toEqual([1, 2, 3, 4]);
    expect(calls).toEqual([[1], [2, 3], [4]]);
  });

  it('a request that makes the whole batch throw fails alone; the others are answered', async () => {
    const calls: number[][] = [];
    const c = new Coalescer<number, number>(async (items) => {
      calls.push(items);
      if (items.includes(13)) throw new Error('13 breaks the statement');
      return items.map((n) => ({ ok: true, value: n }));
    });
    const results = await Promise.allSettled([11, 12, 13, 14].map((n) => c.submit(n)));
    expect(results.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as Error).message))).toEqual([
      11,
      12,
      '13 breaks the statement',
      14,
    ]);
    expect(calls[0]).toEqual([11, 12, 13, 14]);
    expect(calls.slice(1).sort()).toEqual([[11], [12], [13], [14]]);
  });
});
