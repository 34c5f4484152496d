/**
 * The Conversation Service API (seed 003): /api/conversation/*, every call in an org
 * (`org_id`: the client's `orgId` unless the call names one).
 */

import { type ClientOptions, type RequestOptions, Transport } from "./http.js";
import { type Operations, ROUTES, type WithDefaultOrg } from "./operations.js";
import { ChatStream, resolveStreamOptions, type StreamLink, type StreamOptions } from "./stream.js";
import type {
  ChatSession,
  Conversation,
  ConversationList,
  ConversationWithSessions,
  CreateConversation,
  CreateSession,
  MessagePage,
  StopAccepted,
  StopStream,
  StreamChat,
  StreamStart,
} from "./types.js";

type Query<K extends keyof Operations> = WithDefaultOrg<Operations[K]["query"]>;

export type ListRequest = Query<"conversationService.list">;
export type GetWithSessionsRequest = Query<"conversationService.getWithSessions">;
export type MessagesRequest = Query<"conversationService.messages">;
export type ResumeStreamRequest = Query<"conversationService.resumeStream">;

export class ConversationService {
  readonly #http: Transport;

  constructor(options: ClientOptions | Transport) {
    this.#http = options instanceof Transport ? options : new Transport(options);
  }

  /** POST /api/conversation/create: a conversation (201). */
  create(data: CreateConversation, options?: RequestOptions & { org_id?: string }): Promise<Conversation> {
    const route = ROUTES["conversationService.create"];
    return this.#http.json({ ...route, query: this.#org(options), body: data, accept: "application/json" }, options);
  }

  /** POST /api/conversation/create_session: a chat session on a model (201). */
  createSession(data: CreateSession, options?: RequestOptions & { org_id?: string }): Promise<ChatSession> {
    const route = ROUTES["conversationService.createSession"];
    return this.#http.json({ ...route, query: this.#org(options), body: data, accept: "application/json" }, options);
  }

  /**
   * POST /api/conversation/stream_chat: sends a message; resolves once the answer's start
   * event has arrived. Errors before the stream (400 `policy_blocked`, 404, 409, 429, ...)
   * reject here. `on_disconnect` defaults to `continue`, so that a dropped connection is
   * resumed with the whole answer.
   */
  streamChat(data: StreamChat, options: StreamOptions & RequestOptions & { org_id?: string } = {}): Promise<ChatStream> {
    const route = ROUTES["conversationService.streamChat"];
    const orgId = this.#orgId(options.org_id);
    const body: StreamChat = { ...data, on_disconnect: data.on_disconnect ?? "continue" };
    return ChatStream.open(
      this.#link(orgId),
      (signal) => this.#http.open({ ...route, query: { org_id: orgId }, body, accept: "text/event-stream" }, { ...options, signal }),
      resolveStreamOptions(options, this.#http),
    );
  }

  /** GET /api/conversation/list: the conversations the caller may see, newest first. */
  list(query: ListRequest = {}, options?: RequestOptions): Promise<ConversationList> {
    const route = ROUTES["conversationService.list"];
    return this.#http.json({ ...route, query: this.#withOrg(query), accept: "application/json" }, options);
  }

  /** GET /api/conversation/get_with_sessions: a conversation and its chat sessions. */
  getWithSessions(query: GetWithSessionsRequest, options?: RequestOptions): Promise<ConversationWithSessions> {
    const route = ROUTES["conversationService.getWithSessions"];
    return this.#http.json({ ...route, query: this.#withOrg(query), accept: "application/json" }, options);
  }

  /** GET /api/conversation/messages: a conversation's messages, oldest first (limit 20 by default). */
  messages(query: MessagesRequest, options?: RequestOptions): Promise<MessagePage> {
    const route = ROUTES["conversationService.messages"];
    return this.#http.json({ ...route, query: this.#withOrg(query), accept: "application/json" }, options);
  }

  /** POST /api/conversation/stop: ends a running answer on whichever worker runs it (202); a finished one: 409 `not_running`. */
  stop(data: StopStream, options?: RequestOptions & { org_id?: string }): Promise<StopAccepted> {
    const route = ROUTES["conversationService.stop"];
    return this.#http.json({ ...route, query: this.#org(options), body: data, accept: "application/json" }, options);
  }

  /**
   * GET /api/conversation/stream: attaches to a running or finished answer (another tab, a
   * reload) after `last_event_id`. With a `resume_token` and no bearer token, the token in
   * the URL is the credential.
   */
  resumeStream(query: ResumeStreamRequest, options: StreamOptions & RequestOptions = {}): Promise<ChatStream> {
    const orgId = query.org_id ?? this.#http.orgId;
    const link = this.#link(orgId, query.resume_token);
    const start = { message_id: query.message_id } as StreamStart;
    return ChatStream.open(link, (signal) => link.reconnect(start, query.last_event_id, signal, options), resolveStreamOptions(options, this.#http));
  }

  /** A URL for a browser's EventSource (no headers: the start event's resume_token is the credential). */
  eventSourceUrl(start: Pick<StreamStart, "message_id" | "resume_token">, lastEventId?: string): string {
    if (!start.resume_token) throw new TypeError("the start event carries no resume_token");
    const route = ROUTES["conversationService.resumeStream"];
    return this.#http.url(route.path, { message_id: start.message_id, resume_token: start.resume_token, last_event_id: lastEventId });
  }

  #link(orgId: string | undefined, resumeToken?: string): StreamLink {
    const http = this.#http;
    const route = ROUTES["conversationService.resumeStream"];
    return {
      reconnect: (start, lastEventId, signal, options) => {
        // a resume_token the caller names, else the bearer token when there is one (a
        // resume_token expires after 15 minutes), else the start event's
        const token = resumeToken ?? (http.token ? undefined : start.resume_token);
        const query = { org_id: token ? undefined : orgId, message_id: start.message_id, resume_token: token };
        const headers: Record<string, string> = lastEventId ? { "Last-Event-ID": lastEventId } : {};
        return http.open(
          { ...route, query, headers, auth: token === undefined, accept: "text/event-stream" },
          { ...options, signal },
        );
      },
      stop: (start) => this.stop({ message_id: start.message_id }, orgId === undefined ? {} : { org_id: orgId }),
      eventSourceUrl: (start, lastEventId) => this.eventSourceUrl(start, lastEventId),
    };
  }

  #orgId(explicit: string | undefined): string {
    const orgId = explicit ?? this.#http.orgId;
    if (!orgId) throw new TypeError("org_id is required: pass it, or set orgId on the client");
    return orgId;
  }

  #org(options: { org_id?: string } | undefined): { org_id: string } {
    return { org_id: this.#orgId(options?.org_id) };
  }

  #withOrg<Q extends { org_id?: string }>(query: Q): Q & { org_id: string } {
    return { ...query, org_id: this.#orgId(query.org_id) };
  }
}
