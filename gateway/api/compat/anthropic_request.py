"""A Messages request as the normalized request: every field of Anthropic's API reference is
translated (system, messages with text, image, document, tool_use, tool_result, thinking and
redacted_thinking blocks, cache_control; tools and tool_choice; thinking; output_config;
stop_sequences, top_p, top_k, metadata.user_id, service_tier), carried as a native field to
an Anthropic upstream (container, mcp_servers, ...), or refused with 400
`unsupported_parameter` naming it. Nothing is dropped. A user turn's tool_result blocks
become tool turns before its other blocks, as the Messages API reads them.

Each normalized turn remembers where it came from (`Origins`), so a refusal of the target
model names the client's own field (`messages.2.content.1`), not the normalized one."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ConfigDict, Field

from gateway.api.compat import common as compat
from gateway.api.inputs import Body, refused
from gateway.errors import Loc
from providers.base import (
    ChatMessage,
    ChatRequest,
    ContentPart,
    DocumentPart,
    ForcedTool,
    ImagePart,
    ReasoningPart,
    ResponseFormat,
    TextPart,
    Thinking,
    Tool,
    ToolCall,
    ToolChoice,
)

# fields of Anthropic's Messages body with no normalized form: sent as they are to an
# Anthropic model, refused by an OpenAI one (add_native_fields)
NATIVE = frozenset(
    {"container", "mcp_servers", "context_management", "cache_control", "inference_geo", "speed"}
)
# normalized field -> this API's name, where they differ
PARAM_NAMES = {
    "max_output_tokens": "max_tokens",
    "stop": "stop_sequences",
    "user": "metadata.user_id",
    "reasoning_effort": "output_config.effort",
}
_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")


class MessagesRequest(Body):
    """Anthropic's Messages body. Fields beyond these are Anthropic's own (container,
    mcp_servers, context_management, cache_control, inference_geo, speed), sent only to
    Anthropic models; any other is refused."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=200)
    max_tokens: int = Field(ge=1, le=compat.MAX_OUTPUT_TOKENS)
    messages: list[dict[str, Any]] = Field(min_length=1)
    system: str | list[dict[str, Any]] | None = None
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0, le=100_000)
    stop_sequences: list[str] | None = None
    stream: bool = False
    metadata: dict[str, Any] | None = None
    service_tier: str | None = Field(default=None, max_length=32)
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None
    output_config: dict[str, Any] | None = None


@dataclass(slots=True)
class Origins:
    """Where each normalized turn came from: the client's message index (None: the system
    parameter) and, per part of the turn, the block index."""

    turns: list[tuple[int | None, list[int]]] = field(default_factory=list)

    def param_loc(self, param: str) -> Loc:
        """A normalized field as this API names it."""
        loc = compat.param_loc(param)
        if not loc:
            return loc
        if loc[0] in PARAM_NAMES:
            return (*compat.param_loc(PARAM_NAMES[str(loc[0])]), *loc[1:])
        if loc[0] == "messages" and len(loc) > 1 and isinstance(loc[1], int):
            return self._message_loc(loc)
        return loc

    def _message_loc(self, loc: Loc) -> Loc:
        index = loc[1]
        assert isinstance(index, int)
        if index >= len(self.turns):
            return ("messages",)
        message, blocks = self.turns[index]
        base: Loc = ("system",) if message is None else ("messages", message, "content")
        rest = loc[2:]
        if len(rest) >= 2 and rest[0] in ("content", "tool_calls") and isinstance(rest[1], int):
            position = rest[1] if rest[0] == "content" else len(blocks) - 1
            block = blocks[position] if position < len(blocks) else None
            return base if block is None else (*base, block)
        return base


def to_request(body: MessagesRequest) -> tuple[ChatRequest, Origins]:
    """The normalized request (its model is set by the turn) and its turns' origins."""
    origins = Origins()
    messages: list[ChatMessage] = []
    if body.system:
        messages.append(ChatMessage("system", _system(body.system)))
        blocks = [] if isinstance(body.system, str) else list(range(len(body.system)))
        origins.turns.append((None, blocks))
    for i, m in enumerate(body.messages):
        for turn, blocks in _message(m, i):
            messages.append(turn)
            origins.turns.append((i, blocks))
    choice, parallel = _tool_choice(body.tool_choice)
    effort, fmt = _output_config(body.output_config)
    native = _native(body)
    request = ChatRequest(
        model="",
        messages=messages,
        max_output_tokens=body.max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=body.top_k,
        stop=tuple(body.stop_sequences or ()),
        tools=tuple(_tool(t, ("tools", i)) for i, t in enumerate(body.tools or ())),
        tool_choice=choice,
        parallel_tool_calls=parallel,
        response_format=fmt,
        reasoning_effort=effort,
        thinking=_thinking(body.thinking),
        user=_user(body.metadata),
        service_tier=body.service_tier,
        native=native,
        native_api="anthropic" if native else None,
    )
    return request, origins


