/**
 * The `gantry` command line: one program for the server, (later) the agent, and every CLI verb.
 * `runCli` returns the exit code instead of exiting, so tests run it in-process.
 */
import { Command, CommanderError } from 'commander';
import { GantryError } from '../core/errors.ts';
import { GANTRY_VERSION } from '../version.ts';
import { addAgentCommand } from './commands/agent-command.ts';
import { addArtifactCommands } from './commands/artifact-commands.ts';
import { addAuditCommands } from './commands/audit-commands.ts';
import { addChangeCommands } from './commands/change-commands.ts';
import { addDeployCommands } from './commands/deploy-commands.ts';
import { addFlagCommands } from './commands/flag-commands.ts';
import { addHardwareCommands } from './commands/hardware-commands.ts';
import { addInventoryCommands } from './commands/inventory-commands.ts';
import { addKeyCommands } from './commands/key-commands.ts';
import { addPipelineCommands } from './commands/pipeline-commands.ts';
import { addReleaseCommands } from './commands/release-commands.ts';
import { addScheduleCommands } from './commands/schedule-commands.ts';
import { addServerCommand } from './commands/server-command.ts';
import { addSessionCommands } from './commands/session-commands.ts';
import { addTokenCommands } from './commands/token-commands.ts';
import { addUserCommands } from './commands/user-commands.ts';
import { CliContext } from './context.ts';
import { CliError, EXIT, EXIT_CODES_HELP } from './exit-codes.ts';
import { type Io, printJson } from './output.ts';

export function buildProgram(ctx: CliContext): Command {
  const program = new Command('gantry')
    .description('Gantry: deployment management — media library, change control and rollouts in one program.')
    .version(GANTRY_VERSION, '-V, --version-only', 'print the version number')
    .option('--url <url>', 'Gantry server URL (GANTRY_URL)')
    .option('--token <token>', 'API token (GANTRY_TOKEN)')
    .option('--json', 'machine-readable JSON output')
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText('after', EXIT_CODES_HELP)
    .configureOutput({ writeOut: (s) => ctx.io.stdout(s), writeErr: (s) => ctx.io.stderr(s) })
    .exitOverride();
  addServerCommand(program, ctx);
  addAgentCommand(program, ctx);
  addSessionCommands(program, ctx);
  addUserCommands(program, ctx);
  addTokenCommands(program, ctx);
  addAuditCommands(program, ctx);
  addArtifactCommands(program, ctx);
  addKeyCommands(program, ctx);
  addHardwareCommands(program, ctx);
  addInventoryCommands(program, ctx);
  addReleaseCommands(program, ctx);
  addChangeCommands(program, ctx);
  addScheduleCommands(program, ctx);
  addFlagCommands(program, ctx);
  addPipelineCommands(program, ctx);
  addDeployCommands(program, ctx);
  // Every level (`gantry release lifecycle set`) reports through runCli, never exits by itself.
  const override = (parent: Command) => {
    for (const command of parent.commands) {
      command.exitOverride();
      command.configureOutput({ writeOut: (s) => ctx.io.stdout(s), writeErr: (s) => ctx.io.stderr(s) });
      override(command);
    }
  };
  override(program);
  return program;
}

export async function runCli(
  argv: string[],
  env: Record<string, string | undefined>,
  io: Io,
): Promise<number> {
  const ctx = new CliContext(env, io);
  const program = buildProgram(ctx);
  const wantsJson = argv.includes('--json');
  try {
    await program.parseAsync(argv, { from: 'user' });
    return EXIT.ok;
  } catch (error) {
    if (error instanceof CommanderError) {
      if (
        error.code === 'commander.helpDisplayed' ||
        error.code === 'commander.version' ||
        error.code === 'commander.help'
      )
        return EXIT.ok;
      // A bare group (`gantry users`) prints its help; that is not an error.
      if (error.code === 'commander.executeSubCommandAsync') return EXIT.ok;
      return EXIT.usage;
    }
    if (error instanceof CliError) {
      if (error.reported) return error.exitCode;
      if (wantsJson) printJson(io, error.body ?? { error: { code: 'CLI', message: error.message } });
      io.stderr(`error: ${error.message}\n`);
      return error.exitCode;
    }
    if (error instanceof GantryError) {
      if (wantsJson)
        printJson(io, { error: { code: error.code, message: error.message, details: error.details } });
      io.stderr(`error: ${error.message}\n`);
      return error.code === 'CONFIG_INVALID' ? EXIT.usage : EXIT.failed;
    }
    io.stderr(`error: ${(error as Error).message ?? String(error)}\n`);
    return EXIT.failed;
  }
}
