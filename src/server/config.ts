/**
 * Server configuration: command-line flags win over GANTRY_* environment variables, which win over
 * defaults that make the quick start work. Validated once at start; a bad value stops the server
 * with the variable's name and what would be accepted. Nothing else in the server reads the
 * environment.
 */
import path from 'node:path';
import { GantryError } from '../core/errors.ts';
import { parseFailpoints } from '../support/failpoints.ts';

export interface ServerConfig {
  host: string;
  port: number;
  dataDir: string;
  /** postgres:// URL, or undefined for SQLite in the data directory. */
  databaseUrl: string | undefined;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** The address people reach Gantry at; used for links and to decide on Secure cookies. */
  publicUrl: string | undefined;
  bootstrapAdminToken: string | undefined;
  /** Largest JSON request body, in bytes. */
  bodyLimit: number;
  /** Trust X-Forwarded-For from a reverse proxy when set to true. */
  /** false, a number of proxy hops, or the proxies' addresses/CIDRs whose X-Forwarded-For is believed. */
  trustProxy: false | number | string[];
  /** A file that receives a copy of every audit entry as a JSON line, or undefined. */
  auditFile: string | undefined;
  /** Largest artifact accepted by the media library, in bytes. */
  dmlMaxBytes: number;
  /** Seconds between two background re-verifications of one stored artifact; 0 turns it off. */
  dmlScrubIntervalSeconds: number;
  /** How long a replica holds a deployment's lease without renewing it. */
  deployLeaseSeconds: number;
  /** Bytes of artifacts one user may store (0: no quota). */
  dmlUserQuotaBytes: number;
  /** Seconds between agent heartbeats; stale after 3 missed, offline after 10. */
  heartbeatSeconds: number;
  /** Test harness failpoints (see failpoints.ts); unset in production. */
  failpoints: string | undefined;
  /** Diagnostics: where to write the time spent per SQL statement when the server exits. */
  sqlProfile: string | undefined;
}

export interface ServerFlags {
  host?: string | undefined;
  port?: string | undefined;
  dataDir?: string | undefined;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

function invalid(name: string, message: string): never {
  throw new GantryError('CONFIG_INVALID', `${name}: ${message}`, { setting: name });
}

export function loadServerConfig(
  env: Record<string, string | undefined>,
  flags: ServerFlags = {},
  cwd = process.cwd(),
): ServerConfig {
  const portText = flags.port ?? env.GANTRY_PORT ?? '8080';
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port < 0 || port > 65535) {
    invalid(
      flags.port !== undefined ? '--port' : 'GANTRY_PORT',
      `'${portText}' is not a port number (0-65535).`,
    );
  }

