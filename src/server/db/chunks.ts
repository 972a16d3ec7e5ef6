/**
 * Rows for multi-row statements, split into chunks whose sizes are powers of two (at most `max`):
 * a statement is prepared once per shape, and this keeps the shapes few (nine up to 256 rows)
 * however many rows there are, while staying far below either database's parameter limit.
 */
export function* inChunks<T>(rows: readonly T[], max = 256): Generator<T[]> {
  let offset = 0;
  while (offset < rows.length) {
    let size = max;
    while (size > rows.length - offset) size >>= 1;
    yield rows.slice(offset, offset + size);
    offset += size;
  }
}
