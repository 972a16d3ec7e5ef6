/**
 * `npm run bench`: the API's cost over a baseline measured in the same run, on SQLite (and on
 * PostgreSQL when TEST_DATABASE_URL is set). Figures are ratios to GET /healthz, which touches
 * neither authentication nor the database, so a noisy shared machine moves both sides alike.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ensureFirstAdmin } from '../src/server/bootstrap.ts';
import { systemClock } from '../src/server/clock.ts';
import { createApp } from '../src/server/create-app.ts';
import { type DatabaseTarget, openAndMigrate } from '../src/server/db/database.ts';
import { FsBlobStore } from '../src/server/dml/fs-blob-store.ts';
import { createPostgresSchema } from '../test/helpers/test-databases.ts';

const TOKEN = `gnt_bench_${'z'.repeat(40)}`;
const CONCURRENCY = 16;

interface Result {
  name: string;
  requests: number;
  perSecond: number;
  p99ms: number;
}

async function measure(
  name: string,
  requests: number,
  send: (i: number) => Promise<Response>,
): Promise<Result> {
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (;;) {
        const i = next++;
        if (i >= requests) return;
        const t0 = performance.now();
        const res = await send(i);
        await res.arrayBuffer();
        if (!res.ok) throw new Error(`${name}: HTTP ${res.status}`);
        latencies.push(performance.now() - t0);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    name,
    requests,
    perSecond: requests / seconds,
    p99ms: latencies[Math.floor(latencies.length * 0.99)] ?? 0,
  };
}

async function benchOn(label: string, target: DatabaseTarget, dataDir: string): Promise<void> {
  const { database } = await openAndMigrate(target);
  await ensureFirstAdmin({ database, clock: systemClock }, { dataDir, bootstrapToken: TOKEN });
  const blobs = new FsBlobStore(path.join(dataDir, 'blobs'));
  await blobs.init();
  const app = await createApp({
    database,
    clock: systemClock,
    logger: false,
    bodyLimit: 1024 * 1024,
    publicUrl: undefined,
    trustProxy: false,
    dataDir,
    blobs,
    dmlMaxBytes: 1024 ** 3,
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  const base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  const auth = { authorization: `Bearer ${TOKEN}` };

  // Warm-up, then the baseline and each measured call in the same run.
  await measure('warm-up', 500, () => fetch(`${base}/healthz`));
  const results = [
    await measure('GET /healthz (baseline)', 4000, () => fetch(`${base}/healthz`)),
    await measure('GET /api/v1/whoami (token auth, 2 reads)', 4000, () =>
      fetch(`${base}/api/v1/whoami`, { headers: auth }),
    ),
    await measure('GET /api/v1/audit?limit=100', 2000, () =>
      fetch(`${base}/api/v1/audit?limit=100`, { headers: auth }),
    ),
    await measure('POST /api/v1/tokens (write + audit entry)', 1000, () =>
      fetch(`${base}/api/v1/tokens`, {
        method: 'POST',
        headers: { ...auth, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'bench' }),
      }),
    ),
  ];
  const baseline = results[0]?.perSecond ?? 1;
  console.log(`\n${label}`);
  console.log('| call | requests | req/s | ratio to baseline | p99 ms |');
  console.log('|---|---:|---:|---:|---:|');
  for (const r of results) {
    console.log(
      `| ${r.name} | ${r.requests} | ${r.perSecond.toFixed(0)} | ${(r.perSecond / baseline).toFixed(2)} | ${r.p99ms.toFixed(1)} |`,
    );
  }
  await app.close();
  await database.destroy();
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'gantry-bench-'));
try {
  console.log(
    `Gantry API benchmark — node ${process.version}, ${os.cpus().length} cores, concurrency ${CONCURRENCY}`,
  );
  await benchOn(
    'SQLite (file, WAL, synchronous=FULL)',
    { kind: 'sqlite', file: path.join(dir, 'gantry.db') },
    dir,
  );
  const pgUrl = process.env.TEST_DATABASE_URL;
  if (pgUrl) {
    const schema = await createPostgresSchema(pgUrl);
    try {
      await benchOn(
        'PostgreSQL (local, pool of 10)',
        { kind: 'postgres', url: pgUrl, schema: schema.schema },
        dir,
      );
    } finally {
      await schema.drop();
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
