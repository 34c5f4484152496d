// The Conversation Service API (seed 003) through GatewayClient.conversationService.

import assert from "node:assert/strict";
import { test } from "node:test";
import { ConversationService, type StreamEvent } from "@chat-gateway/client";
import { client, contiguousIds, expectStored, GW, ORG, TOKENS } from "./support/env.js";

test("create, createSession, streamChat, then list, getWithSessions and messages show it", async () => {
  const cs = client("alice").conversationService;

  const conversation = await cs.create({ title: "Project Discussion" });
  const session = await cs.createSession({ conversation_id: conversation.id, model_id: "demo" });
  const stream = await cs.streamChat({ chat_session_id: session.id, message: "Can you explain how vector databases work?" });
  const types: StreamEvent["type"][] = [];
  const ids: string[] = [];
  for await (const event of stream) {
    types.push(event.type);
    if (event.type === "content") ids.push(event.id);
  }

  assert.deepEqual([conversation.title, conversation.is_archived, conversation.org_id], ["Project Discussion", false, ORG]);
  assert.deepEqual([session.conversation_id, session.model_id, session.status], [conversation.id, "demo", "active"]);
  assert.deepEqual([types[0], types.at(-1), types.includes("error")], ["start", "end", false]);
  assert.equal(stream.start.chat_session_id, session.id);
  assert.ok(contiguousIds(stream.messageId, ids));
  assert.ok(stream.text.startsWith("You asked: Can you explain how vector databases work"));
  assert.equal(stream.end?.finish_reason, "stop");
  assert.equal(stream.end?.usage.output_tokens, ids.length);

  const listed = await cs.list({ limit: 100 });
  assert.ok(listed.conversations.some((c) => c.id === conversation.id));
  const withSessions = await cs.getWithSessions({ conversation_id: conversation.id });
  assert.deepEqual(withSessions.sessions.map((s) => s.id), [session.id]);
  assert.equal(withSessions.tokens_out, stream.end?.usage.output_tokens);
  const page = await cs.messages({ conversation_id: conversation.id });
  assert.deepEqual(
    page.messages.map((m) => [m.role, m.status, m.content]),
    [["user", "complete", "Can you explain how vector databases work?"], ["assistant", "complete", stream.text]],
  );
  assert.deepEqual([page.total, page.limit, page.offset], [2, 20, 0]);
  const second = await cs.messages({ conversation_id: conversation.id, limit: 1, offset: 1 });
  assert.deepEqual(second.messages.map((m) => m.id), [stream.messageId]);
  expectStored(conversation.id, [
    { role: "user", status: "complete", content: "Can you explain how vector databases work?" },
    { role: "assistant", status: "complete", content: stream.text },
  ], "a streamed chat");
});

test("a conversation made through one API style is read and prompted through the other", async () => {
  const gw = client("alice");
  const { conversationId } = await gw.createConversation({ repoId: "repo-echo" });

  const seen = await gw.conversationService.getWithSessions({ conversation_id: conversationId });
  const [session] = seen.sessions;
  assert.ok(session);
  const result = await (await gw.conversationService.streamChat({ chat_session_id: session.id, message: "both ways" })).collect();

  assert.equal(seen.repo_id, "repo-echo");
  assert.equal(result.text, "Echo: both ways");
  const page = await gw.getMessages(conversationId);
  assert.deepEqual(page.messages.map((m) => m.content), ["both ways", "Echo: both ways"]);
});

test("ConversationService stands alone, and each call may name its org", async () => {
  const cs = new ConversationService({ baseUrl: `${GW}/`, token: TOKENS.alice }); // no default org

  const conversation = await cs.create({ title: "named org" }, { org_id: ORG });
  const listed = await cs.list({ org_id: ORG, limit: 100 });

  assert.ok(listed.conversations.some((c) => c.id === conversation.id));
  assert.throws(() => cs.list(), /org_id is required/);
});
