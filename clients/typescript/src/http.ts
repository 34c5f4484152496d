/**
 * The one place that calls fetch: URLs, headers, the bearer token, timeouts, the caller's
 * AbortSignal, and the mapping of every failure onto the error tree.
 */

import {
  APIConnectionError,
  APIError,
  APITimeoutError,
  APIUserAbortError,
  errorFromResponse,
} from "./errors.js";

export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

export interface ClientOptions {
  /** the gateway's address, e.g. `http://127.0.0.1:8000` (a path prefix is kept) */
  baseUrl: string;
  /** bearer token: the admin token, an API key (`cgw_...`) or a JWT */
  token?: string;
  /** the org the Conversation Service's `org_id` defaults to */
  orgId?: string;
  /** default: the platform's `fetch` */
  fetch?: FetchLike;
  /** ms a request may take; for a stream, until its headers arrive (default 600 000) */
  timeout?: number;
  /** ms a stream may stay silent before it counts as dropped and is resumed (default 60 000; the gateway pings every 15 s) */
  idleTimeout?: number;
  /** resumes in a row, without a new event in between, before a dropped stream is given up (default 5) */
  maxResumes?: number;
  /** sent with every request */
  headers?: Record<string, string>;
}

export interface RequestOptions {
  signal?: AbortSignal;
  /** ms, instead of the client's `timeout` */
  timeout?: number;
  headers?: Record<string, string>;
}

export type QueryValue = string | number | boolean | null | undefined;

export interface Call {
  method: string;
  /** the filled path; may carry a query of its own (`conversation?take=5`, as the seeds write it) */
  path: string;
  query?: object;
  /** sent as JSON when present */
  body?: unknown;
  accept: "application/json" | "text/event-stream";
  headers?: Record<string, string>;
  /** false: no Authorization header (a resume_token in the query stands in for it) */
  auth?: boolean;
}

/** An answer whose body is still to be read. */
export interface Opened {
  response: Response;
  /** ends the request: the connection is closed, a pending read rejects */
  close(): void;
}

const DEFAULT_TIMEOUT = 600_000;

export class Transport {
  readonly baseUrl: string;
  readonly token: string | undefined;
  readonly orgId: string | undefined;
  readonly timeout: number;
  readonly idleTimeout: number;
  readonly maxResumes: number;
  readonly #fetch: FetchLike;
  readonly #headers: Record<string, string>;

  constructor(options: ClientOptions) {
    if (typeof options.baseUrl !== "string") throw new TypeError("baseUrl is required");
    if (options.token !== undefined && /[\r\n]/.test(options.token)) throw new TypeError("token holds a line break");
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.token = options.token;
    this.orgId = options.orgId;
    this.timeout = options.timeout ?? DEFAULT_TIMEOUT;
    this.idleTimeout = options.idleTimeout ?? 60_000;
    this.maxResumes = options.maxResumes ?? 5;
    this.#headers = { ...options.headers };
    const platformFetch = globalThis.fetch as FetchLike | undefined;
    if (options.fetch === undefined && platformFetch === undefined) {
      throw new TypeError("no fetch on this platform (Node 18+ and browsers have one): pass options.fetch");
    }
    // called through globalThis: browsers refuse a fetch invoked as another object's method
    this.#fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  }

  url(path: string, query?: object): string {
    const url = this.baseUrl + (path.startsWith("/") ? path : `/${path}`);
    const search = new URLSearchParams();
    for (const [name, value] of Object.entries(query ?? {}) as [string, QueryValue][]) {
      if (value !== undefined && value !== null) search.append(name, String(value));
    }
    const text = search.toString();
    if (text === "") return url;
    return url + (url.includes("?") ? "&" : "?") + text;
  }

  /** A JSON answer, read within the request's timeout. */
  async json<T>(call: Call, options: RequestOptions = {}): Promise<T> {
    const request = this.#start(call, options);
    try {
      const response = await request.fetched;
      const text = await response.text();
      try {
        return JSON.parse(text) as T;
      } catch (err) {
        throw new APIError(`the gateway's answer is not JSON: ${text.slice(0, 100)}`, "invalid_response", { cause: err });
      }
    } catch (err) {
      throw request.failure(err);
    } finally {
      request.done();
    }
  }

  /** An answer whose headers have arrived; the timeout ends there, the caller's signal does not. */
  async open(call: Call, options: RequestOptions = {}): Promise<Opened> {
    const request = this.#start(call, options);
    try {
      const response = await request.fetched;
      request.stopTimer();
      return { response, close: request.close };
    } catch (err) {
      request.done();
      throw request.failure(err);
    }
  }

  #start(call: Call, options: RequestOptions) {
    const user = options.signal;
    const controller = new AbortController();
    let timedOut = false;
    const onAbort = () => controller.abort(user?.reason);
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort(new APITimeoutError());
    }, options.timeout ?? this.timeout);
    const stopTimer = () => clearTimeout(timer);
    const done = () => {
      stopTimer();
      user?.removeEventListener("abort", onAbort);
    };
    const close = () => {
      done();
      controller.abort(new APIConnectionError("closed by the client"));
    };
    const failure = (err: unknown): APIError => {
      if (user?.aborted) return err instanceof APIUserAbortError ? err : new APIUserAbortError(undefined, { cause: err });
      if (err instanceof APIError) return err;
      if (timedOut) return new APITimeoutError(undefined, { cause: err });
      return new APIConnectionError(describe(err), { cause: err });
    };
    const fetched = (async () => {
      if (user?.aborted) throw new APIUserAbortError();
      user?.addEventListener("abort", onAbort, { once: true });
      const response = await this.#fetch(this.url(call.path, call.query), {
        method: call.method,
        headers: this.#headersFor(call, options),
        body: call.body === undefined ? null : JSON.stringify(call.body),
        signal: controller.signal,
        cache: "no-store",
      });
      if (!response.ok) throw await errorFromResponse(response);
      return response;
    })();
    return { fetched, failure, done, stopTimer, close };
  }

  #headersFor(call: Call, options: RequestOptions): Record<string, string> {
    const headers: Record<string, string> = { Accept: call.accept, ...this.#headers };
    if (call.body !== undefined) headers["Content-Type"] = "application/json";
    if (call.auth !== false && this.token) headers["Authorization"] = `Bearer ${this.token}`;
    return { ...headers, ...call.headers, ...options.headers };
  }
}

function describe(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } } | null)?.cause;
  const detail = cause?.code ?? cause?.message;
  const message = err instanceof Error ? err.message : String(err);
  return detail ? `${message} (${detail})` : message;
}
