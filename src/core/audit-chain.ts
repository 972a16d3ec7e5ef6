/**
 * The audit chain: every entry carries the hash of the one before it and its own hash over a
 * canonical (RFC 8785) encoding of its fields, so editing, removing or reordering any entry breaks
 * every link after it. Pure: the hash function is passed in, so this file needs no `node:` import.
 */
import { canonicalJson } from './canonical-json.ts';

import { assertNever } from './errors.ts';

export const GENESIS_HASH = '0'.repeat(64);

export interface AuditFields {
  seq: number;
  /** UTC, ISO 8601 with milliseconds. */
  at: string;
  /** Who acted: `user:<name>`, `system`, later `agent:<id>`. */
  actor: string;
  /** Where the action came from (client address), or null for the server itself. */
  source: string | null;
  action: string;
  /** What was acted on: `user:<id>`, `token:<id>`, … */
  subject: string;
  details: Record<string, unknown>;
}

export interface AuditEntry extends AuditFields {
  prevHash: string;
  hash: string;
}

export type HashHex = (text: string) => string;

export function canonicalAuditPayload(fields: AuditFields, prevHash: string): string {
  return canonicalJson({
    seq: fields.seq,
    at: fields.at,
    actor: fields.actor,
    source: fields.source,
    action: fields.action,
    subject: fields.subject,
    details: fields.details,
    prevHash,
  });
}

export function chainEntry(fields: AuditFields, prevHash: string, hash: HashHex): AuditEntry {
  return { ...fields, prevHash, hash: hash(canonicalAuditPayload(fields, prevHash)) };
}

export type ChainBreak =
  | { kind: 'gap'; seq: number; expectedSeq: number }
  | { kind: 'prev_hash_mismatch'; seq: number; expected: string; found: string }
  | { kind: 'hash_mismatch'; seq: number; expected: string; found: string };

export interface ChainCursor {
  /** Sequence number the next entry must carry. */
  nextSeq: number;
  /** Hash the next entry must name as its predecessor. */
  prevHash: string;
  checked: number;
}

export const CHAIN_START: ChainCursor = { nextSeq: 1, prevHash: GENESIS_HASH, checked: 0 };

/**
 * Checks `entries` (in sequence order) continuing from `cursor`. Returns the cursor after the last
 * good entry and the first break, if any. Feed pages one after the other to verify a long chain
 * without holding it whole.
 */
export function verifyChainPage(
  cursor: ChainCursor,
  entries: readonly AuditEntry[],
  hash: HashHex,
): { cursor: ChainCursor; broken: ChainBreak | null } {
  let current = cursor;
  for (const entry of entries) {
    if (entry.seq !== current.nextSeq) {
      return { cursor: current, broken: { kind: 'gap', seq: entry.seq, expectedSeq: current.nextSeq } };
    }
    if (entry.prevHash !== current.prevHash) {
      return {
        cursor: current,
        broken: {
          kind: 'prev_hash_mismatch',
          seq: entry.seq,
          expected: current.prevHash,
          found: entry.prevHash,
        },
      };
    }
    const expected = hash(canonicalAuditPayload(entry, entry.prevHash));
    if (expected !== entry.hash) {
      return {
        cursor: current,
        broken: { kind: 'hash_mismatch', seq: entry.seq, expected, found: entry.hash },
      };
    }
    current = { nextSeq: entry.seq + 1, prevHash: entry.hash, checked: current.checked + 1 };
  }
  return { cursor: current, broken: null };
}

export function describeChainBreak(broken: ChainBreak): string {
  switch (broken.kind) {
    case 'gap':
      return `entry ${broken.expectedSeq} is missing (the next entry found is ${broken.seq})`;
    case 'prev_hash_mismatch':
      return `entry ${broken.seq} does not link to entry ${broken.seq - 1}: an entry before it was changed or removed`;
    case 'hash_mismatch':
      return `entry ${broken.seq} was changed after it was written: its content no longer matches its hash`;
    default:
      return assertNever(broken);
  }
}
