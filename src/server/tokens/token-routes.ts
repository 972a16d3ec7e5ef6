/** /api/v1/tokens */
import { IdParams } from '../../protocol/common.ts';
import {
  CreatedToken,
  CreateTokenRequest,
  TokenList,
  TokenListQuery,
  TokenSchema,
} from '../../protocol/tokens.ts';
import { type App, principalOf, responses } from '../http/route-kit.ts';
import type { TokenService } from './token-service.ts';

export function registerTokenRoutes(app: App, tokens: TokenService): void {
  app.get(
    '/api/v1/tokens',
    {
      config: { permission: 'tokens:own' },
      schema: {
        tags: ['tokens'],
        summary: 'List your API tokens (admins: all=true for everyone’s)',
        querystring: TokenListQuery,
        response: responses(TokenList),
      },
    },
    async (request) => ({ tokens: await tokens.list(principalOf(request), request.query) }),
  );

  app.post(
    '/api/v1/tokens',
    {
      config: { permission: 'tokens:own' },
      schema: {
        tags: ['tokens'],
        summary: 'Create an API token; the secret is in this response only',
        body: CreateTokenRequest,
        response: responses(CreatedToken, 201),
      },
    },
    async (request, reply) => reply.status(201).send(await tokens.create(principalOf(request), request.body)),
  );

  app.delete(
    '/api/v1/tokens/:id',
    {
      config: { permission: 'tokens:own' },
      schema: {
        tags: ['tokens'],
        summary: 'Revoke an API token',
        params: IdParams,
        response: responses(TokenSchema),
      },
    },
    async (request) => tokens.revoke(principalOf(request), request.params.id),
  );
}
