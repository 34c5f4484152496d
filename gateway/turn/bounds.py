"""What one prompt may ask of a model, whichever API it came in: answers per request (n),
tools offered and the size of their schemas, stop sequences, images. Each costs the
upstream's money or the gateway's work, so each has a bound in the settings; a request
over one is refused (400) before anything is stored or sent upstream."""

from __future__ import annotations

import json

from gateway.errors import BadRequest
from gateway.settings import Settings
from gateway.turn.parts import images
from providers.base import ChatRequest


def check(request: ChatRequest, settings: Settings) -> None:
    if request.n is not None and request.n > settings.max_choices:
        _over(("n",), f"at most {settings.max_choices} choices per request")
    if len(request.tools) > settings.max_tools:
        _over(("tools",), f"at most {settings.max_tools} tools per request")
    if request.tools:
        schemas = sum(len(json.dumps(dict(t.parameters or {}))) for t in request.tools)
        schemas += sum(len(t.description or "") for t in request.tools)
        if schemas > settings.max_tool_schema_bytes:
            _over(
                ("tools",),
                f"the tools' schemas and descriptions are {schemas} bytes in all; "
                f"at most {settings.max_tool_schema_bytes}",
            )
    if len(request.stop) > settings.max_stop_sequences:
        _over(("stop",), f"at most {settings.max_stop_sequences} stop sequences")
    if (count := images(request.messages)) > settings.max_images:
        _over(("messages",), f"{count} images; at most {settings.max_images} per request")


def _over(param: tuple[str, ...], problem: str) -> None:
    raise BadRequest(f"{param[0]}: {problem}", code="limit_exceeded", param=param)
