/**
 * @chat-gateway/client: chat-gateway's repository-style and Conversation Service APIs, with
 * streams as async iterators of typed events that resume by themselves after a drop.
 */

export { GatewayClient, type HttpMethod, type ResumeOptions } from "./client.js";
export {
  APIConnectionError,
  APIError,
  APIStatusError,
  APITimeoutError,
  APIUserAbortError,
  AuthenticationError,
  BadGatewayError,
  BadRequestError,
  ConflictError,
  InternalServerError,
  NotFoundError,
  PayloadTooLargeError,
  PermissionDeniedError,
  RateLimitError,
  ServiceUnavailableError,
  errorFromResponse,
  parseRetryAfter,
  statusError,
} from "./errors.js";
export type { ClientOptions, FetchLike, RequestOptions } from "./http.js";
export { ROUTES, type Method, type Operation, type OperationName, type Operations } from "./operations.js";
export {
  ConversationService,
  type GetWithSessionsRequest,
  type ListRequest,
  type MessagesRequest,
  type ResumeStreamRequest,
} from "./service.js";
export { type SSEFrame, SSEParser } from "./sse.js";
export { type ChatResult, ChatStream, eventSeq, type StreamOptions } from "./stream.js";
export type * from "./types.js";
