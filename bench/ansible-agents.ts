/**
 * One process of simulated agents for bench/ansible.bench.ts: the targets given in the JSON file
 * named by the first argument, each with its own data directory and state, on the real protocol
 * (long-poll, report), every step run by the agent's own step code (`runStep`). At most
 * `parallel` steps run at once in this process: a real fleet's targets each work on their own
 * machine; here they share this one's cores, and more at once only costs memory.
 *
 * Says `ready` on stdout once every agent polls; on SIGTERM stops and prints its counts as JSON.
 */
import { readFileSync } from 'node:fs';
import type { AgentState } from '../src/agent/agent-state.ts';
import { writeState } from '../src/agent/agent-state.ts';
import { setAgentHeap } from '../src/agent/heap.ts';
import { runStep } from '../src/agent/steps.ts';
import { Supervisor } from '../src/agent/supervisor.ts';
import { NO_FAILPOINTS } from '../src/support/failpoints.ts';
import { Client, Fleet, sleep } from './support.ts';

export interface AgentsInput {
  server: string;
  parallel: number;
  agents: { agentId: string; targetId: string; credential: string; name: string; dataDir: string }[];
}

// The heap as a real agent sets it (src/agent/heap.ts).
setAgentHeap();
const input = JSON.parse(readFileSync(process.argv[2] as string, 'utf8')) as AgentsInput;
const sims = input.agents.map((a) => {
  const state: AgentState = {
    version: 1,
    server: input.server,
    agentId: a.agentId,
    targetId: a.targetId,
    name: a.name,
    credential: a.credential,
  };
  // Each target's agent keeps its state in its own data directory, as `gantry agent` does.
  writeState(a.dataDir, state);
  return { ...a, state, supervisor: new Supervisor(a.dataDir) };
});

let running = 0;
const waiting: (() => void)[] = [];
async function limited<T>(work: () => Promise<T>): Promise<T> {
  if (running >= input.parallel) await new Promise<void>((resolve) => waiting.push(resolve));
  running++;
  try {
    return await work();
  } finally {
    running--;
    waiting.shift()?.();
  }
}

const base = new URL(input.server);
const fleet = new Fleet(
  new Client(base, sims.length + 4),
  sims,
  (sim, step) =>
    limited(
      async () =>
        ({
          ...(await runStep(
            {
              server: input.server,
              dataDir: sim.dataDir,
              state: sim.state,
              failpoints: NO_FAILPOINTS,
              supervisor: sim.supervisor,
            },
            step,
          )),
        }) as Record<string, unknown>,
    ),
  { wait: 20, pollMs: 0, heartbeats: false },
);
fleet.start();
await sleep(1000);
process.stdout.write('ready\n');
process.once('SIGTERM', async () => {
  await fleet.stop();
  process.stdout.write(
    `${JSON.stringify({ steps: fleet.steps, errors: fleet.errors, lastError: fleet.lastError })}\n`,
  );
  process.exit(0);
});
