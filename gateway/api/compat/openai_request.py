"""A Chat Completions request as the normalized request: every field OpenAI's API reference
lists is translated (messages with their parts, tool calls and results; tools and
tool_choice; response_format; every sampling option), carried as a native field to an
OpenAI upstream (prediction, store, ...), or refused with 400 `unsupported_parameter` naming
it. Nothing is dropped. What the target model cannot do is refused by its adapter, before
any upstream call, under the name the client used (docs/compat-translation.md)."""

from __future__ import annotations

import re
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
    Role,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
)

# fields of OpenAI's Chat Completions body with no normalized form: sent as they are to an
# OpenAI model, refused by an Anthropic one (add_native_fields)
NATIVE = frozenset(
    {
        "prediction",
        "store",
        "verbosity",
        "web_search_options",
        "prompt_cache_key",
        "prompt_cache_retention",
        "safety_identifier",
        "modalities",
    }
)
ROLES: dict[str, Role] = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
}
TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DATA_URL = re.compile(r"data:([\w/+.-]+);base64,", re.ASCII)
# normalized field -> this API's name, where they differ
PARAM_NAMES = {"max_output_tokens": "max_tokens"}


class StreamOptions(Body):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool = False
    include_obfuscation: bool = Field(
        False, description="only false: the gateway's chunks carry no obfuscation padding"
    )


