/**
 * The gateway's wire types, named as its OpenAPI document (GET /openapi.json) names its
 * schemas. test/contract.ts checks every one against the document a running gateway serves,
 * so a change on either side fails the tests instead of drifting.
 */

/** The body of every error answer of the gateway's own API. */
export interface ErrorBody {
  success: false;
  /** machine-readable code, e.g. `validation_error`, `conversation_not_found` */
  code: string;
  /** human-readable text */
  message: string;
}

/** Why an answer ended: the model's own finish (tool_calls: it called tools and waits for
 * their results; content_filter: the provider's filter or a refusal; pause: an Anthropic
 * server tool paused the turn) or the gateway's. */
export type FinishReason =
  | "stop"
  | "length"
  | "tool_calls"
  | "content_filter"
  | "pause"
  | "policy_blocked"
  | "error"
  | "cancelled";

/** A tool an answer called, with its generated arguments (a JSON text). */
export interface StoredToolCall {
  id: string;
  name: string;
  arguments: string;
}

/** A policy that acted on a message. */
export interface PolicyEvent {
  id: string;
  action: "log" | "alert" | "block" | "redact";
  stage?: "pre" | "during" | "post" | null;
}

// -- the repository-style API (/conversation) -------------------------------------------

export interface CreateRepoConversation {
  repoId: string;
}

export interface RepoConversationCreated {
  success: true;
  conversationId: string;
}

export interface SendPrompt {
  prompt: string;
  /** true: the answer streams as server-sent events */
  stream?: boolean;
  /**
   * A streamed answer: what the gateway does when the connection drops, `cancel` it or
   * `continue` generating it for a later resume. The client sends `continue` for streams
   * unless told otherwise, since it resumes dropped streams by itself.
   */
  on_disconnect?: "cancel" | "continue";
}

export interface PromptAnswer {
  success: true;
  message: string;
  conversationId: string;
  messageId: string;
  response: string;
  model: string;
  tokensIn: number;
  tokensOut: number;
  /** this answer's cost in USD, an exact decimal string, priced when it was recorded */
  cost: string;
  finishReason: FinishReason;
  usageEstimated?: boolean;
  policy?: PolicyEvent[];
}

export interface RepoConversation {
  id: string;
  orgId: string;
  createdBy: string;
  createdAt: string;
  lastUpdatedAt: string;
  workspaceId: string | null;
  repoId: string | null;
  /** a decimal string: totals outgrow what some JSON readers hold exactly */
  tokensIn: string;
  tokensOut: string;
  /** USD of every answer so far, an exact decimal string like the token counts */
  cost: string;
  creator: {
    id: string;
    name: string | null;
    lastName: string | null;
    email: string | null;
  };
}

/** GET /conversation's query. */
export interface GetConversationsRequest {
  /** the org to list; only the platform admin needs it */
  org_id?: string;
  /** the same as org_id (the seeds' spelling) */
  orgId?: string;
  /** page size: default 50, at most 100 */
  take?: number;
  skip?: number;
  /** ISO 8601 date or date-time (no zone: UTC); a bare date is the whole day */
  from?: string;
  to?: string;
  userId?: string;
  workspaceId?: string;
  repoId?: string;
}

export interface RepoConversationList {
  success: true;
  conversations: RepoConversation[];
  total: number;
}

/** GET /conversation/{id}/messages's query. */
export interface GetMessagesRequest {
  take?: number;
  skip?: number;
}

export interface RepoMessage {
  id: string;
  conversationId: string;
  role: "user" | "assistant";
  content: string;
  createdAt: string;
  tokensIn: number;
  tokensOut: number;
  /** USD, an exact decimal string */
  cost: string;
  model: string | null;
  status: string;
  finishReason: string | null;
  /** a user message's parts beyond plain text, in order (text, image, document, tool_result);
   * content is their text joined */
  parts?: Record<string, unknown>[];
  /** the tools an answer called */
  toolCalls?: StoredToolCall[];
  /** the model declined */
  refusal?: string | null;
}

export interface RepoMessagePage {
  success: true;
  messages: RepoMessage[];
  total: number;
  take: number;
  skip: number;
}

