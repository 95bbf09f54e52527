import type { Command } from 'commander';
import { fillPath, PATHS } from '../../api/paths.js';
import type { Token, TokenCreated } from '../../api/tokens.js';
import { fail } from '../../core/errors.js';
import { ROLES, type Role } from '../../core/roles.js';
import { printJson } from '../../lib/output.js';
import { type AdminOpts, adminOptions, clientFrom, table } from '../common.js';

export function registerToken(program: Command): void {
  const token = program.command('token').description('API tokens: admin, operator, read-only');

  adminOptions(
    token
      .command('create')
      .description('create a token; the secret is printed once')
      .requiredOption('--role <role>', `one of ${ROLES.join(', ')}`)
      .requiredOption('--name <name>', 'who or what the token is for'),
  ).action(async (o: AdminOpts & { role: string; name: string }) => {
    if (!ROLES.includes(o.role as Role)) throw fail('usage', `--role must be one of ${ROLES.join(', ')}, not "${o.role}"`);
    const r = await clientFrom(o).json<TokenCreated>('POST', PATHS.tokens, {
      json: { role: o.role, name: o.name },
    });
    if (o.json) printJson(r);
    else process.stdout.write(`${r.token}\n`);
  });

  adminOptions(token.command('list').description('list tokens (secrets are never shown)')).action(async (o: AdminOpts) => {
    const r = await clientFrom(o).json<{ tokens: Token[] }>('GET', PATHS.tokens);
    if (o.json) printJson(r);
    else process.stdout.write(table([['ID', 'ROLE', 'NAME', 'CREATED'], ...r.tokens.map((t) => [t.id, t.role, t.name, t.createdAt])]));
  });

  adminOptions(token.command('revoke').description('revoke a token').argument('<id>', 'token id (from "token list")')).action(
    async (id: string, o: AdminOpts) => {
      const r = await clientFrom(o).json<{ revoked: string }>('DELETE', fillPath(PATHS.token, { id }));
      if (o.json) printJson(r);
      else process.stdout.write(`revoked ${r.revoked}\n`);
    },
  );
}
