/** Roles of admin API tokens, from most to least powerful. */
export const ROLES = ['admin', 'operator', 'read-only'] as const;
export type Role = (typeof ROLES)[number];

/** What a role may do: read anything; operate (create packages, distribute); administer (tokens, sites). */
export type Permission = 'read' | 'operate' | 'admin';

const GRANTS: Record<Role, readonly Permission[]> = {
  admin: ['read', 'operate', 'admin'],
  operator: ['read', 'operate'],
  'read-only': ['read'],
};

export const allows = (role: Role, p: Permission): boolean => GRANTS[role].includes(p);