export interface RepoConversationDeleted {
  success: true;
  conversationId: string;
  deletedAt: string;
}

// the seeds' names for the same shapes
export type CreateConversationRequest = CreateRepoConversation;
export type CreateConversationResponse = RepoConversationCreated;
export type SendPromptRequest = SendPrompt;
export type SendPromptResponse = PromptAnswer;
export type GetConversationsResponse = RepoConversationList;
export type GetMessagesResponse = RepoMessagePage;
export type DeleteConversationResponse = RepoConversationDeleted;

// -- the Conversation Service API (/api/conversation) ------------------------------------

export interface CreateConversation {
  title: string;
  is_archived?: boolean;
  workspace_id?: string | null;
}

export interface Conversation {
  id: string;
  title: string;
  is_archived: boolean;
  created_at: string;
  updated_at: string;
  org_id: string;
  workspace_id: string | null;
  repo_id: string | null;
  created_by: string;
  tokens_in: number;
  tokens_out: number;
  /** USD of every answer so far, each priced when it was recorded */
  cost: number;
}

export interface CreateSession {
  conversation_id: string;
  model_id: string;
}

export interface ChatSession {
  id: string;
  conversation_id: string;
  model_id: string;
  status: string;
  created_at: string;
  updated_at: string;
}

export interface StreamChat {
  chat_session_id: string;
  message: string;
  /**
   * What the gateway does when the connection drops: `cancel` the answer, or `continue`
   * generating it for a later resume. The client sends `continue` unless told otherwise,
   * since it resumes dropped streams by itself.
   */
  on_disconnect?: "cancel" | "continue";
}

export interface ConversationList {
  conversations: Conversation[];
  total: number;
}

export type ConversationWithSessions = Conversation & { sessions: ChatSession[] };

export interface Message {
  id: string;
  conversation_id: string;
  chat_session_id: string | null;
  role: "user" | "assistant";
  content: string;
  /** complete | error | cancelled | blocked */
  status: string;
  model_id: string | null;
  input_tokens: number;
  output_tokens: number;
  finish_reason: string | null;
  usage_estimated: boolean;
  /** USD, at the prices in force when it was recorded */
  cost: number;
  created_at: string;
  policy?: PolicyEvent[];
  error?: { [key: string]: string } | null;
  /** a user message's parts beyond plain text, in order (text, image, document, tool_result);
   * content is their text joined */
  parts?: Record<string, unknown>[];
  /** the tools an answer called */
  tool_calls?: StoredToolCall[];
  /** the model declined */
  refusal?: string | null;
}

export interface MessagePage {
  messages: Message[];
  total: number;
  limit: number;
  offset: number;
}

export interface StopStream {
  message_id: string;
}

export interface StopAccepted {
  success: true;
  message_id: string;
  stopping: true;
}

// -- the stream ------------------------------------------------------------------------

export interface StreamStart {
  message_id: string;
  conversation_id: string | null;
  chat_session_id: string | null;
  model: string;
  user_message_id?: string | null;
  /** lets the resume routes attach without a bearer token (`?resume_token=`), for this message only */
  resume_token?: string;
}

export interface StreamContent {
  /** the next piece of the answer */
  delta: string;
}

export interface StreamError {
  /** policy_blocked | provider_error | producer_lost | ... */
  code: string;
  message: string;
}

export interface StreamEnd {
  message_id: string;
  finish_reason: FinishReason;
  usage: {
    input_tokens: number;
    output_tokens: number;
    /** counted by the gateway: the provider never said */
    estimated?: boolean;
  };
  conversation_usage?: {
    tokens_in: number;
    tokens_out: number;
    /** the conversation's cost so far, USD */
    cost: number;
  };
  policy?: PolicyEvent[];
}

/** One event of a chat stream: exactly one start, zero or more content, at most one error, one end. */
export type StreamEvent =
  | { type: "start"; data: StreamStart }
  | { type: "content"; data: StreamContent; /** `<message_id>:<seq>` */ id: string; seq: number }
  | { type: "error"; data: StreamError }
  | { type: "end"; data: StreamEnd };

export type StreamEventType = StreamEvent["type"];
