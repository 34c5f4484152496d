// The repository-style API (seeds 000-004) with the seeds' method names, against a real gateway.

import assert from "node:assert/strict";
import { test } from "node:test";
import { BadRequestError, GatewayClient, NotFoundError, type StreamEvent } from "@chat-gateway/client";
import { client, contiguousIds, expectStored, GW } from "./support/env.js";

const PROMPT = "What is the best practice for securing API keys?";

test("createConversation, then sendPrompt answers in JSON, and getMessages holds both turns", async () => {
  const gw = client("alice");

  const created = await gw.createConversation({ repoId: "repo-echo" });
  const answer = await gw.sendPrompt(created.conversationId, { prompt: PROMPT });

  assert.equal(created.success, true);
  assert.equal(answer.success, true);
  assert.equal(answer.conversationId, created.conversationId);
  assert.equal(answer.response, `Echo: ${PROMPT}`);
  assert.equal(answer.model, "echo");
  assert.equal(answer.finishReason, "stop");
  assert.ok(answer.tokensIn > 0 && answer.tokensOut > 0);
  const page = await gw.getMessages(created.conversationId);
  assert.equal(page.total, 2);
  assert.deepEqual(
    page.messages.map((m) => [m.role, m.content, m.status]),
    [["user", PROMPT, "complete"], ["assistant", answer.response, "complete"]],
  );
  assert.equal(page.messages[1]?.id, answer.messageId);
  expectStored(created.conversationId, [
    { role: "user", status: "complete", content: PROMPT },
    { role: "assistant", status: "complete", content: answer.response },
  ], "a JSON prompt");
});

test("sendPrompt with stream: true yields start, each content event once, end", async () => {
  const gw = client("alice");
  const { conversationId } = await gw.createConversation({ repoId: "repo-echo" });

  const stream = await gw.sendPrompt(conversationId, { prompt: "stream it please", stream: true });
  const seen: StreamEvent[] = [];
  for await (const event of stream) seen.push(event);

  assert.equal(stream.start.conversation_id, conversationId);
  assert.ok(stream.start.resume_token, "the start event carries a resume_token");
  assert.deepEqual([seen[0]?.type, seen.at(-1)?.type], ["start", "end"]);
  const ids = seen.flatMap((e) => (e.type === "content" ? [e.id] : []));
  assert.ok(contiguousIds(stream.messageId, ids));
  assert.equal(stream.text, "Echo: stream it please");
  assert.equal(stream.end?.finish_reason, "stop");
  assert.equal(stream.resumes, 0);
  const [, assistant] = (await gw.getMessages(conversationId)).messages;
  assert.equal(assistant?.content, stream.text);
  expectStored(conversationId, [
    { role: "user", status: "complete", content: "stream it please" },
    { role: "assistant", status: "complete", content: stream.text },
  ], "a streamed prompt");
});

test("getConversations filters by repoId, workspaceId, userId, from and to, newest first, and pages", async () => {
  const alice = client("alice");
  const bob = client("bob");
  const admin = client("admin");
  const first = await alice.createConversation({ repoId: "repo-list" });
  const second = await alice.createConversation({ repoId: "repo-list" });
  const other = await alice.createConversation({ repoId: "repo-list-ws2" });
  const bobs = await bob.createConversation({ repoId: "repo-list" });
  const ids = (list: { conversations: { id: string }[] }) => list.conversations.map((c) => c.id);

  const inRepo = await alice.getConversations({ repoId: "repo-list" });
  const inWorkspace = await admin.getConversations({ workspaceId: "ws-2", repoId: "repo-list-ws2" });
  const ofBob = await admin.getConversations({ repoId: "repo-list", userId: "bob" });
  const today = new Date().toISOString().slice(0, 10);
  const fromToday = await admin.getConversations({ repoId: "repo-list", from: today, to: today });
  const fromTomorrow = await admin.getConversations({ repoId: "repo-list", from: "2999-01-01" });
  const untilYesterday = await admin.getConversations({ repoId: "repo-list", to: "2000-01-01" });
  const pageOne = await admin.getConversations({ repoId: "repo-list", take: 1, skip: 0 });
  const pageTwo = await admin.getConversations({ repoId: "repo-list", take: 1, skip: 1 });

  assert.deepEqual(ids(inRepo), [second.conversationId, first.conversationId]); // hers only, newest first
  assert.equal(inRepo.total, 2);
  assert.deepEqual(ids(inWorkspace), [other.conversationId]);
  assert.deepEqual(ids(ofBob), [bobs.conversationId]);
  assert.deepEqual(ids(fromToday), [bobs.conversationId, second.conversationId, first.conversationId]);
  assert.deepEqual([ids(fromTomorrow), ids(untilYesterday)], [[], []]);
  assert.deepEqual([...ids(pageOne), ...ids(pageTwo)], [bobs.conversationId, second.conversationId]);
  assert.equal(pageOne.total, 3);
  const listed = inRepo.conversations[0];
  assert.equal(listed?.repoId, "repo-list");
  assert.equal(listed?.workspaceId, "ws-1");
  assert.deepEqual(listed?.creator, { id: "alice", name: "Alice", lastName: "Doe", email: "alice@example.com" });
  assert.equal(listed?.tokensIn, "0"); // strings, as the seeds have them
});

