/**
 * Roles and permissions. Every HTTP route names exactly one `Permission`; a role grants a fixed
 * set of them. `public` needs no caller, `authenticated` any signed-in caller.
 */

export const ROLES = [
  'admin',
  'change-authority',
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
] as const;
export type Permission = (typeof PERMISSIONS)[number];

const GRANTS: Record<Role, readonly Permission[]> = {
  admin: PERMISSIONS,
  'change-authority': ['public', 'authenticated', 'tokens:own', 'audit:read'],
  'release-manager': ['public', 'authenticated', 'tokens:own', 'audit:read'],
  deployer: ['public', 'authenticated', 'tokens:own', 'audit:read'],
  // Suppliers act only inside their scope; the audit log is not scoped yet, so they cannot read it.
  supplier: ['public', 'authenticated', 'tokens:own'],
  viewer: ['public', 'authenticated', 'tokens:own', 'audit:read'],
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
