// Server-sent events read through fetch(): the event-stream parsing rules of the HTML
// standard (https://html.spec.whatwg.org/multipage/server-sent-events.html), so a POST with
// an Authorization header can stream exactly as a native EventSource would.
//
// Frames may arrive split anywhere, even between the CR and LF of one line break; lines end
// with CRLF, LF or CR; `:` lines are comments; several `data:` lines join with "\n"; an `id:`
// holding NUL is ignored; the last id seen stays the id of later events; a frame the stream
// ends in the middle of is dropped.

export class SSEParser {
  constructor(onEvent, { onComment = null, onRetry = null } = {}) {
    this.onEvent = onEvent;
    this.onComment = onComment;
    this.onRetry = onRetry;
    this.buffer = "";
    this.skipLF = false; // the previous chunk ended in CR: a leading LF belongs to it
    this.atStart = true;
    this.type = "";
    this.data = [];
    this.lastEventId = "";
  }

  push(chunk) {
    if (!chunk) return;
    if (this.skipLF && chunk[0] === "\n") chunk = chunk.slice(1);
    this.skipLF = false;
    if (this.atStart && chunk) {
      if (chunk[0] === "\uFEFF") chunk = chunk.slice(1);
      this.atStart = false;
    }
    const text = this.buffer + chunk;
    const lineBreak = /\r\n|\r|\n/g;
    let start = 0;
    let match;
    while ((match = lineBreak.exec(text)) !== null) {
      this.line(text.slice(start, match.index));
      start = match.index + match[0].length;
      if (match[0] === "\r" && start === text.length) this.skipLF = true;
    }
    this.buffer = text.slice(start);
  }

  // The stream is over: an unterminated frame is discarded, as the standard says.
  finish() {
    const partial = this.buffer !== "" || this.data.length > 0 || this.type !== "";
    this.buffer = "";
    this.type = "";
    this.data = [];
    return partial;
  }

  line(line) {
    if (line === "") return this.dispatch();
    if (line[0] === ":") {
      if (this.onComment) this.onComment(line.slice(1).replace(/^ /, ""));
      return;
    }
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value[0] === " ") value = value.slice(1);
    if (field === "event") this.type = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id") {
      if (!value.includes("\0")) this.lastEventId = value;
    } else if (field === "retry") {
      if (/^[0-9]+$/.test(value) && this.onRetry) this.onRetry(Number(value));
    }
  }

  dispatch() {
    if (this.data.length === 0) {
      this.type = "";
      return;
    }
    const event = { type: this.type || "message", data: this.data.join("\n"), id: this.lastEventId };
    this.type = "";
    this.data = [];
    this.onEvent(event);
  }
}

// Read a fetch Response body to its end, calling onEvent for each event. Resolves when the
// server closes the stream; rejects when the connection breaks or `signal` aborts.
export async function readEventStream(body, onEvent, options = {}) {
  const reader = body.getReader();
  const decoder = new TextDecoder(); // UTF-8; drops a leading BOM; joins split characters
  const parser = new SSEParser(onEvent, options);
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      parser.push(decoder.decode(value, { stream: true }));
    }
    parser.push(decoder.decode());
    parser.finish();
  } finally {
    reader.releaseLock();
  }
}

// `<message_id>:<seq>` -> seq (0 when absent or malformed).
export function eventSeq(id) {
  const text = id || "";
  const seq = Number(text.slice(text.lastIndexOf(":") + 1));
  return Number.isInteger(seq) && seq > 0 ? seq : 0;
}
