/**
 * `gantry server`: opens the database (migrating it), makes the first admin on an empty one,
 * listens, and shuts down gracefully on SIGTERM/SIGINT: stop accepting, finish what is in flight,
 * close the database.
 */
import { chmodSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { Failpoints } from '../support/failpoints.ts';
import { GANTRY_VERSION } from '../version.ts';
import { FileAuditSink } from './audit/audit-sink.ts';
import { ensureFirstAdmin } from './bootstrap.ts';
import { systemClock } from './clock.ts';
import type { ServerConfig } from './config.ts';
import { createApp } from './create-app.ts';
import { type DatabaseTarget, openAndMigrate } from './db/database.ts';
import { ArtifactService } from './dml/artifact-service.ts';
import { FsBlobStore } from './dml/fs-blob-store.ts';
import { Notifier } from './releases/notifier.ts';

export interface RunningServer {
  url: string;
  close(): Promise<void>;
}

export async function runServer(config: ServerConfig): Promise<RunningServer> {
  const logger = pino({
    level: config.logLevel,
    base: { service: 'gantry' },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: {
      paths: ['req.headers.authorization', 'req.headers.cookie', 'res.headers["set-cookie"]'],
      censor: '[redacted]',
    },
  });
  // Everything the server writes (database, blobs, secrets) is for its own OS user only.
  process.umask(0o077);
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  chmodSync(config.dataDir, 0o700);
  const target: DatabaseTarget = config.databaseUrl
    ? { kind: 'postgres', url: config.databaseUrl, profileFile: config.sqlProfile }
    : { kind: 'sqlite', file: path.join(config.dataDir, 'gantry.db'), profileFile: config.sqlProfile };
  const { database, applied } = await openAndMigrate(target);
  logger.info(
    { database: database.dialect, location: database.location, migrationsApplied: applied },
    'database ready',
  );

  const auditSink = config.auditFile
    ? new FileAuditSink(config.auditFile, (error) =>
        logger.error(
          { err: error, file: config.auditFile },
          'could not copy audit entries to the audit file',
        ),
      )
    : undefined;
  const bootstrap = await ensureFirstAdmin(
    { database, clock: systemClock, auditSink },
    { dataDir: config.dataDir, bootstrapToken: config.bootstrapAdminToken },
  );
  const failpoints = new Failpoints(config.failpoints);
  const blobs = new FsBlobStore(path.join(config.dataDir, 'blobs'), failpoints);
  await blobs.init();
  const app = await createApp({
    database,
    clock: systemClock,
    logger,
    bodyLimit: config.bodyLimit,
    publicUrl: config.publicUrl,
    trustProxy: config.trustProxy,
    dataDir: config.dataDir,
    auditSink,
    blobs,
    dmlMaxBytes: config.dmlMaxBytes,
    failpoints,
    deployLeaseMs: config.deployLeaseSeconds * 1000,
    dmlUserQuotaBytes: config.dmlUserQuotaBytes,
    heartbeatSeconds: config.heartbeatSeconds,
  });
  try {
    // A fleet's agents reconnect together (a server restart, a network blip): Node's default
    // backlog of 511 overflows with thousands of them, and the rest wait for SYN retries. The
    // kernel caps this at net.core.somaxconn.
    await app.listen({ host: config.host, port: config.port, backlog: 4096 });
  } catch (error) {
    await app.close();
    await blobs.close();
    await database.destroy();
    throw error;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  const url = `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`;
  logger.info({ url, version: GANTRY_VERSION }, 'gantry server listening');
  if (bootstrap.created) {
    logger.warn(
      { passwordFile: bootstrap.passwordFile, bootstrapToken: bootstrap.tokenCreated },
      `first start: created user 'admin'. Its password is in ${bootstrap.passwordFile} (readable by this OS user only). ` +
        `Log in with: gantry login ${config.publicUrl ?? url} --username admin ; then set your own password with: gantry users passwd` +
        (bootstrap.tokenCreated ? ' — GANTRY_BOOTSTRAP_ADMIN_TOKEN is admin’s first API token.' : ''),
    );
  }

  const artifacts = new ArtifactService({
    database,
    clock: systemClock,
    auditSink,
    blobs,
    maxBytes: config.dmlMaxBytes,
  });
  // Blobs that no artifact names (a crash between rename and commit) are removed once they are old
  // enough not to belong to an upload still in progress.
  artifacts.collectOrphanBlobs(3_600_000).then(
    (removed) => removed > 0 && logger.info({ removed }, 'removed blobs no artifact refers to'),
    (error: unknown) => logger.error({ err: error }, 'could not collect orphan blobs'),
  );
  const scrub =
    config.dmlScrubIntervalSeconds > 0
      ? setInterval(() => {
          artifacts.scrubOne().then(
            (outcome) => {
              if (outcome && !outcome.ok)
                logger.error(
                  { artifact: outcome.id, reason: outcome.message },
                  'artifact failed its background integrity check and is quarantined',
                );
            },
            (error: unknown) => logger.error({ err: error }, 'background integrity check failed to run'),
          );
        }, config.dmlScrubIntervalSeconds * 1000)
      : undefined;
  scrub?.unref();
  logger.info({ replica: app.engine.owner }, 'deployment engine started');
  const notifier = new Notifier({ database, clock: systemClock });
  let notifying: Promise<void> | undefined;
  const notify = setInterval(() => {
    notifying ??= notifier
      .deliverDue()
      .then(
        () => undefined,
        (error: unknown) => logger.error({ err: error }, 'could not deliver notifications'),
      )
      .finally(() => {
        notifying = undefined;
      });
  }, 2000);
  notify.unref();

  let closing: Promise<void> | undefined;
  return {
    url,
    close: () => {
      closing ??= (async () => {
        logger.info('shutting down: finishing requests in flight');
        if (scrub) clearInterval(scrub);
        clearInterval(notify);
        await notifying;
        await app.close();
        await blobs.close();
        await database.destroy();
        logger.info('stopped');
      })();
      return closing;
    },
  };
}
