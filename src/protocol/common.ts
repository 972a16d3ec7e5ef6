/**
 * Wire schemas shared by the server (validation at the edge, OpenAPI) and the CLI (types).
 * Every object schema refuses unknown fields.
 */
import { type ObjectOptions, type TObject, type TProperties, type TSchema, Type } from '@sinclair/typebox';

/** An object schema that refuses fields it does not name. */
export function Strict<T extends TProperties>(properties: T, options: ObjectOptions = {}): TObject<T> {
  return Type.Object(properties, { additionalProperties: false, ...options });
}

export const Timestamp = Type.String({
  description: 'UTC time, ISO 8601',
  pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d{1,3})?Z$',
  examples: ['2026-11-22T09:30:00.000Z'],
});

/** One line of text: no control characters (NUL included, which PostgreSQL refuses). */
export const SINGLE_LINE = '^[^\\u0000-\\u001f\\u007f]*$';
/** Text that may span lines: tabs and newlines allowed, other control characters not. */
export const MULTI_LINE = '^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f]*$';

export function Line(options: { minLength?: number; maxLength: number; description?: string }) {
  return Type.String({ ...options, pattern: SINGLE_LINE });
}

export const Id = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' });

export const ErrorBody = Strict(
  {
    error: Strict({
      code: Type.String({ description: 'Stable machine-readable code, e.g. VALIDATION, FORBIDDEN' }),
      message: Type.String({ description: 'What went wrong and how to fix it' }),
      details: Type.Unknown({ description: 'Field errors, reasons, or null' }),
      requestId: Type.String(),
    }),
  },
  { $id: 'ErrorBody' },
);

export const IdParams = Strict({ id: Id });

export function Nullable<T extends TSchema>(schema: T) {
  return Type.Union([schema, Type.Null()]);
}
