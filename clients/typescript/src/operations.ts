/**
 * Every route the client calls, as it looks on the wire: method, path template, query,
 * path parameters, headers, JSON body, success status and answer. The methods' signatures
 * are built from these, and test/contract.ts checks each against the served OpenAPI
 * document, operation by operation.
 */

import type {
  ChatSession,
  Conversation,
  ConversationList,
  ConversationWithSessions,
  CreateConversation,
  CreateRepoConversation,
  CreateSession,
  GetConversationsRequest,
  GetMessagesRequest,
  MessagePage,
  PromptAnswer,
  RepoConversationCreated,
  RepoConversationDeleted,
  RepoConversationList,
  RepoMessagePage,
  SendPrompt,
  StopAccepted,
  StopStream,
  StreamChat,
} from "./types.js";

export type Method = "get" | "post" | "delete";

interface Parts {
  query?: object;
  pathParams?: object;
  headers?: object;
  body?: object;
  response?: object;
  /** the answer is (or may be) a text/event-stream of chat events */
  events?: true;
}

/** One route; a part it does not have is `never`. */
export interface Operation<M extends Method, P extends string, S extends number, T extends Parts> {
  method: M;
  path: P;
  status: S;
  query: T extends { query: infer Q } ? Q : never;
  pathParams: T extends { pathParams: infer X } ? X : never;
  headers: T extends { headers: infer H } ? H : never;
  body: T extends { body: infer B } ? B : never;
  response: T extends { response: infer R } ? R : never;
  events: T extends { events: true } ? true : false;
}

type Org = { org_id: string };
type ConversationPath = { conversation_id: string };
type Resume = { resume_token?: string; last_event_id?: string };
type ResumeHeaders = { "Last-Event-ID"?: string };

export interface Operations {
  // the repository-style API: GatewayClient's methods
  createConversation: Operation<"post", "/conversation", 200, {
    body: CreateRepoConversation; response: RepoConversationCreated;
  }>;
  getConversations: Operation<"get", "/conversation", 200, {
    query: GetConversationsRequest; response: RepoConversationList;
  }>;
  sendPrompt: Operation<"post", "/conversation/{conversation_id}/prompt", 200, {
    pathParams: ConversationPath; body: SendPrompt; response: PromptAnswer; events: true;
  }>;
  getMessages: Operation<"get", "/conversation/{conversation_id}/messages", 200, {
    pathParams: ConversationPath; query: GetMessagesRequest; response: RepoMessagePage;
  }>;
  deleteConversation: Operation<"delete", "/conversation/{conversation_id}", 200, {
    pathParams: ConversationPath; response: RepoConversationDeleted;
  }>;
  stopConversation: Operation<"post", "/conversation/{conversation_id}/stop", 202, {
    pathParams: ConversationPath; response: StopAccepted;
  }>;
  resumeStream: Operation<"get", "/conversation/{conversation_id}/messages/{message_id}/stream", 200, {
    pathParams: ConversationPath & { message_id: string }; query: Resume; headers: ResumeHeaders;
    events: true;
  }>;
  // the Conversation Service API: GatewayClient.conversationService's methods
  "conversationService.create": Operation<"post", "/api/conversation/create", 201, {
    query: Org; body: CreateConversation; response: Conversation;
  }>;
  "conversationService.createSession": Operation<"post", "/api/conversation/create_session", 201, {
    query: Org; body: CreateSession; response: ChatSession;
  }>;
  "conversationService.streamChat": Operation<"post", "/api/conversation/stream_chat", 200, {
    query: Org; body: StreamChat; events: true;
  }>;
  "conversationService.list": Operation<"get", "/api/conversation/list", 200, {
    query: Org & { limit?: number; offset?: number }; response: ConversationList;
  }>;
  "conversationService.getWithSessions": Operation<"get", "/api/conversation/get_with_sessions", 200, {
    query: Org & { conversation_id: string }; response: ConversationWithSessions;
  }>;
  "conversationService.messages": Operation<"get", "/api/conversation/messages", 200, {
    query: Org & { conversation_id: string; limit?: number; offset?: number }; response: MessagePage;
  }>;
  "conversationService.stop": Operation<"post", "/api/conversation/stop", 202, {
    query: Org; body: StopStream; response: StopAccepted;
  }>;
  "conversationService.resumeStream": Operation<"get", "/api/conversation/stream", 200, {
    query: { org_id?: string; message_id: string } & Resume; headers: ResumeHeaders; events: true;
  }>;
}

export type OperationName = keyof Operations;

/** A query as a method takes it: the Conversation Service's `org_id` defaults to the client's. */
export type WithDefaultOrg<Q> = Omit<Q, "org_id"> & { org_id?: string };

export const ROUTES: { readonly [K in OperationName]: { method: Uppercase<Operations[K]["method"]>; path: Operations[K]["path"] } } = {
  createConversation: { method: "POST", path: "/conversation" },
  getConversations: { method: "GET", path: "/conversation" },
  sendPrompt: { method: "POST", path: "/conversation/{conversation_id}/prompt" },
  getMessages: { method: "GET", path: "/conversation/{conversation_id}/messages" },
  deleteConversation: { method: "DELETE", path: "/conversation/{conversation_id}" },
  stopConversation: { method: "POST", path: "/conversation/{conversation_id}/stop" },
  resumeStream: { method: "GET", path: "/conversation/{conversation_id}/messages/{message_id}/stream" },
  "conversationService.create": { method: "POST", path: "/api/conversation/create" },
  "conversationService.createSession": { method: "POST", path: "/api/conversation/create_session" },
  "conversationService.streamChat": { method: "POST", path: "/api/conversation/stream_chat" },
  "conversationService.list": { method: "GET", path: "/api/conversation/list" },
  "conversationService.getWithSessions": { method: "GET", path: "/api/conversation/get_with_sessions" },
  "conversationService.messages": { method: "GET", path: "/api/conversation/messages" },
  "conversationService.stop": { method: "POST", path: "/api/conversation/stop" },
  "conversationService.resumeStream": { method: "GET", path: "/api/conversation/stream" },
};

/** `/conversation/{conversation_id}/prompt` + `{conversation_id: "c 1"}` -> `/conversation/c%201/prompt`. */
export function fillPath(template: string, params: Record<string, string>): string {
  return template.replace(/\{([a-z_]+)\}/g, (_, name: string) => {
    const value = params[name];
    if (value === undefined || value === "") throw new TypeError(`${name} is required`);
    return encodeURIComponent(value);
  });
}
