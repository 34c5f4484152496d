/**
 * One error tree, like openai-python's: every failure is an APIError; an answer with an
 * error status is an APIStatusError (one class per status the gateway answers with), a
 * request that got no answer is an APIConnectionError, and the caller's own abort is apart.
 */

import type { ErrorBody } from "./types.js";

export class APIError extends Error {
  /** the contract's machine code (`validation_error`, ...), or the client's own for failures without an answer */
  readonly code: string;

  constructor(message: string, code: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** The gateway answered with an error status and the contract's `{success: false, code, message}`. */
export class APIStatusError extends APIError {
  readonly status: number;
  /** seconds to wait before trying again (`Retry-After`): set on 429, 409 `conversation_busy`, 503 */
  readonly retryAfter: number | null;
  /** the gateway's `X-Request-Id`, for its logs */
  readonly requestId: string | null;
  readonly headers: Headers;
  /** the parsed error body, or the raw text when it was not JSON */
  readonly body: ErrorBody | string;

  constructor(status: number, body: ErrorBody | string, headers: Headers) {
    const code = typeof body === "string" ? `http_${status}` : body.code;
    const text = typeof body === "string" ? body.slice(0, 200) : body.message;
    super(`${status} ${code}: ${text}`, code);
    this.status = status;
    this.retryAfter = parseRetryAfter(headers.get("retry-after"));
    this.requestId = headers.get("x-request-id");
    this.headers = headers;
    this.body = body;
  }
}

/** 400: invalid input (`validation_error`, `invalid_json`, `prompt_too_long`, ...) or a prompt the pre-policy blocked (`policy_blocked`). */
export class BadRequestError extends APIStatusError {}
/** 401: a missing, invalid or expired token. */
export class AuthenticationError extends APIStatusError {}
/** 403: another org's `org_id`, or a role without the right. */
export class PermissionDeniedError extends APIStatusError {}
/** 404: not found, or not visible to the caller (another org's resources are never revealed). */
export class NotFoundError extends APIStatusError {}
/** 409: `conversation_busy` (another prompt is being answered; see `retryAfter`) or `not_running`. */
export class ConflictError extends APIStatusError {}
/** 413: the request body is over the gateway's limit. */
export class PayloadTooLargeError extends APIStatusError {}
/** 429: `rate_limited` or `token_budget_exceeded`; `retryAfter` says when the window frees up. */
export class RateLimitError extends APIStatusError {}
/** 500 and every other 5xx. */
export class InternalServerError extends APIStatusError {}
/** 502: the provider failed before the answer began (`provider_error`, `provider_auth`). */
export class BadGatewayError extends InternalServerError {}
/** 503: the gateway cannot reach its store (`redis_unavailable`); `retryAfter` when it says. */
export class ServiceUnavailableError extends InternalServerError {}

/** No answer: the connection failed, or a stream broke more often than it may be resumed. */
export class APIConnectionError extends APIError {
  constructor(message = "connection error", options?: { cause?: unknown }, code = "connection_error") {
    super(message, code, options);
  }
}

/** No answer within the request's `timeout`. */
export class APITimeoutError extends APIConnectionError {
  constructor(message = "request timed out", options?: { cause?: unknown }) {
    super(message, options, "timeout");
  }
}

/** The caller aborted (its AbortSignal, or `ChatStream.abort()`). */
export class APIUserAbortError extends APIError {
  constructor(message = "request aborted", options?: { cause?: unknown }) {
    super(message, "aborted", options);
  }
}

type StatusErrorClass = new (status: number, body: ErrorBody | string, headers: Headers) => APIStatusError;

const BY_STATUS: Record<number, StatusErrorClass> = {
  400: BadRequestError,
  401: AuthenticationError,
  403: PermissionDeniedError,
  404: NotFoundError,
  409: ConflictError,
  413: PayloadTooLargeError,
  429: RateLimitError,
  502: BadGatewayError,
  503: ServiceUnavailableError,
};

/** The error class for an answer's status and body. */
export function statusError(status: number, body: ErrorBody | string, headers: Headers): APIStatusError {
  const cls = BY_STATUS[status] ?? (status >= 500 ? InternalServerError : APIStatusError);
  return new cls(status, body, headers);
}

/** Reads an error answer's body (bounded by what the gateway sends: one small JSON object). */
export async function errorFromResponse(response: Response): Promise<APIStatusError> {
  let text = "";
  try {
    text = await response.text();
  } catch {
    // the body broke off: the status alone still says what happened
  }
  return statusError(response.status, parseErrorBody(text), response.headers);
}

function parseErrorBody(text: string): ErrorBody | string {
  try {
    const body: unknown = JSON.parse(text);
    if (isErrorBody(body)) return body;
  } catch {
    // not JSON: a proxy's page, say
  }
  return text;
}

function isErrorBody(value: unknown): value is ErrorBody {
  if (typeof value !== "object" || value === null) return false;
  const body = value as Record<string, unknown>;
  return typeof body["code"] === "string" && typeof body["message"] === "string";
}

/** `Retry-After` as seconds: a number of seconds, or an HTTP date. */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | null {
  if (value === null || value.trim() === "") return null;
  const text = value.trim();
  if (/^[0-9]+(\.[0-9]+)?$/.test(text)) return Number(text);
  const at = Date.parse(text);
  return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - now) / 1000));
}
