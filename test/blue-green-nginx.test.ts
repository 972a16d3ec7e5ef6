/**
 * Blue-green end to end with real processes: a real server, two real agents, and in front of each
 * target a real nginx (Debian's) whose upstream the package's `switch` hook rewrites and reloads.
 * While a new version is staged in the idle slot the old one keeps serving; once both targets are
 * healthy there, traffic moves on both, with no failed request; a rollback switches straight back
 * to the slot that was kept running; a version that fails its health check on one target halts
 * the deployment before anything switches; a kept slot is stopped when its time is up, and a
 * rollback after that starts it again before switching. On SQLite and on PostgreSQL.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTarGz } from './helpers/archives.ts';
import { get, NGINX, requireNginx, startNginx } from './helpers/nginx.ts';
import {
  apiOf,
  deploymentEnded,
  eventually,
  gantryJson,
  killLeftovers,
  type LongProcess,
  pushReleases,
  type ServerProcess,
  startEnrolledAgent,
  startServer,
} from './helpers/processes.ts';
import { SERVER_DATABASES, serverDatabase } from './helpers/test-databases.ts';

const TOKEN = `gnt_bluegreen_${'b'.repeat(40)}`;
const NAMES = ['web-1', 'web-2'];

/** The package: a tiny HTTP service on a unix socket per slot, a health check and the switch hook. */
function webPackage(version: string): Buffer {
  return makeTarGz({
    'gantry.yaml': [
      'supervise: true',
      'start: node server.cjs',
      'switch: sh switch.sh',
      'env:',
      `  VERSION: "${version}"`,
      'slots:',
      '  blue: { SOCKET: web-blue.sock }',
      '  green: { SOCKET: web-green.sock }',
      'health:',
      '  command: node check.cjs',
      '  retries: 24',
      '  interval: 0.25',
      '',
    ].join('\n'),
    // The release directory is <data>/releases/web/<version>: the data directory is three up.
    'server.cjs': `
      const fs = require('node:fs'); const http = require('node:http'); const path = require('node:path');
      const data = path.resolve('../../..'); const socket = path.join(data, process.env.SOCKET);
      try { fs.unlinkSync(socket); } catch {}
      http.createServer((req, res) => {
        if (req.url === '/health' && fs.existsSync(path.join(data, 'unhealthy-' + process.env.VERSION))) res.statusCode = 500;
        res.end(process.env.VERSION);
      }).listen(socket);
      process.on('SIGTERM', () => process.exit(0));
    `,
    'check.cjs': `
      const path = require('node:path');
      require('node:http').get({ socketPath: path.join(path.resolve('../../..'), process.env.SOCKET), path: '/health' },
        (res) => process.exit(res.statusCode === 200 ? 0 : 1)).on('error', () => process.exit(1));
    `,
    // nginx reloads in the background, and its old workers may take a request or two before they
    // leave: the hook ends once traffic has reached this slot ten times in a row.
    'confirm.cjs': `
      const fs = require('node:fs'); const path = require('node:path');
      const port = Number(fs.readFileSync(path.resolve('../../../nginx/port'), 'utf8'));
      const until = Date.now() + 15000;
      let inARow = 0;
      const once = () => require('node:http').get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
        let body = ''; res.on('data', (c) => (body += c));
        res.on('end', () => { inARow = body === process.env.VERSION ? inARow + 1 : 0; inARow >= 10 ? process.exit(0) : again(); });
      }).on('error', () => { inARow = 0; again(); });
      function again() { if (Date.now() > until) process.exit(1); setTimeout(once, 20); }
      once();
    `,
    'switch.sh': [
      'set -e',
      'data=$(cd ../../.. && pwd)',
      'printf "upstream app { server unix:%s/%s; }\\n" "$data" "$SOCKET" > "$data/nginx/upstream.conf.tmp"',
      'mv "$data/nginx/upstream.conf.tmp" "$data/nginx/upstream.conf"',
      `${NGINX} -p "$data/nginx" -c nginx.conf -e "$data/nginx/error.log" -s reload`,
      'node confirm.cjs',
      '',
    ].join('\n'),
  });
}

