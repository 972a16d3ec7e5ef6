/** /api/v1/keys: publisher keys for artifact signatures. */
import { AddKeyRequest, KeyList, KeyParams, KeySchema } from '../../protocol/artifacts.ts';
import { type App, principalOf, responses } from '../http/route-kit.ts';
import type { PublisherKeyService } from './publisher-keys.ts';

export function registerKeyRoutes(app: App, keys: PublisherKeyService): void {
  app.get(
    '/api/v1/keys',
    {
      config: { permission: 'keys:read' },
      schema: { tags: ['keys'], summary: 'List publisher keys', response: responses(KeyList) },
    },
    async () => ({ keys: await keys.list() }),
  );
  app.post(
    '/api/v1/keys',
    {
      config: { permission: 'keys:write' },
      schema: {
        tags: ['keys'],
        summary: 'Trust an Ed25519 publisher key',
        body: AddKeyRequest,
        response: responses(KeySchema, 201),
      },
    },
    async (request, reply) => reply.status(201).send(await keys.add(principalOf(request), request.body)),
  );
  app.delete(
    '/api/v1/keys/:id',
    {
      config: { permission: 'keys:write' },
      schema: {
        tags: ['keys'],
        summary: 'Revoke a publisher key',
        params: KeyParams,
        response: responses(KeySchema),
      },
    },
    async (request) => keys.revoke(principalOf(request), request.params.id),
  );
}
