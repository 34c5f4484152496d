"""The OpenAI-compatible Responses API's answers, as OpenAI's API shapes them: the response
object, its output items, and the stream's events.

A text delta and a function call's argument delta are byte templates
(gateway/api/compat/responses_stream.py); every other event is serialized from these
models, and tests/api/compat/test_responses.py holds the templates to ResponseStreamFrame."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from gateway.api.schemas.common import Schema, is_none

ItemStatus = Literal["in_progress", "completed", "incomplete"]


class OutputText(Schema):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[dict[str, Any]] = Field(default_factory=list)
    logprobs: list[dict[str, Any]] = Field(default_factory=list)


class Refusal(Schema):
    type: Literal["refusal"] = "refusal"
    refusal: str


ContentPart = Annotated[OutputText | Refusal, Field(discriminator="type")]


class OutputMessage(Schema):
    id: str = Field(examples=["msg_0b7c6a5e8d2f4a519a0e2f4c1f7f9d3e"])
    type: Literal["message"] = "message"
    status: ItemStatus
    role: Literal["assistant"] = "assistant"
    content: list[ContentPart]


class FunctionCall(Schema):
    id: str = Field(examples=["fc_0b7c6a5e8d2f4a519a0e2f4c1f7f9d3e_0"])
    type: Literal["function_call"] = "function_call"
    status: ItemStatus
    call_id: str = Field(description="what the function_call_output item answering it names")
    name: str
    arguments: str = Field(description="the JSON text of the arguments")


class SummaryText(Schema):
    type: Literal["summary_text"] = "summary_text"
    text: str


class ReasoningItem(Schema):
    id: str = Field(examples=["rs_0b7c6a5e8d2f4a519a0e2f4c1f7f9d3e_0"])
    type: Literal["reasoning"] = "reasoning"
    summary: list[SummaryText] = Field(description="the model's reasoning, as it streamed")
    encrypted_content: str | None = Field(
        None,
        exclude_if=is_none,
        description='with include ["reasoning.encrypted_content"]: the provider\'s signature '
        "over it (Anthropic's), to hand back in a later input",
    )


OutputItem = Annotated[OutputMessage | FunctionCall | ReasoningItem, Field(discriminator="type")]


class InputTokensDetails(Schema):
    cached_tokens: int = Field(description="of the input, read from the provider's cache")
    cache_write_tokens: int = Field(description="of the input, written to the provider's cache")


class OutputTokensDetails(Schema):
    reasoning_tokens: int


class ResponseUsage(Schema):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class ResponseError(Schema):
    code: str = Field(examples=["policy_blocked", "server_error"])
    message: str


class IncompleteDetails(Schema):
    reason: Literal["max_output_tokens", "content_filter"]


class Reasoning(Schema):
    effort: str | None = None
    summary: str | None = None


class TextConfig(Schema):
    format: dict[str, Any] = Field(description="as asked: text, json_object or json_schema")
    verbosity: str | None = Field(None, exclude_if=is_none)


class Response(Schema):
    id: str = Field(
        description="resp_ and the stored answer's id: previous_response_id continues it",
        examples=["resp_0b7c6a5e8d2f4a519a0e2f4c1f7f9d3e"],
    )
    object: Literal["response"] = "response"
    created_at: int = Field(description="Unix seconds")
    status: Literal["in_progress", "completed", "incomplete", "failed"]
    error: ResponseError | None
    incomplete_details: IncompleteDetails | None
    instructions: str | None
    max_output_tokens: int | None
    model: str
    output: list[OutputItem]
    parallel_tool_calls: bool
    previous_response_id: str | None
    reasoning: Reasoning
    store: bool
    temperature: float | None
    text: TextConfig
    tool_choice: str | dict[str, Any]
    tools: list[dict[str, Any]]
    top_p: float | None
    truncation: Literal["disabled"] = "disabled"
    usage: ResponseUsage | None = Field(description="null until the response has ended")
    user: str | None
    metadata: dict[str, str]


# -- the stream ------------------------------------------------------------------------------


class _Event(Schema):
    sequence_number: int = Field(description="0, 1, 2, ... in the order sent")


class ResponseCreated(_Event):
    type: Literal["response.created"] = "response.created"
    response: Response


class ResponseInProgress(_Event):
    type: Literal["response.in_progress"] = "response.in_progress"
    response: Response


class ResponseCompleted(_Event):
    type: Literal["response.completed"] = "response.completed"
    response: Response


class ResponseIncomplete(_Event):
    type: Literal["response.incomplete"] = "response.incomplete"
    response: Response


class ResponseFailed(_Event):
    type: Literal["response.failed"] = "response.failed"
    response: Response


class OutputItemAdded(_Event):
    type: Literal["response.output_item.added"] = "response.output_item.added"
    output_index: int
    item: OutputItem


class OutputItemDone(_Event):
    type: Literal["response.output_item.done"] = "response.output_item.done"
    output_index: int
    item: OutputItem


class ContentPartAdded(_Event):
    type: Literal["response.content_part.added"] = "response.content_part.added"
    item_id: str
    output_index: int
    content_index: int
    part: ContentPart


class ContentPartDone(_Event):
    type: Literal["response.content_part.done"] = "response.content_part.done"
    item_id: str
    output_index: int
    content_index: int
    part: ContentPart


class OutputTextDelta(_Event):
    type: Literal["response.output_text.delta"] = "response.output_text.delta"
    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list[dict[str, Any]] = Field(default_factory=list)


class OutputTextDone(_Event):
    type: Literal["response.output_text.done"] = "response.output_text.done"
    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list[dict[str, Any]] = Field(default_factory=list)


class RefusalDelta(_Event):
    type: Literal["response.refusal.delta"] = "response.refusal.delta"
    item_id: str
    output_index: int
    content_index: int
    delta: str


class RefusalDone(_Event):
    type: Literal["response.refusal.done"] = "response.refusal.done"
    item_id: str
    output_index: int
    content_index: int
    refusal: str


class FunctionCallArgumentsDelta(_Event):
    type: Literal["response.function_call_arguments.delta"] = (
        "response.function_call_arguments.delta"
    )
    item_id: str
    output_index: int
    delta: str


class FunctionCallArgumentsDone(_Event):
    type: Literal["response.function_call_arguments.done"] = "response.function_call_arguments.done"
    item_id: str
    output_index: int
    name: str
    arguments: str


class ReasoningSummaryPartAdded(_Event):
    type: Literal["response.reasoning_summary_part.added"] = "response.reasoning_summary_part.added"
    item_id: str
    output_index: int
    summary_index: int
    part: SummaryText


class ReasoningSummaryPartDone(_Event):
    type: Literal["response.reasoning_summary_part.done"] = "response.reasoning_summary_part.done"
    item_id: str
    output_index: int
    summary_index: int
    part: SummaryText


class ReasoningSummaryTextDelta(_Event):
    type: Literal["response.reasoning_summary_text.delta"] = "response.reasoning_summary_text.delta"
    item_id: str
    output_index: int
    summary_index: int
    delta: str


class ReasoningSummaryTextDone(_Event):
    type: Literal["response.reasoning_summary_text.done"] = "response.reasoning_summary_text.done"
    item_id: str
    output_index: int
    summary_index: int
    text: str


class ResponseErrorEvent(_Event):
    """A failure mid-stream, before response.failed."""

    type: Literal["error"] = "error"
    code: str = Field(examples=["policy_blocked", "server_error"])
    message: str
    param: str | None = None


ResponseEventData = (
    ResponseCreated
    | ResponseInProgress
    | ResponseCompleted
    | ResponseIncomplete
    | ResponseFailed
    | OutputItemAdded
    | OutputItemDone
    | ContentPartAdded
    | ContentPartDone
    | OutputTextDelta
    | OutputTextDone
    | RefusalDelta
    | RefusalDone
    | FunctionCallArgumentsDelta
    | FunctionCallArgumentsDone
    | ReasoningSummaryPartAdded
    | ReasoningSummaryPartDone
    | ReasoningSummaryTextDelta
    | ReasoningSummaryTextDone
    | ResponseErrorEvent
)
ResponseEvent = Annotated[ResponseEventData, Field(discriminator="type")]


class ResponseStreamFrame(Schema):
    """response.created, response.in_progress, then per output item: output_item.added,
    its parts and deltas, output_item.done; then response.completed (or .incomplete), or
    `error` and response.failed. The `event:` line names the data's type."""

    event: str
    data: ResponseEvent

    @model_validator(mode="after")
    def _event_names_its_data(self) -> ResponseStreamFrame:
        if self.event != self.data.type:
            raise ValueError(f"event {self.event!r} carries data of type {self.data.type!r}")
        return self
