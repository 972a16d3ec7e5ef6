/**
 * Secrets for API tokens and sessions. A token reads `gnt_` + 43 base64url characters (256 random
 * bits): the prefix makes a leaked token recognisable to secret scanners. Only the SHA-256 of a
 * secret is stored; with 256 bits of entropy a slow hash adds nothing.
 */
import { createHash, randomBytes } from 'node:crypto';

export const TOKEN_PREFIX = 'gnt_';

export function newTokenSecret(): string {
  return TOKEN_PREFIX + randomBytes(32).toString('base64url');
}

export function newSessionSecret(): string {
  return randomBytes(32).toString('base64url');
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** What is shown to recognise a token: its prefix and first four secret characters. */
export function displayPrefix(secret: string): string {
  return `${secret.slice(0, TOKEN_PREFIX.length + 4)}…`;
}
