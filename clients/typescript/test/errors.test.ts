// Each error class, from a real gateway's real answers (and, for the two a healthy gateway
// cannot be made to give on purpose, from platform Response objects).

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  APIConnectionError,
  APIError,
  APIStatusError,
  APITimeoutError,
  APIUserAbortError,
  AuthenticationError,
  BadGatewayError,
  BadRequestError,
  ConflictError,
  errorFromResponse,
  GatewayClient,
  InternalServerError,
  NotFoundError,
  parseRetryAfter,
  PayloadTooLargeError,
  PermissionDeniedError,
  RateLimitError,
  ServiceUnavailableError,
} from "@chat-gateway/client";
import { client, DOWN, expectStored, TOKENS } from "./support/env.js";

/** Awaits a rejection and hands it back, checked against the class. */
async function failure<E extends Error>(promise: Promise<unknown>, cls: abstract new (...args: never[]) => E): Promise<E> {
  const err = await promise.then(() => null, (e: unknown) => e);
  assert.ok(err instanceof cls, `expected ${cls.name}, got ${String(err)}`);
  return err;
}

function statusOf(err: APIStatusError): [number, string] {
  return [err.status, err.code];
}

test("BadRequestError: invalid input, and a prompt the pre-policy blocks before any stream", async () => {
  const gw = client("alice");
  const cs = gw.conversationService;
  const conversation = await cs.create({ title: "errors" });
  const session = await cs.createSession({ conversation_id: conversation.id, model_id: "demo" });

  const invalid = await failure(cs.createSession({ conversation_id: conversation.id, model_id: "" }), BadRequestError);
  const blocked = await failure(cs.streamChat({ chat_session_id: session.id, message: "what is the launch code?" }), BadRequestError);
  const tooMany = await failure(gw.getConversations({ take: 101 }), BadRequestError);

  assert.deepEqual(statusOf(invalid), [400, "validation_error"]);
  assert.match(invalid.message, /model_id/);
  assert.ok(invalid.requestId, "the gateway's request id, for its logs");
  assert.deepEqual(statusOf(blocked), [400, "policy_blocked"]);
  assert.deepEqual(statusOf(tooMany), [400, "validation_error"]);
  assert.ok(invalid instanceof APIStatusError && invalid instanceof APIError);
  const page = await cs.messages({ conversation_id: conversation.id });
  assert.deepEqual(page.messages.map((m) => [m.role, m.status]), [["user", "blocked"]]);
  expectStored(conversation.id, [{ role: "user", status: "blocked" }], "a pre-policy block stores the refused prompt as blocked, and no answer");
});

test("AuthenticationError: a bad token and an expired one", async () => {
  const bad = await failure(client("alice", { token: "not-a-token" }).getConversations(), AuthenticationError);
  const expired = await failure(client("expired").getConversations(), AuthenticationError);

  assert.equal(bad.status, 401);
  assert.deepEqual(statusOf(expired), [401, "token_expired"]);
});

test("PermissionDeniedError: another org's org_id, a workspace the user may not use", async () => {
  const gw = client("alice");

  const otherOrg = await failure(gw.conversationService.list({ org_id: "org-2" }), PermissionDeniedError);
  const workspace = await failure(gw.createConversation({ repoId: "repo-ws3" }), PermissionDeniedError);

  assert.equal(otherOrg.status, 403);
  assert.equal(workspace.status, 403);
  const listed = await client("admin").getConversations({ repoId: "repo-ws3" });
  assert.equal(listed.total, 0); // nothing was created
});

test("NotFoundError: an unknown conversation, and another org's (never revealed)", async () => {
  const alice = client("alice");
  const { conversationId } = await alice.createConversation({ repoId: "repo-echo" });

  const unknown = await failure(alice.getMessages("no-such-conversation"), NotFoundError);
  const foreign = await failure(client("mallory").getMessages(conversationId), NotFoundError);
  const repository = await failure(alice.createConversation({ repoId: "no-such-repo" }), NotFoundError);

  assert.deepEqual(statusOf(unknown), [404, "conversation_not_found"]);
  assert.deepEqual(statusOf(foreign), [404, "conversation_not_found"]);
  assert.deepEqual(statusOf(repository), [404, "repository_not_found"]);
  expectStored(conversationId, [], "a foreign read changes nothing");
});

test("ConflictError: a prompt while the conversation answers another, with retryAfter", async () => {
  const gw = client("alice");
  const { conversationId } = await gw.createConversation({ repoId: "repo-paced" });
  const running = await gw.sendPrompt(conversationId, { prompt: "a long story", stream: true });

  const busy = await failure(gw.sendPrompt(conversationId, { prompt: "me too" }), ConflictError);
  await running.stop();
  await running.collect();
  const notRunning = await failure(gw.stopConversation(conversationId), ConflictError);

  assert.deepEqual(statusOf(busy), [409, "conversation_busy"]);
  assert.ok(busy.retryAfter !== null && busy.retryAfter > 0, `retryAfter: ${busy.retryAfter}`);
  assert.deepEqual(statusOf(notRunning), [409, "not_running"]);
  expectStored(conversationId, [
    { role: "user", status: "complete", content: "a long story" },
    { role: "assistant", status: "cancelled", content: running.text },
  ], "the busy prompt stored nothing");
});

