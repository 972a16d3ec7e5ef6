/**
 * The agent's own entry point, bundled by the server into one JavaScript file
 * (`GET /agent/gantry-agent.js`) so a target needs only Node.js: `node gantry-agent.js --server URL
 * --enroll TOKEN --data-dir DIR`. The same agent runs as `gantry agent` from a full install.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { Failpoints } from '../support/failpoints.ts';
import { setAgentHeap } from './heap.ts';
import { AgentFatalError, AgentSettingError, agentSettings, runAgent } from './run-agent.ts';

const HELP = `Usage: node gantry-agent.js [--server URL] [--enroll TOKEN] [--data-dir DIR] [--name NAME]

  --server URL     the Gantry server (needed to enroll; remembered afterwards)
  --enroll TOKEN   one-time enrollment token (or GANTRY_ENROLL_TOKEN)
  --data-dir DIR   where the agent keeps its state and credential (default ./.gantry-agent)
  --name NAME      the target's name (default: this host's name)

Exit codes: 0 stopped, 2 usage error, 3 refused by the server, 1 unexpected error.
`;

async function main(): Promise<number> {
  let values: { server?: string; enroll?: string; 'data-dir'?: string; name?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      options: {
        server: { type: 'string' },
        enroll: { type: 'string' },
        'data-dir': { type: 'string' },
        name: { type: 'string' },
        help: { type: 'boolean' },
      },
      strict: true,
    }));
  } catch (error) {
    process.stderr.write(`error: ${(error as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const logger = pino({
    level: process.env.GANTRY_LOG_LEVEL ?? 'info',
    base: { service: 'gantry-agent' },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
  let settings: ReturnType<typeof agentSettings>;
  try {
    settings = agentSettings(process.env);
  } catch (error) {
    if (!(error instanceof AgentSettingError)) throw error;
    process.stderr.write(`error: ${error.message}\n`);
    return 2;
  }
  const stopped = new Promise<void>((resolve) => {
    process.once('SIGTERM', () => resolve());
    process.once('SIGINT', () => resolve());
  });
  setAgentHeap();
  try {
    await runAgent({
      server: values.server,
      enrollToken: values.enroll ?? process.env.GANTRY_ENROLL_TOKEN,
      failpoints: new Failpoints(process.env.FAILPOINTS),
      dataDir: path.resolve(values['data-dir'] ?? process.env.GANTRY_AGENT_DATA_DIR ?? '.gantry-agent'),
      name: values.name,
      logger,
      stopped,
      ...settings,
    });
    return 0;
  } catch (error) {
    process.stderr.write(`error: ${(error as Error).message}\n`);
    return error instanceof AgentFatalError ? 3 : 1;
  }
}

main().then((code) => {
  process.exitCode = code;
});
