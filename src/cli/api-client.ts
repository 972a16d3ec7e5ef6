/**
 * A small client for the Gantry HTTP API. Turns every failure into a `CliError` with the exit code
 * it deserves and the server's own message, which already says what to do.
 */
import { CliError, EXIT } from './exit-codes.ts';

export interface ApiClientOptions {
  url: string;
  token: string | undefined;
  timeoutMs?: number;
}

export class ApiClient {
  constructor(private readonly options: ApiClientOptions) {}

  get baseUrl(): string {
    return this.options.url.replace(/\/+$/, '');
  }

  async request<T>(
    method: string,
    path: string,
    body?: unknown,
    query?: Record<string, string | number | boolean | undefined>,
  ): Promise<T> {
    const url = new URL(this.baseUrl + path);
    for (const [key, value] of Object.entries(query ?? {}))
      if (value !== undefined) url.searchParams.set(key, String(value));
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.options.token) headers.authorization = `Bearer ${this.options.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let response: Response;
    try {
      response = await fetch(url, {
        method,
        headers,
        body: body === undefined ? null : JSON.stringify(body),
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 30_000),
      });
    } catch (error) {
      const cause = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).name;
      throw new CliError(
        EXIT.unreachable,
        `Cannot reach the Gantry server at ${this.baseUrl} (${cause}). Is it running? Check --url / GANTRY_URL.`,
      );
    }
    const text = await response.text();
    let parsed: unknown = null;
    if (text !== '') {
      try {
        parsed = JSON.parse(text);
      } catch {
        throw new CliError(
          EXIT.failed,
          `The server at ${this.baseUrl} answered ${response.status} with something that is not JSON. Is this a Gantry server?`,
        );
      }
    }
    if (response.ok) return parsed as T;
    const error = (parsed as { error?: { code?: string; message?: string } } | null)?.error;
    const message = error?.message
      ? `${error.message} [${error.code}]`
      : `The server answered ${response.status}.`;
    const exitCode =
      response.status === 503 ? EXIT.unreachable : response.status >= 500 ? EXIT.failed : EXIT.refused;
    throw new CliError(exitCode, message, parsed);
  }
}
