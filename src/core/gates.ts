/**
 * May this release run in this environment now? One pure function over everything that decides
 * it: the change, the release, the environment's policy, its freezes, the lifecycle and where
 * the release has already succeeded, the artifacts' state and signatures, and who asks. It never
 * stops at the first problem: a refusal names every reason.
 */
import { ACTIVE_STATES, type ChangeState, type ChangeType, type EnvironmentPolicy } from './changes.ts';
import type { Role } from './roles.ts';
import { contains, type FreezeSchedule, freezeOccurrenceAt, type Instant } from './schedule.ts';

export const GATE_CODES = [
  'change_required',
  'not_approved',
  'environment_not_in_change',
  'release_not_in_change',
  'outside_window',
  'frozen',
  'artifact_not_in_change',
  'artifact_missing',
  'artifact_quarantined',
  'unsigned_artifact',
  'lifecycle_not_met',
  'supplier_out_of_scope',
  'strategy_not_allowed',
] as const;
export type GateCode = (typeof GATE_CODES)[number];

export interface GateReason {
  code: GateCode | 'freeze_overridden' | 'emergency';
  message: string;
}

export interface GateChange {
  id: string;
  number: string;
  type: ChangeType;
  state: ChangeState;
  environments: readonly string[];
  releaseId: string;
  windows: readonly Instant[];
  validApprovals: number;
  approvalsRequired: number;
  /** An emergency change's reason to deploy inside a freeze. */
  freezeOverrideReason: string | null;
  /** A standard change's template limits the strategies. */
  templateStrategies: readonly string[];
}

export interface GateInput {
  now: Date;
  environment: { name: string; policy: EnvironmentPolicy };
  release: { id: string; name: string; version: string; components: ReadonlyArray<Piece> };
  /** What would run (component → digest); normally the release's own components. */
  toRun: ReadonlyArray<Piece>;
  /** The media library's word on each digest; a digest not here is not in the library. */
  artifacts: Readonly<Record<string, { state: string; trustedSigners: readonly string[] }>>;
  change: GateChange | null;
  freezes: ReadonlyArray<{ name: string; schedule: FreezeSchedule }>;
  lifecycle: { name: string; phases: readonly string[] } | null;
  /** Environments where this release has succeeded. */
  succeededIn: readonly string[];
  actor: { role: Role; supplierId: string | null };
  /** The targets the deployment would touch, with the supplier that manages each. */
  targets: ReadonlyArray<{ name: string; supplierId: string | null }>;
  strategy?: string | undefined;
}

export interface Piece {
  component: string;
  digest: string;
}

export interface GateVerdict {
  allowed: boolean;
  /** Every reason it may not run; empty when allowed. */
  reasons: GateReason[];
  /** Things allowed but worth recording (a freeze overridden by an emergency change). */
  notes: GateReason[];
}

const fmt = (d: Date) => d.toISOString().replace(':00.000Z', 'Z');

