/**
 * GET /agent/gantry-agent.js: the agent as one JavaScript file with no native dependencies, built
 * from the sources once (esbuild) and kept in memory, so a target needs only Node.js.
 */
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import type { App } from './http/route-kit.ts';

const ENTRY = fileURLToPath(new URL('../agent/agent-main.ts', import.meta.url));

let bundle: Promise<{ code: string; etag: string }> | undefined;

export function agentBundle(): Promise<{ code: string; etag: string }> {
  bundle ??= build({
    entryPoints: [ENTRY],
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    write: false,
    minify: false,
    legalComments: 'inline',
    banner: { js: '#!/usr/bin/env node' },
    logLevel: 'silent',
  }).then((result) => {
    const code = result.outputFiles[0]?.text ?? '';
    return { code, etag: `"sha256:${createHash('sha256').update(code).digest('hex')}"` };
  });
  bundle.catch(() => {
    bundle = undefined;
  });
  return bundle;
}

export function registerAgentBundleRoute(app: App): void {
  app.get(
    '/agent/gantry-agent.js',
    {
      config: { permission: 'public' },
      schema: {
        tags: ['agents'],
        summary: 'The agent as one JavaScript file: `node gantry-agent.js --help`',
      },
    },
    async (request, reply) => {
      const { code, etag } = await agentBundle();
      reply.header('etag', etag).type('text/javascript; charset=utf-8');
      if (request.headers['if-none-match'] === etag) return reply.status(304).send();
      return reply.send(code);
    },
  );
}
