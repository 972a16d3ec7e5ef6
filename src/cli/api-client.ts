/**
 * A small client for the Gantry HTTP API. Turns every failure into a `CliError` with the exit code
 * it deserves and the server's own message, which already says what to do.
 */
import { Readable } from 'node:stream';
import { CliError, EXIT } from './exit-codes.ts';

export interface ApiClientOptions {
  url: string;
  token: string | undefined;
  timeoutMs?: number;
}

/** Query parameters; an array is sent as the key repeated (attr=a&attr=b). */
type Query = Record<string, string | number | boolean | readonly string[] | undefined>;

export class ApiClient {
  constructor(private readonly options: ApiClientOptions) {}

  get baseUrl(): string {
    return this.options.url.replace(/\/+$/, '');
  }

  async request<T>(method: string, path: string, body?: unknown, query?: Query): Promise<T> {
    const headers: Record<string, string> = {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    const response = await this.send(
      method,
      this.url(path, query),
      headers,
      body === undefined ? null : JSON.stringify(body),
      this.options.timeoutMs ?? 30_000,
    );
    return this.parse<T>(response);
  }

  /** GETs a document that is not JSON (the iCalendar feed); a refusal is a CliError like any request. */
  async getText(path: string, query: Query, accept: string): Promise<string> {
    const response = await this.send(
      'GET',
      this.url(path, query),
      { accept },
      null,
      this.options.timeoutMs ?? 30_000,
    );
    if (!response.ok) await this.fail(response);
    return response.text();
  }

  /** Sends a text body of the given type (CSV imports). */
  async requestText<T>(method: string, path: string, text: string, contentType: string): Promise<T> {
    const response = await this.send(
      method,
      this.url(path),
      { 'content-type': contentType },
      text,
      this.options.timeoutMs ?? 30_000,
    );
    return this.parse<T>(response);
  }

  /** Sends bytes as the body, streamed (never read whole); no time limit, as large uploads take long. */
  async upload<T>(path: string, query: Query, body: Readable, size: number): Promise<T> {
    const headers = { 'content-type': 'application/octet-stream', 'content-length': String(size) };
    const response = await this.send(
      'POST',
      this.url(path, query),
      headers,
      Readable.toWeb(body) as ReadableStream,
      0,
    );
    return this.parse<T>(response);
  }

  /** Starts a download; the caller reads the body. A refusal becomes a CliError like any request. */
  async download(path: string, headers: Record<string, string> = {}): Promise<Response> {
    const response = await this.send('GET', this.url(path), headers, null, 0);
    if (!response.ok) await this.fail(response);
    return response;
  }

  /**
   * Opens a long-lived stream (server-sent events) with no time limit; aborting `signal` closes it.
   * A refusal is a CliError like any request.
   */
  async stream(path: string, accept: string, signal: AbortSignal): Promise<Response> {
    const response = await this.send('GET', this.url(path), { accept }, null, 0, signal);
    if (!response.ok) await this.fail(response);
    return response;
  }

  private url(path: string, query?: Query): URL {
    const url = new URL(this.baseUrl + path);
    for (const [key, value] of Object.entries(query ?? {})) {
      if (value === undefined) continue;
      if (Array.isArray(value)) for (const item of value) url.searchParams.append(key, item);
      else url.searchParams.set(key, String(value));
    }
    return url;
  }

  private async send(
    method: string,
    url: URL,
    extra: Record<string, string>,
    body: string | ReadableStream | null,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<Response> {
    const headers: Record<string, string> = { accept: 'application/json', ...extra };
    if (this.options.token) headers.authorization = `Bearer ${this.options.token}`;
    try {
      return await fetch(url, {
        method,
        headers,
        body,
        ...(body instanceof ReadableStream ? { duplex: 'half' } : {}),
        ...(timeoutMs > 0 ? { signal: AbortSignal.timeout(timeoutMs) } : signal ? { signal } : {}),
      } as RequestInit);
    } catch (error) {
      const cause = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).name;
      throw new CliError(
        EXIT.unreachable,
        `Cannot reach the Gantry server at ${this.baseUrl} (${cause}). Is it running? Check --url / GANTRY_URL.`,
      );
    }
  }

  private async parse<T>(response: Response): Promise<T> {
    if (!response.ok) await this.fail(response);
    const text = await response.text();
    if (text === '') return null as T;
    try {
      return JSON.parse(text) as T;
    } catch {
      throw this.notJson(response.status);
    }
  }

  private async fail(response: Response): Promise<never> {
    const text = await response.text();
    let parsed: unknown = null;
    try {
      parsed = text === '' ? null : JSON.parse(text);
    } catch {
      throw this.notJson(response.status);
    }
    const error = (parsed as { error?: { code?: string; message?: string } } | null)?.error;
    const message = error?.message
      ? `${error.message} [${error.code}]`
      : `The server answered ${response.status}.`;
    const exitCode =
      response.status === 503 ? EXIT.unreachable : response.status >= 500 ? EXIT.failed : EXIT.refused;
    throw new CliError(exitCode, message, parsed);
  }

  private notJson(status: number): CliError {
    return new CliError(
      EXIT.failed,
      `The server at ${this.baseUrl} answered ${status} with something that is not JSON. Is this a Gantry server?`,
    );
  }
}
