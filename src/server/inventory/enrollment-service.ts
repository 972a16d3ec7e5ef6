/**
 * Agents join through enrollment tokens: an admin makes one for an environment (with labels and
 * an expiry); an agent trades it, once, for its own credential and a target of its own. Gantry
 * keeps only hashes of both. Agents then send heartbeats with their host facts.
 */
import { randomBytes } from 'node:crypto';
import { GantryError } from '../../core/errors.ts';
import type { HostFacts, Labels } from '../../core/inventory.ts';
import type { AuditActor } from '../audit/audit-log.ts';
import { actorOf, type Principal } from '../auth/principal.ts';
import { isUniqueViolation } from '../db/db-errors.ts';
import { TargetAnnouncements } from '../db/notifications.ts';
import { newSortableId } from '../ids.ts';
import { hashSecret } from '../tokens/token-secret.ts';
import { inTransaction, type TransactionDeps, type UnitOfWork } from '../unit-of-work.ts';
import { HEARTBEAT_SECONDS, supplierIdByName } from './inventory-service.ts';

export const ENROLLMENT_PREFIX = 'gne_';
export const AGENT_PREFIX = 'gna_';

export interface AgentIdentity {
  agentId: string;
  targetId: string;
  targetName: string;
}

/**
 * How long an agent's accepted credential is believed without asking the database again. Every
 * agent request is authenticated, and at thousands of agents the lookups were the largest part of
 * the server's queries. A revocation or retirement made through this server forgets the target's
 * entries at once. On PostgreSQL one made through another replica is announced in its transaction
 * (LISTEN/NOTIFY) and forgotten here when heard; while this replica's listening connection is down
 * (announcements sent meanwhile are lost), or before it first listens, a credential is believed
 * only for `AGENT_IDENTITY_UNHEARD_TTL_MS`.
 */
export const AGENT_IDENTITY_TTL_MS = 30_000;
export const AGENT_IDENTITY_UNHEARD_TTL_MS = 5_000;
/** Beyond this many remembered credentials the memory is emptied and filled again. */
const MAX_REMEMBERED = 100_000;

export class EnrollmentService {
  private readonly identities = new Map<string, { identity: AgentIdentity; at: number }>();
  /** Counts forgettings: a lookup that overlapped one is not remembered (it may predate it). */
  private forgettings = 0;

  constructor(
    private readonly deps: TransactionDeps,
    private readonly heartbeatSeconds = HEARTBEAT_SECONDS,
  ) {}

  /** Forgets the remembered credentials of a target's agents (revoked, or the target retired). */
  forgetTarget(targetId: string): void {
    this.forgettings += 1;
    for (const [hash, { identity }] of this.identities)
      if (identity.targetId === targetId) this.identities.delete(hash);
  }

  /** How long an accepted credential is believed now (see `AGENT_IDENTITY_TTL_MS`). */
  get rememberMs(): number {
    if (this.deps.database.dialect !== 'postgres') return AGENT_IDENTITY_TTL_MS;
    return this.announcements?.connected ? AGENT_IDENTITY_TTL_MS : AGENT_IDENTITY_UNHEARD_TTL_MS;
  }

  /** PostgreSQL: listens for the revocations other replicas announce, and forgets those agents. */
  listen(): Promise<void> {
    if (this.announcements) return this.announcements.ready;
    if (!this.deps.database.listener) return Promise.resolve();
    this.announcements = new TargetAnnouncements(
      this.deps.database.listener,
      'gantry_agents',
      (targets) => {
        for (const target of targets) this.forgetTarget(target);
      },
      // Announcements sent while the connection was down are lost: every credential is asked again.
      () => {
        this.forgettings += 1;
        this.identities.clear();
      },
    );
    return this.announcements.ready;
  }

  async close(): Promise<void> {
    await this.announcements?.close();
    this.announcements = undefined;
  }

  /** Tells the other replicas, when the transaction commits, to forget the target's agents. */
  async announceRevoked(uow: UnitOfWork, targetId: string): Promise<void> {
    await this.announcements?.announce(uow.db, [targetId]);
  }

  private announcements: TargetAnnouncements | undefined;

