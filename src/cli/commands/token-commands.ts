/** gantry tokens list | create | revoke */
import type { Command } from 'commander';
import type { CreatedToken, TokenView } from '../../protocol/tokens.ts';
import type { CliContext } from '../context.ts';
import { CliError, EXIT } from '../exit-codes.ts';
import { renderTable } from '../output.ts';

export function addTokenCommands(program: Command, ctx: CliContext): void {
  const tokens = program.command('tokens').description('Manage API tokens for automation');

  tokens
    .command('list')
    .description('List your API tokens (secrets are never shown again)')
    .option('--all', 'admins: every user’s tokens')
    .option('--include-revoked', 'show revoked tokens too')
    .action(async (options: { all?: boolean; includeRevoked?: boolean }, command: Command) => {
      const body = await ctx
        .client(command)
        .request<{ tokens: TokenView[] }>('GET', '/api/v1/tokens', undefined, {
          all: options.all,
          includeRevoked: options.includeRevoked,
        });
      ctx.out(command, body, () =>
        renderTable(
          ['NAME', 'USER', 'PREFIX', 'EXPIRES', 'LAST USED', 'REVOKED', 'ID'],
          body.tokens.map((t) => [
            t.name,
            t.username,
            t.prefix,
            t.expiresAt ?? 'never',
            t.lastUsedAt,
            t.revokedAt,
            t.id,
          ]),
        ),
      );
    });

  tokens
    .command('create')
    .description('Create an API token; its secret is printed once and never again')
    .argument('<name>', 'what the token is for, e.g. "ci pipeline"')
    .option('--expires-in-days <days>', 'lifetime in days (default 90, at most 3650)')
    .option('--user <id>', 'admins: create the token for another user (by id)')
    .action(async (name: string, options: { expiresInDays?: string; user?: string }, command: Command) => {
      let days: number | undefined;
      if (options.expiresInDays !== undefined) {
        days = Number(options.expiresInDays);
        if (!Number.isInteger(days) || days < 1)
          throw new CliError(EXIT.usage, '--expires-in-days must be a whole number of days, 1 or more.');
      }
      const created = await ctx.client(command).request<CreatedToken>('POST', '/api/v1/tokens', {
        name,
        ...(days !== undefined ? { expiresInDays: days } : {}),
        ...(options.user !== undefined ? { userId: options.user } : {}),
      });
      ctx.out(
        command,
        created,
        () =>
          `Created token '${created.token.name}' (id ${created.token.id}), expires ${created.token.expiresAt ?? 'never'}.\n` +
          `Secret (shown only now; store it safely):\n${created.secret}\n`,
      );
    });

  tokens
    .command('revoke')
    .description('Revoke an API token; it stops working on the very next request')
    .argument('<id>', 'token id (see `gantry tokens list`)')
    .action(async (id: string, _o: unknown, command: Command) => {
      const token = await ctx
        .client(command)
        .request<TokenView>('DELETE', `/api/v1/tokens/${encodeURIComponent(id)}`);
      ctx.out(
        command,
        token,
        () => `Revoked token '${token.name}' (id ${token.id}) at ${token.revokedAt}.\n`,
      );
    });
}