def _native(body: MessagesRequest) -> dict[str, Any]:
    extra = body.model_extra or {}
    for name in extra:
        if name not in NATIVE:
            raise compat.unsupported((name,), "not a Messages field this gateway takes")
    return dict(extra)


def _user(metadata: dict[str, Any] | None) -> str | None:
    if metadata is None:
        return None
    compat.only_keys(metadata, {"user_id"}, ("metadata",))
    return compat.optional_str(metadata, "user_id", ("metadata",))


# -- turns -----------------------------------------------------------------------------------


def _system(system: str | list[dict[str, Any]]) -> str | list[ContentPart]:
    if isinstance(system, str):
        return system
    return [_text(b, ("system", j)) for j, b in enumerate(system)]


def _message(m: dict[str, Any], i: int) -> list[tuple[ChatMessage, list[int]]]:
    """The turns of one message, each with the block index of each of its parts: a user
    message's tool results come first, one tool turn each, then its other blocks."""
    loc: Loc = ("messages", i)
    compat.only_keys(m, {"role", "content"}, loc)
    role = m.get("role")
    if role not in ("user", "assistant"):
        raise refused(
            (*loc, "role"),
            "must be 'user' or 'assistant' (a system prompt goes in the top-level system "
            "parameter)",
            code="bad_request",
        )
    content = m.get("content")
    if isinstance(content, str):
        return [(ChatMessage(role, content), [])]
    if not isinstance(content, list):
        raise refused((*loc, "content"), "text or content blocks", code="bad_request")
    where: Loc = (*loc, "content")
    if role == "assistant":
        return [_assistant(content, where)]
    turns: list[tuple[ChatMessage, list[int]]] = []
    rest: list[ContentPart] = []
    rest_blocks: list[int] = []
    for j, block in enumerate(content):
        if isinstance(block, dict) and block.get("type") == "tool_result":
            turns.append((_tool_result(block, (*where, j)), [j]))
        else:
            rest.append(_user_block(block, (*where, j)))
            rest_blocks.append(j)
    if rest or not turns:
        turns.append((ChatMessage("user", rest), rest_blocks))
    return turns


def _kind(block: Any, loc: Loc) -> str:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        raise refused(loc, "a content block with its type", code="bad_request")
    return str(block["type"])


def _cache(block: dict[str, Any], loc: Loc) -> dict[str, Any] | None:
    cache = block.get("cache_control")
    if cache is not None and not isinstance(cache, dict):
        raise refused((*loc, "cache_control"), 'an object ({"type": "ephemeral"})')
    return cache


def _text(block: Any, loc: Loc) -> TextPart:
    if _kind(block, loc) != "text":
        raise refused(loc, f"only text blocks here, not {block['type']!r}", code="bad_request")
    compat.only_keys(block, {"type", "text", "cache_control"}, loc)
    return TextPart(compat.required_str(block, "text", loc), cache_control=_cache(block, loc))


def _user_block(block: Any, loc: Loc) -> ContentPart:
    kind = _kind(block, loc)
    if kind == "text":
        return _text(block, loc)
    if kind == "image":
        compat.only_keys(block, {"type", "source", "cache_control"}, loc)
        return _image(block.get("source"), (*loc, "source"), _cache(block, loc))
    if kind == "document":
        compat.only_keys(block, {"type", "source", "title", "cache_control"}, loc)
        return _document(block, loc)
    raise refused(
        loc,
        f"a user turn holds text, image, document and tool_result blocks, not {kind!r}",
        code="bad_request",
    )