class CompletionRequest(Body):
    """OpenAI's Chat Completions body. Fields beyond these are OpenAI's own (prediction,
    store, verbosity, web_search_options, prompt_cache_key, prompt_cache_retention,
    safety_identifier, modalities), sent only to OpenAI models; any other is refused."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=200)
    messages: list[dict[str, Any]] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=compat.MAX_OUTPUT_TOKENS)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=compat.MAX_OUTPUT_TOKENS)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(
        default=None, ge=0, le=100_000, description="for OpenAI-compatible servers that take it"
    )
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, int] | None = Field(default=None, max_length=1024)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    n: int | None = Field(default=None, ge=1, le=128)
    user: str | None = Field(default=None, max_length=512)
    metadata: dict[str, str] | None = Field(default=None, max_length=16)
    service_tier: str | None = Field(default=None, max_length=32)
    reasoning_effort: str | None = Field(default=None, max_length=32)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None


def to_request(body: CompletionRequest) -> ChatRequest:
    """The normalized request (its model is set by the turn)."""
    if body.stream_options is not None:
        if not body.stream:
            raise refused(
                ("stream_options",), "only allowed when stream is true", code="bad_request"
            )
        if body.stream_options.include_obfuscation:
            raise compat.unsupported(
                ("stream_options", "include_obfuscation"), "the gateway sends no obfuscation"
            )
    if body.top_logprobs is not None and not body.logprobs:
        raise refused(("top_logprobs",), "needs logprobs: true", code="bad_request")
    for i, value in enumerate(body.logit_bias.values() if body.logit_bias else ()):
        if not -100 <= value <= 100:
            raise refused(("logit_bias", i), "a bias is between -100 and 100")
    stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    native = _native(body)
    return ChatRequest(
        model="",
        messages=[_message(m, i) for i, m in enumerate(body.messages)],
        max_output_tokens=body.max_completion_tokens or body.max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=body.top_k,
        stop=stop,
        seed=body.seed,
        presence_penalty=body.presence_penalty,
        frequency_penalty=body.frequency_penalty,
        logit_bias=body.logit_bias,
        logprobs=body.logprobs,
        top_logprobs=body.top_logprobs,
        n=body.n,
        tools=tuple(_tool(t, ("tools", i)) for i, t in enumerate(body.tools or ())),
        tool_choice=_tool_choice(body.tool_choice),
        parallel_tool_calls=body.parallel_tool_calls,
        response_format=_response_format(body.response_format),
        reasoning_effort=body.reasoning_effort,
        user=body.user,
        metadata=body.metadata,
        service_tier=body.service_tier,
        native=native,
        native_api="openai" if native else None,
    )


def _native(body: CompletionRequest) -> dict[str, Any]:
    extra = body.model_extra or {}
    for name in extra:
        if name in ("functions", "function_call"):
            raise compat.unsupported(
                (name,), "the legacy function calling is not translated; send tools and tool_choice"
            )
        if name == "audio":
            raise compat.unsupported((name,), "audio output is not carried by this gateway")
        if name not in NATIVE:
            raise compat.unsupported((name,), "not a Chat Completions field this gateway takes")
    modalities = extra.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise compat.unsupported(("modalities",), 'only ["text"]: audio output is not carried')
    return dict(extra)


# -- messages --------------------------------------------------------------------------------

_MESSAGE_FIELDS = {
    "system": {"role", "content", "name"},
    "user": {"role", "content", "name"},
    # annotations: an answer's citations, which clients hand back with the rest of the
    # message; the model reads its text, not them (OpenAI's API takes and ignores them too)
    "assistant": {
        "role",
        "content",
        "name",
        "tool_calls",
        "refusal",
        "reasoning_content",
        "annotations",
    },
    "tool": {"role", "content", "tool_call_id"},
}


def _message(m: dict[str, Any], i: int) -> ChatMessage:
    loc: Loc = ("messages", i)
    raw_role = m.get("role")
    role = ROLES.get(raw_role) if isinstance(raw_role, str) else None
    if role is None:
        raise refused(
            (*loc, "role"),
            f"{raw_role!r} messages are not supported (system, developer, user, assistant, tool)",
            code="unsupported_value",
        )
    for key, value in m.items():  # null is "not set" (an SDK's parsed: null, audio: null)
        if key not in _MESSAGE_FIELDS[role] and value is not None:
            raise compat.unsupported((*loc, key), f"not a field of a {raw_role} message")
    name = compat.optional_str(m, "name", loc)
    if role == "assistant":
        if not isinstance(m.get("annotations") or [], list):
            raise refused((*loc, "annotations"), "a list (an answer's citations)")
        return _assistant(m, loc, name)
    if role == "tool":
        call_id = compat.optional_str(m, "tool_call_id", loc)
        if not call_id:
            raise refused(
                (*loc, "tool_call_id"), "a tool message answers a call: its id is required"
            )
        return ChatMessage("tool", _text_content(m, loc), tool_call_id=call_id)
    if role == "system":
        return ChatMessage("system", _text_content(m, loc), name=name)
    return ChatMessage("user", _user_content(m.get("content"), (*loc, "content")), name=name)


def _text_content(m: dict[str, Any], loc: Loc) -> str | list[ContentPart]:
    content = m.get("content")
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise refused((*loc, "content"), "a text content is required", code="bad_request")
    return [_text_part(p, (*loc, "content", j)) for j, p in enumerate(content)]


def _text_part(part: Any, loc: Loc) -> TextPart:
    if not isinstance(part, dict) or part.get("type") != "text":
        kind = part.get("type") if isinstance(part, dict) else None
        raise refused(loc, f"only text parts here, not {kind!r}", code="unsupported_value")
    compat.only_keys(part, {"type", "text"}, loc)
    text = part.get("text")
    if not isinstance(text, str):
        raise refused(loc, "a text part needs its text", code="unsupported_value")
    return TextPart(text)


def _user_content(content: Any, loc: Loc) -> str | list[ContentPart]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise refused(loc, "a text content is required", code="bad_request")
    return [_user_part(p, (*loc, j)) for j, p in enumerate(content)]


def _user_part(part: Any, loc: Loc) -> ContentPart:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text":
        return _text_part(part, loc)
    if kind == "image_url":
        compat.only_keys(part, {"type", "image_url"}, loc)
        image = part.get("image_url")
        if not isinstance(image, dict) or not isinstance(image.get("url"), str):
            raise refused((*loc, "image_url"), "an image_url with its url is required")
        compat.only_keys(image, {"url", "detail"}, (*loc, "image_url"))
        detail = compat.optional_str(image, "detail", (*loc, "image_url"))
        return _image(image["url"], detail, (*loc, "image_url", "url"))
    if kind == "file":
        compat.only_keys(part, {"type", "file"}, loc)
        file = part.get("file")
        if not isinstance(file, dict):
            raise refused((*loc, "file"), "a file part needs its file")
        compat.only_keys(file, {"file_data", "file_id", "filename"}, (*loc, "file"))
        return _document(file, (*loc, "file"))
    if kind == "input_audio":
        raise compat.unsupported(loc, "audio input is not carried by this gateway")
    raise refused(loc, f"parts are text, image_url or file, not {kind!r}", code="unsupported_value")


def _image(url: str, detail: str | None, loc: Loc) -> ImagePart:
    if url.startswith("data:"):
        match = DATA_URL.match(url)
        if match is None or not match[1].startswith("image/"):
            raise refused(loc, "a data URL of an image, base64-encoded (data:image/png;base64,...)")
        return ImagePart(data=url[match.end() :], media_type=match[1], detail=detail)
    if not url.startswith(("http://", "https://")):
        raise refused(loc, "an image is an http(s) URL or a data URL")
    return ImagePart(url=url, detail=detail)


def _document(file: dict[str, Any], loc: Loc) -> DocumentPart:
    title = compat.optional_str(file, "filename", loc)
    file_id = compat.optional_str(file, "file_id", loc)
    data = compat.optional_str(file, "file_data", loc)
    if file_id is not None:
        return DocumentPart(file_id=file_id, title=title)
    if data is None:
        raise refused(loc, "a file needs file_data or file_id")
    match = DATA_URL.match(data)
    if match is None:
        raise refused((*loc, "file_data"), "a data URL (data:application/pdf;base64,...)")
    return DocumentPart(data=data[match.end() :], media_type=match[1], title=title)


def _assistant(m: dict[str, Any], loc: Loc, name: str | None) -> ChatMessage:
    content = m.get("content")
    parts: list[ContentPart] = []
    reasoning = compat.optional_str(m, "reasoning_content", loc)
    if reasoning:
        parts.append(ReasoningPart(reasoning))
    if isinstance(content, str):
        if content:
            parts.append(TextPart(content))
    elif isinstance(content, list):
        for j, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") == "refusal":
                compat.only_keys(part, {"type", "refusal"}, (*loc, "content", j))
                parts.append(TextPart(compat.required_str(part, "refusal", (*loc, "content", j))))
            else:
                parts.append(_text_part(part, (*loc, "content", j)))
    elif content is not None:
        raise refused((*loc, "content"), "text, text parts or null", code="bad_request")
    refusal = compat.optional_str(m, "refusal", loc)
    if refusal:  # an earlier refusal, handed back: the model reads it as what it said
        parts.append(TextPart(refusal))
    calls = tuple(
        _call(c, (*loc, "tool_calls", j)) for j, c in enumerate(_list(m, "tool_calls", loc))
    )
    if not parts and not calls and content is None:
        raise refused((*loc, "content"), "an assistant message needs content or tool_calls")
    body: str | list[ContentPart] = (
        parts[0].text if len(parts) == 1 and type(parts[0]) is TextPart else parts
    )
    return ChatMessage("assistant", body if parts else "", tool_calls=calls, name=name)


def _call(call: Any, loc: Loc) -> ToolCall:
    if not isinstance(call, dict) or call.get("type", "function") != "function":
        raise compat.unsupported(loc, "only function tool calls")
    # index: what a stream's accumulated call keeps of its deltas (the SDK's stream helper
    # hands it back); it numbers the calls, which their order already does
    compat.only_keys(call, {"id", "type", "function", "index"}, loc)
    function = call.get("function")
    if not isinstance(function, dict):
        raise refused((*loc, "function"), "a tool call needs its function")
    compat.only_keys(function, {"name", "arguments"}, (*loc, "function"))
    return ToolCall(
        compat.required_str(call, "id", loc),
        compat.required_str(function, "name", (*loc, "function")),
        compat.required_str(function, "arguments", (*loc, "function")),
    )


def _list(m: dict[str, Any], key: str, loc: Loc) -> list[Any]:
    value = m.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise refused((*loc, key), "must be an array")
    return value


# -- tools and output ------------------------------------------------------------------------


def _tool(tool: dict[str, Any], loc: Loc) -> Tool:
    if tool.get("type") != "function":
        raise compat.unsupported((*loc, "type"), "only function tools")
    compat.only_keys(tool, {"type", "function"}, loc)
    function = tool.get("function")
    if not isinstance(function, dict):
        raise refused((*loc, "function"), "a function tool needs its function")
    where = (*loc, "function")
    compat.only_keys(function, {"name", "description", "parameters", "strict"}, where)
    name = compat.required_str(function, "name", where)
    if not TOOL_NAME.match(name):
        raise refused((*where, "name"), "1 to 64 letters, digits, _ or -")
    parameters = function.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise refused((*where, "parameters"), "a JSON Schema object")
    strict = function.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise refused((*where, "strict"), "true or false")
    return Tool(
        name, compat.optional_str(function, "description", where), parameters, strict=strict
    )


def _tool_choice(choice: str | dict[str, Any] | None) -> ToolChoice | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise refused(
                ("tool_choice",), "auto, none, required or a function", code="bad_request"
            )
        return choice  # type: ignore[return-value]
    if choice.get("type") != "function":
        raise compat.unsupported(("tool_choice", "type"), "only a function is named")
    compat.only_keys(choice, {"type", "function"}, ("tool_choice",))
    function = choice.get("function")
    if not isinstance(function, dict):
        raise refused(("tool_choice", "function"), "names the function")
    return ForcedTool(compat.required_str(function, "name", ("tool_choice", "function")))


def _response_format(fmt: dict[str, Any] | None) -> ResponseFormat | None:
    if fmt is None:
        return None
    kind = fmt.get("type")
    if kind in ("text", "json_object"):
        compat.only_keys(fmt, {"type"}, ("response_format",))
        return ResponseFormat(kind)
    if kind != "json_schema":
        raise refused(
            ("response_format", "type"), "text, json_object or json_schema", code="bad_request"
        )
    compat.only_keys(fmt, {"type", "json_schema"}, ("response_format",))
    spec = fmt.get("json_schema")
    loc: Loc = ("response_format", "json_schema")
    if not isinstance(spec, dict):
        raise refused(loc, "json_schema needs its name and schema")
    compat.only_keys(spec, {"name", "schema", "description", "strict"}, loc)
    schema = spec.get("schema")
    if schema is not None and not isinstance(schema, dict):
        raise refused((*loc, "schema"), "a JSON Schema object")
    strict = spec.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise refused((*loc, "strict"), "true or false")
    return ResponseFormat(
        "json_schema",
        schema,
        compat.required_str(spec, "name", loc),
        compat.optional_str(spec, "description", loc),
        strict,
    )


def param_loc(param: str) -> Loc:
    """A normalized request's field (as an adapter's refusal names it) in this API's names:
    `messages[2].tool_calls[0].arguments` -> messages.2.tool_calls.0.function.arguments."""
    loc = compat.param_loc(param)
    if not loc:
        return loc
    if loc[0] in PARAM_NAMES:
        return (PARAM_NAMES[str(loc[0])], *loc[1:])
    if loc[0] == "messages" and len(loc) >= 5 and loc[2] == "tool_calls":
        return (*loc[:4], "function", *loc[4:])
    return loc