export function evaluateGate(input: GateInput): GateVerdict {
  const reasons: GateReason[] = [];
  const notes: GateReason[] = [];
  const { change, environment, release } = input;
  const policy = environment.policy;

  if (!change) {
    if (policy.changeRequired)
      reasons.push({
        code: 'change_required',
        message: `${environment.name} deploys only inside an approved change: name one (--change)`,
      });
  } else {
    if (!ACTIVE_STATES.includes(change.state)) {
      const detail =
        change.state === 'submitted'
          ? ` (${change.validApprovals} of ${change.approvalsRequired} approvals)`
          : '';
      reasons.push({
        code: 'not_approved',
        message: `change ${change.number} is ${change.state}${detail}, not approved`,
      });
    }
    if (change.type === 'emergency')
      notes.push({ code: 'emergency', message: `${change.number} is an emergency change` });
    if (!change.environments.includes(environment.name))
      reasons.push({
        code: 'environment_not_in_change',
        message: `change ${change.number} covers ${change.environments.join(', ') || 'no environment'}, not ${environment.name}`,
      });
    if (change.releaseId !== release.id)
      reasons.push({
        code: 'release_not_in_change',
        message: `change ${change.number} is for another release, not ${release.name} ${release.version}`,
      });
    if (!change.windows.some((w) => contains(w, input.now)))
      reasons.push({
        code: 'outside_window',
        message: `now (${fmt(input.now)}) is outside every window of change ${change.number}: ${
          change.windows.map((w) => `${fmt(w.start)}–${fmt(w.end)}`).join(', ') || 'it has none'
        }`,
      });
    if (change.releaseId === release.id) {
      const approved = new Map(release.components.map((p) => [p.component, p.digest]));
      for (const piece of input.toRun) {
        if (approved.get(piece.component) !== piece.digest)
          reasons.push({
            code: 'artifact_not_in_change',
            message: `${piece.component} ${piece.digest.slice(0, 19)}… is not what change ${change.number} approved`,
          });
      }
    }
    if (
      input.strategy !== undefined &&
      change.templateStrategies.length > 0 &&
      !change.templateStrategies.includes(input.strategy)
    )
      reasons.push({
        code: 'strategy_not_allowed',
        message: `the standard change's template allows ${change.templateStrategies.join(', ')}, not ${input.strategy}`,
      });
  }

  if (
    input.strategy !== undefined &&
    policy.strategies.length > 0 &&
    !policy.strategies.includes(input.strategy)
  )
    reasons.push({
      code: 'strategy_not_allowed',
      message: `${environment.name} allows the strategies ${policy.strategies.join(', ')}, not ${input.strategy}`,
    });

  for (const freeze of input.freezes) {
    const occurrence = freezeOccurrenceAt(freeze.schedule, input.now);
    if (!occurrence) continue;
    const span = `${fmt(occurrence.start)}–${fmt(occurrence.end)}`;
    if (change?.type === 'emergency' && change.freezeOverrideReason) {
      notes.push({
        code: 'freeze_overridden',
        message: `freeze '${freeze.name}' (${span}) is overridden by emergency change ${change.number}: ${change.freezeOverrideReason}`,
      });
    } else {
      reasons.push({
        code: 'frozen',
        message: `${environment.name} is frozen by '${freeze.name}' (${span}); only an emergency change with an override reason may deploy`,
      });
    }
  }

  for (const piece of input.toRun) {
    const artifact = input.artifacts[piece.digest];
    const name = `${piece.component} (${piece.digest.slice(0, 19)}…)`;
    if (!artifact) {
      reasons.push({ code: 'artifact_missing', message: `${name} is not in the media library` });
      continue;
    }
    if (artifact.state === 'quarantined')
      reasons.push({
        code: 'artifact_quarantined',
        message: `${name} is quarantined: its bytes failed verification`,
      });
    if (policy.requireSignature && artifact.trustedSigners.length === 0)
      reasons.push({
        code: 'unsigned_artifact',
        message: `${environment.name} requires a signature from a trusted publisher key; ${name} has none`,
      });
  }

  if (input.lifecycle) {
    const at = input.lifecycle.phases.indexOf(environment.name);
    const before = at > 0 ? input.lifecycle.phases.slice(0, at) : [];
    const missing = before.filter((e) => !input.succeededIn.includes(e));
    if (missing.length > 0)
      reasons.push({
        code: 'lifecycle_not_met',
        message: `lifecycle '${input.lifecycle.name}' needs ${release.name} ${release.version} to succeed in ${missing.join(', ')} before ${environment.name}`,
      });
  }

  if (input.actor.role === 'supplier') {
    const outside = input.targets.filter((t) => t.supplierId !== input.actor.supplierId).map((t) => t.name);
    if (outside.length > 0)
      reasons.push({
        code: 'supplier_out_of_scope',
        message: `${outside.length} target(s) are outside your supplier's scope: ${outside.slice(0, 10).join(', ')}${outside.length > 10 ? ', …' : ''}`,
      });
  }

  return { allowed: reasons.length === 0, reasons, notes };
}
