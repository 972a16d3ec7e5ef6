/**
 * The composition root: builds every service from its narrow dependencies and mounts every route
 * on one Fastify instance. Nothing here opens a database or a port; `run-server.ts` does.
 */
import { randomUUID } from 'node:crypto';
import fastifyCookie from '@fastify/cookie';
import fastifySwagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Ajv } from 'ajv';
import Fastify, { type FastifyBaseLogger, type FastifyRequest } from 'fastify';
import { API_VERSION } from '../protocol/meta.ts';
import type { Failpoints } from '../support/failpoints.ts';
import { GANTRY_VERSION } from '../version.ts';
import { registerAgentBundleRoute } from './agent-bundle-route.ts';
import { registerAuditRoutes } from './audit/audit-routes.ts';
import type { AuditSink } from './audit/audit-sink.ts';
import { registerAuthRoutes } from './auth/auth-routes.ts';
import { AuthService } from './auth/auth-service.ts';
import { actorOf } from './auth/principal.ts';
import { forgetBootstrapPassword } from './bootstrap.ts';
import { registerChangeRoutes } from './changes/change-routes.ts';
import { ChangeService } from './changes/change-service.ts';
import { ScheduleService } from './changes/schedule-service.ts';
import type { Clock } from './clock.ts';
import type { Database } from './db/database.ts';
import { registerDeploymentRoutes } from './deployments/deployment-routes.ts';
import { DeploymentService } from './deployments/deployment-service.ts';
import { DeploymentEngine } from './deployments/engine.ts';
import { registerPipelineRoutes } from './deployments/pipeline-routes.ts';
import { PipelineService } from './deployments/pipeline-service.ts';
import { registerArtifactRoutes } from './dml/artifact-routes.ts';
import { ArtifactService } from './dml/artifact-service.ts';
import type { FsBlobStore } from './dml/fs-blob-store.ts';
import { registerEventRoutes } from './events/event-routes.ts';
import { registerFlagRoutes } from './flags/flag-routes.ts';
import { FlagService } from './flags/flag-service.ts';
import { registerHardwareRoutes } from './hardware/hardware-routes.ts';
import { HardwareService } from './hardware/hardware-service.ts';
import { createAuthenticateHook } from './http/authenticate.ts';
import { errorBody, type MappedError, mapError } from './http/error-mapping.ts';
import type { App, RouteInfo } from './http/route-kit.ts';
import { parseStrictJson } from './http/strict-json.ts';
import { EnrollmentService } from './inventory/enrollment-service.ts';
import { registerInventoryRoutes } from './inventory/inventory-routes.ts';
import { InventoryService } from './inventory/inventory-service.ts';
import { LedgerService } from './inventory/ledger-service.ts';
import { StepService } from './inventory/step-service.ts';
import { registerKeyRoutes } from './keys/key-routes.ts';
import { PublisherKeyService } from './keys/publisher-keys.ts';
import { registerMetaRoutes } from './meta-routes.ts';
import { registerReleaseRoutes } from './releases/release-routes.ts';
import { ReleaseService } from './releases/release-service.ts';
import { registerTokenRoutes } from './tokens/token-routes.ts';
import { TokenService } from './tokens/token-service.ts';
import { inTransaction, type UnitOfWork } from './unit-of-work.ts';
import { registerUserRoutes } from './users/user-routes.ts';
import { UserService } from './users/user-service.ts';

export interface AppDeps {
  database: Database;
  clock: Clock;
  logger: FastifyBaseLogger | false;
  bodyLimit: number;
  publicUrl: string | undefined;
  trustProxy: false | number | string[];
  /** Where the bootstrap password file lives (removed when admin sets their own password). */
  dataDir: string;
  auditSink?: AuditSink | undefined;
  /** Where artifact bytes live. */
  blobs: FsBlobStore;
  dmlMaxBytes: number;
  failpoints?: Failpoints | undefined;
  /** How often the deployment engine looks at every active deployment (default 1 s). */
  engineIntervalMs?: number | undefined;
  /** Seconds between agent heartbeats (default 15). */
  heartbeatSeconds?: number | undefined;
  /** Bytes of artifacts one user may store (0 or absent: no quota). */
  dmlUserQuotaBytes?: number | undefined;
  /** How long this replica holds a deployment's lease without renewing it (default 15 s). */
  deployLeaseMs?: number | undefined;
}

/**
 * A signed-in caller who sends fields an endpoint does not accept (`role`, `passwordHash`, …) may
 * be probing for mass assignment: the refusal is recorded in the audit chain.
 */
