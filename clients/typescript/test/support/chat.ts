// Shared steps of the stream tests: a paced session, reading a stream, what got stored.

import assert from "node:assert/strict";
import type { ChatStream, GatewayClient } from "@chat-gateway/client";

/** A session on the paced demo model (about 80 words, 15 ms apart). */
export async function pacedSession(gw: GatewayClient): Promise<{ conversationId: string; sessionId: string }> {
  const cs = gw.conversationService;
  const conversation = await cs.create({ title: "paced" });
  const session = await cs.createSession({ conversation_id: conversation.id, model_id: "paced" });
  return { conversationId: conversation.id, sessionId: session.id };
}

/** Reads a stream to its end, keeping each content event's id. */
export async function drain(stream: ChatStream, onContent?: (count: number) => void): Promise<string[]> {
  const ids: string[] = [];
  for await (const event of stream) {
    if (event.type !== "content") continue;
    ids.push(event.id);
    onContent?.(ids.length);
  }
  return ids;
}

export async function storedAnswer(gw: GatewayClient, conversationId: string) {
  const page = await gw.conversationService.messages({ conversation_id: conversationId });
  const answer = page.messages.at(-1);
  assert.equal(answer?.role, "assistant");
  return answer;
}

/** The gateway writes an answer when its turn ends; after a drop the client may be done first. */
export async function settledAnswer(gw: GatewayClient, conversationId: string, status: string) {
  for (let i = 0; i < 100; i++) {
    const page = await gw.conversationService.messages({ conversation_id: conversationId });
    const answer = page.messages.at(-1);
    if (answer?.role === "assistant" && answer.status === status) return answer;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.fail(`the answer was not stored as ${status}`);
}
