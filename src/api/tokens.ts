import { z } from 'zod';
import { PEER_ROLE, ROLES } from '../core/roles.js';
import { type Endpoint, getCall } from './client.js';
import { PATHS } from './paths.js';

export const Token = z
  .object({
    id: z.string(),
    role: z.enum([...ROLES, PEER_ROLE]).describe('`site`: a credential another site holds for this one'),
    name: z.string(),
    createdAt: z.string(),
  })
  .meta({ id: 'Token' });
export type Token = z.infer<typeof Token>;

/** Reads of this resource, as the site serves them and clients call them. */
export const tokenCalls = {
  list: getCall(PATHS.tokens, z.object({ tokens: z.array(Token) }), 'List API tokens (admin); secrets are never shown', 'Tokens'),
} as const satisfies Record<string, Endpoint>;

export const TokenRequest = z.strictObject({ role: z.enum(ROLES), name: z.string().min(1).max(128) });
export type TokenRequest = z.infer<typeof TokenRequest>;

/** A new API token: its secret is shown this once. */
export const TokenCreated = z.object({ id: z.string(), role: z.enum(ROLES), name: z.string(), token: z.string() });
export type TokenCreated = z.infer<typeof TokenCreated>;
