/** /api/v1/artifacts, /api/v1/blobs, /api/v1/dml: the media library over HTTP. */
import type { Readable } from 'node:stream';
import { Type } from '@sinclair/typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import parseRange from 'range-parser';
import { GantryError } from '../../core/errors.ts';
import {
  AddSignatureRequest,
  ArtifactList,
  ArtifactListQuery,
  ArtifactSchema,
  type ArtifactView,
  DigestParams,
  RetentionRequest,
  RetentionResult,
  UploadQuery,
  UsageView,
  VerifyResult,
} from '../../protocol/artifacts.ts';
import { IdParams } from '../../protocol/common.ts';
import { actorOf } from '../auth/principal.ts';
import { errorBody, mapError } from '../http/error-mapping.ts';
import { type App, principalOf, responses } from '../http/route-kit.ts';
import { type ArtifactService, type ArtifactWithSignatures, withDigestPrefix } from './artifact-service.ts';
import type { Artifact } from './artifact-store.ts';
import type { FsBlobStore } from './fs-blob-store.ts';

export function toArtifactView(a: ArtifactWithSignatures): ArtifactView {
  return {
    id: a.id,
    component: a.component,
    version: a.version,
    kind: a.kind,
    digest: withDigestPrefix(a.digest),
    size: a.size,
    filename: a.filename,
    state: a.state,
    quarantineReason: a.quarantineReason,
    provenance: a.provenance,
    signatures: a.signatures,
    createdAt: a.createdAt,
    createdBy: a.createdBy,
    verifiedAt: a.verifiedAt,
  };
}

const binary = { 200: { description: 'The artifact’s bytes', type: 'string', format: 'binary' } } as const;

export function registerArtifactRoutes(app: App, artifacts: ArtifactService, blobs: FsBlobStore): void {
  // Artifact bytes arrive as a stream and go straight to disk; the service enforces the size limit.
  app.addContentTypeParser('application/octet-stream', (_request, payload, done) => done(null, payload));

  app.post(
    '/api/v1/artifacts',
    {
      config: { permission: 'artifacts:write' },
      schema: {
        tags: ['artifacts'],
        summary:
          'Upload an artifact: the body is its bytes (application/octet-stream); metadata in the query',
        querystring: UploadQuery,
        response: { 201: ArtifactSchema, 200: ArtifactSchema, ...responses(ArtifactSchema, 201) },
      },
    },
    async (request, reply) => {
      const body = request.body as Readable | undefined;
      if (!body || typeof (body as Readable).pipe !== 'function') {
        throw new GantryError(
          'UNSUPPORTED_MEDIA_TYPE',
          'Send the artifact’s bytes as the body with Content-Type: application/octet-stream.',
        );
      }
      const lengthHeader = request.headers['content-length'];
      const length = lengthHeader !== undefined ? Number(lengthHeader) : undefined;
      try {
        const { artifact, created } = await artifacts.upload(
          principalOf(request),
          request.query,
          body,
          length,
        );
        return reply.status(created ? 201 : 200).send(toArtifactView(artifact));
      } catch (error) {
        // The rest of a refused body is not read: closing the connection stops the sender.
        if (!body.readableEnded) reply.header('connection', 'close');
        throw error;
      }
    },
  );

  app.get(
    '/api/v1/artifacts',
    {
      config: { permission: 'artifacts:read' },
      schema: {
        tags: ['artifacts'],
        summary: 'List artifacts in upload order',
        querystring: ArtifactListQuery,
        response: responses(ArtifactList),
      },
    },
    async (request) => {
      const limit = request.query.limit ?? 100;
      const list = await artifacts.list({ ...request.query, limit });
      return {
        artifacts: list.map(toArtifactView),
        nextAfter: list.length === limit ? (list[list.length - 1]?.id ?? null) : null,
      };
    },
  );

  app.get(
    '/api/v1/artifacts/:id',
    {
      config: { permission: 'artifacts:read' },
      schema: {
        tags: ['artifacts'],
        summary: 'Show an artifact, its provenance and which trusted keys signed it',
        params: IdParams,
        response: responses(ArtifactSchema),
      },
    },
    async (request) => toArtifactView(await artifacts.get(request.params.id)),
  );

  app.get(
    '/api/v1/artifacts/:id/content',
    {
      config: { permission: 'artifacts:read' },
      schema: {
        tags: ['artifacts'],
        summary: 'Download the bytes (Range supported; ETag is the digest)',
        params: IdParams,
        response: binary,
      },
    },
    async (request, reply) => serve(request, reply, await artifacts.get(request.params.id), artifacts, blobs),
  );

  app.get(
    '/api/v1/blobs/:digest',
    {
      config: { permission: 'artifacts:read' },
      schema: {
        tags: ['artifacts'],
        summary: 'Download bytes by digest (sha256:<hex>)',
        params: DigestParams,
        response: binary,
      },
    },
    async (request, reply) =>
      serve(
        request,
        reply,
        await artifacts.findByDigest(request.params.digest.slice('sha256:'.length)),
        artifacts,
        blobs,
      ),
  );

  app.get(
    '/api/v1/agent/blobs/:digest',
    {
      config: { permission: 'agent' },
      schema: {
        tags: ['agents'],
        summary: 'An agent downloads a package by digest (Range supported)',
        params: DigestParams,
        response: binary,
      },
    },
    async (request, reply) =>
      serve(
        request,
        reply,
        await artifacts.findByDigest(request.params.digest.slice('sha256:'.length)),
        artifacts,
        blobs,
      ),
  );

  app.post(
    '/api/v1/artifacts/:id/verify',
    {
      config: { permission: 'artifacts:write' },
      schema: {
        tags: ['artifacts'],
        summary: 'Re-hash the stored bytes now; quarantines on a mismatch',
        params: IdParams,
        response: responses(VerifyResult),
      },
    },
    async (request) => artifacts.verify(actorOf(principalOf(request)), request.params.id),
  );

  app.post(
    '/api/v1/artifacts/:id/signatures',
    {
      config: { permission: 'artifacts:write' },
      schema: {
        tags: ['artifacts'],
        summary: 'Attach a publisher’s Ed25519 signature over the artifact’s signed statement',
        params: IdParams,
        body: AddSignatureRequest,
        response: responses(ArtifactSchema, 201),
      },
    },
    async (request, reply) =>
      reply
        .status(201)
        .send(
          toArtifactView(await artifacts.addSignature(principalOf(request), request.params.id, request.body)),
        ),
  );

  app.get(
    '/api/v1/artifacts/:id/usage',
    {
      config: { permission: 'artifacts:read' },
      schema: {
        tags: ['artifacts'],
        summary: 'Releases, changes, deployments and targets that use the artifact',
        params: IdParams,
        response: responses(UsageView),
      },
    },
    async (request) => ({ artifactId: request.params.id, ...(await artifacts.usage(request.params.id)) }),
  );

  app.delete(
    '/api/v1/artifacts/:id',
    {
      config: { permission: 'artifacts:admin' },
      schema: {
        tags: ['artifacts'],
        summary: 'Delete an artifact nothing refers to',
        params: IdParams,
        response: responses(Type.Null(), 204),
      },
    },
    async (request, reply) => {
      await artifacts.delete(principalOf(request), request.params.id);
      return reply.status(204).send(null);
    },
  );

  app.post(
    '/api/v1/dml/retention',
    {
      config: { permission: 'artifacts:admin' },
      schema: {
        tags: ['artifacts'],
        summary: 'Keep the newest N versions per component and delete the rest that nothing refers to',
        body: RetentionRequest,
        response: responses(RetentionResult),
      },
    },
    async (request) => artifacts.applyRetention(principalOf(request), request.body),
  );
}

