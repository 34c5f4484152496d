// Streams that break for real: a TCP proxy resets the connection, stalls it, or resets it
// and refuses every later one; the client resumes through the gateway's resume routes.

import assert from "node:assert/strict";
import { test } from "node:test";
import { APIConnectionError } from "@chat-gateway/client";
import { drain, pacedSession, settledAnswer, storedAnswer } from "./support/chat.js";
import { client, contiguousIds, expectStored, GW } from "./support/env.js";
import { BreakingProxy, type Fault } from "./support/proxy.js";

async function withProxy<T>(fault: Fault, after: number, run: (proxy: BreakingProxy) => Promise<T>): Promise<T> {
  const proxy = await BreakingProxy.start(GW, fault, after);
  try {
    return await run(proxy);
  } finally {
    await proxy.close();
  }
}

test("a streamChat connection reset mid-answer is resumed: every token once, as stored", async () => {
  await withProxy("cut", 3, async (proxy) => {
    const gw = client("alice");
    const { conversationId, sessionId } = await pacedSession(gw);
    const viaProxy = client("alice", { baseUrl: proxy.url });

    const stream = await viaProxy.conversationService.streamChat({ chat_session_id: sessionId, message: "count slowly" });
    const ids = await drain(stream);

    assert.equal(proxy.broken, 1);
    assert.equal(stream.resumes, 1);
    assert.ok(ids.length > 3, "the answer went on after the cut");
    assert.ok(contiguousIds(stream.messageId, ids), `no gap, no repeat: ${ids.join(" ")}`);
    assert.equal(stream.end?.finish_reason, "stop");
    const stored = await storedAnswer(gw, conversationId);
    assert.equal(stream.text, stored?.content);
    expectStored(conversationId, [
      { role: "user", status: "complete", content: "count slowly" },
      { role: "assistant", status: "complete", content: stream.text },
    ], "a stream resumed after a reset");
  });
});

test("a sendPrompt stream reset mid-answer is resumed through the repository-style resume route", async () => {
  await withProxy("cut", 3, async (proxy) => {
    const gw = client("alice");
    const { conversationId } = await gw.createConversation({ repoId: "repo-paced" });
    const viaProxy = client("alice", { baseUrl: proxy.url });

    const stream = await viaProxy.sendPrompt(conversationId, { prompt: "count slowly", stream: true });
    const ids = await drain(stream);

    assert.equal(proxy.broken, 1);
    assert.equal(stream.resumes, 1);
    assert.ok(contiguousIds(stream.messageId, ids), `no gap, no repeat: ${ids.join(" ")}`);
    // the client asks the gateway to keep generating through the drop (on_disconnect:
    // continue): the resumed stream has the whole answer, as it was stored
    const [, stored] = (await gw.getMessages(conversationId)).messages;
    assert.equal(stream.end?.finish_reason, "stop");
    assert.equal(stored?.finishReason, "stop");
    assert.equal(stream.text, stored?.content);
  });
});

test("a stalled connection (no byte, no close) counts as dropped after idleTimeout and is resumed", async () => {
  await withProxy("stall", 3, async (proxy) => {
    const gw = client("alice");
    const { conversationId, sessionId } = await pacedSession(gw);
    const viaProxy = client("alice", { baseUrl: proxy.url, idleTimeout: 1500 }); // the gateway pings every second

    const stream = await viaProxy.conversationService.streamChat({ chat_session_id: sessionId, message: "count slowly" });
    const ids = await drain(stream);

    assert.equal(proxy.broken, 1);
    assert.equal(stream.resumes, 1);
    assert.ok(contiguousIds(stream.messageId, ids));
    assert.equal(stream.text, (await storedAnswer(gw, conversationId))?.content);
  });
});

test("when every resume fails the stream gives up with APIConnectionError, and the answer is still stored", async () => {
  await withProxy("down", 3, async (proxy) => {
    const gw = client("alice");
    const { conversationId, sessionId } = await pacedSession(gw);
    const viaProxy = client("alice", { baseUrl: proxy.url, maxResumes: 2 });

    const stream = await viaProxy.conversationService.streamChat({ chat_session_id: sessionId, message: "count slowly" });
    const failure = await drain(stream).then(() => null, (err: unknown) => err);

    assert.ok(failure instanceof APIConnectionError, String(failure));
    assert.match(failure.message, /2 resume\(s\) in a row/);
    assert.equal(stream.resumes, 0);
    assert.ok(stream.lastEventId, "the caller knows where to pick up");
    const stored = await settledAnswer(gw, conversationId, "complete"); // on_disconnect: continue
    assert.ok(stored.content.startsWith(stream.text) && stored.content.length > stream.text.length);
  });
});
