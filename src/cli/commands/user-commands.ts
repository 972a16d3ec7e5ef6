/** gantry users list | show | create | update | passwd */
import type { Command } from 'commander';
import { isRole, ROLES } from '../../core/roles.ts';
import type { UserView } from '../../protocol/users.ts';
import type { ApiClient } from '../api-client.ts';
import type { CliContext } from '../context.ts';
import { CliError, EXIT } from '../exit-codes.ts';
import { keyValues, renderTable } from '../output.ts';
import { readSecret } from '../secret-input.ts';

function parseRole(value: string): string {
  if (!isRole(value))
    throw new CliError(EXIT.usage, `'${value}' is not a role; use one of ${ROLES.join(', ')}.`);
  return value;
}

/** Accepts a user id or a user name. */
async function resolveUser(client: ApiClient, ref: string): Promise<UserView> {
  const { users } = await client.request<{ users: UserView[] }>('GET', '/api/v1/users');
  const user = users.find((u) => u.id === ref || u.username === ref);
  if (!user) throw new CliError(EXIT.refused, `No user '${ref}'. See \`gantry users list\`.`);
  return user;
}

function showUser(user: UserView): string {
  return keyValues([
    ['id', user.id],
    ['username', user.username],
    ['display name', user.displayName],
    ['role', user.role],
    ['disabled', user.disabled],
    ['password set', user.hasPassword],
    ['created', user.createdAt],
    ['updated', user.updatedAt],
  ]);
}

export function addUserCommands(program: Command, ctx: CliContext): void {
  const users = program.command('users').description('Manage users and their roles (admin)');

  users
    .command('list')
    .description('List users')
    .action(async (_o: unknown, command: Command) => {
      const body = await ctx.client(command).request<{ users: UserView[] }>('GET', '/api/v1/users');
      ctx.out(command, body, () =>
        renderTable(
          ['USERNAME', 'ROLE', 'DISABLED', 'PASSWORD', 'ID'],
          body.users.map((u) => [
            u.username,
            u.role,
            u.disabled ? 'yes' : 'no',
            u.hasPassword ? 'set' : 'none',
            u.id,
          ]),
        ),
      );
    });

  users
    .command('show')
    .description('Show one user')
    .argument('<user>', 'user name or id')
    .action(async (ref: string, _o: unknown, command: Command) => {
      const user = await resolveUser(ctx.client(command), ref);
      ctx.out(command, user, () => showUser(user));
    });

  users
    .command('create')
    .description(
      'Create a user (without --password-stdin or --prompt-password the user signs in only with tokens an admin makes)',
    )
    .argument('<username>', 'lower-case name, e.g. alice')
    .requiredOption('--role <role>', `one of ${ROLES.join(', ')}`, parseRole)
    .option('--display-name <name>', 'full name shown in the dashboard')
    .option('--supplier <name>', 'for a supplier user: the supplier whose scope they act in')
    .option('--password-stdin', 'read the initial password from standard input')
    .option('--prompt-password', 'ask for the initial password')
    .action(
      async (
        username: string,
        options: {
          role: string;
          displayName?: string;
          supplier?: string;
          passwordStdin?: boolean;
          promptPassword?: boolean;
        },
        command: Command,
      ) => {
        const client = ctx.client(command);
        const password =
          options.passwordStdin || options.promptPassword
            ? await readSecret(ctx.io, {
                fromStdin: options.passwordStdin === true,
                prompt: `Password for ${username}: `,
              })
            : undefined;
        const user = await client.request<UserView>('POST', '/api/v1/users', {
          username,
          role: options.role,
          ...(options.displayName !== undefined ? { displayName: options.displayName } : {}),
          ...(options.supplier !== undefined ? { supplier: options.supplier } : {}),
          ...(password !== undefined ? { password } : {}),
        });
        ctx.out(command, user, () => `Created user ${user.username} (${user.role}), id ${user.id}.\n`);
      },
    );

  users
    .command('update')
    .description('Change a user’s role, display name, password, or disable/enable them')
    .argument('<user>', 'user name or id')
    .option('--role <role>', `one of ${ROLES.join(', ')}`, parseRole)
    .option('--display-name <name>', 'full name')
    .option('--disable', 'disable the user: sessions end and tokens are revoked')
    .option('--enable', 'enable the user again')
    .option('--password-stdin', 'set a new password read from standard input')
    .action(
      async (
        ref: string,
        options: {
          role?: string;
          displayName?: string;
          disable?: boolean;
          enable?: boolean;
          passwordStdin?: boolean;
        },
        command: Command,
      ) => {
        if (options.disable && options.enable)
          throw new CliError(EXIT.usage, 'Give --disable or --enable, not both.');
        const client = ctx.client(command);
        const target = await resolveUser(client, ref);
        const change: Record<string, unknown> = {};
        if (options.role !== undefined) change.role = options.role;
        if (options.displayName !== undefined) change.displayName = options.displayName;
        if (options.disable) change.disabled = true;
        if (options.enable) change.disabled = false;
        if (options.passwordStdin)
          change.password = await readSecret(ctx.io, { fromStdin: true, prompt: '' });
        if (Object.keys(change).length === 0) {
          throw new CliError(
            EXIT.usage,
            'Nothing to change: give --role, --display-name, --disable, --enable or --password-stdin.',
          );
        }
        const user = await client.request<UserView>(
          'PATCH',
          `/api/v1/users/${encodeURIComponent(target.id)}`,
          change,
        );
        ctx.out(command, user, () => showUser(user));
      },
    );

  users
    .command('passwd')
    .description('Change your own password')
    .option('--password-stdin', 'read two lines from standard input: the current password, then the new one')
    .action(async (options: { passwordStdin?: boolean }, command: Command) => {
      const client = ctx.client(command);
      let currentPassword: string;
      let newPassword: string;
      if (options.passwordStdin) {
        const lines = (await ctx.io.readStdin()).split(/\r?\n/);
        currentPassword = lines[0] ?? '';
        newPassword = lines[1] ?? '';
        if (!currentPassword || !newPassword)
          throw new CliError(
            EXIT.usage,
            'Standard input must hold two lines: the current password, then the new one.',
          );
      } else {
        currentPassword = await readSecret(ctx.io, { fromStdin: false, prompt: 'Current password: ' });
        newPassword = await readSecret(ctx.io, {
          fromStdin: false,
          prompt: 'New password (12 characters or more): ',
        });
        const again = await readSecret(ctx.io, { fromStdin: false, prompt: 'New password again: ' });
        if (again !== newPassword)
          throw new CliError(EXIT.usage, 'The two new passwords differ; nothing was changed.');
      }
      await client.request('PUT', '/api/v1/me/password', { currentPassword, newPassword });
      ctx.out(command, { changed: true }, () => 'Password changed.\n');
    });
}