test("deleteConversation soft-deletes: afterwards reads and prompts are NotFoundError, lists leave it out", async () => {
  const gw = client("alice");
  const { conversationId } = await gw.createConversation({ repoId: "repo-echo" });
  await gw.sendPrompt(conversationId, { prompt: "keep me" });

  const deleted = await gw.deleteConversation(conversationId);

  assert.equal(deleted.conversationId, conversationId);
  assert.ok(!Number.isNaN(Date.parse(deleted.deletedAt)));
  await assert.rejects(gw.getMessages(conversationId), (err: unknown) => {
    assert.ok(err instanceof NotFoundError);
    assert.equal(err.code, "conversation_not_found");
    return true;
  });
  await assert.rejects(gw.sendPrompt(conversationId, { prompt: "still there?" }), NotFoundError);
  await assert.rejects(gw.deleteConversation(conversationId), NotFoundError);
  const listed = await gw.getConversations({ repoId: "repo-echo", take: 100 });
  assert.ok(!listed.conversations.some((c) => c.id === conversationId));
  expectStored(conversationId, [
    { role: "user", status: "complete", content: "keep me" },
    { role: "assistant", status: "complete", content: "Echo: keep me" },
  ], "a soft delete keeps the data");
});

test("makeRequest speaks the seeds' way: a path, a method, data or null", async () => {
  const gw = client("alice");

  const created = await gw.makeRequest<{ success: boolean; conversationId: string }>("conversation", "POST", { repoId: "repo-seed" });
  const listed = await gw.makeRequest<{ conversations: { id: string }[] }>("conversation?repoId=repo-seed&take=1", "GET", null);

  assert.equal(created.success, true);
  assert.deepEqual(listed.conversations.map((c) => c.id), [created.conversationId]);
});

test("ids and filters cannot leave their place in the URL: they are encoded, and an empty id is refused", async () => {
  const gw = client("alice");
  const { conversationId } = await gw.createConversation({ repoId: "repo-seed" });

  const traversal = await gw.getMessages(`../${conversationId}`).then(() => null, (err: unknown) => err);
  const smuggled = await gw.getConversations({ repoId: "repo-seed&take=1", userId: "alice" }).then(() => null, (err: unknown) => err);

  // one path segment (%2F): no route takes it, and the read never reaches the conversation
  assert.ok(traversal instanceof NotFoundError, String(traversal));
  assert.ok(traversal.message.includes(`/conversation/../${conversationId}/messages`), traversal.message);
  // the filter arrives whole, as one value, and the gateway refuses it as an id
  assert.ok(smuggled instanceof BadRequestError && smuggled.code === "invalid_id", String(smuggled));
  assert.throws(() => gw.deleteConversation(""), /conversation_id is required/);
  assert.throws(() => new GatewayClient({ baseUrl: GW, token: "cgw_x\r\nX-Evil: 1" }), /line break/);
  expectStored(conversationId, [], "nothing reached the conversation");
});