async function serve(
  request: FastifyRequest,
  reply: FastifyReply,
  artifact: Artifact,
  artifacts: ArtifactService,
  blobs: FsBlobStore,
) {
  const etag = `"sha256:${artifact.digest}"`;
  reply.header('etag', etag).header('accept-ranges', 'bytes').header('cache-control', 'no-store');
  if (request.headers['if-none-match'] === etag) {
    await artifacts.assertServable(artifact, false);
    return reply.status(304).send();
  }
  const rangeHeader = request.headers.range;
  if (rangeHeader !== undefined) {
    const ranges = parseRange(artifact.size, rangeHeader, { combine: true });
    if (ranges === -1) {
      reply.header('content-range', `bytes */${artifact.size}`);
      throw new GantryError(
        'RANGE_NOT_SATISFIABLE',
        `The range '${rangeHeader}' lies outside the ${artifact.size} bytes of the artifact.`,
      );
    }
    const range = ranges !== -2 && ranges.type === 'bytes' && ranges.length === 1 ? ranges[0] : undefined;
    if (range) {
      // A part cannot be checked on the fly, so the whole blob is checked first.
      await artifacts.assertServable(artifact, true);
      reply
        .status(206)
        .header('content-range', `bytes ${range.start}-${range.end}/${artifact.size}`)
        .header('content-length', range.end - range.start + 1)
        .type('application/octet-stream');
      return reply.send(blobs.open(artifact.digest, range));
    }
  }
  await artifacts.assertServable(artifact, false);
  reply
    .header('content-length', artifact.size)
    .header(
      'content-disposition',
      `attachment; filename="${(artifact.filename ?? `${artifact.component}-${artifact.version}`).replace(/["\\]/g, '_')}"`,
    )
    .type('application/octet-stream');
  // Written on the raw response, so that each piece is sent from the hashing worker's memory and
  // given back once the socket has taken it (a stream handed to the framework gives no such word).
  reply.hijack();
  const res = reply.raw;
  for (const [name, value] of Object.entries(reply.getHeaders()))
    if (value !== undefined) res.setHeader(name, value);
  // What the app's onSend hook adds to every other answer.
  res.setHeader('x-request-id', request.id);
  res.setHeader('x-content-type-options', 'nosniff');
  res.statusCode = 200;
  if (request.method === 'HEAD') {
    res.end();
    return;
  }
  artifacts.writeVerified(artifact, res, (error) => {
    const mapped = mapError(error, request.id);
    if (mapped.serverFault) request.log.error({ err: error, artifact: artifact.id }, 'download failed');
    else request.log.info({ code: mapped.code, artifact: artifact.id }, 'download stopped');
    // Once bytes have gone out the only honest end is a cut-off response.
    if (res.headersSent || res.destroyed) {
      res.destroy();
      return;
    }
    // Before the first byte: the error as every other answer gives it (the error handler's form).
    res.removeHeader('content-length');
    res.removeHeader('content-disposition');
    res.removeHeader('etag');
    res.statusCode = mapped.status;
    res.setHeader('content-type', 'application/json; charset=utf-8');
    res.end(JSON.stringify(errorBody(mapped, request.id)));
  });
}
