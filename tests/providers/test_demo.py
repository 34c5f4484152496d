"""The demo model: plain text in and out, and a clear refusal of anything more."""

from __future__ import annotations

import pytest

from providers import demo
from providers.base import (
    ChatMessage,
    ChatRequest,
    Finish,
    ImagePart,
    ModelSpec,
    Opened,
    TextDelta,
    TextPart,
    Tool,
    UnsupportedParameter,
    Usage,
    estimate_tokens,
)
from tests.providers.conftest import collect

DEMO = ModelSpec(
    id="demo", provider="demo", model="demo", options={"pace_ms": 0, "answer_words": 5}
)


async def test_it_answers_plain_text_deterministically():
    request = ChatRequest("demo", [ChatMessage("user", [TextPart("What is a gateway?")])])

    first = await collect(demo.DemoProvider(DEMO), request)
    second = await collect(demo.DemoProvider(DEMO), request)

    assert first == second
    assert first[0] == Opened()
    assert "".join(e.text for e in first if type(e) is TextDelta).startswith("You asked: What")
    assert first[-2:] == [Usage(estimate_tokens("What is a gateway?") + 4, 5), Finish("stop")]


@pytest.mark.parametrize(
    ("request_", "param"),
    [
        (ChatRequest("demo", [ChatMessage("user", "hi")], tools=(Tool("f"),)), "tools"),
        (ChatRequest("demo", [ChatMessage("user", "hi")], stop=("x",)), "stop"),
        (
            ChatRequest("demo", [ChatMessage("user", [ImagePart(url="https://x.example/a.png")])]),
            "messages[0]",
        ),
        (ChatRequest("demo", [ChatMessage("tool", "42", tool_call_id="c")]), "messages[0]"),
    ],
)
async def test_what_it_cannot_do_is_refused(request_, param):
    with pytest.raises(UnsupportedParameter) as caught:
        await collect(demo.DemoProvider(DEMO), request_)

    assert (caught.value.param, caught.value.code) == (param, "unsupported_parameter")


def test_estimate_tokens_is_four_characters_a_token():
    assert (estimate_tokens(""), estimate_tokens("abcd"), estimate_tokens("abcde")) == (0, 1, 2)
