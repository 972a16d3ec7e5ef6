// Receives an artifact's bytes from the main thread, hashes them and writes them to the temporary
// file, off the main thread, so hashing and writing run beside the receiving of the next bytes.
// Messages in: { chunk: Uint8Array } (transferred), { end: true }. Out: { acked: n }, { done: hex },
// { error: { code, message } }. Plain JavaScript: a worker does not share the main thread's loader.
import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';

const hash = createHash('sha256');
let fd;
const fail = (error) => {
  if (fd !== undefined) {
    try {
      closeSync(fd);
    } catch {}
  }
  fd = undefined;
  parentPort.postMessage({ error: { code: error.code ?? null, message: error.message } });
};
try {
  fd = openSync(workerData.path, 'wx', 0o600);
} catch (error) {
  fail(error);
}
parentPort.on('message', (message) => {
  if (fd === undefined) return;
  try {
    if (message.chunk) {
      const chunk = message.chunk;
      hash.update(chunk);
      let offset = 0;
      while (offset < chunk.length) offset += writeSync(fd, chunk, offset);
      parentPort.postMessage({ acked: chunk.length });
    } else if (message.end) {
      fsyncSync(fd);
      closeSync(fd);
      fd = undefined;
      parentPort.postMessage({ done: hash.digest('hex') });
    }
  } catch (error) {
    fail(error);
  }
});
