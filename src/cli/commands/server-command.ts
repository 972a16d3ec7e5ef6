import type { Command } from 'commander';
import type { CliContext } from '../context.ts';

export function addServerCommand(program: Command, ctx: CliContext): void {
  program
    .command('server')
    .description(
      'Run the Gantry server: HTTP API and control plane (SQLite in --data-dir, or PostgreSQL with GANTRY_DATABASE_URL)',
    )
    .option('--port <port>', 'port to listen on (GANTRY_PORT, default 8080)')
    .option('--host <host>', 'address to bind (GANTRY_HOST, default 127.0.0.1; 0.0.0.0 for every interface)')
    .option('--data-dir <dir>', 'where state is kept (GANTRY_DATA_DIR, default ./.gantry)')
    .addHelpText(
      'after',
      `
Environment:
  GANTRY_DATABASE_URL           postgres://… to use PostgreSQL instead of SQLite
  GANTRY_BOOTSTRAP_ADMIN_TOKEN  on the first start only: becomes admin's first API token
  GANTRY_PUBLIC_URL             the address people use (links; https turns on Secure cookies)
  GANTRY_LOG_LEVEL              fatal|error|warn|info|debug|trace|silent (default info)
  GANTRY_BODY_LIMIT             largest JSON body in bytes (default 1048576)
  GANTRY_TRUST_PROXY            behind reverse proxies: their hop count, or their addresses/CIDRs
  GANTRY_AUDIT_FILE             also append every audit entry to this file as a JSON line
  GANTRY_DEPLOY_LEASE_SECONDS   how long a replica holds a deployment without renewing (default 15)`,
    )
    .action(async (options: { port?: string; host?: string; dataDir?: string }) => {
      // Loaded here, not at startup: every other verb starts without the server's modules.
      const [{ loadServerConfig }, { runServer }] = await Promise.all([
        import('../../server/config.ts'),
        import('../../server/run-server.ts'),
      ]);
      const config = loadServerConfig(ctx.env, options);
      const server = await runServer(config);
      await new Promise<void>((resolve) => {
        const stop = () => {
          process.off('SIGTERM', stop);
          process.off('SIGINT', stop);
          server.close().then(resolve, resolve);
        };
        process.on('SIGTERM', stop);
        process.on('SIGINT', stop);
      });
    });
}
