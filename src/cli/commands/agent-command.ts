import path from 'node:path';
import type { Command } from 'commander';
import type { CliContext } from '../context.ts';
import { CliError, EXIT } from '../exit-codes.ts';

export function addAgentCommand(program: Command, ctx: CliContext): void {
  program
    .command('agent')
    .description('Run the Gantry agent on a target: enroll once, then report to the server')
    .option('--server <url>', 'the Gantry server (needed to enroll; remembered afterwards)')
    .option(
      '--enroll <token>',
      'one-time enrollment token from `gantry agents enroll-token` (or GANTRY_ENROLL_TOKEN, which keeps it out of the process list)',
    )
    .option(
      '--data-dir <dir>',
      'where the agent keeps its state and credential (GANTRY_AGENT_DATA_DIR, default ./.gantry-agent)',
    )
    .option('--name <name>', 'the target’s name (default: this host’s name)')
    .action(async (o: { server?: string; enroll?: string; dataDir?: string; name?: string }) => {
      // Loaded here, not at startup: every other verb starts without the agent's modules.
      const [
        { default: pino },
        { AgentFatalError, AgentSettingError, agentSettings, runAgent },
        { Failpoints },
        { setAgentHeap },
      ] = await Promise.all([
        import('pino'),
        import('../../agent/run-agent.ts'),
        import('../../support/failpoints.ts'),
        import('../../agent/heap.ts'),
      ]);
      const logger = pino({
        level: ctx.env.GANTRY_LOG_LEVEL ?? 'info',
        base: { service: 'gantry-agent' },
        timestamp: pino.stdTimeFunctions.isoTime,
      });
      let settings: ReturnType<typeof agentSettings>;
      try {
        settings = agentSettings(ctx.env);
      } catch (error) {
        if (error instanceof AgentSettingError) throw new CliError(EXIT.usage, error.message);
        throw error;
      }
      const dataDir = path.resolve(o.dataDir ?? ctx.env.GANTRY_AGENT_DATA_DIR ?? '.gantry-agent');
      const stopped = new Promise<void>((resolve) => {
        process.once('SIGTERM', () => resolve());
        process.once('SIGINT', () => resolve());
      });
      setAgentHeap();
      try {
        await runAgent({
          server: o.server,
          enrollToken: o.enroll ?? ctx.env.GANTRY_ENROLL_TOKEN,
          failpoints: new Failpoints(ctx.env.FAILPOINTS),
          dataDir,
          name: o.name,
          logger,
          stopped,
          ...settings,
        });
      } catch (error) {
        if (error instanceof AgentFatalError) throw new CliError(EXIT.refused, error.message);
        throw error;
      }
    });
}
