/**
 * What the pytest harness (tests/clients/test_typescript_client.py) hands the tests: the
 * gateway's URL, a second gateway whose Redis is down, bearer tokens per user, and a ledger
 * file where the tests note what the gateway must have stored, for pytest to check in Redis.
 */

import { appendFileSync } from "node:fs";
import { type ClientOptions, GatewayClient } from "@chat-gateway/client";

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run these tests through pytest (tests/clients)`);
  return value;
}

export const GW = required("GATEWAY_URL");
/** a gateway whose Redis has been stopped */
export const DOWN = required("GATEWAY_DOWN_URL");
export const ORG = required("GATEWAY_ORG");
export type User = "alice" | "bob" | "admin" | "mallory" | "limited" | "expired";
export const TOKENS = JSON.parse(required("GATEWAY_TOKENS")) as Record<User, string>;
const LEDGER = required("GATEWAY_LEDGER");

/** A client for `user`, in the test org, on the gateway (or `baseUrl`). */
export function client(user: User = "alice", options: Partial<ClientOptions> = {}): GatewayClient {
  const org = user === "mallory" ? "org-2" : user === "limited" ? "org-limited" : ORG;
  return new GatewayClient({ baseUrl: GW, token: TOKENS[user], orgId: org, ...options });
}

export interface Stored {
  role: "user" | "assistant";
  status: string;
  content?: string;
}

/** Notes what Redis must hold for a conversation, in order; pytest checks it after the run. */
export function expectStored(conversationId: string, messages: Stored[], why: string): void {
  appendFileSync(LEDGER, `${JSON.stringify({ conversation_id: conversationId, messages, why })}\n`);
}

/** Content events' ids must run 1, 2, 3, ... without a gap or a repeat. */
export function contiguousIds(messageId: string, ids: string[]): boolean {
  return ids.length > 0 && ids.every((id, i) => id === `${messageId}:${i + 1}`);
}
