/** Who is calling: resolved once per request by the authentication hook. */
import { type Permission, roleGrants } from '../../core/roles.ts';
import type { AuditActor } from '../audit/audit-log.ts';
import type { User } from '../users/user-store.ts';
import type { Session } from './session-store.ts';

export interface Principal {
  user: User;
  via: 'token' | 'session';
  tokenId: string | null;
  session: Session | null;
  source: string | null;
}

export function actorOf(principal: Principal): AuditActor {
  return { actor: `user:${principal.user.username}`, source: principal.source };
}

export function can(principal: Principal, permission: Permission): boolean {
  return roleGrants(principal.user.role, permission);
}
