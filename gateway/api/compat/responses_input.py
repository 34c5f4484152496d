"""A Responses API request as the normalized request: its input (a text, or items: messages,
function calls, their outputs, reasoning handed back) as turns, its function tools, tool
choice, structured output, reasoning effort and sampling.

What a chat model cannot do here is refused with 400 in OpenAI's shape, naming the field:
hosted tools (web search, file search, code interpreter, computer use, MCP, ...), which this
gateway does not run, items that refer to OpenAI's own stored objects, background mode and
prompt templates. Nothing is dropped silently (docs/compatibility.md has the table)."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from gateway.api.compat import common as compat
from gateway.api.inputs import Body, refused
from gateway.errors import BadRequest, Loc
from providers.base import (
    ChatMessage,
    ChatRequest,
    ContentPart,
    DocumentPart,
    ForcedTool,
    ImagePart,
    ReasoningPart,
    ResponseFormat,
    Role,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
)

MAX_INPUT_ITEMS = 1000  # items of one input (the history a turn loads is as long)
MAX_PARTS = 100  # content parts of one message
ROLES: dict[str, Role] = {
    "user": "user",
    "system": "system",
    "developer": "system",
    "assistant": "assistant",
}
# include values with nothing to include here (their items are hosted tools' results, never
# produced by this gateway) are accepted; logprobs are not offered
VACUOUS_INCLUDES = frozenset(
    {
        "file_search_call.results",
        "web_search_call.results",
        "web_search_call.action.sources",
        "message.input_image.image_url",
        "computer_call_output.output.image_url",
        "code_interpreter_call.outputs",
    }
)
ENCRYPTED_REASONING = "reasoning.encrypted_content"
_DATA_URL = re.compile(r"data:([\w/+.-]+);base64,(.*)", re.DOTALL)


class TextOptions(Body):
    format: dict[str, Any] | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningOptions(Body):
    effort: str | None = Field(default=None, max_length=20)
    summary: Literal["auto", "concise", "detailed"] | None = None
    generate_summary: Literal["auto", "concise", "detailed"] | None = None


class StreamOptions(Body):
    include_obfuscation: bool | None = None


class ResponsesRequest(Body):
    model: str = Field(min_length=1, max_length=200)
    input: str | list[dict[str, Any]] = Field(
        description="a text, or input items (messages, function_call, function_call_output, "
        "reasoning), at most 1000"
    )
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: TextOptions | None = None
    reasoning: ReasoningOptions | None = None
    max_output_tokens: int | None = Field(default=None, ge=1, le=compat.MAX_OUTPUT_TOKENS)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    store: bool = True
    previous_response_id: str | None = Field(default=None, max_length=200)
    metadata: dict[str, str] | None = Field(default=None, max_length=16)
    user: str | None = Field(default=None, max_length=256)
    safety_identifier: str | None = Field(default=None, max_length=256)
    prompt_cache_key: str | None = Field(default=None, max_length=256)
    service_tier: str | None = Field(default=None, max_length=20)
    include: list[str] | None = Field(default=None, max_length=20)
    truncation: Literal["auto", "disabled"] | None = None
    # asked for, these are refused: they need what a chat model behind this gateway lacks
    background: bool | None = None
    conversation: str | dict[str, Any] | None = None
    prompt: dict[str, Any] | None = None
    max_tool_calls: int | None = None
    top_logprobs: int | None = None


@dataclass(slots=True)
class Translated:
    """The request for the turn and what the response object echoes."""

    request: ChatRequest
    encrypted_reasoning: bool  # include: reasoning.encrypted_content
    tools: list[dict[str, Any]] = field(default_factory=list)


def unsupported(loc: Loc, message: str) -> BadRequest:
    return refused(loc, message, code="unsupported_parameter")


def translate(
    body: ResponsesRequest,
    prior: list[ChatMessage],
    join: Callable[[list[ChatMessage], list[ChatMessage]], list[ChatMessage]] | None = None,
) -> Translated:
    """The normalized request: instructions, then `prior` (the stored conversation that
    previous_response_id continues) joined with the input's turns."""
    _refuse_unsupported(body)
    messages: list[ChatMessage] = []
    if body.instructions:
        messages.append(ChatMessage("system", body.instructions))
    turns = input_turns(body.input)
    messages += join(prior, turns) if join is not None else [*prior, *turns]
    tools = [function_tool(t, i) for i, t in enumerate(body.tools or [])]
    request = ChatRequest(
        model="",
        messages=messages,
        max_output_tokens=body.max_output_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        tools=tuple(tools),
        tool_choice=tool_choice(body.tool_choice),
        parallel_tool_calls=body.parallel_tool_calls if tools else None,
        response_format=response_format(body.text),
        reasoning_effort=body.reasoning.effort if body.reasoning else None,
        user=body.user or body.safety_identifier,
        metadata=body.metadata,
        service_tier=body.service_tier,
        **_native(body),
    )
    include = set(body.include or ())
    return Translated(request, ENCRYPTED_REASONING in include, [dict(t) for t in body.tools or []])


