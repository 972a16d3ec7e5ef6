import { describe, expect, it } from 'vitest';
import { newSortableId } from './ids.ts';

describe('sortable ids', () => {
  it('sort in creation order, also within one millisecond', () => {
    const ids = Array.from({ length: 5000 }, () => newSortableId(1_800_000_000_000));
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids[0]).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it('keep increasing when the clock goes back', () => {
    const a = newSortableId(1_900_000_000_000);
    const b = newSortableId(1_899_999_999_000);
    expect(b > a).toBe(true);
  });
});
