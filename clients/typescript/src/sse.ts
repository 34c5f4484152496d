/**
 * Server-sent events, parsed by the HTML standard's event-stream rules
 * (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation).
 *
 * Lines end with CRLF, LF or CR, and nothing else: U+2028, U+2029 and U+0085 are text that
 * a model may well write, so nothing here uses a "lines" helper or a regex `.` that treats
 * them as breaks. Chunks may split a frame anywhere, even between the CR and LF of one break.
 * A frame is bounded (`maxFrameLength`), so a stream that never ends a line cannot grow
 * the client's memory without limit.
 */

import { APIError } from "./errors.js";

export interface SSEFrame {
  /** the `event:` field, "message" when absent */
  type: string;
  /** the `data:` lines joined with "\n" */
  data: string;
  /** the last `id:` seen on this stream so far (the standard's "last event ID buffer") */
  id: string;
}

const CR = 13;
const LF = 10;
/** characters a frame's unfinished line and data may hold: far above any event the gateway sends */
export const MAX_FRAME_LENGTH = 4 * 1024 * 1024;

export class SSEParser {
  readonly #maxFrameLength: number;
  #buffer = "";
  #afterCR = false; // the last chunk ended in CR: a leading LF belongs to that break
  #atStart = true;
  #type = "";
  #data: string[] = [];
  #lastEventId = "";
  #dataLength = 0;
  /** the last `retry:` value, in milliseconds */
  retry: number | null = null;

  constructor(options: { maxFrameLength?: number } = {}) {
    this.#maxFrameLength = options.maxFrameLength ?? MAX_FRAME_LENGTH;
  }

  /** Feeds decoded text; returns the frames it completed. */
  push(chunk: string): SSEFrame[] {
    const frames: SSEFrame[] = [];
    if (chunk === "") return frames; // a decoder holding half a character: nothing yet
    let text = chunk;
    if (this.#afterCR) {
      this.#afterCR = false;
      if (text.charCodeAt(0) === LF) text = text.slice(1);
      if (text === "") return frames;
    }
    if (this.#atStart) {
      this.#atStart = false;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    const scanned = this.#buffer.length; // the buffer holds no line break: scan only what is new
    text = this.#buffer + text;
    let start = 0;
    for (let i = scanned; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c !== CR && c !== LF) continue;
      this.#line(text.slice(start, i), frames);
      if (c === CR) {
        if (i + 1 === text.length) this.#afterCR = true;
        else if (text.charCodeAt(i + 1) === LF) i++;
      }
      start = i + 1;
    }
    this.#buffer = text.slice(start);
    if (this.#buffer.length + this.#dataLength > this.#maxFrameLength) {
      throw new APIError(`an event-stream frame is over ${this.#maxFrameLength} characters`, "invalid_stream");
    }
    return frames;
  }

  /** The stream ended: a frame without its blank line is dropped, as the standard says. */
  finish(): boolean {
    const partial = this.#buffer !== "" || this.#data.length > 0 || this.#type !== "";
    this.#buffer = "";
    this.#type = "";
    this.#data = [];
    this.#dataLength = 0;
    return partial;
  }

  #line(line: string, frames: SSEFrame[]): void {
    if (line === "") {
      this.#dispatch(frames);
      return;
    }
    if (line.charCodeAt(0) === 0x3a /* : */) return; // a comment (`: ping`)
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.charCodeAt(0) === 0x20) value = value.slice(1);
    switch (field) {
      case "event":
        this.#type = value;
        break;
      case "data":
        this.#data.push(value);
        this.#dataLength += value.length + 1;
        break;
      case "id":
        if (!value.includes("\0")) this.#lastEventId = value;
        break;
      case "retry":
        if (/^[0-9]+$/.test(value)) this.retry = Number(value);
        break;
      default:
        break; // unknown fields are ignored
    }
  }

  #dispatch(frames: SSEFrame[]): void {
    if (this.#data.length > 0) {
      frames.push({ type: this.#type || "message", data: this.#data.join("\n"), id: this.#lastEventId });
    }
    this.#type = "";
    this.#data = [];
    this.#dataLength = 0;
  }
}
