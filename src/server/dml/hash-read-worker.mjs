// Reads a blob, hashes it, and hands the bytes to the main thread for the socket, off the main
// thread. At most WINDOW pieces are outstanding until the main thread acknowledges them.
// (Reading synchronously here measured faster than overlapping reads on the I/O pool.)
// Messages out: { chunk: Uint8Array } (transferred), { done: hex }, { error: { code, message } }.
// In: { ack: n }. Plain JavaScript: a worker does not share the main thread's loader.
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';

const PIECE = 1024 * 1024;
const WINDOW = 8;
const hash = createHash('sha256');
let fd;
let outstanding = 0;
let finished = false;

function fail(error) {
  finished = true;
  parentPort.postMessage({ error: { code: error.code ?? null, message: error.message } });
}

function pump() {
  try {
    while (!finished && outstanding < WINDOW) {
      const buffer = Buffer.allocUnsafeSlow(PIECE);
      const n = readSync(fd, buffer, 0, PIECE, null);
      if (n === 0) {
        finished = true;
        closeSync(fd);
        parentPort.postMessage({ done: hash.digest('hex') });
        return;
      }
      const view = new Uint8Array(buffer.buffer, 0, n);
      hash.update(view);
      outstanding += 1;
      parentPort.postMessage({ chunk: view }, [buffer.buffer]);
    }
  } catch (error) {
    fail(error);
  }
}

parentPort.on('message', (message) => {
  if (message.ack) {
    outstanding -= message.ack;
    pump();
  }
});
try {
  fd = openSync(workerData.path, 'r');
  pump();
} catch (error) {
  fail(error);
}