def _image(source: Any, loc: Loc, cache: dict[str, Any] | None) -> ImagePart:
    if not isinstance(source, dict):
        raise refused(loc, "an image needs its source")
    kind = source.get("type")
    if kind == "base64":
        compat.only_keys(source, {"type", "media_type", "data"}, loc)
        media = compat.required_str(source, "media_type", loc)
        if media not in _IMAGE_TYPES:
            raise refused((*loc, "media_type"), f"one of {', '.join(_IMAGE_TYPES)}")
        data = compat.required_str(source, "data", loc)
        return ImagePart(data=data, media_type=media, cache_control=cache)
    if kind == "url":
        compat.only_keys(source, {"type", "url"}, loc)
        url = compat.required_str(source, "url", loc)
        if not url.startswith(("http://", "https://")):
            raise refused((*loc, "url"), "an http(s) URL")
        return ImagePart(url=url, cache_control=cache)
    raise compat.unsupported((*loc, "type"), "an image source is base64 or url")


def _document(block: dict[str, Any], loc: Loc) -> DocumentPart:
    source = block.get("source")
    title = compat.optional_str(block, "title", loc)
    cache = _cache(block, loc)
    where: Loc = (*loc, "source")
    if not isinstance(source, dict):
        raise refused(where, "a document needs its source")
    kind = source.get("type")
    if kind == "base64":
        compat.only_keys(source, {"type", "media_type", "data"}, where)
        media = compat.required_str(source, "media_type", where)
        data = compat.required_str(source, "data", where)
        return DocumentPart(data=data, media_type=media, title=title, cache_control=cache)
    if kind == "url":
        compat.only_keys(source, {"type", "url"}, where)
        url = compat.required_str(source, "url", where)
        return DocumentPart(url=url, title=title, cache_control=cache)
    if kind == "text":
        compat.only_keys(source, {"type", "media_type", "data"}, where)
        text = compat.required_str(source, "data", where)
        return DocumentPart(text=text, media_type="text/plain", title=title, cache_control=cache)
    raise compat.unsupported((*where, "type"), "a document source is base64, url or text")


def _tool_result(block: dict[str, Any], loc: Loc) -> ChatMessage:
    compat.only_keys(block, {"type", "tool_use_id", "content", "is_error", "cache_control"}, loc)
    call_id = compat.required_str(block, "tool_use_id", loc)
    is_error = block.get("is_error", False)
    if not isinstance(is_error, bool):
        raise refused((*loc, "is_error"), "true or false")
    content = block.get("content", "")
    cache = _cache(block, loc)
    parts: str | list[ContentPart]
    if isinstance(content, str):
        parts = content if cache is None else [TextPart(content, cache_control=cache)]
    elif isinstance(content, list):
        parts = [_result_block(b, (*loc, "content", k)) for k, b in enumerate(content)]
        if cache is not None and parts:  # the breakpoint stays at the result's end
            last = parts[-1]
            if type(last) is not TextPart and type(last) is not ImagePart:
                raise compat.unsupported((*loc, "cache_control"), "on this result's last block")
            parts[-1] = _with_cache(last, cache)
    else:
        raise refused((*loc, "content"), "text or content blocks", code="bad_request")
    return ChatMessage("tool", parts, tool_call_id=call_id, is_error=is_error)


def _with_cache(part: ContentPart, cache: dict[str, Any]) -> ContentPart:
    if isinstance(part, TextPart):
        return TextPart(part.text, cache_control=cache)
    assert isinstance(part, ImagePart)
    return ImagePart(part.url, part.data, part.media_type, detail=part.detail, cache_control=cache)


def _result_block(block: Any, loc: Loc) -> ContentPart:
    kind = _kind(block, loc)
    if kind == "text":
        return _text(block, loc)
    if kind == "image":
        compat.only_keys(block, {"type", "source", "cache_control"}, loc)
        return _image(block.get("source"), (*loc, "source"), _cache(block, loc))
    raise compat.unsupported(loc, f"a tool result holds text and images, not {kind!r}")


def _assistant(content: list[Any], loc: Loc) -> tuple[ChatMessage, list[int]]:
    parts: list[ContentPart] = []
    blocks: list[int] = []
    calls: list[ToolCall] = []
    for j, block in enumerate(content):
        where: Loc = (*loc, j)
        kind = _kind(block, where)
        if kind == "text":
            parts.append(_text(block, where))
            blocks.append(j)
        elif kind == "thinking":
            compat.only_keys(block, {"type", "thinking", "signature"}, where)
            text = compat.required_str(block, "thinking", where)
            parts.append(ReasoningPart(text, compat.optional_str(block, "signature", where)))
            blocks.append(j)
        elif kind == "redacted_thinking":
            compat.only_keys(block, {"type", "data"}, where)
            parts.append(ReasoningPart(redacted=compat.required_str(block, "data", where)))
            blocks.append(j)
        elif kind == "tool_use":
            compat.only_keys(block, {"type", "id", "name", "input"}, where)
            arguments = block.get("input")
            if not isinstance(arguments, dict):
                raise refused((*where, "input"), "a tool call's input is an object")
            calls.append(
                ToolCall(
                    compat.required_str(block, "id", where),
                    compat.required_str(block, "name", where),
                    json.dumps(arguments, ensure_ascii=False),
                )
            )
            blocks.append(j)
        else:
            raise refused(
                where,
                "an assistant turn holds text, thinking, redacted_thinking and tool_use "
                f"blocks, not {kind!r}",
                code="bad_request",
            )
    return ChatMessage("assistant", parts, tool_calls=tuple(calls)), blocks