def _native(body: ResponsesRequest) -> dict[str, Any]:
    """Chat Completions fields of the same meaning: sent to OpenAI models, refused by the
    Anthropic adapter (it has none of them)."""
    native: dict[str, Any] = {}
    if body.prompt_cache_key is not None:
        native["prompt_cache_key"] = body.prompt_cache_key
    if body.text is not None and body.text.verbosity is not None:
        native["verbosity"] = body.text.verbosity
    return {"native": native, "native_api": "openai"} if native else {}


def _refuse_unsupported(body: ResponsesRequest) -> None:  # noqa: C901 - one rule per field
    if body.background:
        raise unsupported(("background",), "background responses are not run by this gateway")
    if body.conversation is not None:
        raise unsupported(
            ("conversation",),
            "the Conversations API is not served; continue with previous_response_id",
        )
    if body.prompt is not None:
        raise unsupported(("prompt",), "stored prompt templates are OpenAI's own objects")
    if body.max_tool_calls is not None:
        raise unsupported(("max_tool_calls",), "this gateway runs no hosted tools to limit")
    if body.top_logprobs:
        raise unsupported(("top_logprobs",), "log probabilities are not offered here")
    if body.truncation == "auto":
        raise unsupported(
            ("truncation",), "only 'disabled': an input longer than the model's window is a 400"
        )
    if body.stream_options is not None:
        if not body.stream:
            raise refused(("stream_options",), "only allowed when stream is true")
        if body.stream_options.include_obfuscation:
            raise unsupported(
                ("stream_options", "include_obfuscation"),
                "the gateway's events are not padded; set it false",
            )
    for i, name in enumerate(body.include or ()):
        if name != ENCRYPTED_REASONING and name not in VACUOUS_INCLUDES:
            raise unsupported(("include", i), f"{name!r} is not offered by this gateway")
    if body.reasoning and body.reasoning.generate_summary and body.reasoning.summary:
        raise refused(("reasoning",), "set summary or generate_summary, not both")
    if isinstance(body.input, list) and len(body.input) > MAX_INPUT_ITEMS:
        raise refused(("input",), f"at most {MAX_INPUT_ITEMS} items")
    if isinstance(body.input, list) and not body.input:
        raise refused(("input",), "must not be empty")


# -- the input -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Assistant:
    """An assistant turn being assembled from consecutive items."""

    parts: list[ContentPart] = field(default_factory=list)
    calls: list[ToolCall] = field(default_factory=list)

    def turn(self) -> ChatMessage:
        texts = [p for p in self.parts if type(p) is TextPart]
        content: str | list[ContentPart]
        if len(texts) == len(self.parts) and len(texts) <= 1:
            content = texts[0].text if texts else ""
        else:
            content = list(self.parts)
        return ChatMessage("assistant", content, tool_calls=tuple(self.calls))


