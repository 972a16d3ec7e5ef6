/**
 * SHA-256 of stored blobs, computed on worker threads that read the files themselves. Hashing a
 * large blob takes as long as reading it, so doing it on the event loop would stall every other
 * request, and a download verified as it streams would be held to the speed of one core doing
 * both the hashing and the socket writes.
 *
 * Two kinds of job, any number at once on each worker (reads are asynchronous, so a long job never
 * holds up a short one): `hashFile` reads a whole file and answers its digest; `stream` reads a
 * file in 1 MiB pieces into a small ring of shared memory, hashes each piece there and then hands
 * it over; the reader gives the slot back once it is done with those bytes (a download, once the
 * socket has taken them). So the bytes a client gets are exactly the bytes that were hashed, and a
 * stream's memory is its ring whatever the blob's size.
 */
import { Worker } from 'node:worker_threads';

/** Plain JavaScript, so the worker needs no TypeScript loader. */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const fs = require('node:fs');
const PIECE = ${1024 * 1024};
const jobs = new Map();
const fail = (job, error) => {
  parentPort.postMessage({ id: job.id, type: 'error', code: error.code ?? null, message: String(error.message ?? error) });
  stop(job);
};
const stop = (job) => {
  jobs.delete(job.id);
  job.stopped = true;
  if (!job.reading && job.fd !== undefined) fs.close(job.fd, () => {});
};
const pump = (job) => {
  if (job.stopped || job.reading) return;
  let slot = -1;
  if (job.ring) {
    if (job.free.length === 0) return;
    slot = job.free.shift();
  }
  job.reading = true;
  const buffer = job.ring ? Buffer.from(job.ring, slot * PIECE, PIECE) : job.buffer;
  fs.read(job.fd, buffer, 0, PIECE, null, (error, n) => {
    job.reading = false;
    if (job.stopped) return fs.close(job.fd, () => {});
    if (error) return fail(job, error);
    if (n === 0) {
      parentPort.postMessage({ id: job.id, type: 'end', digest: job.hash.digest('hex'), size: job.size });
      return stop(job);
    }
    job.hash.update(n === PIECE ? buffer : buffer.subarray(0, n));
    job.size += n;
    // The slot is the reader's now, until it hands it back.
    if (job.ring) parentPort.postMessage({ id: job.id, type: 'piece', slot, length: n });
    pump(job);
  });
};
parentPort.on('message', (m) => {
  if (m.type === 'start') {
    const job = { id: m.id, ring: m.ring, free: m.ring ? Array.from({ length: m.ring.byteLength / PIECE }, (_, i) => i) : [], buffer: m.ring ? undefined : Buffer.allocUnsafe(PIECE), hash: createHash('sha256'), size: 0, reading: false, stopped: false, fd: undefined };
    jobs.set(m.id, job);
    fs.open(m.file, 'r', (error, fd) => {
      if (job.stopped) return error ? undefined : fs.close(fd, () => {});
      if (error) return fail(job, error);
      job.fd = fd;
      pump(job);
    });
  } else {
    const job = jobs.get(m.id);
    if (!job) return;
    if (m.type === 'free') {
      job.free.push(m.slot);
      if (job.fd !== undefined) pump(job);
    } else if (m.type === 'cancel') stop(job);
  }
});
`;

export interface FileDigest {
  digest: string;
  size: number;
}

/** What a streaming job tells its owner. */
export interface StreamHandlers {
  /**
   * The next piece, in order, as a view of shared memory the worker hashed it in: valid until
   * `handle.free(slot)` gives the slot back (copy it first).
   */
  piece(bytes: Buffer, slot: number): void;
  /** Every piece was handed over: the digest and length of all of them. */
  end(result: FileDigest): void;
  /** The file could not be opened or read (`code` as the file system gave it). */
  error(error: Error & { code?: string }): void;
}

export interface StreamHandle {
  /** Gives a piece's slot back for the worker to read into again. */
  free(slot: number): void;
  /** Stops the job (the client went away); nothing more is told. */
  cancel(): void;
}

type Reply =
  | { id: number; type: 'piece'; slot: number; length: number }
  | { id: number; type: 'end'; digest: string; size: number }
  | { id: number; type: 'error'; code: string | null; message: string };

interface Job {
  handlers: StreamHandlers;
  ring: SharedArrayBuffer | undefined;
}

interface Slot {
  worker: Worker;
  jobs: Map<number, Job>;
}

/** The size of a piece: what the worker reads at a time. */
export const PIECE_BYTES = 1024 * 1024;

export class HashPool {
  private readonly slots: Slot[] = [];
  private nextId = 1;
  private closed = false;

  /** `size` workers at most; they start when first needed and keep the process alive only while busy. */
  constructor(private readonly size = 2) {}

  /** The SHA-256 (hex) and length of the file as it is on disk now. */
  hashFile(file: string): Promise<FileDigest> {
    return new Promise<FileDigest>((resolve, reject) => {
      this.start(file, 0, { piece: () => {}, end: resolve, error: reject });
    });
  }

  /**
   * Streams the file through a worker, each piece hashed before it is handed over, in a ring of
   * `pieces` slots of shared memory: the worker reads ahead only into slots given back.
   */
  stream(file: string, pieces: number, handlers: StreamHandlers): StreamHandle {
    return this.start(file, pieces, handlers);
  }

  async close(): Promise<void> {
    this.closed = true;
    const slots = this.slots.splice(0);
    for (const slot of slots)
      for (const job of slot.jobs.values()) job.handlers.error(new Error('the hash pool is closed'));
    await Promise.all(slots.map((slot) => slot.worker.terminate()));
  }

  private start(file: string, pieces: number, handlers: StreamHandlers): StreamHandle {
    const id = this.nextId++;
    if (this.closed) {
      queueMicrotask(() => handlers.error(new Error('the hash pool is closed')));
      return { free: () => {}, cancel: () => {} };
    }
    // The least busy worker, or a new one while there are fewer than `size`.
    let slot = this.slots.reduce<Slot | undefined>(
      (a, b) => (a && a.jobs.size <= b.jobs.size ? a : b),
      undefined,
    );
    if (!slot || (slot.jobs.size > 0 && this.slots.length < this.size)) slot = this.spawn();
    const chosen = slot;
    const ring = pieces > 0 ? new SharedArrayBuffer(pieces * PIECE_BYTES) : undefined;
    chosen.jobs.set(id, { handlers, ring });
    chosen.worker.ref();
    chosen.worker.postMessage({ type: 'start', id, file, ring });
    return {
      free: (index) => {
        if (chosen.jobs.has(id)) chosen.worker.postMessage({ type: 'free', id, slot: index });
      },
      cancel: () => {
        if (!chosen.jobs.has(id)) return;
        chosen.jobs.delete(id);
        if (chosen.jobs.size === 0) chosen.worker.unref();
        chosen.worker.postMessage({ type: 'cancel', id });
      },
    };
  }

  private spawn(): Slot {
    const worker = new Worker(WORKER_SOURCE, { eval: true });
    worker.unref();
    const slot: Slot = { worker, jobs: new Map() };
    const settled = (id: number) => {
      slot.jobs.delete(id);
      if (slot.jobs.size === 0) worker.unref();
    };
    worker.on('message', (reply: Reply) => {
      const job = slot.jobs.get(reply.id);
      if (!job) return;
      if (reply.type === 'piece') {
        const ring = job.ring as SharedArrayBuffer;
        job.handlers.piece(Buffer.from(ring, reply.slot * PIECE_BYTES, reply.length), reply.slot);
      } else if (reply.type === 'end') {
        settled(reply.id);
        job.handlers.end({ digest: reply.digest, size: reply.size });
      } else {
        settled(reply.id);
        job.handlers.error(Object.assign(new Error(reply.message), { code: reply.code ?? undefined }));
      }
    });
    const fail = (error: Error) => {
      const index = this.slots.indexOf(slot);
      if (index >= 0) this.slots.splice(index, 1);
      const jobs = [...slot.jobs.values()];
      slot.jobs.clear();
      for (const job of jobs) job.handlers.error(error);
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the hashing worker stopped (exit code ${code})`)));
    this.slots.push(slot);
    return slot;
  }
}
