// Streams that are stopped and aborted, and attached to again: with the bearer token, or
// with the start event's resume_token in place of it (what a browser's EventSource does).

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  APIUserAbortError,
  AuthenticationError,
  ConflictError,
  GatewayClient,
  SSEParser,
} from "@chat-gateway/client";
import { drain, pacedSession, settledAnswer, storedAnswer } from "./support/chat.js";
import { client, expectStored, GW } from "./support/env.js";

test("stop() ends the answer on the gateway: end {cancelled}, the partial answer stored", async () => {
  const gw = client("alice");
  const { conversationId, sessionId } = await pacedSession(gw);

  const stream = await gw.conversationService.streamChat({ chat_session_id: sessionId, message: "a long story" });
  const stops: Promise<unknown>[] = [];
  const ids = await drain(stream, (count) => {
    if (count === 5) stops.push(stream.stop());
  });

  assert.deepEqual(await stops[0], { success: true, message_id: stream.messageId, stopping: true });
  assert.equal(stream.end?.finish_reason, "cancelled");
  assert.ok(ids.length >= 5 && ids.length < 80);
  assert.equal(await stream.stop(), null); // ended already: nothing to ask
  await assert.rejects(gw.conversationService.stop({ message_id: stream.messageId }), (err: unknown) => {
    assert.ok(err instanceof ConflictError);
    assert.equal(err.code, "not_running");
    return true;
  });
  const stored = await storedAnswer(gw, conversationId);
  assert.deepEqual([stored?.status, stored?.content], ["cancelled", stream.text]);
  expectStored(conversationId, [
    { role: "user", status: "complete", content: "a long story" },
    { role: "assistant", status: "cancelled", content: stream.text },
  ], "a stopped stream");
});

test("stop() on a sendPrompt stream goes through POST /conversation/{id}/stop", async () => {
  const gw = client("alice");
  const { conversationId } = await gw.createConversation({ repoId: "repo-paced" });

  const stream = await gw.sendPrompt(conversationId, { prompt: "a long story", stream: true });
  const stopped = await stream.stop();
  const ids = await drain(stream);

  assert.deepEqual(stopped, { success: true, message_id: stream.messageId, stopping: true });
  assert.equal(stream.end?.finish_reason, "cancelled");
  assert.ok(ids.length < 80);
  const [, stored] = (await gw.getMessages(conversationId)).messages;
  assert.deepEqual([stored?.status, stored?.content], ["cancelled", stream.text]);
});

test("an AbortSignal ends the iteration with APIUserAbortError; resumeStream later reads the rest", async () => {
  const gw = client("alice");
  const { conversationId, sessionId } = await pacedSession(gw);
  const controller = new AbortController();

  const stream = await gw.conversationService.streamChat(
    { chat_session_id: sessionId, message: "count slowly" }, { signal: controller.signal },
  );
  const failure = await drain(stream, (count) => {
    if (count === 3) controller.abort();
  }).then(() => null, (err: unknown) => err);

  assert.ok(failure instanceof APIUserAbortError, String(failure));
  assert.equal(failure.code, "aborted");
  assert.equal(stream.lastEventId, `${stream.messageId}:3`);
  // the gateway was not told (on_disconnect: continue): the answer is generated and kept
  const rest = await gw.conversationService.resumeStream({ message_id: stream.messageId, last_event_id: stream.lastEventId });
  const ids = await drain(rest);
  assert.equal(ids[0], `${stream.messageId}:4`);
  assert.equal(rest.end?.finish_reason, "stop");
  assert.equal(stream.text + rest.text, (await storedAnswer(gw, conversationId))?.content);
});

test("abort() does the same, and a signal aborted before the request sends nothing", async () => {
  const gw = client("alice");
  const { conversationId, sessionId } = await pacedSession(gw);

  const stream = await gw.conversationService.streamChat({ chat_session_id: sessionId, message: "count slowly" });
  const failure = await drain(stream, (count) => {
    if (count === 2) stream.abort();
  }).then(() => null, (err: unknown) => err);
  assert.ok(failure instanceof APIUserAbortError);
  await settledAnswer(gw, conversationId, "complete");

  const { conversationId: untouched, sessionId: idle } = await pacedSession(gw);
  await assert.rejects(
    gw.conversationService.streamChat({ chat_session_id: idle, message: "never sent" }, { signal: AbortSignal.abort() }),
    APIUserAbortError,
  );
  assert.equal((await gw.conversationService.messages({ conversation_id: untouched })).total, 0);
  expectStored(untouched, [], "a request aborted before it left");
});

test("a client without a bearer token attaches with the start event's resume_token, in both API styles", async () => {
  const gw = client("alice");
  const { conversationId } = await gw.createConversation({ repoId: "repo-echo" });
  const first = await gw.sendPrompt(conversationId, { prompt: "attach to me", stream: true });
  const deltas: string[] = [];
  for await (const event of first) if (event.type === "content") deltas.push(event.data.delta);
  const result = { start: first.start, text: first.text };
  const token = result.start.resume_token;
  assert.ok(token);
  const anonymous = new GatewayClient({ baseUrl: GW }); // no token, no org

  const service = await anonymous.conversationService.resumeStream({ message_id: result.start.message_id, resume_token: token });
  const repository = await anonymous.resumeStream(conversationId, result.start.message_id, {
    resumeToken: token, lastEventId: `${result.start.message_id}:1`,
  });

  assert.equal((await service.collect()).text, result.text);
  const rest = await repository.collect();
  assert.equal(rest.text, deltas.slice(1).join("")); // what came after the first event
  await assert.rejects(
    anonymous.conversationService.resumeStream({ message_id: result.start.message_id, resume_token: `${token}x` }),
    (err: unknown) => err instanceof AuthenticationError && err.code === "invalid_resume_token",
  );
});

test("eventSourceUrl() is a URL that needs no header: the resume_token and last_event_id are in it", async () => {
  const gw = client("alice");
  const { sessionId } = await pacedSession(gw);
  const stream = await gw.conversationService.streamChat({ chat_session_id: sessionId, message: "count slowly" });
  for await (const event of stream) if (event.type === "content" && event.seq === 2) break; // and closes

  const url = new URL(stream.eventSourceUrl());
  const response = await fetch(url); // as an EventSource would: no Authorization

  assert.equal(url.searchParams.get("resume_token"), stream.start.resume_token);
  assert.equal(url.searchParams.get("last_event_id"), `${stream.messageId}:2`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /^text\/event-stream/);
  const parser = new SSEParser();
  const frames = parser.push(await response.text());
  const contentIds = frames.filter((f) => f.type === "content").map((f) => f.id);
  assert.equal(contentIds[0], `${stream.messageId}:3`);
  assert.equal(frames.at(-1)?.type, "end");
  // the repository-style URL works the same way
  const repoUrl = gw.eventSourceUrl(stream.start.conversation_id ?? "", stream.start, `${stream.messageId}:2`);
  assert.equal((await fetch(repoUrl)).status, 200);
});

test("a resume with the bearer token names the org; a ChatStream can be iterated once", async () => {
  const gw = client("alice");
  const { sessionId } = await pacedSession(gw);
  const result = await (await gw.conversationService.streamChat({ chat_session_id: sessionId, message: "once" })).collect();

  const again = await gw.conversationService.resumeStream({ message_id: result.start.message_id });
  await again.collect();

  assert.equal(again.text, result.text);
  await assert.rejects(async () => {
    for await (const event of again) void event;
  }, /iterated once/);
});
