/**
 * Parses a request body as JSON more strictly than JSON.parse: the bytes must be valid UTF-8,
 * nesting is limited, an object may not name the same key twice, and `__proto__` / `constructor`
 * keys are refused outright. Each refusal names the JSON pointer where it happened.
 */
import { GantryError } from '../../core/errors.ts';

export const MAX_JSON_DEPTH = 64;
const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);
const utf8 = new TextDecoder('utf-8', { fatal: true });

export function parseStrictJson(body: Buffer): unknown {
  let text: string;
  try {
    text = utf8.decode(body);
  } catch {
    throw new GantryError('VALIDATION', 'The request body is not valid UTF-8. Send JSON encoded as UTF-8.', [
      { path: '', message: 'invalid UTF-8' },
    ]);
  }
  if (text.trim() === '') {
    throw new GantryError('VALIDATION', 'The request body is empty. Send a JSON object.', [
      { path: '', message: 'empty body' },
    ]);
  }
  scanStructure(text);
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new GantryError('VALIDATION', `The request body is not valid JSON: ${(error as Error).message}.`, [
      { path: '', message: 'malformed JSON' },
    ]);
  }
}

interface Frame {
  kind: 'object' | 'array';
  keys: Set<string>;
  /** Path segment of this container, for error messages. */
  path: string;
  expectKey: boolean;
  lastKey: string;
  index: number;
}

/**
 * One pass over the text, looking only at structure: containers, keys, strings. Malformed JSON
 * that this pass does not notice is left for JSON.parse to refuse.
 */
function scanStructure(text: string): void {
  const stack: Frame[] = [];
  const pointer = () => stack.map((f) => f.path).join('');
  const childPath = (parent: Frame | undefined) =>
    parent === undefined
      ? ''
      : parent.kind === 'array'
        ? `/${parent.index}`
        : `/${escapePointer(parent.lastKey)}`;
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '"') {
      const end = endOfString(text, i);
      const top = stack[stack.length - 1];
      if (top?.kind === 'object' && top.expectKey) {
        let key: string;
        try {
          key = JSON.parse(text.slice(i, end + 1)) as string;
        } catch {
          break;
        }
        const at = `${pointer()}/${escapePointer(key)}`;
        if (FORBIDDEN_KEYS.has(key)) {
          throw new GantryError(
            'VALIDATION',
            `The key '${key}' is not allowed in a request body (at ${at}).`,
            [{ path: at, message: 'forbidden key' }],
          );
        }
        if (top.keys.has(key)) {
          throw new GantryError(
            'VALIDATION',
            `The key '${key}' appears twice in the same object (at ${at}). Send it once.`,
            [{ path: at, message: 'duplicate key' }],
          );
        }
        top.keys.add(key);
        top.lastKey = key;
        top.expectKey = false;
      }
      i = end + 1;
      continue;
    }
    if (c === '{' || c === '[') {
      const parent = stack[stack.length - 1];
      if (stack.length >= MAX_JSON_DEPTH) {
        throw new GantryError('VALIDATION', `The request body nests deeper than ${MAX_JSON_DEPTH} levels.`, [
          { path: pointer(), message: 'too deep' },
        ]);
      }
      stack.push({
        kind: c === '{' ? 'object' : 'array',
        keys: new Set(),
        path: childPath(parent),
        expectKey: c === '{',
        lastKey: '',
        index: 0,
      });
    } else if (c === '}' || c === ']') {
      stack.pop();
    } else if (c === ',') {
      const top = stack[stack.length - 1];
      if (top?.kind === 'object') top.expectKey = true;
      else if (top) top.index += 1;
    }
    i += 1;
  }
}

function endOfString(text: string, start: number): number {
  let i = start + 1;
  while (i < text.length) {
    const c = text[i];
    if (c === '\\') i += 2;
    else if (c === '"') return i;
    else i += 1;
  }
  return text.length - 1;
}

function escapePointer(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1');
}
