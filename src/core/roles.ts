/** Roles of admin API tokens, from most to least powerful. */
export const ROLES = ['admin', 'operator', 'read-only'] as const;
export type Role = (typeof ROLES)[number];

/**
 * Credentials one site holds for another (parent and child each hold one for the other);
 * never given to people. The token's name is the peer's site code.
 */
export const PEER_ROLE = 'site' as const;
export type TokenRole = Role | typeof PEER_ROLE;

/**
 * What a role may do: read anything; operate (create packages, distribute); administer
 * (tokens, join tokens); peer: the calls sites make to each other.
 */
export type Permission = 'read' | 'operate' | 'admin' | 'peer';

const GRANTS: Record<TokenRole, readonly Permission[]> = {
  admin: ['read', 'operate', 'admin'],
  operator: ['read', 'operate'],
  'read-only': ['read'],
  site: ['peer'],
};

export const allows = (role: TokenRole, p: Permission): boolean => GRANTS[role].includes(p);