def input_turns(value: str | list[dict[str, Any]]) -> list[ChatMessage]:
    """The input's items as turns: an assistant message, the reasoning before it and the
    function calls after it are one assistant turn; each function_call_output a tool turn."""
    if isinstance(value, str):
        return [ChatMessage("user", value)]
    turns: list[ChatMessage] = []
    assistant: _Assistant | None = None
    for i, item in enumerate(value):
        loc: Loc = ("input", i)
        kind = item.get("type", "message" if "role" in item else None)
        is_answer = kind == "message" and item.get("role") == "assistant"
        if kind in ("reasoning", "function_call") or is_answer:
            # reasoning opens a new turn after text or calls; text opens one after calls
            if assistant is not None and (
                (kind == "reasoning" and (assistant.calls or _has_text(assistant)))
                or (is_answer and assistant.calls)
            ):
                turns.append(assistant.turn())
                assistant = None
            assistant = assistant or _Assistant()
            if kind == "reasoning":
                assistant.parts.append(_reasoning(item, loc))
            elif kind == "function_call":
                assistant.calls.append(_function_call(item, loc))
            else:
                assistant.parts += _content(item.get("content"), (*loc, "content"), "assistant")
            continue
        if assistant is not None:
            turns.append(assistant.turn())
            assistant = None
        turns.append(_other_item(kind, item, loc))
    if assistant is not None:
        turns.append(assistant.turn())
    return turns


def _other_item(kind: Any, item: dict[str, Any], loc: Loc) -> ChatMessage:
    if kind == "message":
        return _message(item, loc)
    if kind == "function_call_output":
        return _function_output(item, loc)
    if kind == "item_reference":
        raise unsupported(
            (*loc, "type"),
            "item references point to OpenAI's stored items; send the item itself "
            "or continue with previous_response_id",
        )
    if kind is None:
        raise refused((*loc, "type"), "an input item needs a type (or a role)")
    raise unsupported(
        (*loc, "type"),
        f"{str(kind)[:50]!r} items belong to hosted tools, which this gateway does not run",
    )


def _has_text(assistant: _Assistant) -> bool:
    return any(type(p) is not ReasoningPart for p in assistant.parts)


def _text(value: Any, loc: Loc) -> str:
    if not isinstance(value, str):
        raise refused(loc, "must be a string")
    return value


def _message(item: dict[str, Any], loc: Loc) -> ChatMessage:
    role = ROLES.get(str(item.get("role")))
    if role is None:
        raise refused((*loc, "role"), "must be user, system, developer or assistant")
    parts = _content(item.get("content"), (*loc, "content"), role)
    if role == "system" or all(type(p) is TextPart for p in parts):
        return ChatMessage(role, "".join(p.text for p in parts if type(p) is TextPart))
    return ChatMessage(role, parts)


def _content(value: Any, loc: Loc, role: str) -> list[ContentPart]:
    if isinstance(value, str):
        return [TextPart(value)]
    if not isinstance(value, list):
        raise refused(loc, "must be a string or a list of content parts")
    if len(value) > MAX_PARTS:
        raise refused(loc, f"at most {MAX_PARTS} parts")
    return [_part(p, (*loc, j), role) for j, p in enumerate(value)]


def _part(part: Any, loc: Loc, role: str) -> ContentPart:
    if not isinstance(part, dict):
        raise refused(loc, "must be a content part object")
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        return TextPart(_text(part.get("text"), (*loc, "text")))
    if kind == "refusal" and role == "assistant":
        return TextPart(_text(part.get("refusal"), (*loc, "refusal")))
    if kind == "input_image":
        return _image(part, loc)
    if kind == "input_file":
        return _file(part, loc)
    raise unsupported((*loc, "type"), f"content parts of type {str(kind)[:50]!r}")


def _image(part: dict[str, Any], loc: Loc) -> ImagePart:
    url = part.get("image_url")
    if part.get("file_id") is not None:
        raise unsupported((*loc, "file_id"), "images by OpenAI file id; send image_url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://", "data:")):
        raise refused((*loc, "image_url"), "must be an http(s) or data: URL")
    detail = part.get("detail")
    return ImagePart(url=url, detail=detail if isinstance(detail, str) else None)


