import { type Static, Type } from '@sinclair/typebox';
import { HARDWARE_STATES } from '../core/hardware.ts';
import { Id, Line, MULTI_LINE, Nullable, Strict, Timestamp } from './common.ts';

export const HardwareStateSchema = Type.Union(HARDWARE_STATES.map((s) => Type.Literal(s)));
const Field = Type.String({ minLength: 1, maxLength: 200, pattern: '^[^\\u0000-\\u001f]+$' });
export const AssetTag = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9][A-Za-z0-9._-]*$' });

export const HardwareMoveSchema = Strict({
  id: Id,
  at: Timestamp,
  actor: Type.String(),
  fromState: HardwareStateSchema,
  toState: HardwareStateSchema,
  fromLocation: Type.String(),
  toLocation: Type.String(),
  target: Nullable(Type.String()),
  changeId: Nullable(Type.String()),
  note: Nullable(Type.String()),
});

export const HardwareItemSchema = Strict({
  id: Id,
  assetTag: Type.String(),
  model: Type.String(),
  vendor: Type.String(),
  serial: Type.String(),
  firmwareVersion: Nullable(Type.String()),
  location: Type.String(),
  state: HardwareStateSchema,
  target: Nullable(Type.String()),
  createdAt: Timestamp,
  updatedAt: Timestamp,
});
export type HardwareItemView = Static<typeof HardwareItemSchema>;

export const HardwareItemDetail = Strict({ item: HardwareItemSchema, moves: Type.Array(HardwareMoveSchema) });
export const HardwareList = Strict({ items: Type.Array(HardwareItemSchema) });
export const HardwareListQuery = Strict({
  state: Type.Optional(HardwareStateSchema),
  model: Type.Optional(Field),
  firmwareVersion: Type.Optional(Field),
  location: Type.Optional(Field),
});

export const AddHardwareRequest = Strict({
  assetTag: AssetTag,
  model: Field,
  vendor: Field,
  serial: Field,
  firmwareVersion: Type.Optional(Field),
  location: Field,
});
export type AddHardwareRequest = Static<typeof AddHardwareRequest>;

export const MoveHardwareRequest = Strict({
  to: HardwareStateSchema,
  location: Type.Optional(Field),
  target: Type.Optional(Field),
  changeId: Type.Optional(Line({ minLength: 1, maxLength: 64 })),
  note: Type.Optional(Type.String({ maxLength: 1000, pattern: MULTI_LINE })),
  firmwareVersion: Type.Optional(Field),
  environment: Type.Optional(Type.String({ pattern: '^[a-z0-9][a-z0-9._-]{0,62}$' })),
});
export type MoveHardwareRequest = Static<typeof MoveHardwareRequest>;

export const ImportResult = Strict({ imported: Type.Integer(), items: Type.Array(HardwareItemSchema) });
