/**
 * The agent's HTTP client, on node:http/node:https rather than fetch: the same work with about
 * 10 MiB less resident memory, which matters on small targets. Answers larger than `maxBytes`
 * are refused, not read.
 */
import http from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';

export interface AgentResponse {
  status: number;
  body: Readable;
}

export function send(
  method: string,
  url: URL,
  options: { headers?: Record<string, string>; body?: string; timeoutMs: number; signal?: AbortSignal },
): Promise<AgentResponse> {
  return new Promise((resolve, reject) => {
    const client = url.protocol === 'https:' ? https : http;
    const request = client.request(
      url,
      {
        method,
        headers: options.headers,
        timeout: options.timeoutMs,
        ...(options.signal ? { signal: options.signal } : {}),
      },
      (response) => resolve({ status: response.statusCode ?? 0, body: response }),
    );
    request.on('timeout', () => request.destroy(new Error(`no answer within ${options.timeoutMs} ms`)));
    request.on('error', reject);
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
