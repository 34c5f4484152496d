"""The README's "Compatible APIs" example, run as it is written (a subprocess with GW, KEY
and MODEL set) against the gateway and the fake upstream: on the demo model (text, the
Responses continuation, count_tokens) and on an OpenAI model (also both SDKs' tool round
trips and embeddings). What it prints, what the upstream received and what Redis counted
are checked."""

# ruff: noqa: F811  (pytest fixtures imported from compat_support are parameters here)
from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.api.compat.support import (
    make_key,  # noqa: F401  (a fixture: the tests take it as an argument)
    usage,
)
from tests.fake_upstream import FakeToolCall, Reply

README = Path(__file__).resolve().parents[2] / "README.md"


def example() -> str:
    section = README.read_text().split("## Compatible APIs\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found is not None, "the section has no Python example"
    return found.group(1)


def run(url: str, key: str, model: str) -> list[str]:
    env = {**os.environ, "GW": url, "KEY": key, "MODEL": model}
    done = subprocess.run(
        [sys.executable, "-c", example()], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


async def test_the_example_on_the_demo_model(gateway_server, client, make_key, upstream, redis):
    key = await make_key("ada")
    lines = await asyncio.to_thread(run, gateway_server.url, key.key, "demo")
    assert lines[-1].startswith("tokens: ") and int(lines[-1].split()[1]) > 0
    assert any(line.startswith("usage: ") for line in lines)
    assert upstream.requests == []  # demo answers by itself
    assert (await usage(redis))["tokens_out:user:ada"] > 0


async def test_the_example_on_an_openai_model(gateway_server, client, make_key, upstream, redis):
    key = await make_key("ada")
    upstream.script(
        Reply(chunks=["Vector ", "databases ", "index."], input_tokens=5, output_tokens=3),
        Reply(chunks=["Hello Ada."]),
        Reply(chunks=["You are Ada."]),
        Reply(tool_calls=[FakeToolCall("get_weather", '{"city": "Paris"}', id="call_r1")]),
        Reply(chunks=["Sunny, 18 C."]),
        Reply(tool_calls=[FakeToolCall("get_weather", '{"city": "Paris"}', id="call_r2")]),
        Reply(chunks=["Sunny in Paris."]),
        Reply(),  # the embeddings
    )

    lines = await asyncio.to_thread(run, gateway_server.url, key.key, "gpt")

    assert lines[0] == "Vector databases index."
    assert lines[1] == "usage: 5 3"
    assert lines[2] == "Hello Ada. / You are Ada."
    assert lines[4:] == ["Sunny, 18 C.", "Sunny in Paris. end_turn", "2 vectors, 3 tokens"]
    # the continuation carried the stored exchange; each tool result went back to its call
    continued = upstream.requests[2].body["messages"]
    assert [m["content"] for m in continued[-3:]] == ["Hi, I'm Ada.", "Hello Ada.", "My name?"]
    for request, call_id in ((upstream.requests[4], "call_r1"), (upstream.requests[6], "call_r2")):
        result = request.body["messages"][-1]
        assert (result["role"], result["tool_call_id"]) == ("tool", call_id)
        assert result["content"] == "18 C and sunny in Paris"
    assert upstream.requests[7].body["input"] == ["vector databases", "search"]
    assert (await usage(redis))["tokens_in:user:ada"] > 0
