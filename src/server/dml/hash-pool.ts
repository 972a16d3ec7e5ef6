/**
 * SHA-256 of stored blobs, computed on worker threads that read the file themselves. Hashing a
 * large blob takes as long as reading it, so doing it on the event loop would stall every other
 * request; and a download that is verified while it streams would be held to the speed of one core
 * doing both the hashing and the socket writes. Each worker reads into one 1 MiB buffer, so its
 * memory stays small whatever the blob's size.
 */
import { Worker } from 'node:worker_threads';

/** Plain JavaScript, so the worker needs no TypeScript loader. */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { openSync, readSync, closeSync } = require('node:fs');
const buffer = Buffer.allocUnsafe(1024 * 1024);
parentPort.on('message', ({ id, file }) => {
  let fd = -1;
  try {
    fd = openSync(file, 'r');
    const hash = createHash('sha256');
    let size = 0;
    for (;;) {
      const n = readSync(fd, buffer, 0, buffer.length, null);
      if (n === 0) break;
      hash.update(n === buffer.length ? buffer : buffer.subarray(0, n));
      size += n;
    }
    parentPort.postMessage({ id, digest: hash.digest('hex'), size });
  } catch (error) {
    parentPort.postMessage({ id, error: { code: error.code ?? null, message: String(error.message ?? error) } });
  } finally {
    if (fd >= 0) closeSync(fd);
  }
});
`;

export interface FileDigest {
  digest: string;
  size: number;
}

interface Job {
  id: number;
  file: string;
  resolve: (result: FileDigest) => void;
  reject: (error: Error) => void;
}

interface Slot {
  worker: Worker;
  job: Job | null;
}

type Reply =
  | { id: number; digest: string; size: number }
  | { id: number; error: { code: string | null; message: string } };

export class HashPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private nextId = 1;
  private closed = false;

  /** `size` workers at most; they start when first needed and do not keep the process alive. */
  constructor(private readonly size = 2) {}

  /** The SHA-256 (hex) and length of the file as it is on disk now. */
  hashFile(file: string): Promise<FileDigest> {
    if (this.closed) return Promise.reject(new Error('the hash pool is closed'));
    return new Promise<FileDigest>((resolve, reject) => {
      this.queue.push({ id: this.nextId++, file, resolve, reject });
      this.dispatch();
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const job of this.queue.splice(0)) job.reject(new Error('the hash pool is closed'));
    await Promise.all(this.slots.splice(0).map((slot) => slot.worker.terminate()));
  }

  private dispatch(): void {
    while (this.queue.length > 0) {
      let slot = this.slots.find((s) => s.job === null);
      if (!slot && this.slots.length < this.size) slot = this.start();
      if (!slot) return;
      const job = this.queue.shift() as Job;
      slot.job = job;
      slot.worker.ref();
      slot.worker.postMessage({ id: job.id, file: job.file });
    }
  }

  private start(): Slot {
    const worker = new Worker(WORKER_SOURCE, { eval: true });
    worker.unref();
    const slot: Slot = { worker, job: null };
    worker.on('message', (reply: Reply) => {
      const job = slot.job;
      if (!job || job.id !== reply.id) return;
      slot.job = null;
      worker.unref();
      if ('error' in reply) {
        job.reject(Object.assign(new Error(reply.error.message), { code: reply.error.code ?? undefined }));
      } else {
        job.resolve({ digest: reply.digest, size: reply.size });
      }
      this.dispatch();
    });
    const fail = (error: Error) => {
      const index = this.slots.indexOf(slot);
      if (index >= 0) this.slots.splice(index, 1);
      slot.job?.reject(error);
      slot.job = null;
      if (!this.closed) this.dispatch();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the hashing worker stopped (exit code ${code})`)));
    this.slots.push(slot);
    return slot;
  }
}
