"""Graceful shutdown: on SIGTERM open streams may finish within the grace period; the rest
end with `end` {cancelled} and are stored."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time

import httpx
import pytest

from gateway.storage import keys
from gateway.storage.embedded import free_port
from tests.support import ADMIN_TOKEN, bearer, parse_sse
from tests.test_cli import clean_env, stacks

pytestmark = pytest.mark.serial  # streams ended within seconds of SIGTERM

CONFIG = """
[[models]]
id = "short"
provider = "demo"
pace_ms = 100
answer_words = 8

[[models]]
id = "long"
provider = "demo"
pace_ms = 100
answer_words = 300
"""


async def test_sigterm_lets_short_streams_finish_and_ends_the_rest_cancelled(
    tmp_path, redis_url, redis
):
    cfg = tmp_path / "gw.toml"
    cfg.write_text(CONFIG)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--port", str(port), "--config", str(cfg)],
        env=clean_env(
            GATEWAY_REDIS_URL=redis_url,
            GATEWAY_ADMIN_TOKEN=ADMIN_TOKEN,
            GATEWAY_SHUTDOWN_GRACE="1.5",
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    h = bearer(ADMIN_TOKEN)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            for _ in range(200):
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            sessions = {}
            for model in ("short", "long"):
                conv = (
                    await http.post(
                        "/api/conversation/create?org_id=o", json={"title": model}, headers=h
                    )
                ).json()
                s = (
                    await http.post(
                        "/api/conversation/create_session?org_id=o",
                        json={"conversation_id": conv["id"], "model_id": model},
                        headers=h,
                    )
                ).json()
                sessions[model] = (conv["id"], s["id"])

            async def stream(model: str) -> bytes:
                async with http.stream(
                    "POST",
                    "/api/conversation/stream_chat?org_id=o",
                    json={"chat_session_id": sessions[model][1], "message": "go"},
                    headers=h,
                ) as r:
                    return await r.aread()

            tasks = {m: asyncio.create_task(stream(m)) for m in ("short", "long")}
            await asyncio.sleep(0.35)
            proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            short, long = parse_sse(await tasks["short"]), parse_sse(await tasks["long"])
            ended_after = time.monotonic() - signalled
        assert short.events[-1].json["finish_reason"] == "stop"  # finished within the grace period
        assert long.events[-1].json["finish_reason"] == "cancelled"
        assert long.names[0] == "start" and "content" in long.names
        assert 1.0 < ended_after < 5.0
        try:
            assert proc.wait(timeout=15) == 0
        except subprocess.TimeoutExpired:
            raise AssertionError("not exited within 15 s:\n" + stacks(proc)) from None
        stored = [
            json.loads(m) for m in await redis.lrange(keys.messages(sessions["long"][0]), 0, -1)
        ]
        assert stored[1]["status"] == "cancelled" and stored[1]["content"] == long.text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