async function auditRejectedFields(
  deps: AppDeps,
  request: FastifyRequest,
  mapped: MappedError,
): Promise<void> {
  if (mapped.code !== 'VALIDATION' || !request.principal || !Array.isArray(mapped.details)) return;
  const fields = (mapped.details as Array<{ path?: unknown; message?: unknown }>)
    .filter((d) => d.message === 'unknown field')
    .map((d) => String(d.path));
  if (fields.length === 0) return;
  try {
    await inTransaction(deps, actorOf(request.principal), (uow) =>
      uow.audit({
        action: 'request.rejected_fields',
        subject: `route:${request.method} ${request.routeOptions.url ?? request.url}`,
        details: { fields },
      }),
    );
  } catch (error) {
    request.log.error({ err: error }, 'could not audit a rejected request');
  }
}

export async function createApp(deps: AppDeps): Promise<App> {
  const app: App = Fastify({
    ...(deps.logger ? { loggerInstance: deps.logger } : { logger: false }),
    genReqId: () => randomUUID(),
    requestIdHeader: false,
    bodyLimit: deps.bodyLimit,
    // Fastify takes a hop count at run time (request.js) though its types omit it.
    trustProxy: deps.trustProxy as boolean | string[],
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    // While shutting down, requests already on open connections are served, not refused.
    return503OnClosing: false,
    // Requests too malformed to reach a route (bad framing, oversized headers) get the one error
    // shape too, then the connection is closed.
    clientErrorHandler: (error: Error & { code?: string }, socket) => {
      const tooLarge = error.code === 'HPE_HEADER_OVERFLOW';
      const status = tooLarge ? 431 : 400;
      const body = JSON.stringify({
        error: {
          code: 'VALIDATION',
          message: tooLarge
            ? 'The request headers are too large.'
            : 'The request is not valid HTTP/1.1 (framing or headers).',
          details: { cause: error.code ?? null },
          requestId: randomUUID(),
        },
      });
      if (socket.writable) {
        socket.end(
          `HTTP/1.1 ${status} ${tooLarge ? 'Request Header Fields Too Large' : 'Bad Request'}\r\nContent-Type: application/json; charset=utf-8\r\n` +
            `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
        );
      } else {
        socket.destroy(error);
      }
    },
    // Idle sockets and slow headers are cut off quickly; a whole request (a large artifact upload)
    // may take up to an hour.
    connectionTimeout: 60_000,
    requestTimeout: 3_600_000,
  }).withTypeProvider<TypeBoxTypeProvider>();

  // Bodies are checked exactly (no coercion, unknown fields refused, every problem listed);
  // query strings and path parameters arrive as text and are coerced to the declared types.
  const ajvOptions = {
    allErrors: true,
    removeAdditional: false,
    useDefaults: false,
    strict: false,
    strictNumbers: true,
  } as const;
  const bodyAjv = new Ajv({ ...ajvOptions, coerceTypes: false });
  const paramAjv = new Ajv({ ...ajvOptions, coerceTypes: 'array' });
  app.setValidatorCompiler(({ schema, httpPart }) =>
    (httpPart === 'body' ? bodyAjv : paramAjv).compile(schema),
  );

  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_request, body, done) => {
    try {
      done(null, parseStrictJson(body as Buffer));
    } catch (error) {
      done(error as Error, undefined);
    }
  });

  const routeTable: RouteInfo[] = [];
  app.decorate('routeTable', routeTable);
  app.addHook('onRoute', (route) => {
    const permission = route.config?.permission;
    if (permission === undefined) {
      throw new Error(
        `route ${String(route.method)} ${route.url} has no permission: every route must name one`,
      );
    }
    for (const method of [route.method].flat()) routeTable.push({ method, url: route.url, permission });
  });
  app.decorateRequest('principal', null);
  app.decorateRequest('agent', null);
  app.addHook('onSend', async (request, reply) => {
    reply.header('x-request-id', request.id);
    reply.header('cache-control', 'no-store');
    reply.header('x-content-type-options', 'nosniff');
  });

  app.setErrorHandler(async (error, request, reply) => {
    const mapped = mapError(error, request.id);
    if (mapped.serverFault) request.log.error({ err: error, code: mapped.code }, 'request failed');
    else request.log.info({ code: mapped.code, status: mapped.status }, 'request refused');
    await auditRejectedFields(deps, request, mapped);
    if (mapped.retryAfterSeconds !== undefined) reply.header('retry-after', String(mapped.retryAfterSeconds));
    // A download that fails before its first byte already set headers for the bytes.
    reply.removeHeader('content-length');
    reply.removeHeader('content-disposition');
    if (mapped.code !== 'RANGE_NOT_SATISFIABLE') reply.removeHeader('content-range');
    reply.type('application/json; charset=utf-8');
    return reply.status(mapped.status).send(errorBody(mapped, request.id));
  });
  app.setNotFoundHandler((request, reply) =>
    reply.status(404).send({
      error: {
        code: 'NOT_FOUND',
        message: `No route ${request.method} ${request.url.split('?')[0]}. The API is described at /api/v1/openapi.json.`,
        details: null,
        requestId: request.id,
      },
    }),
  );

  await app.register(fastifyCookie);
  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'Gantry API', version: `${GANTRY_VERSION} (${API_VERSION})` },
      components: {
        securitySchemes: {
          bearerToken: {
            type: 'http',
            scheme: 'bearer',
            description: 'An API token (gnt_…) from `gantry tokens create`',
          },
          sessionCookie: { type: 'apiKey', in: 'cookie', name: 'gantry_session' },
        },
      },
      security: [{ bearerToken: [] }, { sessionCookie: [] }],
    },
  });

  const tx = { database: deps.database, clock: deps.clock, auditSink: deps.auditSink };
  const tokens = new TokenService(tx);
  const artifacts = new ArtifactService({
    ...tx,
    blobs: deps.blobs,
    maxBytes: deps.dmlMaxBytes,
    userQuotaBytes: deps.dmlUserQuotaBytes,
    failpoints: deps.failpoints,
  });
  const auth = new AuthService({
    ...tx,
    onOwnPasswordChanged: (username) => forgetBootstrapPassword(deps.dataDir, username),
  });
  const users = new UserService(tx);
  const enrollment = new EnrollmentService(tx, deps.heartbeatSeconds);

  app.addHook(
    'onRequest',
    createAuthenticateHook({
      database: deps.database,
      clock: deps.clock,
      tokens,
      auth,
      enrollment,
      publicOrigin: deps.publicUrl ? new URL(deps.publicUrl).origin : undefined,
    }),
  );

  registerMetaRoutes(app, { database: deps.database });
  registerAgentBundleRoute(app);
  registerAuthRoutes(app, auth, { secureCookies: deps.publicUrl?.startsWith('https:') ?? false });
  registerUserRoutes(app, users, auth);
  registerTokenRoutes(app, tokens);
  registerAuditRoutes(app, tx);
  registerEventRoutes(app, { database: deps.database });
  registerKeyRoutes(app, new PublisherKeyService(tx));
  registerArtifactRoutes(app, artifacts, deps.blobs);
  const inventory = new InventoryService(tx, deps.heartbeatSeconds);
  inventory.onAgentsRevoked = (targetId) => enrollment.forgetTarget(targetId);
  inventory.announceAgentsRevoked = (uow, targetId) => enrollment.announceRevoked(uow, targetId);
  void enrollment.listen();
  app.addHook('onClose', () => enrollment.close());
  const steps = new StepService(tx, inventory);
  void steps.listen();
  app.addHook('onClose', () => steps.close());
  registerInventoryRoutes(app, inventory, enrollment, new LedgerService(tx, inventory), steps);
  const releases = new ReleaseService(tx);
  const changes = new ChangeService({ ...tx, artifacts, releases });
  const checkFlagChange = (uow: UnitOfWork, environment: string, change: string | undefined) =>
    changes.requireActiveChange(uow, environment, change, 'Changing feature flags');
  registerHardwareRoutes(app, new HardwareService(tx, changes), { csvLimit: 8 * 1024 * 1024 });
  registerReleaseRoutes(app, releases, checkFlagChange);
  registerChangeRoutes(app, changes, new ScheduleService(tx), { publicUrl: deps.publicUrl });
  registerFlagRoutes(app, new FlagService(tx, checkFlagChange));
  const engine = new DeploymentEngine({
    ...tx,
    steps,
    changes,
    failpoints: deps.failpoints,
    intervalMs: deps.engineIntervalMs,
    leaseMs: deps.deployLeaseMs,
  });
  steps.onSettled = () => engine.kick();
  const deployments = new DeploymentService({
    ...tx,
    changes,
    releases,
    kick: () => engine.kick('now'),
    changed: (id) => engine.changed.emit('changed', id),
  });
  registerDeploymentRoutes(app, deployments, engine);
  const pipelines = new PipelineService({ ...tx, changes, releases, deployments });
  engine.afterPass = () => pipelines.advance();
  releases.onCreated = (id) => {
    pipelines.releaseCreated(id).then(
      () => engine.kick('now'),
      () => undefined,
    );
  };
  registerPipelineRoutes(app, pipelines);
  app.decorate('engine', engine);
  app.addHook('onClose', async () => engine.stop());

  await app.ready();
  engine.start();
  return app;
}
