/**
 * The CLI's saved login: server URL and API token in `<config dir>/config.json`, mode 0600 in a
 * 0700 directory. GANTRY_URL and GANTRY_TOKEN (and --url / --token) take precedence over it.
 */
import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CliError, EXIT } from './exit-codes.ts';

export interface SavedLogin {
  url: string;
  token: string;
}

export function configDir(env: Record<string, string | undefined>): string {
  if (env.GANTRY_CONFIG_DIR) return env.GANTRY_CONFIG_DIR;
  const base = env.XDG_CONFIG_HOME || path.join(env.HOME || os.homedir(), '.config');
  return path.join(base, 'gantry');
}

export function readSavedLogin(dir: string): SavedLogin | undefined {
  let text: string;
  try {
    text = readFileSync(path.join(dir, 'config.json'), 'utf8');
  } catch {
    return undefined;
  }
  try {
    const parsed = JSON.parse(text) as Partial<SavedLogin>;
    if (typeof parsed.url === 'string' && typeof parsed.token === 'string')
      return { url: parsed.url, token: parsed.token };
  } catch {
    // fall through
  }
  throw new CliError(
    EXIT.usage,
    `${path.join(dir, 'config.json')} is not a valid Gantry login file; run \`gantry login\` again.`,
  );
}

export function saveLogin(dir: string, login: SavedLogin): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = path.join(dir, 'config.json');
  const temp = `${file}.${process.pid}.tmp`;
  writeFileSync(temp, `${JSON.stringify(login, null, 2)}\n`, { mode: 0o600 });
  chmodSync(temp, 0o600);
  renameSync(temp, file);
  return file;
}

export function forgetLogin(dir: string): void {
  rmSync(path.join(dir, 'config.json'), { force: true });
}
