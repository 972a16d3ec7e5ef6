/** What every command gets: output, the environment, and a client for the configured server. */
import type { Command } from 'commander';
import { ApiClient } from './api-client.ts';
import { configDir, readSavedLogin } from './cli-config.ts';
import { CliError, EXIT } from './exit-codes.ts';
import { type Io, printJson } from './output.ts';

export interface GlobalOptions {
  url?: string;
  token?: string;
  json?: boolean;
}

export class CliContext {
  constructor(
    readonly env: Record<string, string | undefined>,
    readonly io: Io,
  ) {}

  globals(command: Command): GlobalOptions {
    return command.optsWithGlobals<GlobalOptions>();
  }

  json(command: Command): boolean {
    return this.globals(command).json === true;
  }

  configDir(): string {
    return configDir(this.env);
  }

  /** The server URL and token: flags, then GANTRY_URL / GANTRY_TOKEN, then the saved login. */
  client(command: Command, options: { requireToken?: boolean } = {}): ApiClient {
    const globals = this.globals(command);
    const explicitUrl = globals.url ?? this.env.GANTRY_URL;
    const explicitToken = globals.token ?? this.env.GANTRY_TOKEN;
    let saved: ReturnType<typeof readSavedLogin>;
    try {
      saved = readSavedLogin(this.configDir());
    } catch (error) {
      // Flags or the environment say everything needed: a damaged login file does not matter.
      if (explicitUrl === undefined || (explicitToken === undefined && options.requireToken !== false))
        throw error;
      saved = undefined;
    }
    const url = explicitUrl ?? saved?.url;
    const token = explicitToken ?? saved?.token;
    if (!url) {
      throw new CliError(
        EXIT.usage,
        'No Gantry server configured. Run `gantry login URL`, or set GANTRY_URL (or pass --url).',
      );
    }
    if (options.requireToken !== false && !token) {
      throw new CliError(
        EXIT.usage,
        'Not signed in. Run `gantry login`, or set GANTRY_TOKEN (or pass --token).',
      );
    }
    return new ApiClient({ url, token });
  }

  /** Prints `value` as JSON with --json, or the human rendering otherwise. */
  out(command: Command, value: unknown, human: () => string): void {
    if (this.json(command)) printJson(this.io, value);
    else this.io.stdout(human());
  }
}
