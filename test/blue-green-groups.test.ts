/**
 * Blue-green by two target groups, end to end with real processes: a real server, five real
 * agents — two targets labelled slot=blue, two slot=green, and a router (slot=router) with Debian's
 * real nginx on its host — and a package whose `switch` hook, run on the router, points nginx's
 * upstream at the group's targets and reloads. The idle group gets the new version while the other
 * serves; traffic then moves with no failed request; the group left keeps running, so a rollback
 * moves traffic straight back; a version unhealthy on one target of the idle group halts before
 * traffic moves. Where traffic goes is known from what the routers did — also after an abort, or
 * a switch that failed and could not switch back (then a person says which group serves) — and
 * only the newest deployment can be rolled back. On SQLite and on PostgreSQL.
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
  runGantry,
  type ServerProcess,
  startEnrolledAgent,
  startServer,
} from './helpers/processes.ts';
import { SERVER_DATABASES, serverDatabase } from './helpers/test-databases.ts';

const TOKEN = `gnt_bggroups_${'g'.repeat(40)}`;
const GROUPS = { 'web-b1': 'blue', 'web-b2': 'blue', 'web-g1': 'green', 'web-g2': 'green', lb: 'router' };

/**
 * The package: a tiny HTTP service on a unix socket in its target's data directory, answering its
 * version and its target's name; a health check; and the switch hook the router runs.
 */
function webPackage(version: string): Buffer {
  return makeTarGz({
    'gantry.yaml': [
      'supervise: true',
      'start: node server.cjs',
      'switch: sh switch.sh',
      'env:',
      `  VERSION: "${version}"`,
      'health:',
      '  command: node check.cjs',
      '  retries: 8',
      '  interval: 0.25',
      '',
    ].join('\n'),
    // The release directory is <data>/releases/web/<version>: the data directory is three up, and
    // every target's data directory is named after it, side by side.
    'server.cjs': `
      const fs = require('node:fs'); const http = require('node:http'); const path = require('node:path');
      const data = path.resolve('../../..'); const socket = path.join(data, 'web.sock');
      try { fs.unlinkSync(socket); } catch {}
      http.createServer((req, res) => {
        if (req.url === '/health' && fs.existsSync(path.join(data, 'unhealthy-' + process.env.VERSION))) res.statusCode = 500;
        res.end(process.env.VERSION + ' ' + path.basename(data));
      }).listen(socket);
      process.on('SIGTERM', () => process.exit(0));
    `,
    'check.cjs': `
      const path = require('node:path');
      require('node:http').get({ socketPath: path.join(path.resolve('../../..'), 'web.sock'), path: '/health' },
        (res) => process.exit(res.statusCode === 200 ? 0 : 1)).on('error', () => process.exit(1));
    `,
    // On the router: nginx reloads in the background, and its old workers may take a request or
    // two before they leave; the hook ends once ten answers in a row came from the group's targets.
    'confirm.cjs': `
      const fs = require('node:fs'); const path = require('node:path');
      const port = Number(fs.readFileSync(path.resolve('../../../nginx/port'), 'utf8'));
      const group = process.env.GANTRY_SLOT_TARGETS.split(' ');
      const until = Date.now() + 15000;
      let inARow = 0;
      const once = () => require('node:http').get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
        let body = ''; res.on('data', (c) => (body += c));
        res.on('end', () => { inARow = group.includes(body.split(' ')[1]) ? inARow + 1 : 0; inARow >= 10 ? process.exit(0) : again(); });
      }).on('error', () => { inARow = 0; again(); });
      function again() { if (Date.now() > until) process.exit(1); setTimeout(once, 20); }
      once();
    `,
    'switch.sh': [
      'set -e',
      'data=$(cd ../../.. && pwd)',
      'if [ -e "$data/switch-fails" ]; then echo "the load balancer refused the change" >&2; exit 1; fi',
      'parent=$(dirname "$data")',
      '{ printf "upstream app {\\n"; for t in $GANTRY_SLOT_TARGETS; do printf "  server unix:%s/%s/web.sock;\\n" "$parent" "$t"; done; printf "}\\n"; } > "$data/nginx/upstream.conf.tmp"',
      'mv "$data/nginx/upstream.conf.tmp" "$data/nginx/upstream.conf"',
      `${NGINX} -p "$data/nginx" -c nginx.conf -e "$data/nginx/error.log" -s reload`,
      'node confirm.cjs',
      '',
    ].join('\n'),
  });
}

