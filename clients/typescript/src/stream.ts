/**
 * A chat stream as an async iterator of typed events that survives a dropped connection:
 * it reattaches through the gateway's resume route with `Last-Event-ID` and yields every
 * event exactly once, in order, whatever was replayed.
 */

import {
  APIConnectionError,
  APIError,
  APIUserAbortError,
  ServiceUnavailableError,
} from "./errors.js";
import type { Opened, RequestOptions } from "./http.js";
import { type SSEFrame, SSEParser } from "./sse.js";
import type { StopAccepted, StreamEnd, StreamError, StreamEvent, StreamStart } from "./types.js";

/** How a stream reaches its API style's stop and resume routes. */
export interface StreamLink {
  /** the resume route, after `lastEventId` (from the first event when undefined) */
  reconnect(start: StreamStart, lastEventId: string | undefined, signal: AbortSignal, options?: RequestOptions): Promise<Opened>;
  stop(start: StreamStart): Promise<StopAccepted>;
  eventSourceUrl(start: StreamStart, lastEventId: string | undefined): string;
}

export interface StreamOptions {
  /** aborts the stream: the iteration throws APIUserAbortError (the gateway is not told: see `stop()`) */
  signal?: AbortSignal;
  /** ms without a byte before the connection counts as dropped (default: the client's idleTimeout) */
  idleTimeout?: number;
  /** resumes in a row without a new event before giving up (default: the client's maxResumes; 0: never resume) */
  maxResumes?: number;
}

/** What a whole stream said. */
export interface ChatResult {
  start: StreamStart;
  text: string;
  error: StreamError | undefined;
  end: StreamEnd;
}

export type ResolvedStreamOptions = Required<Omit<StreamOptions, "signal">> & Pick<StreamOptions, "signal">;

const MAX_BACKOFF_MS = 4000;
const MAX_RETRY_MS = 30_000; // a server's `retry:` is followed, up to this

export function resolveStreamOptions(
  options: StreamOptions, defaults: { idleTimeout: number; maxResumes: number },
): ResolvedStreamOptions {
  return {
    signal: options.signal,
    idleTimeout: options.idleTimeout ?? defaults.idleTimeout,
    maxResumes: options.maxResumes ?? defaults.maxResumes,
  };
}

export class ChatStream implements AsyncIterable<StreamEvent> {
  #start: StreamStart | undefined;
  #text = "";
  #lastEventId: string | undefined;
  #error: StreamError | undefined;
  #end: StreamEnd | undefined;
  #resumes = 0;

  /** the stream's start event: it has arrived when the stream is handed out */
  get start(): StreamStart {
    return this.#start as StreamStart;
  }

  get messageId(): string {
    return this.start.message_id;
  }

  /** the answer so far: every content delta, once */
  get text(): string {
    return this.#text;
  }

  /** `<message_id>:<seq>` of the last content event, where a later resume would continue */
  get lastEventId(): string | undefined {
    return this.#lastEventId;
  }

  /** the stream's error event, if it had one */
  get error(): StreamError | undefined {
    return this.#error;
  }

  /** the end event, once it has arrived */
  get end(): StreamEnd | undefined {
    return this.#end;
  }

  /** how many times the connection was re-established */
  get resumes(): number {
    return this.#resumes;
  }

  readonly #link: StreamLink;
  readonly #controller: AbortController;
  readonly #release: () => void;
  readonly #idleTimeout: number;
  readonly #maxResumes: number;
  readonly #events: AsyncGenerator<StreamEvent>;
  #lastSeq = 0;
  #first: StreamEvent | undefined;
  #iterated = false;
  #retryMs: number | null = null;

  private constructor(
    link: StreamLink, first: Opened, controller: AbortController, release: () => void,
    options: ResolvedStreamOptions,
  ) {
    this.#link = link;
    this.#controller = controller;
    this.#release = release;
    this.#idleTimeout = options.idleTimeout;
    this.#maxResumes = options.maxResumes;
    this.#events = this.#run(first);
  }

  /**
   * Opens a stream and reads up to its start event, so that `start` (message id,
   * resume_token), `stop()` and `eventSourceUrl()` are there before the first iteration.
   */
  static async open(
    link: StreamLink, connect: (signal: AbortSignal) => Promise<Opened>, options: ResolvedStreamOptions,
  ): Promise<ChatStream> {
    const user = options.signal;
    if (user?.aborted) throw new APIUserAbortError(undefined, { cause: user.reason });
    const controller = new AbortController();
    const onAbort = () => controller.abort(new APIUserAbortError(undefined, { cause: user?.reason }));
    user?.addEventListener("abort", onAbort, { once: true });
    const release = () => user?.removeEventListener("abort", onAbort);
    let opened: Opened;
    try {
      opened = await connect(controller.signal);
    } catch (err) {
      release();
      throw err;
    }
    const stream = new ChatStream(link, opened, controller, release, options);
    const first = await stream.#events.next();
    if (first.done || first.value.type !== "start") {
      await stream.#events.return(undefined);
      throw new APIError("the stream did not begin with a start event", "invalid_stream");
    }
    stream.#first = first.value;
    return stream;
  }