# -- tools, thinking, output -----------------------------------------------------------------


def _tool(tool: dict[str, Any], loc: Loc) -> Tool:
    if tool.get("type", "custom") != "custom":
        raise compat.unsupported(
            (*loc, "type"), "server tools are not translated (only custom tools)"
        )
    # eager_input_streaming (what @ai-sdk/anthropic asks for when it streams): a delivery
    # hint, true or false, that changes only how finely the input is cut; the gateway
    # streams whatever pieces arrive, so the answer is the same either way
    eager = tool.get("eager_input_streaming")
    if eager is not None and not isinstance(eager, bool):
        raise refused((*loc, "eager_input_streaming"), "true or false")
    compat.only_keys(
        tool,
        {"type", "name", "description", "input_schema", "cache_control", "strict"}
        | {"eager_input_streaming"},
        loc,
    )
    schema = tool.get("input_schema")
    if not isinstance(schema, dict):
        raise refused((*loc, "input_schema"), "a JSON Schema object")
    strict = tool.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise refused((*loc, "strict"), "true or false")
    return Tool(
        compat.required_str(tool, "name", loc),
        compat.optional_str(tool, "description", loc),
        schema,
        strict=strict,
        cache_control=_cache(tool, loc),
    )


def _tool_choice(choice: dict[str, Any] | None) -> tuple[ToolChoice | None, bool | None]:
    if choice is None:
        return None, None
    loc: Loc = ("tool_choice",)
    compat.only_keys(choice, {"type", "name", "disable_parallel_tool_use"}, loc)
    disable = choice.get("disable_parallel_tool_use")
    if disable is not None and not isinstance(disable, bool):
        raise refused((*loc, "disable_parallel_tool_use"), "true or false")
    parallel = None if disable is None else not disable
    kind = choice.get("type")
    if kind == "tool":
        return ForcedTool(compat.required_str(choice, "name", loc)), parallel
    words: dict[str, ToolChoice] = {"auto": "auto", "any": "required", "none": "none"}
    if kind not in words:
        raise refused((*loc, "type"), "auto, any, tool or none", code="bad_request")
    return words[str(kind)], parallel


def _thinking(thinking: dict[str, Any] | None) -> Thinking | None:
    if thinking is None:
        return None
    loc: Loc = ("thinking",)
    compat.only_keys(thinking, {"type", "budget_tokens", "display"}, loc)
    kind = compat.required_str(thinking, "type", loc)
    if kind not in ("enabled", "disabled", "adaptive"):
        raise refused((*loc, "type"), "enabled, disabled or adaptive", code="bad_request")
    budget = thinking.get("budget_tokens")
    if budget is not None and (type(budget) is not int or budget < 1):
        raise refused((*loc, "budget_tokens"), "a number of tokens")
    if kind == "enabled" and budget is None:
        raise refused((*loc, "budget_tokens"), "is required when thinking is enabled")
    return Thinking(kind, budget, compat.optional_str(thinking, "display", loc))


def _output_config(config: dict[str, Any] | None) -> tuple[str | None, ResponseFormat | None]:
    if config is None:
        return None, None
    loc: Loc = ("output_config",)
    compat.only_keys(config, {"effort", "format"}, loc)
    effort = compat.optional_str(config, "effort", loc)
    fmt = config.get("format")
    if fmt is None:
        return effort, None
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        raise refused((*loc, "format"), "a json_schema format", code="bad_request")
    compat.only_keys(fmt, {"type", "schema"}, (*loc, "format"))
    schema = fmt.get("schema")
    if not isinstance(schema, dict):
        raise refused((*loc, "format", "schema"), "a JSON Schema object")
    return effort, ResponseFormat("json_schema", schema)
