/**
 * The hardware store's rules: the states a spare item can be in and the moves between them.
 */

export const HARDWARE_STATES = ['in_store', 'reserved', 'deployed', 'returned', 'retired'] as const;
export type HardwareState = (typeof HARDWARE_STATES)[number];

const MOVES: Record<HardwareState, readonly HardwareState[]> = {
  in_store: ['reserved', 'deployed', 'retired'],
  reserved: ['in_store', 'deployed'],
  deployed: ['returned', 'retired'],
  returned: ['in_store', 'retired'],
  retired: [],
};

export function isHardwareState(value: string): value is HardwareState {
  return (HARDWARE_STATES as readonly string[]).includes(value);
}

/** Null when the move is allowed, otherwise why not. */
export function moveProblem(from: HardwareState, to: HardwareState): string | null {
  if (from === to) return `the item is already ${from}`;
  if (MOVES[from].includes(to)) return null;
  if (from === 'retired') return 'a retired item cannot move again';
  return `an item that is ${from} can move only to ${MOVES[from].join(' or ')}`;
}

export function allowedMoves(from: HardwareState): readonly HardwareState[] {
  return MOVES[from];
}
