/**
 * The client against the served OpenAPI document, at compile time: for every operation the
 * client calls, the document must have that method on that path, with exactly the query,
 * path parameters, headers, JSON body, success status and answer the client's types say;
 * its errors must be the contract's error body; its stream must be the chat events. And
 * every route of both conversation APIs in the document must have a client method.
 *
 * `generated/openapi.ts` is written by scripts/contract.mjs from a running gateway's
 * GET /openapi.json just before this compiles, so nothing here knows the gateway's code.
 * A mismatch is a compile error naming the operation and what differs.
 */

import type {
  ErrorBody,
  OperationName,
  Operations,
  StreamContent,
  StreamEnd,
  StreamError,
  StreamEvent,
  StreamStart,
} from "@chat-gateway/client";
import type { components, paths } from "./generated/openapi.js";

/** Structural identity, blind to how a type is spelled (intersections, aliases). */
type Normalize<T> = T extends (infer E)[] ? Normalize<E>[] : T extends object ? { [K in keyof T]: Normalize<T[K]> } : T;
type Same<A, B> = (<G>() => G extends Normalize<A> ? 1 : 2) extends <G>() => G extends Normalize<B> ? 1 : 2 ? true : false;

type AnyOp = Operations[OperationName];
type Op<K extends OperationName> = Operations[K];
type DocOp<O extends AnyOp> = O["path"] extends keyof paths
  ? O["method"] extends keyof paths[O["path"]] ? NonNullable<paths[O["path"]][O["method"]]> : never
  : never;

type Params<D> = D extends { parameters: infer P } ? P : never;
type DocQuery<D> = NonNullable<Params<D> extends { query?: infer Q } ? Q : never>;
type DocPathParams<D> = NonNullable<Params<D> extends { path?: infer X } ? X : never>;
type DocHeaders<D> = NonNullable<Params<D> extends { header?: infer H } ? H : never>;
type JsonBody<RB> = [RB] extends [never] ? never : RB extends { content: { "application/json": infer B } } ? B : never;
type DocBody<D> = D extends { requestBody?: infer RB } ? JsonBody<NonNullable<RB>> : never;
type Responses<D> = D extends { responses: infer R } ? R : never;
type Content<D, S> = S extends keyof Responses<D> ? (Responses<D>[S] extends { content: infer C } ? C : never) : never;
type Json<D, S> = Content<D, S> extends { "application/json": infer J } ? J : never;
type Events<D, S> = Content<D, S> extends { "text/event-stream": infer E } ? E : never;
type HasEvents<D, S> = [Events<D, S>] extends [never] ? false : true;
type ErrorStatus<D> = Exclude<keyof Responses<D>, 200 | 201 | 202>;
type ErrorsAreContract<D> = false extends { [S in ErrorStatus<D>]: Same<Json<D, S>, ErrorBody> }[ErrorStatus<D>] ? false : true;

type Frames = components["schemas"]["ChatStreamEvent"];
type Frame<T extends string> = Extract<Frames, { event: T }>;
type Event<T extends StreamEvent["type"]> = Extract<StreamEvent, { type: T }>;

type Check<K extends string, O extends AnyOp, D = DocOp<O>> =
  [D] extends [never] ? `${K}: the document has no ${Uppercase<O["method"]>} ${O["path"]}`
  : Same<DocQuery<D>, O["query"]> extends false ? `${K}: the query parameters differ`
  : Same<DocPathParams<D>, O["pathParams"]> extends false ? `${K}: the path parameters differ`
  : Same<DocHeaders<D>, O["headers"]> extends false ? `${K}: the header parameters differ`
  : Same<DocBody<D>, O["body"]> extends false ? `${K}: the JSON request body differs`
  : [Content<D, O["status"]>] extends [never] ? `${K}: the document has no ${O["status"]} answer`
  : Same<Json<D, O["status"]>, O["response"]> extends false ? `${K}: the JSON answer differs`
  : Same<HasEvents<D, O["status"]>, O["events"]> extends false ? `${K}: the answer is${O["events"] extends true ? " not" : ""} an event stream there`
  : O["events"] extends true ? (Same<Events<D, O["status"]>, Frames> extends false ? `${K}: the event stream is not ChatStreamEvent` : ErrorsChecked<K, D>)
  : ErrorsChecked<K, D>;
