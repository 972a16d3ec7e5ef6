/**
 * Roles and permissions. Every HTTP route names exactly one `Permission`; a role grants a fixed
 * set of them. `public` needs no caller, `authenticated` any signed-in caller.
 */

export const ROLES = [
  'admin',
  'change-authority',
  /** A change authority who may also approve emergency changes. */
  'emergency-authority',
  'release-manager',
  'deployer',
  'supplier',
  'viewer',
] as const;
export type Role = (typeof ROLES)[number];

export const PERMISSIONS = [
  'public',
  'authenticated',
  'users:read',
  'users:write',
  'tokens:own',
  'tokens:admin',
  'audit:read',
  'artifacts:read',
  'artifacts:write',
  'artifacts:admin',
  'keys:read',
  'keys:write',
  'events:read',
  'hardware:read',
  'hardware:write',
  'inventory:read',
  'inventory:write',
  /** Recording changes made outside Gantry in the ledger; suppliers only for their own targets. */
  'ledger:record',
  /** Queuing steps (install, activate, rollback, remove) for a target's agent by hand. */
  'steps:run',
  'changes:read',
  /** Creating, editing, submitting and cancelling change requests. */
  'changes:write',
  /** Approving, rejecting, reviewing and closing change requests; templates and freezes. */
  'changes:approve',
  /** Scheduling, starting and finishing approved changes. */
  'changes:implement',
  'releases:read',
  'releases:write',
  'flags:read',
  'flags:write',
  'deployments:read',
  /** Creating deployments and acting on them: pause, resume, abort, approve a wave, roll back. */
  'deployments:write',
  /** Booking non-production environments for a team. */
  'bookings:write',
  /** Agent routes: only an agent's own credential, never a user, reaches them. */
  'agent',
] as const;
export type Permission = (typeof PERMISSIONS)[number];

const READ: readonly Permission[] = [
  'public',
  'authenticated',
  'tokens:own',
  'audit:read',
  'artifacts:read',
  'keys:read',
  'events:read',
  'hardware:read',
  'inventory:read',
  'changes:read',
  'releases:read',
  'flags:read',
  'deployments:read',
];
const AUTHORITY: readonly Permission[] = [...READ, 'changes:approve'];

const GRANTS: Record<Role, readonly Permission[]> = {
  admin: PERMISSIONS.filter((p) => p !== 'agent'),
  'change-authority': AUTHORITY,
  'emergency-authority': AUTHORITY,
  'release-manager': [
    ...READ,
    'artifacts:write',
    'releases:write',
    'changes:write',
    'flags:write',
    'bookings:write',
  ],
  deployer: [
    ...READ,
    'hardware:write',
    'ledger:record',
    'steps:run',
    'changes:write',
    'changes:implement',
    'bookings:write',
    'deployments:write',
  ],
  // Suppliers act only inside their scope: they see the targets of their own supplier, and the
  // changes their own people raised.
  supplier: [
    'public',
    'authenticated',
    'tokens:own',
    'inventory:read',
    'ledger:record',
    'changes:read',
    'changes:write',
    'changes:implement',
  ],
  viewer: READ,
};

export function isRole(value: string): value is Role {
  return (ROLES as readonly string[]).includes(value);
}

export function roleGrants(role: Role, permission: Permission): boolean {
  return GRANTS[role].includes(permission);
}

export function permissionsOf(role: Role): readonly Permission[] {
  return GRANTS[role];
}
