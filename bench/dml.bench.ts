/**
 * Media library throughput: upload and download of a large artifact on loopback, each as a ratio
 * to `openssl dgst -sha256` of the same file in the same run (the hashing limit of this machine),
 * and the server's memory growth during each. Size: BENCH_DML_BYTES (default 1 GiB).
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const SIZE = Number(process.env.BENCH_DML_BYTES ?? 1024 ** 3);
const TOKEN = `gnt_bench_${'q'.repeat(40)}`;
const BIN = path.resolve(import.meta.dirname, '../bin/gantry.js');

function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
}

/** Samples the server's RSS while `work` runs; returns the work's seconds and the peak RSS. */
async function measured(pid: number, work: () => Promise<void>): Promise<{ seconds: number; peak: number }> {
  let peak = rssBytes(pid);
  const timer = setInterval(() => {
    peak = Math.max(peak, rssBytes(pid));
  }, 50);
  const t0 = performance.now();
  await work();
  const seconds = (performance.now() - t0) / 1000;
  clearInterval(timer);
  return { seconds, peak: Math.max(peak, rssBytes(pid)) };
}

// BENCH_DML_DATA_PARENT puts the server's data elsewhere (for example /dev/shm, to see the
// server's own limit on a disk that is never the bottleneck).
const dir = mkdtempSync(path.join(process.env.BENCH_DML_DATA_PARENT ?? os.tmpdir(), 'gantry-dml-bench-'));
// The client's copy lives in memory where the machine has a tmpfs, as if on another machine: its
// own disk traffic is then not charged to the server's upload.
const clientDir = mkdtempSync(
  path.join(existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'gantry-dml-client-'),
);
const file = path.join(clientDir, 'artifact.bin');
const server = spawn(process.execPath, [BIN, 'server', '--port', '0', '--data-dir', path.join(dir, 'data')], {
  env: {
    ...process.env,
    GANTRY_BOOTSTRAP_ADMIN_TOKEN: TOKEN,
    GANTRY_DML_MAX_BYTES: String(SIZE * 2),
    GANTRY_DML_SCRUB_INTERVAL_SECONDS: '0',
  },
  stdio: ['ignore', 'pipe', 'inherit'],
});
try {
  // A file of incompressible bytes.
  const block = randomBytes(1024 * 1024);
  const fd = openSync(file, 'w');
  for (let written = 0; written < SIZE; written += block.length)
    writeSync(fd, block, 0, Math.min(block.length, SIZE - written));
  closeSync(fd);

  execFileSync('openssl', ['dgst', '-sha256', file]); // warm the page cache
  const o0 = performance.now();
  execFileSync('openssl', ['dgst', '-sha256', file]);
  const opensslSeconds = (performance.now() - o0) / 1000;

  let out = '';
  const url = await new Promise<string>((resolve, reject) => {
    server.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const started = Date.now();
    const poll = setInterval(() => {
      const found = /"url":"(http:\/\/[^"]+)"[^\n]*"msg":"gantry server listening"/.exec(out)?.[1];
      if (found) {
        clearInterval(poll);
        resolve(found);
      } else if (Date.now() - started > 20_000) {
        clearInterval(poll);
        reject(new Error('server did not start'));
      }
    }, 50);
  });
  const pid = server.pid as number;
  const idle = rssBytes(pid);
  // curl is the client: it costs little CPU, so the figures are the server's.
  const curl = (args: string[]) =>
    new Promise<string>((resolve, reject) => {
      const child = spawn(
        'curl',
        ['-sS', '--fail-with-body', '-H', `authorization: Bearer ${TOKEN}`, ...args],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
      });
      child.on('error', reject);
      child.on('exit', (code) =>
        code === 0 ? resolve(out) : reject(new Error(`curl exited ${code}: ${out}`)),
      );
    });
  let id = '';
  const up = await measured(pid, async () => {
    const body = await curl([
      '-X',
      'POST',
      '-T',
      file,
      '-H',
      'content-type: application/octet-stream',
      `${url}/api/v1/artifacts?component=bench&version=1.0.0&kind=file`,
    ]);
    id = (JSON.parse(body) as { id: string }).id;
  });
  const afterUpload = rssBytes(pid);
  const down = await measured(pid, async () => {
    const written = await curl([
      '-o',
      '/dev/null',
      '-w',
      '%{size_download}',
      `${url}/api/v1/artifacts/${id}/content`,
    ]);
    if (Number(written) !== SIZE) throw new Error(`download: got ${written} of ${SIZE} bytes`);
  });
  // The disk's own durable write rate, for reading the upload figure.
  const d0 = performance.now();
  execFileSync(
    'dd',
    [
      'if=/dev/zero',
      `of=${path.join(dir, 'dd.bin')}`,
      'bs=1M',
      `count=${Math.round(SIZE / 1024 / 1024)}`,
      'conv=fdatasync',
    ],
    { stdio: 'ignore' },
  );
  const ddSeconds = (performance.now() - d0) / 1000;

  const mib = (n: number) => (n / 1024 / 1024).toFixed(0);
  const rate = (s: number) => (SIZE / 1024 / 1024 / s).toFixed(0);
  console.log(
    `\nMedia library — ${mib(SIZE)} MiB artifact on loopback, node ${process.version}, ${os.cpus().length} cores`,
  );
  console.log('| transfer | seconds | MiB/s | ratio to openssl dgst -sha256 | server RSS growth |');
  console.log('|---|---:|---:|---:|---:|');
  console.log(
    `| openssl dgst -sha256 (baseline) | ${opensslSeconds.toFixed(2)} | ${rate(opensslSeconds)} | 1.00 | - |`,
  );
  console.log(
    `| dd to disk with fdatasync (the disk's durable write limit) | ${ddSeconds.toFixed(2)} | ${rate(ddSeconds)} | ${(opensslSeconds / ddSeconds).toFixed(2)} | - |`,
  );
  console.log(
    `| upload (stream, hash, fsync, rename) | ${up.seconds.toFixed(2)} | ${rate(up.seconds)} | ${(opensslSeconds / up.seconds).toFixed(2)} | ${mib(up.peak - idle)} MiB |`,
  );
  console.log(
    `| download (verified while streaming) | ${down.seconds.toFixed(2)} | ${rate(down.seconds)} | ${(opensslSeconds / down.seconds).toFixed(2)} | ${mib(down.peak - afterUpload)} MiB |`,
  );
} finally {
  server.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
  rmSync(clientDir, { recursive: true, force: true });
}
