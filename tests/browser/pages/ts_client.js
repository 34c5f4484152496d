// Drives @chat-gateway/client's ESM build from a page on another origin. Query: gw (where
// the client connects: a proxy in front of the gateway that breaks the first stream), token,
// org, session (on a paced model), long (a session on a long model). Results land in
// window.result; window.result.done is set at the end.

import { BadRequestError, GatewayClient } from "@chat-gateway/client";

const q = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const result = (window.result = { ids: [], events: [] });
const gw = new GatewayClient({ baseUrl: q.get("gw"), token: q.get("token"), orgId: q.get("org") });
const chat = gw.conversationService;

async function streamed() {
  const stream = await chat.streamChat({ chat_session_id: q.get("session"), message: "stream me a reply" });
  $("status").textContent = "streaming";
  for await (const event of stream) {
    result.events.push(event.type);
    if (event.type === "content") {
      result.ids.push(event.id);
      $("answer").append(event.data.delta); // rendered as it arrives
      $("events").textContent = String(result.ids.length);
      $("resumes").textContent = String(stream.resumes);
    } else if (event.type === "end") {
      $("finish").textContent = event.data.finish_reason;
      $("usage").textContent = `${event.data.usage.input_tokens} in · ${event.data.usage.output_tokens} out`;
    }
  }
  $("status").textContent = `done (resumed ${stream.resumes}×)`;
  Object.assign(result, { messageId: stream.messageId, text: stream.text, resumes: stream.resumes, finish: stream.end.finish_reason });
  return stream;
}

// a native EventSource cannot send Authorization: the URL carries the stream's resume_token
function replayed(stream) {
  return new Promise((resolve, reject) => {
    const source = new EventSource(gw.conversationService.eventSourceUrl(stream.start));
    source.addEventListener("content", (e) => $("replay").append(JSON.parse(e.data).delta));
    source.addEventListener("end", () => {
      source.close();
      result.replayed = $("replay").textContent;
      resolve();
    });
    source.addEventListener("error", (e) => {
      if (!e.data) return; // a dropped connection: EventSource reconnects by itself
      source.close();
      reject(new Error(`stream error ${e.data}`));
    });
  });
}

async function stopped() {
  const stream = await chat.streamChat({ chat_session_id: q.get("long"), message: "tell me a long story" });
  for await (const event of stream) {
    if (event.type === "content") {
      $("stopped").append(event.data.delta);
      if (event.seq === 5) result.stop = await stream.stop();
    }
  }
  result.stopped = { messageId: stream.messageId, text: stream.text, finish: stream.end.finish_reason };
}

async function blocked() {
  try {
    await chat.streamChat({ chat_session_id: q.get("session"), message: "what is the launch code?" });
    result.blocked = { name: "none" };
  } catch (err) {
    result.blocked = { name: err.constructor.name, isBadRequest: err instanceof BadRequestError, status: err.status, code: err.code };
    $("blocked").textContent = `${err.constructor.name} ${err.status} ${err.code}`;
  }
}

async function main() {
  const stream = await streamed();
  await replayed(stream);
  await stopped();
  await blocked();
}

main()
  .catch((err) => {
    result.error = String((err && err.stack) || err);
    $("status").textContent = `failed: ${err}`;
  })
  .finally(() => {
    result.done = true;
  });
