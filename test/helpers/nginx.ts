/**
 * Debian's real nginx in front of test services: a configuration of its own in a directory, an
 * upstream file that a package's `switch` hook rewrites and reloads, and plain GETs through it.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { createServer } from 'node:net';
import path from 'node:path';
import { eventually } from './processes.ts';

export const NGINX = '/usr/sbin/nginx';

export function requireNginx(): void {
  if (!existsSync(NGINX))
    throw new Error(`${NGINX} is missing: install Debian's nginx (apt-get install -y nginx); .ci/run does`);
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** One GET without keep-alive: each request sees the nginx configuration of its moment. */
export function get(port: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (error) => resolve({ status: 0, body: error.message }));
  });
}

/**
 * Starts nginx with its configuration in `conf` (`nginx.conf`, `upstream.conf` pointing nowhere
 * yet, `port` holding the port it listens on) and waits until it answers (502: no upstream yet).
 * A hook reloads it with `nginx -p $conf -c nginx.conf -e $conf/error.log -s reload`.
 */
export async function startNginx(conf: string): Promise<number> {
  mkdirSync(path.join(conf, 'tmp'), { recursive: true });
  const port = await freePort();
  writeFileSync(path.join(conf, 'upstream.conf'), 'upstream app { server 127.0.0.1:9; }\n');
  writeFileSync(path.join(conf, 'port'), String(port));
  writeFileSync(
    path.join(conf, 'nginx.conf'),
    [
      process.getuid?.() === 0 ? 'user root;' : '',
      'daemon off;',
      'worker_processes 1;',
      `pid ${conf}/nginx.pid;`,
      `error_log ${conf}/error.log;`,
      'events { worker_connections 256; }',
      'http {',
      '  access_log off;',
      `  client_body_temp_path ${conf}/tmp/body; proxy_temp_path ${conf}/tmp/proxy;`,
      `  fastcgi_temp_path ${conf}/tmp/fastcgi; uwsgi_temp_path ${conf}/tmp/uwsgi; scgi_temp_path ${conf}/tmp/scgi;`,
      `  include ${conf}/upstream.conf;`,
      `  server { listen 127.0.0.1:${port}; location / { proxy_pass http://app; } }`,
      '}',
      '',
    ].join('\n'),
  );
  const nginx = spawn(NGINX, ['-p', conf, '-c', 'nginx.conf', '-e', `${conf}/error.log`], {
    stdio: 'ignore',
  });
  nginx.unref();
  await eventually(async () => ((await get(port)).status === 502 ? true : undefined));
  return port;
}