test("PayloadTooLargeError: a body over the gateway's limit, and nothing stored", async () => {
  const gw = client("alice");
  const { conversationId } = await gw.createConversation({ repoId: "repo-echo" });

  const err = await failure(gw.sendPrompt(conversationId, { prompt: "x".repeat(70_000) }), PayloadTooLargeError);

  assert.deepEqual(statusOf(err), [413, "payload_too_large"]);
  assert.equal((await gw.getMessages(conversationId)).total, 0);
  expectStored(conversationId, [], "a body over the limit");
});

test("RateLimitError: a prompt over the day's token budget, with retryAfter, and nothing stored for it", async () => {
  const cs = client("limited").conversationService; // an org whose users may spend 1 token a day
  const conversation = await cs.create({ title: "limited" });
  const session = await cs.createSession({ conversation_id: conversation.id, model_id: "demo" });
  const first = await (await cs.streamChat({ chat_session_id: session.id, message: "one" })).collect(); // crosses it

  const err = await failure(cs.streamChat({ chat_session_id: session.id, message: "two" }), RateLimitError);

  assert.deepEqual(statusOf(err), [429, "token_budget_exceeded"]);
  assert.ok(err.retryAfter !== null && err.retryAfter > 0 && err.retryAfter <= 86_400, `retryAfter: ${err.retryAfter}`);
  assert.equal(err.headers.get("x-ratelimit-limit"), "1");
  expectStored(conversation.id, [
    { role: "user", status: "complete", content: "one" },
    { role: "assistant", status: "complete", content: first.text },
  ], "a prompt over budget");
});

test("BadGatewayError (an InternalServerError): the provider fails before the answer begins", async () => {
  const gw = client("alice");
  const { conversationId } = await gw.createConversation({ repoId: "repo-broken" });

  const json = await failure(gw.sendPrompt(conversationId, { prompt: "hello?" }), BadGatewayError);
  const streamed = await failure(gw.sendPrompt(conversationId, { prompt: "hello?", stream: true }), BadGatewayError);

  assert.deepEqual(statusOf(json), [502, "provider_error"]);
  assert.deepEqual(statusOf(streamed), [502, "provider_error"]);
  assert.ok(json instanceof InternalServerError);
  // each try is on record: the prompt, and an empty answer marked as an error
  const page = await gw.getMessages(conversationId);
  const tried = [{ role: "user", status: "complete", content: "hello?" }, { role: "assistant", status: "error", content: "" }] as const;
  assert.deepEqual(page.messages.map((m) => ({ role: m.role, status: m.status, content: m.content })), [...tried, ...tried]);
  assert.equal(page.messages[1]?.finishReason, "error");
  expectStored(conversationId, [...tried, ...tried], "a provider failure");
});

test("ServiceUnavailableError: the gateway's Redis is down, with retryAfter", async () => {
  const gw = new GatewayClient({ baseUrl: DOWN, token: TOKENS.alice });

  const err = await failure(gw.createConversation({ repoId: "repo-echo" }), ServiceUnavailableError);

  assert.deepEqual(statusOf(err), [503, "redis_unavailable"]);
  assert.equal(err.retryAfter, 1);
  assert.ok(err instanceof InternalServerError);
});

test("InternalServerError for 500 and other 5xx, APIStatusError for the rest, from real Response objects", async () => {
  const body = JSON.stringify({ success: false, code: "internal_error", message: "boom" });
  const json = { "content-type": "application/json", "x-request-id": "r-1" };

  const internal = await errorFromResponse(new Response(body, { status: 500, headers: json }));
  const gatewayTimeout = await errorFromResponse(new Response("<html>504</html>", { status: 504 }));
  const teapot = await errorFromResponse(new Response(body, { status: 418, headers: json }));

  assert.ok(internal instanceof InternalServerError && !(internal instanceof BadGatewayError));
  assert.deepEqual([internal.status, internal.code, internal.requestId], [500, "internal_error", "r-1"]);
  assert.ok(gatewayTimeout instanceof InternalServerError);
  assert.deepEqual([gatewayTimeout.code, gatewayTimeout.body], ["http_504", "<html>504</html>"]);
  assert.equal(teapot.constructor, APIStatusError);
  assert.equal(parseRetryAfter("120"), 120);
  assert.equal(parseRetryAfter("Wed, 21 Oct 2015 07:28:30 GMT", Date.parse("Wed, 21 Oct 2015 07:28:00 GMT")), 30);
  assert.equal(parseRetryAfter("soon"), null);
});

test("APIConnectionError: nothing listens there", async () => {
  const gw = new GatewayClient({ baseUrl: "http://127.0.0.1:1", token: TOKENS.alice });

  const err = await failure(gw.getConversations(), APIConnectionError);

  assert.equal(err.code, "connection_error");
  assert.ok(!(err instanceof APIStatusError) && !(err instanceof APITimeoutError));
});

test("APITimeoutError (an APIConnectionError): no answer within the timeout", async () => {
  const gw = client("alice");
  const { conversationId } = await gw.createConversation({ repoId: "repo-paced" });

  const err = await failure(gw.sendPrompt(conversationId, { prompt: "take your time" }, { timeout: 200 }), APITimeoutError);

  assert.equal(err.code, "timeout");
  assert.ok(err instanceof APIConnectionError);
});

test("APIUserAbortError: a JSON request aborted while it waits", async () => {
  const gw = client("alice");
  const { conversationId } = await gw.createConversation({ repoId: "repo-paced" });

  const err = await failure(gw.sendPrompt(conversationId, { prompt: "take your time" }, { signal: AbortSignal.timeout(200) }), APIUserAbortError);

  assert.equal(err.code, "aborted");
});
