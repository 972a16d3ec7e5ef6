import { describe, expect, it } from 'vitest';
import { isRole, PERMISSIONS, ROLES, roleGrants } from './roles.ts';

describe('roles', () => {
  it('gives admin every permission but the agents’ own, and every role the public and authenticated ones', () => {
    for (const p of PERMISSIONS) expect(roleGrants('admin', p)).toBe(p !== 'agent');
    for (const r of ROLES) expect(roleGrants(r, 'agent')).toBe(false);
    for (const r of ROLES) {
      expect(roleGrants(r, 'public')).toBe(true);
      expect(roleGrants(r, 'authenticated')).toBe(true);
    }
  });

  it('keeps user administration to admins', () => {
    for (const r of ROLES.filter((x) => x !== 'admin')) {
      expect(roleGrants(r, 'users:write')).toBe(false);
      expect(roleGrants(r, 'tokens:admin')).toBe(false);
    }
  });

  it('recognises only the seven roles', () => {
    expect(ROLES).toHaveLength(7);
    expect(isRole('viewer')).toBe(true);
    expect(isRole('root')).toBe(false);
    expect(isRole('__proto__')).toBe(false);
  });
});