/** What a slot's own socket answers (bypassing nginx), or null when nothing listens. */
function slotAnswer(dataDir: string, slot: 'blue' | 'green'): Promise<string | null> {
  return new Promise((resolve) => {
    const req = http.get(
      { socketPath: path.join(dataDir, `web-${slot}.sock`), path: '/', timeout: 3000 },
      (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve(body));
      },
    );
    req.on('error', () => resolve(null));
    req.on('timeout', () => req.destroy());
  });
}

for (const database of SERVER_DATABASES)
  describe(`blue-green through a real nginx on ${database}`, () => {
    let dir: string;
    let db: Awaited<ReturnType<typeof serverDatabase>> | undefined;
    let server: ServerProcess;
    const agents: LongProcess[] = [];
    const ports: Record<string, number> = {};
    let env: Record<string, string>;
    const agentDir = (name: string) => path.join(dir, name);

    const api = apiOf(() => server.url, TOKEN);

    const finished = (id: string, timeoutMs = 50_000) => deploymentEnded(api, id, timeoutMs);

    async function deploy(version: string, keepSeconds?: number) {
      const created = await api('POST', '/api/v1/deployments', {
        release: `shop@${version}`,
        environment: 'production',
        strategy: 'blue-green',
        ...(keepSeconds !== undefined ? { options: { keepSeconds } } : {}),
      });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      return created.body as { id: string; number: string };
    }

    const served = async () => Promise.all(NAMES.map(async (n) => (await get(ports[n] as number)).body));

    beforeAll(async () => {
      requireNginx();
      dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-bg-'));
      db = await serverDatabase(database);
      server = await startServer(['--data-dir', path.join(dir, 'server'), '--port', '0'], {
        GANTRY_BOOTSTRAP_ADMIN_TOKEN: TOKEN,
        GANTRY_HEARTBEAT_SECONDS: '1',
        ...db.env,
      });
      env = { GANTRY_URL: server.url, GANTRY_TOKEN: TOKEN };
      await gantryJson(['env', 'create', 'production'], env);
      // The agents come up while the releases are pushed.
      const releases = pushReleases(dir, env, {
        name: 'shop',
        component: 'web',
        versions: ['1.0.0', '2.0.0', '3.0.0'],
        archive: webPackage,
      });
      agents.push(
        ...(await Promise.all(
          NAMES.map(async (name) => {
            // Each target has its own nginx in front, listening on its own port.
            ports[name] = await startNginx(path.join(agentDir(name), 'nginx'));
            return startEnrolledAgent(server, env, { name, dataDir: agentDir(name) });
          }),
        )),
      );
      await releases;
    }, 120_000);

    afterAll(async () => {
      for (const a of agents) await a.stop('SIGKILL');
      killLeftovers(NAMES.map(agentDir));
      await server?.stop('SIGKILL');
      await db?.drop();
      rmSync(dir, { recursive: true, force: true });
    });

    it('the first blue-green deployment starts blue and points nginx at it', async () => {
      const d = await deploy('1.0.0');
      const done = await finished(d.id);
      expect(done.state, JSON.stringify(done)).toBe('succeeded');
      expect(await served()).toEqual(['1.0.0', '1.0.0']);
      for (const name of NAMES) expect(await slotAnswer(agentDir(name), 'blue')).toBe('1.0.0');
    }, 60_000);

    it('stages 2.0.0 in green while blue serves, switches both with no failed request, and keeps blue running', async () => {
      const failures: string[] = [];
      const seen = new Set<string>();
      let polling = true;
      const poller = (async () => {
        while (polling) {
          for (const name of NAMES) {
            const r = await get(ports[name] as number);
            if (r.status !== 200) failures.push(`${name}: ${r.status} ${r.body.slice(0, 80)}`);
            else seen.add(r.body);
          }
        }
      })();
      const d = await deploy('2.0.0', 600);
      const done = await finished(d.id);
      polling = false;
      await poller;
      expect(done.state, JSON.stringify(done)).toBe('succeeded');
      expect(failures).toEqual([]);
      expect([...seen].sort()).toEqual(['1.0.0', '2.0.0']);
      expect(await served()).toEqual(['2.0.0', '2.0.0']);
      for (const name of NAMES) {
        expect(await slotAnswer(agentDir(name), 'green')).toBe('2.0.0');
        // Kept for an instant switch back.
        expect(await slotAnswer(agentDir(name), 'blue')).toBe('1.0.0');
      }
      const ledger = JSON.stringify(await gantryJson(['ledger', '--env', 'production'], env));
      expect(ledger).toContain('2.0.0');
    }, 60_000);

    it('a rollback switches straight back to the slot kept running and stops the new one', async () => {
      const list = await gantryJson(['deployments', 'list'], env);
      const last = (list.deployments as Array<{ number: string; state: string }>)[0] as { number: string };
      const rolled = await gantryJson(
        ['deployments', 'rollback', last.number, '--reason', 'checkout broke'],
        env,
      );
      const done = await finished(rolled.id);
      expect(done.state, JSON.stringify(done)).toBe('rolled_back');
      expect(await served()).toEqual(['1.0.0', '1.0.0']);
      for (const target of done.waves[0].targets)
        expect(target.message).toContain('at once (it was still running)');
      for (const name of NAMES) expect(await slotAnswer(agentDir(name), 'green')).toBeNull();
    }, 60_000);

    it('a version unhealthy on one target halts before anything switches: traffic never moves', async () => {
      writeFileSync(path.join(agentDir('web-2'), 'unhealthy-3.0.0'), '');
      const d = await deploy('3.0.0');
      const done = await finished(d.id);
      expect(done.state, JSON.stringify(done)).toBe('rolled_back');
      expect(done.reason).toContain('1 of 2 target(s) failed');
      expect(await served()).toEqual(['1.0.0', '1.0.0']);
      const byName = Object.fromEntries(
        done.waves[0].targets.map((t: { name: string; message: string }) => [t.name, t.message]),
      );
      expect(byName['web-1']).toContain('traffic never moved');
      // The staged 3.0.0 on web-1 was stopped again.
      expect(await slotAnswer(agentDir('web-1'), 'green')).toBeNull();
      rmSync(path.join(agentDir('web-2'), 'unhealthy-3.0.0'));
    }, 60_000);

    it('a kept slot is stopped when its time is up; a rollback then starts it again before switching', async () => {
      // This one through the CLI, as an operator would.
      const d = await gantryJson(
        ['deploy', 'shop@2.0.0', '--env', 'production', '--strategy', 'blue-green', '--keep', '1s'],
        env,
      );
      expect(d.options).toEqual({ keepSeconds: 1 });
      const deployed = await finished(d.id);
      expect(deployed.state).toBe('succeeded');
      expect(await served(), JSON.stringify(deployed.waves[0].targets)).toEqual(['2.0.0', '2.0.0']);
      // Heartbeats come every second here: the kept blue slot (1.0.0) goes within a few.
      for (const name of NAMES)
        await eventually(async () =>
          (await slotAnswer(agentDir(name), 'blue')) === null ? true : undefined,
        );
      const rolled = await gantryJson(['deployments', 'rollback', d.number], env);
      const done = await finished(rolled.id);
      expect(done.state, JSON.stringify(done)).toBe('rolled_back');
      for (const target of done.waves[0].targets) expect(target.message).toContain('after starting it again');
      expect(await served()).toEqual(['1.0.0', '1.0.0']);
    }, 60_000);
  });