type ErrorsChecked<K extends string, D> = ErrorsAreContract<D> extends false ? `${K}: an error answer is not the contract's error body` : "ok";

// every operation; a mismatch reads e.g. Type '"sendPrompt: the JSON answer differs"' is not assignable to type '"ok"'
export const operations: { [K in OperationName]: "ok" } = null as unknown as { [K in OperationName]: Check<K, Op<K>> };

// the check itself can fail: each drifted copy of an operation must not compile
type Drift<K extends OperationName, Part extends keyof AnyOp, T> = Omit<Op<K>, Part> & { [P in Part]: T };
type Answer = Op<"getConversations">["response"];
export const drifted: "ok"[] = [
  // @ts-expect-error a path the document does not have
  null as unknown as Check<"path", Drift<"getMessages", "path", "/conversation/{conversation_id}/message">>,
  // @ts-expect-error a method the route does not take
  null as unknown as Check<"method", Drift<"deleteConversation", "method", "post">>,
  // @ts-expect-error a query parameter the document does not name
  null as unknown as Check<"query", Drift<"getConversations", "query", Op<"getConversations">["query"] & { page?: number }>>,
  // @ts-expect-error a required parameter sent as optional
  null as unknown as Check<"optional", Drift<"conversationService.list", "query", { org_id?: string; limit?: number; offset?: number }>>,
  // @ts-expect-error a body field of another type
  null as unknown as Check<"body", Drift<"createConversation", "body", { repoId: number }>>,
  // @ts-expect-error an answer field of another type (token counts are strings there)
  null as unknown as Check<"answer", Drift<"getConversations", "response", Omit<Answer, "total"> & { total: string }>>,
  // @ts-expect-error an answer field the document does not have
  null as unknown as Check<"extra", Drift<"deleteConversation", "response", Op<"deleteConversation">["response"] & { deletedBy: string }>>,
  // @ts-expect-error another success status
  null as unknown as Check<"status", Drift<"conversationService.create", "status", 200>>,
  // @ts-expect-error a JSON route taken for a stream
  null as unknown as Check<"events", Drift<"getMessages", "events", true>>,
];

// the stream's events, frame by frame
export const events: {
  start: true; content: true; contentId: true; error: true; end: true; errorBody: true;
} = null as unknown as {
  start: Same<Frame<"start">["data"], StreamStart> & Same<Event<"start">["data"], StreamStart>;
  content: Same<Frame<"content">["data"], StreamContent> & Same<Event<"content">["data"], StreamContent>;
  contentId: Same<Frame<"content">["id"], Event<"content">["id"]>;
  error: Same<Frame<"error">["data"], StreamError> & Same<Event<"error">["data"], StreamError>;
  end: Same<Frame<"end">["data"], StreamEnd> & Same<Event<"end">["data"], StreamEnd>;
  errorBody: Same<components["schemas"]["Error"], ErrorBody>;
};

// every route of both conversation APIs has a client method: a new one names itself here
type Verb = "get" | "post" | "put" | "patch" | "delete";
type Route<O extends AnyOp> = `${O["method"]} ${O["path"]}`;
type Covered = { [K in OperationName]: Route<Op<K>> }[OperationName];
type DocRoutes = {
  [P in keyof paths & string]: P extends `/conversation${string}` | `/api/conversation${string}`
    ? { [M in Verb]: [NonNullable<paths[P][M]>] extends [never] ? never : `${M} ${P}` }[Verb]
    : never;
}[keyof paths & string];
export const uncovered: never = null as unknown as Exclude<DocRoutes, Covered>;
// @ts-expect-error and it notices a route without a method
export const forgotten: never = null as unknown as Exclude<DocRoutes, Exclude<Covered, Route<Op<"stopConversation">>>>;
