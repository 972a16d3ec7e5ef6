/** RFC 8785 canonical JSON, for everything that is hashed or signed. */
import canonicalizeModule from 'canonicalize';

// The package is CommonJS whose declaration file says `export default`; at run time the default
// import is the function itself.
const canonicalize = canonicalizeModule as unknown as (input: unknown) => string | undefined;

export function canonicalJson(value: unknown): string {
  const text = canonicalize(value);
  if (text === undefined) throw new Error('value cannot be encoded as canonical JSON');
  return text;
}