  const databaseUrl = env.GANTRY_DATABASE_URL || undefined;
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    invalid(
      'GANTRY_DATABASE_URL',
      'must start with postgres:// (leave it unset to use SQLite in the data directory).',
    );
  }

  const logLevel = (env.GANTRY_LOG_LEVEL ?? 'info') as ServerConfig['logLevel'];
  if (!LOG_LEVELS.includes(logLevel)) invalid('GANTRY_LOG_LEVEL', `must be one of ${LOG_LEVELS.join(', ')}.`);

  const publicUrl = env.GANTRY_PUBLIC_URL || undefined;
  if (publicUrl !== undefined) {
    try {
      const u = new URL(publicUrl);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('scheme');
    } catch {
      invalid('GANTRY_PUBLIC_URL', `'${publicUrl}' is not an http(s) URL.`);
    }
  }

  const bootstrapAdminToken = env.GANTRY_BOOTSTRAP_ADMIN_TOKEN || undefined;
  if (
    bootstrapAdminToken !== undefined &&
    (bootstrapAdminToken.length < 32 || /\s/.test(bootstrapAdminToken))
  ) {
    invalid(
      'GANTRY_BOOTSTRAP_ADMIN_TOKEN',
      'must be at least 32 characters with no spaces (for example `openssl rand -hex 32`).',
    );
  }

  const bodyLimitText = env.GANTRY_BODY_LIMIT ?? String(1024 * 1024);
  const bodyLimit = Number(bodyLimitText);
  if (!Number.isInteger(bodyLimit) || bodyLimit < 1024)
    invalid('GANTRY_BODY_LIMIT', 'must be a whole number of bytes, at least 1024.');

  const trustProxyText = (env.GANTRY_TRUST_PROXY ?? 'false').trim();
  let trustProxy: false | number | string[] = false;
  if (/^\d+$/.test(trustProxyText)) trustProxy = Number(trustProxyText);
  else if (trustProxyText !== 'false' && trustProxyText !== '') {
    const proxies = trustProxyText.split(',').map((p) => p.trim());
    if (trustProxyText === 'true' || proxies.some((p) => !/^[0-9a-fA-F:.]+(\/\d{1,3})?$/.test(p))) {
      invalid(
        'GANTRY_TRUST_PROXY',
        'give the number of proxy hops in front of Gantry (e.g. 1) or the proxies\' addresses (e.g. 10.0.0.5,10.1.0.0/16); "true" would let any client choose its own address.',
      );
    }
    trustProxy = proxies;
  }

  const dmlMaxText = env.GANTRY_DML_MAX_BYTES ?? String(4 * 1024 ** 3);
  const dmlMaxBytes = Number(dmlMaxText);
  if (!Number.isSafeInteger(dmlMaxBytes) || dmlMaxBytes < 1)
    invalid('GANTRY_DML_MAX_BYTES', 'must be a whole number of bytes.');

  const scrubText = env.GANTRY_DML_SCRUB_INTERVAL_SECONDS ?? '300';
  const dmlScrubIntervalSeconds = Number(scrubText);
  if (!Number.isInteger(dmlScrubIntervalSeconds) || dmlScrubIntervalSeconds < 0) {
    invalid(
      'GANTRY_DML_SCRUB_INTERVAL_SECONDS',
      'must be a whole number of seconds (0 turns the background check off).',
    );
  }
  const heartbeatText = env.GANTRY_HEARTBEAT_SECONDS ?? '15';
  const heartbeatSeconds = Number(heartbeatText);
  if (!Number.isInteger(heartbeatSeconds) || heartbeatSeconds < 1 || heartbeatSeconds > 300)
    invalid('GANTRY_HEARTBEAT_SECONDS', 'must be a whole number of seconds from 1 to 300.');

  const quotaText = env.GANTRY_DML_USER_QUOTA_BYTES ?? '0';
  const dmlUserQuotaBytes = Number(quotaText);
  if (!Number.isSafeInteger(dmlUserQuotaBytes) || dmlUserQuotaBytes < 0)
    invalid('GANTRY_DML_USER_QUOTA_BYTES', 'must be a whole number of bytes (0: no quota).');

  const leaseText = env.GANTRY_DEPLOY_LEASE_SECONDS ?? '15';
  const deployLeaseSeconds = Number(leaseText);
  if (!Number.isInteger(deployLeaseSeconds) || deployLeaseSeconds < 2 || deployLeaseSeconds > 3600) {
    invalid(
      'GANTRY_DEPLOY_LEASE_SECONDS',
      'must be a whole number of seconds from 2 to 3600 (how long a replica holds a deployment without renewing).',
    );
  }
  parseFailpoints(env.FAILPOINTS);

  return {
    host: flags.host ?? env.GANTRY_HOST ?? '127.0.0.1',
    port,
    dataDir: path.resolve(cwd, flags.dataDir ?? env.GANTRY_DATA_DIR ?? '.gantry'),
    databaseUrl,
    logLevel,
    publicUrl,
    bootstrapAdminToken,
    bodyLimit,
    trustProxy,
    auditFile: env.GANTRY_AUDIT_FILE ? path.resolve(cwd, env.GANTRY_AUDIT_FILE) : undefined,
    dmlMaxBytes,
    dmlScrubIntervalSeconds,
    deployLeaseSeconds,
    dmlUserQuotaBytes,
    heartbeatSeconds,
    failpoints: env.FAILPOINTS || undefined,
    sqlProfile: env.GANTRY_SQL_PROFILE || undefined,
  };
}
