// The require() build: the same client from CommonJS, against the same gateway.

import assert = require("node:assert/strict");
import nodeTest = require("node:test");
import client = require("@chat-gateway/client");

const { GatewayClient, NotFoundError, APIStatusError } = client;

nodeTest.test("require('@chat-gateway/client') streams a chat and raises the error classes", async () => {
  const env = process.env;
  const tokens = JSON.parse(env["GATEWAY_TOKENS"] ?? "{}") as Record<string, string>;
  const gw = new GatewayClient({ baseUrl: env["GATEWAY_URL"] ?? "", token: tokens["alice"], orgId: env["GATEWAY_ORG"] });

  const conversation = await gw.conversationService.create({ title: "from CommonJS" });
  const session = await gw.conversationService.createSession({ conversation_id: conversation.id, model_id: "demo" });
  const result = await (await gw.conversationService.streamChat({ chat_session_id: session.id, message: "hi from require" })).collect();
  const missing = await gw.getMessages("no-such-conversation").then(() => null, (err: unknown) => err);

  assert.equal(typeof require, "function"); // this file runs as CommonJS
  assert.equal(result.end.finish_reason, "stop");
  assert.ok(result.text.startsWith("You asked: hi from require"));
  assert.ok(missing instanceof NotFoundError && missing instanceof APIStatusError);
});