  /** Ends the generation on the gateway (whichever worker runs it): the stream then ends with `end` {cancelled}. Null when it has ended already. */
  async stop(): Promise<StopAccepted | null> {
    if (this.#end) return null;
    return this.#link.stop(this.start);
  }

  /** Stops reading: the iteration throws APIUserAbortError. The gateway is not told (see `stop()`). */
  abort(): void {
    this.#controller.abort(new APIUserAbortError());
  }

  /**
   * A URL a browser's native EventSource can attach to, with the start event's resume_token
   * in place of the bearer token and the events already read left out (`last_event_id`).
   */
  eventSourceUrl(): string {
    return this.#link.eventSourceUrl(this.start, this.#lastEventId);
  }

  /** Reads the stream to its end. */
  async collect(): Promise<ChatResult> {
    for await (const event of this) void event;
    if (!this.#end) throw new APIError("the stream ended without an end event", "invalid_stream");
    return { start: this.start, text: this.#text, error: this.#error, end: this.#end };
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<StreamEvent> {
    if (this.#iterated) throw new TypeError("a ChatStream can be iterated once");
    this.#iterated = true;
    try {
      const first = this.#first;
      this.#first = undefined;
      if (first) yield first;
      yield* this.#events;
    } finally {
      await this.#events.return(undefined); // a `break` closes the connection
    }
  }

  async *#run(first: Opened): AsyncGenerator<StreamEvent> {
    const signal = this.#controller.signal;
    let opened: Opened | null = first;
    let failures = 0; // resumes in a row that brought no new event
    let cause: unknown;
    try {
      for (;;) {
        if (opened !== null) {
          cause = new APIConnectionError("the stream closed before its end event");
          try {
            for await (const frame of this.#frames(opened)) {
              const event = toEvent(frame);
              if (event === null || !this.#isNew(event)) continue;
              failures = 0;
              yield event;
              if (event.type === "end") return;
            }
          } catch (err) {
            if (signal.aborted) throw abortError(signal, err);
            if (err instanceof APIError && !(err instanceof APIConnectionError)) throw err; // a malformed stream
            cause = err;
          } finally {
            opened.close();
          }
          opened = null;
        }
        if (signal.aborted) throw abortError(signal, cause);
        if (this.#start === undefined) {
          throw new APIConnectionError("the connection dropped before the stream started", { cause });
        }
        if (failures >= this.#maxResumes) {
          throw new APIConnectionError(`the stream dropped; ${failures} resume(s) in a row brought nothing new`, { cause });
        }
        failures += 1;
        await sleep(this.#backoff(failures), signal);
        try {
          opened = await this.#link.reconnect(this.#start, this.#lastEventId, signal);
          this.#resumes += 1;
        } catch (err) {
          if (signal.aborted) throw abortError(signal, err);
          if (!(err instanceof APIConnectionError || err instanceof ServiceUnavailableError)) throw err;
          cause = err;
        }
      }
    } finally {
      this.#release();
    }
  }

  /** The frames of one connection; a silence longer than idleTimeout closes it. */
  async *#frames(opened: Opened): AsyncGenerator<SSEFrame> {
    const body = opened.response.body;
    if (body === null) throw new APIConnectionError("the stream's answer has no body");
    const reader = body.getReader();
    const decoder = new TextDecoder(); // UTF-8; joins characters split across chunks
    const parser = new SSEParser();
    for (;;) {
      // only while waiting on the network: a slow consumer is not a silent server
      const idle = setTimeout(opened.close, this.#idleTimeout);
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } finally {
        clearTimeout(idle);
      }
      const frames = parser.push(chunk.done ? decoder.decode() : decoder.decode(chunk.value, { stream: true }));
      if (parser.retry !== null) this.#retryMs = Math.min(parser.retry, MAX_RETRY_MS);
      yield* frames;
      if (chunk.done) return;
    }
  }

  /** Records the event; false when it was seen already (a resumed connection replays). */
  #isNew(event: StreamEvent): boolean {
    switch (event.type) {
      case "start":
        if (this.#start !== undefined) return false;
        this.#start = event.data;
        return true;
      case "content":
        if (event.seq <= this.#lastSeq) return false;
        this.#lastSeq = event.seq;
        this.#lastEventId = event.id;
        this.#text += event.data.delta;
        return true;
      case "error":
        if (this.#error !== undefined) return false;
        this.#error = event.data;
        return true;
      case "end":
        this.#end = event.data;
        return true;
    }
  }

  #backoff(attempt: number): number {
    const base = this.#retryMs ?? Math.min(250 * 2 ** (attempt - 1), MAX_BACKOFF_MS);
    return base * (0.5 + Math.random() / 2); // jitter: clients cut off together come back apart
  }
}

/** A typed event from a frame; null for a type the contract does not name. */
function toEvent(frame: SSEFrame): StreamEvent | null {
  const type = frame.type;
  if (type !== "start" && type !== "content" && type !== "error" && type !== "end") return null;
  let data: unknown;
  try {
    data = JSON.parse(frame.data);
  } catch (err) {
    throw new APIError(`a ${type} event's data is not JSON: ${frame.data.slice(0, 100)}`, "invalid_stream", { cause: err });
  }
  if (typeof data !== "object" || data === null) {
    throw new APIError(`a ${type} event's data is not an object`, "invalid_stream");
  }
  if (type !== "content") return { type, data } as StreamEvent;
  const seq = eventSeq(frame.id);
  if (seq === 0) throw new APIError(`a content event without a valid id: ${frame.id}`, "invalid_stream");
  return { type, data: data as { delta: string }, id: frame.id, seq };
}

/** `<message_id>:<seq>` -> seq; 0 when malformed. */
export function eventSeq(id: string): number {
  const seq = Number(id.slice(id.lastIndexOf(":") + 1));
  return Number.isSafeInteger(seq) && seq > 0 ? seq : 0;
}

function abortError(signal: AbortSignal, cause: unknown): APIUserAbortError {
  return signal.reason instanceof APIUserAbortError ? signal.reason : new APIUserAbortError(undefined, { cause });
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError(signal, signal.reason));
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
