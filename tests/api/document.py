"""What the tests of the OpenAPI document and of the answer models share: the document of
an app built from settings alone, and a check of a value against one of its components."""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from gateway.api.openapi import build_document
from gateway.app import create_app
from gateway.settings import load_settings


def app_document() -> dict[str, Any]:
    return build_document(create_app(load_settings(env={})).routes)


def violations(document: dict[str, Any], component: str, value: Any) -> list[str]:
    """What is wrong with `value` against components/schemas/<component> of the document."""
    registry = Registry().with_resource(
        "urn:openapi", Resource.from_contents(document, default_specification=DRAFT202012)
    )
    schema = {"$ref": f"urn:openapi#/components/schemas/{component}"}
    return [e.message for e in Draft202012Validator(schema, registry=registry).iter_errors(value)]


def conforms(document: dict[str, Any], component: str, value: Any) -> None:
    """Assert `value` is valid against components/schemas/<component> of the document."""
    errors = violations(document, component, value)
    assert not errors, f"{component}: {errors} in {value!r}"


def sse_frames(raw: bytes) -> list[dict[str, Any]]:
    """Each frame of a stream as {"event"?, "id"?, "data"}, `data` parsed when it is JSON:
    the shape the document's frame components describe. Comment lines are skipped."""
    frames = []
    for block in raw.decode().split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.split("\n") if line and not line.startswith(":")
        )
        if not fields:
            continue
        data = fields["data"]
        frames.append({**fields, "data": data if data == "[DONE]" else json.loads(data)})
    return frames


def documented(document: dict[str, Any], method: str, path: str, response: Any) -> None:
    """Assert a real answer is what the document says `METHOD path` answers: its status is
    listed, and its body (each frame, for a stream) is valid against that status's schema
    for the answer's media type."""
    responses = document["paths"][path][method.lower()]["responses"]
    status = str(response.status_code)
    assert status in responses, f"{method} {path}: {status} is not documented"
    media = response.headers["content-type"].split(";")[0]
    schema = responses[status]["content"][media]["schema"]
    component = schema["$ref"].rsplit("/", 1)[1] if "$ref" in schema else None
    values = sse_frames(response.content) if media == "text/event-stream" else [response.json()]
    for value in values:
        if component:
            conforms(document, component, value)
        else:  # a oneOf of components
            matching = [
                s
                for s in schema["oneOf"]
                if not violations(document, s["$ref"].split("/")[-1], value)
            ]
            assert len(matching) == 1, f"{method} {path}: {value!r} matches {matching}"
