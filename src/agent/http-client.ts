/**
 * The agent's HTTP client, on node:http/node:https rather than fetch: the same work with about
 * 10 MiB less resident memory, which matters on small targets. Answers larger than `maxBytes`
 * are refused, not read. An answer must keep coming: silence for `timeoutMs` ends it, and so does
 * a trickle (less than MIN_BYTES_PER_SECOND over any `timeoutMs`), so a peer sending one byte at a
 * time cannot hold a heartbeat or a download open forever.
 */
import http from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';

export interface AgentResponse {
  status: number;
  body: Readable;
}

/** The slowest an answer may come, on average over each `timeoutMs`, before it is given up. */
export const MIN_BYTES_PER_SECOND = 1024;

export function send(
  method: string,
  url: URL,
  options: { headers?: Record<string, string>; body?: string; timeoutMs: number; signal?: AbortSignal },
): Promise<AgentResponse> {
  return new Promise((resolve, reject) => {
    const client = url.protocol === 'https:' ? https : http;
    let answer: http.IncomingMessage | undefined;
    let guard: NodeJS.Timeout | undefined;
    const stopGuard = () => clearInterval(guard);
    const request = client.request(
      url,
      {
        method,
        headers: options.headers,
        timeout: options.timeoutMs,
        ...(options.signal ? { signal: options.signal } : {}),
      },
      (response) => {
        answer = response;
        response.once('end', stopGuard);
        response.once('close', stopGuard);
        resolve({ status: response.statusCode ?? 0, body: response });
      },
    );
    request.on('timeout', () => request.destroy(new Error(`no answer within ${options.timeoutMs} ms`)));
    // The socket timeout only notices silence. A peer that sends a byte now and then is never
    // silent, so every `timeoutMs` the answer must also have brought enough bytes, or be over.
    request.once('socket', (socket) => {
      const least = Math.ceil((MIN_BYTES_PER_SECOND * options.timeoutMs) / 1000);
      let mark = socket.bytesRead;
      guard = setInterval(() => {
        const got = socket.bytesRead - mark;
        mark = socket.bytesRead;
        // Silence is the socket timeout's to report; this is about a trickle.
        if (got === 0 || got >= least || answer?.complete) return;
        stopGuard();
        const error = new Error(
          `the answer is too slow: ${got} bytes in ${options.timeoutMs} ms, less than ${MIN_BYTES_PER_SECOND} bytes/s`,
        );
        if (answer) answer.destroy(error);
        else request.destroy(error);
      }, options.timeoutMs);
      guard.unref();
    });
    request.once('close', stopGuard);
    request.on('error', (error) => {
      stopGuard();
      reject(error);
    });
    request.end(options.body);
  });
}

/** Reads a whole (small) answer as text, refusing one longer than `maxBytes`. */
export async function readText(body: Readable, maxBytes = 1024 * 1024): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) {
      body.destroy();
      throw new Error(`the server's answer is larger than ${maxBytes} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}
