import { describe, expect, it } from 'vitest';
import { GantryError } from '../../core/errors.ts';
import { MAX_JSON_DEPTH, parseStrictJson } from './strict-json.ts';

function refusal(text: string | Buffer): GantryError {
  try {
    parseStrictJson(Buffer.isBuffer(text) ? text : Buffer.from(text));
  } catch (error) {
    if (error instanceof GantryError) return error;
    throw error;
  }
  throw new Error('expected a refusal');
}

describe('strict JSON parsing', () => {
  it('parses ordinary JSON, including keys that only look alike', () => {
    expect(parseStrictJson(Buffer.from('{"a":{"b":[1,{"c":"x\\"}"}]},"A":2,"s":"{not a key:"}'))).toEqual({
      a: { b: [1, { c: 'x"}' }] },
      A: 2,
      s: '{not a key:',
    });
  });

  it('refuses a duplicate key and names where, even when escaped differently', () => {
    const error = refusal('{"x":{"role":"viewer","r\\u006fle":"admin"}}');
    expect(error.code).toBe('VALIDATION');
    expect(error.details).toEqual([{ path: '/x/role', message: 'duplicate key' }]);
  });

  it('allows the same key in sibling objects', () => {
    expect(parseStrictJson(Buffer.from('[{"a":1},{"a":2}]'))).toEqual([{ a: 1 }, { a: 2 }]);
  });

  it('refuses __proto__ and constructor keys at any depth', () => {
    expect(refusal('{"__proto__":{"isAdmin":true}}').details).toEqual([
      { path: '/__proto__', message: 'forbidden key' },
    ]);
    expect(refusal('{"a":[{"constructor":{"prototype":{}}}]}').details).toEqual([
      { path: '/a/0/constructor', message: 'forbidden key' },
    ]);
  });

  it('refuses nesting deeper than the limit without overflowing the stack', () => {
    expect(refusal('['.repeat(10_000) + ']'.repeat(10_000)).message).toContain(
      `deeper than ${MAX_JSON_DEPTH}`,
    );
  });

  it('refuses invalid UTF-8, empty bodies and truncated JSON', () => {
    expect(refusal(Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d])).message).toContain('UTF-8');
    expect(refusal('   ').message).toContain('empty');
    expect(refusal('{"a": [1, 2').message).toContain('not valid JSON');
  });
});
