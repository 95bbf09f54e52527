import { z } from 'zod';
import { PEER_ROLE, ROLES } from '../core/roles.js';

export const Token = z
  .object({
    id: z.string(),
    role: z.enum([...ROLES, PEER_ROLE]).describe('`site`: a credential another site holds for this one'),
    name: z.string(),
    createdAt: z.string(),
  })
  .meta({ id: 'Token' });
export type Token = z.infer<typeof Token>;
