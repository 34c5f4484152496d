"""The benchmark harness reads what it measures correctly: the fake upstream's two wire
formats frame by frame, and a real gateway's stream. Counts only; no timing is asserted."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bench.harness import REPO, Env
from bench.loadgen import ANTHROPIC, GATEWAY, OPENAI, Connection, Recorder, call, http_request
from bench.scenarios import SessionPool, direct_target, gateway_target, sequential
from bench.upstream import Shape, Upstream, model_shape

HOST = "127.0.0.1"


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[Upstream, int]]:
    server = Upstream(tokens=5)
    port = await server.start(HOST, 0)
    yield server, port
    await server.stop()


def stream_request(
    port: int,
    path: str,
    model: str,
    headers: dict[str, str] | None = None,
    include_usage: bool = True,
) -> bytes:
    body: dict = {"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    return http_request("POST", path, host=f"{HOST}:{port}", body=body, headers=headers)


async def test_openai_stream_is_counted_frame_by_frame(upstream: tuple[Upstream, int]) -> None:
    server, port = upstream
    conn = await Connection.open(HOST, port)
    recs = []
    for _ in range(3):  # one keep-alive connection for all three
        rec = Recorder(OPENAI, keep_body=True)
        await conn.request(stream_request(port, "/v1/chat/completions", "bench/tokens=7"), rec)
        recs.append(rec)
    conn.close()
    for rec in recs:
        assert rec.ok, rec.error
        assert rec.status == 200
        assert rec.frames == 7
        assert len(rec.gaps) == 6
        assert rec.ttft is not None and rec.total >= rec.ttft
        events = [e for e in rec.body.decode().split("\n\n") if e]
        assert events[-1] == "data: [DONE]"
        usage = json.loads(events[-2].removeprefix("data: "))["usage"]
        assert usage["completion_tokens"] == 7
        text = "".join(
            (json.loads(e.removeprefix("data: "))["choices"] or [{}])[0]
            .get("delta", {})
            .get("content", "")
            for e in events[:-1]
        )
        assert len(text.split()) == 7
    assert server.streams_done == 3 and server.open_streams == 0


async def test_anthropic_stream_and_pacing_headers(upstream: tuple[Upstream, int]) -> None:
    _, port = upstream
    conn = await Connection.open(HOST, port)
    rec = Recorder(ANTHROPIC, keep_body=True)
    raw = stream_request(
        port,
        "/v1/messages",
        "bench",
        include_usage=False,
        headers={"X-Bench-Tokens": "4", "X-Bench-Pace-Ms": "2"},
    )
    await conn.request(raw, rec)
    conn.close()
    assert rec.ok, rec.error
    assert rec.frames == 4
    assert len(rec.gaps) == 3
    names = [
        line.removeprefix("event: ")
        for line in rec.body.decode().splitlines()
        if line.startswith("event: ")
    ]
    assert names[:2] == ["message_start", "content_block_start"]
    assert names[2:6] == ["content_block_delta"] * 4
    assert names[6:] == ["content_block_stop", "message_delta", "message_stop"]
    delta = next(
        json.loads(line[6:])
        for line in rec.body.decode().splitlines()
        if line.startswith("data: ") and '"message_delta"' in line
    )
    assert delta["usage"]["output_tokens"] == 4


async def test_stats_and_unknown_paths(upstream: tuple[Upstream, int]) -> None:
    _, port = upstream
    conn = await Connection.open(HOST, port)
    status, stats = await call(conn, "GET", "/bench/stats", host=f"{HOST}:{port}")
    assert status == 200 and stats["open_streams"] == 0
    status, _ = await call(conn, "GET", "/nope", host=f"{HOST}:{port}")
    assert status == 404
    conn.close()


def test_model_name_directives() -> None:
    default = Shape(50, 0, 0)
    assert model_shape("bench/tokens=200/pace=20", default) == Shape(200, 20, 0)
    assert model_shape("gpt-4o-mini", default) == default
    assert model_shape("bench/first=3600000/tokens=1", default) == Shape(1, 0, 3600000)


async def test_gateway_stream_through_the_harness() -> None:
    """A real `python -m gateway serve` with the bench's Redis, upstream and key: the load
    generator counts the gateway's content frames and reads its end frame."""
    src = Path(os.environ.get("BENCH_GATEWAY_SRC") or REPO)  # another tree's gateway, if set
    with Env(gateway_cpus=None, harness_cpus=None, src=src) as env:
        env.start_gateway(workers=1)
        pool = SessionPool(await env.sessions("openai-10", 2), turns=2)
        recs = await sequential(gateway_target(env, pool), 3)
        for rec in recs:
            assert rec.ok, rec.error or rec.body[:300]
            assert rec.started and rec.frames == 10
            end = rec.end_data()
            assert end["finish_reason"] == "stop"
            assert end["usage"]["output_tokens"] == 10
        direct = await sequential(direct_target(env, "anthropic-50"), 2)
        assert [r.frames for r in direct] == [50, 50]
        assert GATEWAY.content == b"event: content"
