import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  type AuditEntry,
  CHAIN_START,
  chainEntry,
  describeChainBreak,
  GENESIS_HASH,
  verifyChainPage,
} from './audit-chain.ts';

const sha = (text: string) => createHash('sha256').update(text).digest('hex');

function chain(n: number): AuditEntry[] {
  const entries: AuditEntry[] = [];
  let prev = GENESIS_HASH;
  for (let seq = 1; seq <= n; seq++) {
    const entry = chainEntry(
      {
        seq,
        at: `2026-11-0${(seq % 9) + 1}T00:00:00.000Z`,
        actor: 'user:a',
        source: '127.0.0.1',
        action: 'x.y',
        subject: `s:${seq}`,
        details: { n: seq, nested: { b: 1, a: [1, 2] } },
      },
      prev,
      sha,
    );
    entries.push(entry);
    prev = entry.hash;
  }
  return entries;
}

describe('audit chain', () => {
  it('verifies an untouched chain, page by page, and reports its head', () => {
    const entries = chain(10);
    const first = verifyChainPage(CHAIN_START, entries.slice(0, 4), sha);
    const second = verifyChainPage(first.cursor, entries.slice(4), sha);
    expect(first.broken).toBeNull();
    expect(second.broken).toBeNull();
    expect(second.cursor).toEqual({ nextSeq: 11, prevHash: entries[9]?.hash, checked: 10 });
  });

  it('hashes the same content the same way whatever the key order of the details', () => {
    const a = chainEntry(
      { seq: 1, at: 't', actor: 'a', source: null, action: 'x', subject: 's', details: { a: 1, b: 2 } },
      GENESIS_HASH,
      sha,
    );
    const b = chainEntry(
      { seq: 1, at: 't', actor: 'a', source: null, action: 'x', subject: 's', details: { b: 2, a: 1 } },
      GENESIS_HASH,
      sha,
    );
    expect(a.hash).toBe(b.hash);
  });

  it('names the entry whose content was edited', () => {
    const entries = chain(6);
    const edited = entries.map((e) => (e.seq === 4 ? { ...e, details: { n: 400 } } : e));
    const { broken, cursor } = verifyChainPage(CHAIN_START, edited, sha);
    expect(broken).toMatchObject({ kind: 'hash_mismatch', seq: 4 });
    expect(cursor.checked).toBe(3);
    expect(describeChainBreak(broken as NonNullable<typeof broken>)).toContain('entry 4 was changed');
  });

  it('names the gap where an entry was removed', () => {
    const entries = chain(6).filter((e) => e.seq !== 3);
    expect(verifyChainPage(CHAIN_START, entries, sha).broken).toMatchObject({
      kind: 'gap',
      seq: 4,
      expectedSeq: 3,
    });
  });

  it('notices an entry rewritten with a fresh hash, at the link after it', () => {
    const entries = chain(5);
    const target = entries[1] as AuditEntry;
    const forged = chainEntry({ ...target, actor: 'user:mallory' }, target.prevHash, sha);
    const tampered = entries.map((e) => (e.seq === 2 ? forged : e));
    expect(verifyChainPage(CHAIN_START, tampered, sha).broken).toMatchObject({
      kind: 'prev_hash_mismatch',
      seq: 3,
    });
  });
});