def _file(part: dict[str, Any], loc: Loc) -> DocumentPart:
    title = part.get("filename") if isinstance(part.get("filename"), str) else None
    if isinstance(part.get("file_id"), str):
        return DocumentPart(file_id=part["file_id"], title=title)
    if isinstance(part.get("file_url"), str):
        return DocumentPart(url=part["file_url"], title=title)
    data = part.get("file_data")
    if not isinstance(data, str):
        raise refused(loc, "an input_file needs file_data, file_url or file_id")
    match = _DATA_URL.match(data)
    media_type, raw = (match[1], match[2]) if match else ("application/pdf", data)
    try:
        base64.b64decode(raw[:64] + "=" * (-len(raw[:64]) % 4), validate=True)
    except ValueError:
        raise refused((*loc, "file_data"), "must be base64 (or a base64 data: URL)") from None
    return DocumentPart(data=raw, media_type=media_type, title=title)


def _reasoning(item: dict[str, Any], loc: Loc) -> ReasoningPart:
    summary = item.get("summary") or []
    if not isinstance(summary, list):
        raise refused((*loc, "summary"), "must be a list")
    text = "".join(
        _text(s.get("text", ""), (*loc, "summary", j, "text"))
        for j, s in enumerate(summary)
        if isinstance(s, dict)
    )
    signature = item.get("encrypted_content")
    return ReasoningPart(text, signature if isinstance(signature, str) else None)


def _function_call(item: dict[str, Any], loc: Loc) -> ToolCall:
    return ToolCall(
        _text(item.get("call_id"), (*loc, "call_id")),
        _text(item.get("name"), (*loc, "name")),
        _text(item.get("arguments", ""), (*loc, "arguments")),
    )


def _function_output(item: dict[str, Any], loc: Loc) -> ChatMessage:
    call_id = _text(item.get("call_id"), (*loc, "call_id"))
    output = item.get("output")
    if isinstance(output, str):
        return ChatMessage("tool", output, tool_call_id=call_id)
    parts = _content(output, (*loc, "output"), "user")
    return ChatMessage("tool", parts, tool_call_id=call_id)


# -- tools and output ------------------------------------------------------------------------


def function_tool(tool: dict[str, Any], i: int) -> Tool:
    loc: Loc = ("tools", i)
    kind = tool.get("type")
    if kind != "function":
        raise unsupported(
            (*loc, "type"),
            f"{str(kind)[:50]!r} is a hosted tool, which this gateway does not run; "
            "offer a function tool instead",
        )
    parameters = tool.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise refused((*loc, "parameters"), "must be a JSON Schema object")
    description = tool.get("description")
    strict = tool.get("strict")
    return Tool(
        _text(tool.get("name"), (*loc, "name")),
        description if isinstance(description, str) else None,
        parameters,
        strict=strict if isinstance(strict, bool) else None,
    )


def tool_choice(choice: str | dict[str, Any] | None) -> ToolChoice | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise refused(("tool_choice",), "must be auto, none, required or a function")
        return choice  # type: ignore[return-value]
    if choice.get("type") == "function":
        return ForcedTool(_text(choice.get("name"), ("tool_choice", "name")))
    raise unsupported(
        ("tool_choice", "type"), f"{str(choice.get('type'))[:50]!r}: only function tools here"
    )


def response_format(text: TextOptions | None) -> ResponseFormat | None:
    fmt = text.format if text is not None else None
    if fmt is None:
        return None
    kind = fmt.get("type")
    if kind in ("text", "json_object"):
        return ResponseFormat(kind)
    if kind != "json_schema":
        raise refused(("text", "format", "type"), "must be text, json_object or json_schema")
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        raise refused(("text", "format", "schema"), "must be a JSON Schema object")
    name, description, strict = fmt.get("name"), fmt.get("description"), fmt.get("strict")
    return ResponseFormat(
        "json_schema",
        schema,
        name if isinstance(name, str) else None,
        description if isinstance(description, str) else None,
        strict if isinstance(strict, bool) else None,
    )
