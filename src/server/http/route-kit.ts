/** Shared types and helpers for route modules. */
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { TSchema } from '@sinclair/typebox';
import type {
  FastifyBaseLogger,
  FastifyInstance,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerDefault,
} from 'fastify';
import { GantryError } from '../../core/errors.ts';
import type { Permission } from '../../core/roles.ts';
import { ErrorBody } from '../../protocol/common.ts';
import type { Principal } from '../auth/principal.ts';
import type { AgentIdentity } from '../inventory/enrollment-service.ts';

export type App = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>;

/** One mounted route and the permission it needs: what the permission test walks. */
export interface RouteInfo {
  method: string;
  url: string;
  permission: Permission;
}

declare module 'fastify' {
  interface FastifyInstance {
    routeTable: readonly RouteInfo[];
    /** The deployment engine driving this server's deployments. */
    engine: import('../deployments/engine.ts').DeploymentEngine;
  }
  interface FastifyContextConfig {
    /** The one permission this route needs. Routes without one are refused at start. */
    permission?: Permission;
  }
  interface FastifyRequest {
    principal: Principal | null;
    /** Set on agent routes: the agent whose credential was presented. */
    agent: AgentIdentity | null;
  }
}

/** Response schemas: the success body plus the common error body for every failure status. */
export function responses<T extends TSchema>(ok: T, status = 200) {
  return { [status]: ok, '4xx': ErrorBody, '5xx': ErrorBody } as const;
}

/** The agent calling an agent route. */
export function agentOf(request: { agent: AgentIdentity | null }): AgentIdentity {
  if (!request.agent) throw new GantryError('UNAUTHENTICATED', 'This route is for agents.');
  return request.agent;
}

/** The authenticated caller; routes that need one are only reached after the auth hook found it. */
export function principalOf(request: { principal: Principal | null }): Principal {
  if (!request.principal) throw new GantryError('UNAUTHENTICATED', 'Sign in first.');
  return request.principal;
}