  async createToken(
    by: Principal,
    input: {
      environment: string;
      labels?: Labels | undefined;
      supplier?: string | undefined;
      expiresInHours?: number | undefined;
    },
  ): Promise<{ id: string; secret: string; environment: string; labels: Labels; expiresAt: string }> {
    return inTransaction(this.deps, actorOf(by), async (uow) => {
      const env = await uow.db
        .selectFrom('environments')
        .select('id')
        .where('name', '=', input.environment)
        .executeTakeFirst();
      if (!env)
        throw new GantryError(
          'NOT_FOUND',
          `No environment '${input.environment}'. Create it with \`gantry env create\`.`,
        );
      const supplierId = input.supplier !== undefined ? await supplierIdByName(uow.db, input.supplier) : null;
      const secret = ENROLLMENT_PREFIX + randomBytes(32).toString('base64url');
      const id = newSortableId();
      const expiresAt = new Date(uow.now.getTime() + (input.expiresInHours ?? 24) * 3_600_000).toISOString();
      const labels = input.labels ?? {};
      await uow.db
        .insertInto('enrollment_tokens')
        .values({
          id,
          secret_hash: hashSecret(secret),
          environment_id: env.id,
          labels: JSON.stringify(labels),
          supplier_id: supplierId,
          expires_at: expiresAt,
          used_at: null,
          created_by: actorOf(by).actor,
          created_at: uow.now.toISOString(),
        })
        .execute();
      await uow.audit({
        action: 'enrollment_token.created',
        subject: `enrollment-token:${id}`,
        details: { environment: input.environment, labels, supplier: input.supplier ?? null, expiresAt },
      });
      return { id, secret, environment: input.environment, labels, expiresAt };
    });
  }

  /** Trades an enrollment token for an agent credential and a new target; the token is spent. */
  async enroll(
    input: { token: string; name: string; facts: HostFacts },
    source: string | null,
  ): Promise<{ agentId: string; targetId: string; credential: string; heartbeatSeconds: number }> {
    if (/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(input.name)) {
      throw new GantryError(
        'VALIDATION',
        'A target name may not look like an id; choose a name such as web-1.',
        [{ path: '/name', message: 'looks like an id' }],
      );
    }
    const actor: AuditActor = { actor: `agent:${input.name}`, source };
    try {
      return await inTransaction(this.deps, actor, async (uow) => {
        const token = await uow.db
          .selectFrom('enrollment_tokens')
          .selectAll()
          .where('secret_hash', '=', hashSecret(input.token))
          .executeTakeFirst();
        // One answer for unknown, spent and expired tokens: nothing to learn by guessing.
        if (!token || token.used_at !== null || token.expires_at <= uow.now.toISOString()) {
          throw new GantryError(
            'UNAUTHENTICATED',
            'The enrollment token is unknown, already used, or expired. Ask an admin for a new one (`gantry agents enroll-token`).',
          );
        }
        await uow.db
          .updateTable('enrollment_tokens')
          .set({ used_at: uow.now.toISOString() })
          .where('id', '=', token.id)
          .where('used_at', 'is', null)
          .execute();
        // A target whose agent was revoked may be taken up again by a new agent with a token for
        // its environment; a target with a working agent, or retired, may not.
        const existing = await uow.db
          .selectFrom('targets')
          .selectAll()
          .where('name', '=', input.name)
          .executeTakeFirst();
        let targetId: string;
        let reEnrolled = false;
        if (existing) {
          const active = await uow.db
            .selectFrom('agents')
            .select('id')
            .where('target_id', '=', existing.id)
            .where('revoked_at', 'is', null)
            .executeTakeFirst();
          if (existing.retired_at !== null || active || existing.environment_id !== token.environment_id) {
            throw new GantryError(
              'CONFLICT',
              `A target named '${input.name}' already exists with an agent, is retired, or is in another environment; enroll under another name.`,
              {
                field: '/name',
              },
            );
          }
          targetId = existing.id;
          reEnrolled = true;
          await uow.db
            .updateTable('targets')
            .set({
              labels: token.labels,
              supplier_id: token.supplier_id,
              facts: JSON.stringify(input.facts),
              last_seen_at: uow.now.toISOString(),
            })
            .where('id', '=', targetId)
            .execute();
        } else {
          targetId = newSortableId();
          await uow.db
            .insertInto('targets')
            .values({
              id: targetId,
              name: input.name,
              environment_id: token.environment_id,
              labels: token.labels,
              supplier_id: token.supplier_id,
              facts: JSON.stringify(input.facts),
              last_seen_at: uow.now.toISOString(),
              retired_at: null,
              created_at: uow.now.toISOString(),
            })
            .execute();
        }
        const credential = AGENT_PREFIX + randomBytes(32).toString('base64url');
        const agentId = newSortableId();
        await uow.db
          .insertInto('agents')
          .values({
            id: agentId,
            target_id: targetId,
            credential_hash: hashSecret(credential),
            created_at: uow.now.toISOString(),
            revoked_at: null,
          })
          .execute();
        await uow.audit({
          action: reEnrolled ? 'agent.re_enrolled' : 'agent.enrolled',
          subject: `target:${targetId}`,
          details: {
            name: input.name,
            agentId,
            enrollmentToken: token.id,
            labels: JSON.parse(token.labels) as Labels,
          },
        });
        return { agentId, targetId, credential, heartbeatSeconds: this.heartbeatSeconds };
      });
    } catch (error) {
      if (isUniqueViolation(error))
        throw new GantryError(
          'CONFLICT',
          `A target named '${input.name}' already exists; enroll under another name.`,
          { field: '/name' },
        );
      throw error;
    }
  }

