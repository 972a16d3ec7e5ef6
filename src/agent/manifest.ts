/**
 * `gantry.yaml`, a package's own instructions: commands to run at install, start and stop, a
 * health check, and environment variables. Without one a package is just unpacked and linked.
 * A broken manifest fails the install with the line and the reason. YAML is read strictly:
 * one document, no custom tags, few aliases, no repeated keys.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseDocument } from 'yaml';

export interface HealthCheck {
  http?: string;
  command?: string;
  /** Tries before the check counts as failed. */
  retries: number;
  /** Seconds between tries. */
  interval: number;
  /** Seconds one try may take. */
  timeout: number;
}

export interface Manifest {
  install?: string;
  start?: string;
  stop?: string;
  health?: HealthCheck;
  env: Record<string, string>;
  /**
   * `start` is the service itself (it stays in the foreground): the agent runs it, restarts it
   * with backoff when it exits, and stops it with SIGTERM; `stop` is not needed.
   */
  supervise?: boolean;
  /** Blue-green: the settings (environment variables) of each slot, e.g. its port. */
  slots?: { blue: Record<string, string>; green: Record<string, string> };
  /** Blue-green: moves traffic to `$GANTRY_SLOT` (run with that slot's settings). */
  switch?: string;
}

export class ManifestError extends Error {
  constructor(message: string) {
    super(`gantry.yaml: ${message}`);
    this.name = 'ManifestError';
  }
}

const KEYS = new Set(['install', 'start', 'stop', 'health', 'env', 'supervise', 'slots', 'switch']);

/** Reads the manifest of an unpacked release, or undefined when it has none. */
export async function readManifest(releaseDir: string): Promise<Manifest | undefined> {
  let text: string;
  try {
    text = await readFile(path.join(releaseDir, 'gantry.yaml'), 'utf8');
  } catch {
    return undefined;
  }
  return parseManifest(text);
}

export function parseManifest(text: string): Manifest {
  if (text.length > 64 * 1024) throw new ManifestError('is larger than 64 KiB');
  const doc = parseDocument(text, {
    uniqueKeys: true,
    customTags: [],
    strict: true,
    prettyErrors: true,
  });
  // Warnings (an unknown tag such as !!js/function) refuse the manifest as errors do.
  const problem = doc.errors[0] ?? doc.warnings[0];
  if (problem) {
    const at = problem.linePos?.[0];
    const reason = (problem.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '');
    throw new ManifestError(`${at ? `line ${at.line}, column ${at.col}: ` : ''}${reason}`);
  }
  const value: unknown = doc.toJS({ maxAliasCount: 10 });
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new ManifestError('must be a mapping of install, start, stop, health and env');
  const raw = value as Record<string, unknown>;
  for (const key of Object.keys(raw))
    if (!KEYS.has(key)) throw new ManifestError(`unknown key '${key}' (known: ${[...KEYS].join(', ')})`);
  const command = (key: string): string | undefined => {
    const v = raw[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string' || v.trim() === '')
      throw new ManifestError(`'${key}' must be a command (text)`);
    return v;
  };
  const manifest: Manifest = { env: {} };
  if (raw.supervise !== undefined) {
    if (typeof raw.supervise !== 'boolean') throw new ManifestError("'supervise' must be true or false");
    manifest.supervise = raw.supervise;
  }
  for (const key of ['install', 'start', 'stop', 'switch'] as const) {
    const c = command(key);
    if (c !== undefined) manifest[key] = c;
  }
  if (raw.env !== undefined) manifest.env = variables('env', raw.env);
  if (raw.slots !== undefined) {
    const slots = raw.slots as Record<string, unknown>;
    if (typeof slots !== 'object' || slots === null || Array.isArray(slots))
      throw new ManifestError("'slots' must map blue and green to their settings");
    const names = Object.keys(slots).sort().join(',');
    if (names !== 'blue,green')
      throw new ManifestError(`'slots' must name exactly blue and green (found: ${names || 'none'})`);
    manifest.slots = {
      blue: variables('slots.blue', slots.blue),
      green: variables('slots.green', slots.green),
    };
  }
  // `switch` alone is for blue-green by two target groups: a router runs it; slots need it too.
  if (manifest.slots !== undefined && manifest.switch === undefined)
    throw new ManifestError("'slots' needs 'switch', the command that moves traffic between them");
  if (raw.health !== undefined) {
    const h = raw.health as Record<string, unknown>;
    if (typeof h !== 'object' || h === null) throw new ManifestError("'health' must have http or command");
    const number = (key: string, fallback: number, max: number) => {
      const v = h[key] ?? fallback;
      if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v > max)
        throw new ManifestError(`health.${key} must be a number from 0 to ${max}`);
      return v;
    };
    const check: HealthCheck = {
      retries: number('retries', 10, 1000),
      interval: number('interval', 1, 3600),
      timeout: number('timeout', 5, 3600),
    };
    if (typeof h.http === 'string') {
      if (!/^https?:\/\//.test(h.http)) throw new ManifestError('health.http must be an http(s) URL');
      check.http = h.http;
    } else if (typeof h.command === 'string') check.command = h.command;
    else throw new ManifestError("'health' must have http (a URL) or command");
    manifest.health = check;
  }
  if (manifest.supervise && !manifest.start)
    throw new ManifestError("'supervise: true' needs 'start', the service to run");
  return manifest;
}

/** A mapping of environment variable names to values (text, numbers or true/false). */
function variables(where: string, value: unknown): Record<string, string> {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new ManifestError(`'${where}' must map names to values`);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(value)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k))
      throw new ManifestError(`${where} name '${k}' is not a valid variable name`);
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean')
      throw new ManifestError(`${where} '${k}' must be text or a number`);
    out[k] = String(v);
  }
  return out;
}
