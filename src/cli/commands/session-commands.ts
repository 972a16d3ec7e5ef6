/** gantry login | logout | whoami | version */
import os from 'node:os';
import type { Command } from 'commander';
import type { CreatedToken } from '../../protocol/tokens.ts';
import type { WhoamiResponse } from '../../protocol/users.ts';
import { GANTRY_VERSION } from '../../version.ts';
import { ApiClient } from '../api-client.ts';
import { forgetLogin, readSavedLogin, saveLogin } from '../cli-config.ts';
import type { CliContext } from '../context.ts';
import { CliError, EXIT } from '../exit-codes.ts';
import { keyValues } from '../output.ts';
import { readSecret } from '../secret-input.ts';

export function addSessionCommands(program: Command, ctx: CliContext): void {
  program
    .command('login')
    .description(
      'Sign in to a Gantry server and keep the URL and an API token in your config directory (mode 0600)',
    )
    .argument('[url]', 'server URL (default: GANTRY_URL, or the last one used)')
    .option(
      '--username <name>',
      'sign in with this user’s password; Gantry issues an API token for this machine',
    )
    .option('--password-stdin', 'read the password from standard input instead of asking')
    .option('--expires-in-days <days>', 'lifetime of the issued token', '30')
    .action(
      async (
        url: string | undefined,
        options: { username?: string; passwordStdin?: boolean; expiresInDays: string },
        command: Command,
      ) => {
        // A damaged login file must not stand in the way of the command that replaces it.
        let saved: ReturnType<typeof readSavedLogin>;
        try {
          saved = readSavedLogin(ctx.configDir());
        } catch {
          saved = undefined;
        }
        const server =
          url ?? command.optsWithGlobals<{ url?: string }>().url ?? ctx.env.GANTRY_URL ?? saved?.url;
        if (!server)
          throw new CliError(
            EXIT.usage,
            'Say which server: `gantry login http://host:8080 --username NAME`.',
          );
        try {
          new URL(server);
        } catch {
          throw new CliError(EXIT.usage, `'${server}' is not a URL; for example http://127.0.0.1:8080.`);
        }
        // --token is the program-wide option: `gantry login URL --token T` stores T.
        let token = command.optsWithGlobals<{ token?: string }>().token ?? ctx.env.GANTRY_TOKEN;
        if (options.username !== undefined) {
          const days = Number(options.expiresInDays);
          if (!Number.isInteger(days) || days < 1)
            throw new CliError(EXIT.usage, '--expires-in-days must be a whole number of days, 1 or more.');
          const password = await readSecret(ctx.io, {
            fromStdin: options.passwordStdin === true,
            prompt: `Password for ${options.username}: `,
          });
          const created = await new ApiClient({ url: server, token: undefined }).request<CreatedToken>(
            'POST',
            '/api/v1/auth/token',
            {
              username: options.username,
              password,
              name: `cli@${os.hostname()}`.slice(0, 100),
              expiresInDays: days,
            },
          );
          token = created.secret;
        }
        if (!token)
          throw new CliError(
            EXIT.usage,
            'Give --username NAME (to sign in with a password) or --token TOKEN.',
          );
        const me = await new ApiClient({ url: server, token }).request<WhoamiResponse>(
          'GET',
          '/api/v1/whoami',
        );
        const file = saveLogin(ctx.configDir(), { url: server, token });
        ctx.out(
          command,
          { url: server, user: me.user, configFile: file },
          () => `Signed in to ${server} as ${me.user.username} (${me.user.role}). Saved in ${file}.\n`,
        );
      },
    );

  program
    .command('logout')
    .description('Revoke the saved API token on the server and forget it here')
    .action(async (_options: unknown, command: Command) => {
      const saved = readSavedLogin(ctx.configDir());
      if (!saved) throw new CliError(EXIT.usage, 'Not signed in: there is no saved login to forget.');
      const client = new ApiClient({ url: saved.url, token: saved.token });
      let revoked = false;
      try {
        const me = await client.request<WhoamiResponse>('GET', '/api/v1/whoami');
        if (me.tokenId) {
          await client.request('DELETE', `/api/v1/tokens/${me.tokenId}`);
          revoked = true;
        }
      } catch (error) {
        // A token that no longer works needs no revoking; anything else is worth saying.
        if (!(error instanceof CliError && error.exitCode === EXIT.refused)) throw error;
      }
      forgetLogin(ctx.configDir());
      ctx.out(
        command,
        { url: saved.url, revoked },
        () => `Signed out of ${saved.url}${revoked ? '; the token is revoked' : ''}.\n`,
      );
    });

  program
    .command('whoami')
    .description('Show who you are signed in as, and your role and permissions')
    .action(async (_options: unknown, command: Command) => {
      const client = ctx.client(command);
      const me = await client.request<WhoamiResponse>('GET', '/api/v1/whoami');
      ctx.out(command, me, () =>
        keyValues([
          ['server', client.baseUrl],
          ['user', me.user.username],
          ['role', me.user.role],
          ['via', me.via],
          ['permissions', me.permissions.join(', ')],
        ]),
      );
    });

  program
    .command('version')
    .description('Show the version of this program and, when one is configured, of the server')
    .action(async (_options: unknown, command: Command) => {
      let server: unknown = null;
      let serverNote = 'not configured';
      try {
        server = await ctx.client(command, { requireToken: false }).request('GET', '/api/v1/version');
        const s = server as { version: string; database: string };
        serverNote = `${s.version} (${s.database})`;
      } catch (error) {
        if (error instanceof CliError)
          serverNote = error.exitCode === EXIT.usage ? 'not configured' : `unreachable: ${error.message}`;
        else throw error;
      }
      ctx.out(command, { client: { name: 'gantry', version: GANTRY_VERSION }, server }, () =>
        keyValues([
          ['gantry', GANTRY_VERSION],
          ['server', serverNote],
        ]),
      );
    });
}