  /** The agent behind a credential, or why it is not accepted. */
  async authenticate(credential: string): Promise<AgentIdentity> {
    const hash = hashSecret(credential);
    // A monotonic clock: a wall clock stepped back would stretch how long a credential is believed.
    const now = performance.now();
    const remembered = this.identities.get(hash);
    if (remembered && now - remembered.at < this.rememberMs) return remembered.identity;
    const forgettings = this.forgettings;
    const row = await this.deps.database.db
      .selectFrom('agents')
      .innerJoin('targets', 'targets.id', 'agents.target_id')
      .select([
        'agents.id as agentId',
        'agents.revoked_at as revokedAt',
        'targets.id as targetId',
        'targets.name as targetName',
        'targets.retired_at as retiredAt',
      ])
      .where('agents.credential_hash', '=', hash)
      .executeTakeFirst();
    if (!row)
      throw new GantryError(
        'UNAUTHENTICATED',
        'The agent credential is not known to this server; enroll the agent again.',
      );
    if (row.revokedAt !== null || row.retiredAt !== null) {
      throw new GantryError(
        'UNAUTHENTICATED',
        `The agent of target '${row.targetName}' was revoked; enroll it again with a new token.`,
      );
    }
    const identity = { agentId: row.agentId, targetId: row.targetId, targetName: row.targetName };
    if (forgettings === this.forgettings) {
      if (this.identities.size >= MAX_REMEMBERED) this.identities.clear();
      this.identities.set(hash, { identity, at: now });
    }
    return identity;
  }

  /** Records a heartbeat: the target is seen now, with these facts. Not audited (no decision is made). */
  async heartbeat(
    agent: AgentIdentity,
    facts: HostFacts,
  ): Promise<{ serverTime: string; heartbeatSeconds: number }> {
    const now = this.deps.clock.now().toISOString();
    await this.deps.database.db
      .updateTable('targets')
      .set({ last_seen_at: now, facts: JSON.stringify(facts) })
      .where('id', '=', agent.targetId)
      .execute();
    return { serverTime: now, heartbeatSeconds: this.heartbeatSeconds };
  }

  async revokeAgentOfTarget(by: Principal, targetId: string, targetName: string): Promise<number> {
    // Forgotten both before (a lookup that overlaps the commit is then not remembered) and after.
    this.forgetTarget(targetId);
    try {
      return await this.revokeInTransaction(by, targetId, targetName);
    } finally {
      this.forgetTarget(targetId);
    }
  }

  private revokeInTransaction(by: Principal, targetId: string, targetName: string): Promise<number> {
    return inTransaction(this.deps, actorOf(by), async (uow) => {
      const result = await uow.db
        .updateTable('agents')
        .set({ revoked_at: uow.now.toISOString() })
        .where('target_id', '=', targetId)
        .where('revoked_at', 'is', null)
        .executeTakeFirst();
      const revoked = Number(result.numUpdatedRows);
      if (revoked > 0) {
        await this.announceRevoked(uow, targetId);
        await uow.audit({
          action: 'agent.revoked',
          subject: `target:${targetId}`,
          details: { name: targetName },
        });
      }
      return revoked;
    });
  }
}
