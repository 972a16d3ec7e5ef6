/** A progress bar on standard error for long transfers, shown only on a terminal. */
import { Transform } from 'node:stream';
import cliProgress from 'cli-progress';

export interface Progress {
  /** A pass-through stream that advances the bar by the bytes that flow through it. */
  meter(): Transform;
  stop(): void;
}

export function startProgress(label: string, total: number, enabled: boolean): Progress {
  if (!enabled) {
    return { meter: () => new Transform({ transform: (chunk, _e, cb) => cb(null, chunk) }), stop: () => {} };
  }
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} [{bar}] {percentage}% | {value_mb}/{total_mb} MiB`,
      stream: process.stderr,
      hideCursor: true,
    },
    cliProgress.Presets.shades_classic,
  );
  const mb = (n: number) => (n / 1024 / 1024).toFixed(1);
  let done = 0;
  bar.start(total, 0, { value_mb: mb(0), total_mb: mb(total) });
  return {
    meter: () =>
      new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          done += chunk.length;
          bar.update(done, { value_mb: mb(done) });
          callback(null, chunk);
        },
      }),
    stop: () => bar.stop(),
  };
}
