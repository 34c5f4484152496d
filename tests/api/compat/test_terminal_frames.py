"""Every OpenAI- or Anthropic-style stream closes with its format's terminal frames, whatever
ends it: a stop, the gateway's shutdown (SIGTERM), a fault. A stream that just stops after
its last content chunk looks complete to the SDKs (finish_reason None, no exception), so an
answer cut short must say so: an error chunk (OpenAI) or `event: error` (Anthropic)."""

# ruff: noqa: F811  (pytest fixtures imported from compat support are parameters here)
from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys

import anthropic
import httpx
import openai
import pytest

from gateway.api import sse
from gateway.api.compat import anthropic as anthropic_compat
from gateway.api.compat import openai as openai_compat
from gateway.storage import keys
from gateway.storage.embedded import free_port
from gateway.turn import Delta, Start
from tests.api.compat.support import anthropic_client, openai_client, stored_messages
from tests.fake_upstream import Reply
from tests.support import ADMIN_TOKEN, bearer
from tests.test_cli import clean_env
from tests.turn.test_stream_faults import wait_for

LONG_DEMO = """
[[models]]
id = "long"
provider = "demo"
pace_ms = 50
answer_words = 400
"""


def data_lines(raw: bytes) -> list[str]:
    return [line[6:] for line in raw.decode().split("\n") if line.startswith("data: ")]


async def test_a_sigterm_cut_stream_ends_with_its_formats_error_frame_not_silence(
    tmp_path, redis_url, redis
):
    cfg = tmp_path / "gw.toml"
    cfg.write_text(LONG_DEMO)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--port", str(port), "--config", str(cfg)],
        env=clean_env(
            GATEWAY_REDIS_URL=redis_url,
            GATEWAY_ADMIN_TOKEN=ADMIN_TOKEN,
            GATEWAY_SHUTDOWN_GRACE="0.5",
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    question = [{"role": "user", "content": "talk for a long time"}]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            for _ in range(200):
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)

            async def stream(path: str, body: dict) -> bytes:
                async with http.stream("POST", path, json=body, headers=bearer(ADMIN_TOKEN)) as r:
                    assert r.status_code == 200
                    return await r.aread()

            openai_body = {"model": "long", "messages": question, "stream": True}
            anthropic_body = {**openai_body, "max_tokens": 1000}
            tasks = [
                asyncio.create_task(stream("/v1/chat/completions", openai_body)),
                asyncio.create_task(stream("/v1/messages", anthropic_body)),
            ]
            await asyncio.sleep(0.6)
            proc.send_signal(signal.SIGTERM)
            openai_raw, anthropic_raw = await asyncio.gather(*tasks)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    last = json.loads(data_lines(openai_raw)[-1])
    assert last["error"]["code"] == "cancelled", openai_raw[-300:]
    assert b'"content":"' in openai_raw  # it was cut mid-answer
    frames = [f for f in anthropic_raw.decode().split("\n\n") if f.strip()]
    assert frames[-1].startswith("event: error\n"), anthropic_raw[-300:]
    assert json.loads(frames[-1].split("data: ", 1)[1])["type"] == "error"
    assert "text_delta" in anthropic_raw.decode()


async def stop_soon(client, redis, token: str, cid: str) -> None:
    """Stop the conversation's answer a moment after it started."""
    await wait_for(lambda: redis.exists(keys.turn_lock(cid)))
    await asyncio.sleep(0.2)
    r = await client.http.post(f"/conversation/{cid}/stop", headers=bearer(token))
    assert r.status_code == 202


async def stored_pair(redis, cid: str):
    msgs = await stored_messages(redis, cid)
    return msgs if len(msgs) == 2 else None


@pytest.mark.parametrize("sdk_kind", ["openai", "anthropic"])
async def test_a_stopped_stream_raises_in_the_sdk_instead_of_looking_complete(
    gateway_server, client, alice, upstream, redis, sdk_kind
):
    conv = await client.create_conversation(alice)
    upstream.script(Reply(chunks=[f"w{chr(97 + i % 26)} " for i in range(300)], delay=0.02))
    stopper = asyncio.create_task(stop_soon(client, redis, alice, conv["id"]))
    got: list[str] = []
    headers = {"X-Conversation-Id": conv["id"]}
    messages = [{"role": "user", "content": "go on"}]
    if sdk_kind == "openai":
        with pytest.raises(openai.APIError) as err:
            stream = await openai_client(gateway_server, alice).chat.completions.create(
                model="gpt", messages=messages, stream=True, extra_headers=headers
            )
            async for c in stream:
                got.append(c.choices[0].delta.content or "")
        assert err.value.code == "cancelled"
    else:
        with pytest.raises(anthropic.APIError) as err:
            async with anthropic_client(gateway_server, alice).messages.stream(
                model="gpt", max_tokens=1000, messages=messages, extra_headers=headers
            ) as stream:
                async for text in stream.text_stream:
                    got.append(text)
        assert "stopped" in str(err.value)
    await stopper
    _, assistant = await wait_for(lambda: stored_pair(redis, conv["id"]))
    assert assistant["status"] == "cancelled"
    assert got and assistant["content"] == "".join(got)


async def _breaks_after_text():
    yield Start("m-1", None, None, "gpt", None)
    yield Delta("half an ans")
    raise RuntimeError("a bug of ours after the turn's own end")


async def test_a_bug_past_the_turn_still_ends_every_format_with_its_terminal_frames():
    native = b"".join([f async for f in sse.encode(_breaks_after_text())]).decode()
    assert native.count("event: error") == 1 and native.endswith("\n\n")
    end = json.loads(native.split("event: end\ndata: ")[1])
    assert end["finish_reason"] == "error" and end["stored"] is False  # told honestly
    chunks = [f async for f in openai_compat.encode(_breaks_after_text(), include_usage=True)]
    assert json.loads(chunks[-1][6:])["error"]["code"] == "internal_error"
    frames = [f async for f in anthropic_compat.encode(_breaks_after_text(), input_tokens=3)]
    assert frames[-1].startswith(b"event: error\n")
