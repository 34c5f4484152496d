/**
 * The client: the repository-style API (seeds 000-004) with the seeds' method names on a
 * `makeRequest` helper, and the Conversation Service API as `conversationService`.
 *
 *     const gw = new GatewayClient({ baseUrl: "http://127.0.0.1:8000", token, orgId: "acme" });
 *     const { conversationId } = await gw.createConversation({ repoId: "repo-123" });
 *     const stream = await gw.sendPrompt(conversationId, { prompt: "Hello", stream: true });
 *     for await (const event of stream) if (event.type === "content") out.append(event.data.delta);
 */

import { type ClientOptions, type RequestOptions, Transport } from "./http.js";
import { fillPath, ROUTES } from "./operations.js";
import { ConversationService } from "./service.js";
import { ChatStream, resolveStreamOptions, type StreamLink, type StreamOptions } from "./stream.js";
import type {
  CreateConversationRequest,
  CreateConversationResponse,
  DeleteConversationResponse,
  GetConversationsRequest,
  GetConversationsResponse,
  GetMessagesRequest,
  GetMessagesResponse,
  SendPromptRequest,
  SendPromptResponse,
  StopAccepted,
  StreamStart,
} from "./types.js";

export type HttpMethod = "GET" | "POST" | "PUT" | "DELETE";

/** The resume route's options: where to continue from, and a resume_token in place of the bearer token. */
export interface ResumeOptions extends StreamOptions, RequestOptions {
  lastEventId?: string;
  resumeToken?: string;
}

export class GatewayClient {
  /** the Conversation Service API (/api/conversation/*) over the same connection settings */
  readonly conversationService: ConversationService;
  readonly #http: Transport;

  constructor(options: ClientOptions) {
    this.#http = new Transport(options);
    this.conversationService = new ConversationService(this.#http);
  }

  /**
   * One JSON request, as the seeds' client makes them: `makeRequest('conversation', 'POST',
   * data)`. For routes this client has no method for (the admin API, say).
   */
  makeRequest<T>(path: string, method: HttpMethod, data: unknown, options?: RequestOptions): Promise<T> {
    const body = data === null || data === undefined ? undefined : data;
    return this.#http.json<T>({ method, path, body, accept: "application/json" }, options);
  }

  /** POST /conversation: a conversation on a repository (workspace and org come from it). */
  createConversation(data: CreateConversationRequest, options?: RequestOptions): Promise<CreateConversationResponse> {
    const route = ROUTES.createConversation;
    return this.#http.json({ ...route, body: data, accept: "application/json" }, options);
  }

  /**
   * POST /conversation/{id}/prompt. The whole answer as JSON; or, with `stream: true`, a
   * ChatStream once its start event has arrived (a dropped connection is resumed through
   * GET /conversation/{id}/messages/{messageId}/stream).
   */
  sendPrompt(conversationId: string, data: SendPromptRequest & { stream?: false }, options?: RequestOptions): Promise<SendPromptResponse>;
  sendPrompt(conversationId: string, data: SendPromptRequest & { stream: true }, options?: StreamOptions & RequestOptions): Promise<ChatStream>;
  sendPrompt(
    conversationId: string, data: SendPromptRequest, options: StreamOptions & RequestOptions = {},
  ): Promise<SendPromptResponse | ChatStream> {
    const route = ROUTES.sendPrompt;
    const path = fillPath(route.path, { conversation_id: conversationId });
    if (data.stream !== true) {
      return this.#http.json({ method: route.method, path, body: data, accept: "application/json" }, options);
    }
    const body: SendPromptRequest = { ...data, on_disconnect: data.on_disconnect ?? "continue" };
    return ChatStream.open(
      this.#link(conversationId),
      (signal) => this.#http.open({ method: route.method, path, body, accept: "text/event-stream" }, { ...options, signal }),
      resolveStreamOptions(options, this.#http),
    );
  }

  /** GET /conversation: newest first, filtered (take: default 50, at most 100). */
  getConversations(query: GetConversationsRequest = {}, options?: RequestOptions): Promise<GetConversationsResponse> {
    const route = ROUTES.getConversations;
    return this.#http.json({ ...route, query, accept: "application/json" }, options);
  }

  /** GET /conversation/{id}/messages: oldest first (take: default 50, at most 100). */
  getMessages(conversationId: string, query: GetMessagesRequest = {}, options?: RequestOptions): Promise<GetMessagesResponse> {
    const route = ROUTES.getMessages;
    const path = fillPath(route.path, { conversation_id: conversationId });
    return this.#http.json({ method: route.method, path, query, accept: "application/json" }, options);
  }

  /** DELETE /conversation/{id}: a soft delete; afterwards the conversation is 404 everywhere. */
  deleteConversation(conversationId: string, options?: RequestOptions): Promise<DeleteConversationResponse> {
    const route = ROUTES.deleteConversation;
    const path = fillPath(route.path, { conversation_id: conversationId });
    return this.#http.json({ method: route.method, path, accept: "application/json" }, options);
  }

  /** POST /conversation/{id}/stop: ends the answer the conversation is generating (202); none: 409 `not_running`. */
  stopConversation(conversationId: string, options?: RequestOptions): Promise<StopAccepted> {
    const route = ROUTES.stopConversation;
    const path = fillPath(route.path, { conversation_id: conversationId });
    return this.#http.json({ method: route.method, path, accept: "application/json" }, options);
  }

  /**
   * GET /conversation/{id}/messages/{messageId}/stream: attaches to a running or finished
   * answer after `lastEventId`; with `resumeToken`, that token is the credential.
   */
  resumeStream(conversationId: string, messageId: string, options: ResumeOptions = {}): Promise<ChatStream> {
    const link = this.#link(conversationId, options.resumeToken);
    const start = { message_id: messageId } as StreamStart;
    return ChatStream.open(link, (signal) => link.reconnect(start, options.lastEventId, signal, options), resolveStreamOptions(options, this.#http));
  }

  /** A URL for a browser's EventSource on the repository-style resume route (the resume_token is the credential). */
  eventSourceUrl(
    conversationId: string, start: Pick<StreamStart, "message_id" | "resume_token">, lastEventId?: string,
  ): string {
    if (!start.resume_token) throw new TypeError("the start event carries no resume_token");
    const path = fillPath(ROUTES.resumeStream.path, { conversation_id: conversationId, message_id: start.message_id });
    return this.#http.url(path, { resume_token: start.resume_token, last_event_id: lastEventId });
  }

  #link(conversationId: string, resumeToken?: string): StreamLink {
    const http = this.#http;
    const route = ROUTES.resumeStream;
    return {
      reconnect: (start, lastEventId, signal, options) => {
        const token = resumeToken ?? (http.token ? undefined : start.resume_token);
        const path = fillPath(route.path, { conversation_id: conversationId, message_id: start.message_id });
        const headers: Record<string, string> = lastEventId ? { "Last-Event-ID": lastEventId } : {};
        return http.open(
          { method: route.method, path, query: { resume_token: token }, headers, auth: token === undefined, accept: "text/event-stream" },
          { ...options, signal },
        );
      },
      stop: () => this.stopConversation(conversationId),
      eventSourceUrl: (start, lastEventId) => this.eventSourceUrl(conversationId, start, lastEventId),
    };
  }
}