/** What a target's own service answers (bypassing nginx), or null when nothing listens. */
function direct(dataDir: string): Promise<string | null> {
  return new Promise((resolve) => {
    const req = http.get({ socketPath: path.join(dataDir, 'web.sock'), path: '/', timeout: 3000 }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve(body));
    });
    req.on('error', () => resolve(null));
    req.on('timeout', () => req.destroy());
  });
}

for (const database of SERVER_DATABASES)
  describe(`blue-green by two target groups through a real nginx on ${database}`, () => {
    let dir: string;
    let db: Awaited<ReturnType<typeof serverDatabase>> | undefined;
    let server: ServerProcess;
    let port: number;
    const agents: LongProcess[] = [];
    let env: Record<string, string>;
    const agentDir = (name: string) => path.join(dir, 'targets', name);
    const api = apiOf(() => server.url, TOKEN);
    const finished = (id: string) => deploymentEnded(api, id, 50_000);

    /** Twenty answers through nginx, as a set of "version target". */
    async function served(): Promise<string[]> {
      const seen = new Set<string>();
      for (let i = 0; i < 20; i++) seen.add((await get(port)).body);
      return [...seen].sort();
    }

    /** Requests through nginx until `stop` resolves: every answer that was not a 200. */
    function watchTraffic() {
      const failures: string[] = [];
      const seen = new Set<string>();
      let polling = true;
      const poller = (async () => {
        while (polling) {
          const r = await get(port);
          if (r.status !== 200) failures.push(`${r.status} ${r.body.slice(0, 80)}`);
          else seen.add(r.body);
        }
      })();
      return {
        async stop() {
          polling = false;
          await poller;
          return { failures, seen: [...seen].sort() };
        },
      };
    }

    beforeAll(async () => {
      requireNginx();
      dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-bgg-'));
      db = await serverDatabase(database);
      server = await startServer(['--data-dir', path.join(dir, 'server'), '--port', '0'], {
        GANTRY_BOOTSTRAP_ADMIN_TOKEN: TOKEN,
        GANTRY_HEARTBEAT_SECONDS: '1',
        ...db.env,
      });
      env = { GANTRY_URL: server.url, GANTRY_TOKEN: TOKEN };
      await gantryJson(['env', 'create', 'production'], env);
      port = await startNginx(path.join(agentDir('lb'), 'nginx'));
      // The agents come up while the releases are pushed.
      const releases = pushReleases(dir, env, {
        name: 'shop',
        component: 'web',
        versions: ['1.0.0', '2.0.0', '3.0.0'],
        archive: webPackage,
      });
      agents.push(
        ...(await Promise.all(
          Object.entries(GROUPS).map(([name, slot]) =>
            startEnrolledAgent(server, env, { name, dataDir: agentDir(name), labels: { slot } }),
          ),
        )),
      );
      await releases;
    }, 120_000);

    afterAll(async () => {
      for (const a of agents) await a.stop('SIGKILL');
      killLeftovers(Object.keys(GROUPS).map(agentDir));
      await server?.stop('SIGKILL');
      await db?.drop();
      rmSync(dir, { recursive: true, force: true });
    });

    it('refuses a label that does not place every target, naming them', async () => {
      const refused = await api('POST', '/api/v1/deployments', {
        release: 'shop@1.0.0',
        environment: 'production',
        strategy: 'blue-green',
        options: { groupLabel: 'tier' },
      });
      expect(refused.status).toBe(400);
      expect(refused.body.error.message).toContain(
        'needs every target labelled tier=blue, tier=green or tier=router; 5 is not: lb, web-b1, web-b2, web-g1, web-g2',
      );
      expect((await api('GET', '/api/v1/deployments')).body.deployments).toEqual([]);
    });

    it('the first deployment goes to the blue group, and the router points nginx at it', async () => {
      const created = await api('POST', '/api/v1/deployments', {
        release: 'shop@1.0.0',
        environment: 'production',
        strategy: 'blue-green',
        options: { groupLabel: 'slot' },
      });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      expect(created.body.options.groups).toMatchObject({ label: 'slot', group: 'blue', previous: null });
      expect(created.body.waves[0].targets.map((t: { name: string }) => t.name)).toEqual([
        'lb',
        'web-b1',
        'web-b2',
      ]);
      const done = await finished(created.body.id);
      expect(done.state, JSON.stringify(done)).toBe('succeeded');
      expect(await served()).toEqual(['1.0.0 web-b1', '1.0.0 web-b2']);
      // The green group was not touched; the router runs nothing of the package itself.
      for (const name of ['web-g1', 'web-g2', 'lb']) expect(await direct(agentDir(name))).toBeNull();
    }, 60_000);

    it('2.0.0 goes to the green group while blue serves; traffic moves with no failed request; blue keeps running', async () => {
      const traffic = watchTraffic();
      const d = await gantryJson(
        ['deploy', 'shop@2.0.0', '--env', 'production', '--strategy', 'blue-green', '--groups', 'slot'],
        env,
      );
      expect(d.options.groups).toMatchObject({ group: 'green', previous: 'blue' });
      const done = await finished(d.id);
      const { failures, seen } = await traffic.stop();
      expect(done.state, JSON.stringify(done)).toBe('succeeded');
      expect(failures).toEqual([]);
      expect(seen).toEqual(['1.0.0 web-b1', '1.0.0 web-b2', '2.0.0 web-g1', '2.0.0 web-g2']);
      expect(await served()).toEqual(['2.0.0 web-g1', '2.0.0 web-g2']);
      // Kept for an instant switch back.
      expect(await direct(agentDir('web-b1'))).toBe('1.0.0 web-b1');
      const lb = done.waves[0].targets.find((t: { name: string }) => t.name === 'lb');
      expect(lb.message).toContain('moved to the green group (web-g1, web-g2) with 2.0.0');
      const ledger = await gantryJson(['ledger', '--env', 'production'], env);
      expect(JSON.stringify(ledger)).toContain('2.0.0');
    }, 60_000);

    it('a rollback moves traffic straight back to the blue group; green had nothing before and stays idle', async () => {
      const list = await gantryJson(['deployments', 'list'], env);
      const last = list.deployments[0] as { number: string };
      const traffic = watchTraffic();
      const rolled = await gantryJson(
        ['deployments', 'rollback', last.number, '--reason', 'checkout broke'],
        env,
      );
      const done = await finished(rolled.id);
      const { failures } = await traffic.stop();
      expect(done.state, JSON.stringify(done)).toBe('rolled_back');
      expect(failures).toEqual([]);
      expect(await served()).toEqual(['1.0.0 web-b1', '1.0.0 web-b2']);
      const byName = Object.fromEntries(
        done.waves[0].targets.map((t: { name: string; message: string }) => [t.name, t.message]),
      );
      expect(byName.lb).toContain('switched back to the blue group at once');
      expect(byName['web-g1']).toContain('nothing ran here before');
    }, 60_000);

    it('a version unhealthy on one target of the idle group halts before traffic moves', async () => {
      writeFileSync(path.join(agentDir('web-g2'), 'unhealthy-3.0.0'), '');
      const d = await gantryJson(
        ['deploy', 'shop@3.0.0', '--env', 'production', '--strategy', 'blue-green', '--groups', 'slot'],
        env,
      );
      // The rollback above left blue serving: green is the idle group again.
      expect(d.options.groups).toMatchObject({ group: 'green', previous: 'blue' });
      const done = await finished(d.id);
      expect(done.state, JSON.stringify(done)).toBe('rolled_back');
      expect(done.reason).toContain('1 of 3 target(s) failed');
      expect(await served()).toEqual(['1.0.0 web-b1', '1.0.0 web-b2']);
      const byName = Object.fromEntries(
        done.waves[0].targets.map((t: { name: string; state: string }) => [t.name, t.state]),
      );
      expect(byName).toEqual({ lb: 'rolled_back', 'web-g1': 'rolled_back', 'web-g2': 'failed' });
      // web-g1 is back on what it ran before this deployment (2.0.0, idle).
      expect(await direct(agentDir('web-g1'))).toBe('2.0.0 web-g1');
    }, 60_000);

    const deployGroups = (version: string, ...more: string[]) =>
      runGantry(
        [
          'deploy',
          `shop@${version}`,
          '--env',
          'production',
          '--strategy',
          'blue-green',
          '--groups',
          'slot',
          ...more,
          '--json',
        ],
        { env },
      );
    const lbState = async (id: string) =>
      (await api('GET', `/api/v1/deployments/${id}`)).body.waves[0].targets.find(
        (t: { name: string }) => t.name === 'lb',
      ) as { state: string; message: string };

    it('aborted while it bakes after the switch: the next deployment knows the group it left serving', async () => {
      rmSync(path.join(agentDir('web-g2'), 'unhealthy-3.0.0'));
      const started = await deployGroups('3.0.0', '--bake', '10m');
      expect(started.code, started.stderr).toBe(0);
      const d = JSON.parse(started.stdout);
      await eventually(async () => ((await lbState(d.id)).state === 'succeeded' ? true : undefined), 40_000);
      await gantryJson(['deployments', 'abort', d.number, '--reason', 'stop here'], env);
      expect(await served()).toEqual(['3.0.0 web-g1', '3.0.0 web-g2']);
      // Green serves: the next deployment goes to blue, and a rollback of it would go back to green.
      const next = await gantryJson(
        ['deploy', 'shop@2.0.0', '--env', 'production', '--strategy', 'blue-green', '--groups', 'slot'],
        env,
      );
      expect(next.options.groups).toMatchObject({
        group: 'blue',
        previous: 'green',
        previousTargets: ['web-g1', 'web-g2'],
      });
      const done = await finished(next.id);
      expect(done.state, JSON.stringify(done)).toBe('succeeded');
      expect(await served()).toEqual(['2.0.0 web-b1', '2.0.0 web-b2']);
    }, 90_000);

    it('only the newest deployment by the label can be rolled back', async () => {
      const list = await gantryJson(['deployments', 'list'], env);
      const first = list.deployments.at(-1) as { number: string; state: string };
      expect(first.state).toBe('succeeded');
      const refused = await runGantry(['deployments', 'rollback', first.number, '--json'], { env });
      expect(refused.code).not.toBe(0);
      expect(refused.stdout + refused.stderr).toContain(
        'is a later blue-green deployment of shop by slot, and may have changed the group',
      );
      expect(await served()).toEqual(['2.0.0 web-b1', '2.0.0 web-b2']);
    });

    it('a switch that fails and cannot switch back ends it failed, the group left alone; traffic is then unknown until a person says where it goes', async () => {
      writeFileSync(path.join(agentDir('lb'), 'switch-fails'), '');
      // Even asked to pause: a router that may have moved traffic is never left for later.
      const started = await deployGroups('3.0.0', '--on-failure', 'pause');
      expect(started.code, started.stderr).toBe(0);
      const d = JSON.parse(started.stdout);
      const done = await finished(d.id);
      expect(done.state, JSON.stringify(done)).toBe('failed');
      expect(done.reason).toContain(
        'router lb: failed_needs_attention: the switch to the green group failed',
      );
      const states = Object.fromEntries(
        done.waves[0].targets.map((t: { name: string; state: string }) => [t.name, t.state]),
      );
      expect(states).toEqual({ lb: 'rollback_failed', 'web-g1': 'succeeded', 'web-g2': 'succeeded' });
      expect(await served()).toEqual(['2.0.0 web-b1', '2.0.0 web-b2']);
      const unknown = await deployGroups('3.0.0');
      expect(unknown.code).not.toBe(0);
      expect(unknown.stdout + unknown.stderr).toContain(
        `Where traffic for shop in production goes is not known after ${d.number}: router lb is rollback_failed`,
      );
      // The operator puts the load balancer right and says which group serves.
      rmSync(path.join(agentDir('lb'), 'switch-fails'));
      const said = await deployGroups('3.0.0', '--serving', 'blue');
      expect(said.code, said.stderr).toBe(0);
      const next = JSON.parse(said.stdout);
      expect(next.options.groups).toMatchObject({ group: 'green', previous: 'blue' });
      const after = await finished(next.id);
      expect(after.state, JSON.stringify(after)).toBe('succeeded');
      expect(await served()).toEqual(['3.0.0 web-g1', '3.0.0 web-g2']);
    }, 90_000);
  });
