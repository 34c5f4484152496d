"""Metrics, request ids and the JSON log lines, through real HTTP."""

from __future__ import annotations

import asyncio
import gc
import json
import logging

import pytest
from prometheus_client import generate_latest

from gateway.observability import JsonFormatter, Metrics
from tests.fake_upstream import Reply
from tests.support import bearer


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def logs():
    handler = Collect()
    loggers = [logging.getLogger(n) for n in ("gateway.access", "gateway.stream")]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
    yield handler
    for lg in loggers:
        lg.removeHandler(handler)
        lg.setLevel(logging.NOTSET)


async def test_request_id_is_echoed_or_generated(client):
    r = await client.http.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = await client.http.get("/healthz")
    assert len(r.headers["x-request-id"]) == 16
    r = await client.http.get("/healthz", headers={"X-Request-Id": "x" * 500})
    assert r.headers["x-request-id"] != "x" * 500


async def test_one_log_line_per_request_and_per_stream(client, alice, upstream, logs):
    conv = await client.create_conversation(alice)
    session = await client.create_session(alice, conv["id"], "gpt")
    upstream.script(Reply(chunks=["a", "b"], input_tokens=5, output_tokens=2))
    r, _ = await client.stream_chat(alice, session["id"], "hi")
    stream_lines = [x for x in logs.lines if x["msg"] == "stream"]
    assert len(stream_lines) == 1
    line = stream_lines[0]
    assert (line["user"], line["org"], line["model"], line["finish_reason"]) == (
        "alice",
        "org-1",
        "gpt",
        "stop",
    )
    assert (line["input_tokens"], line["output_tokens"]) == (5, 2)
    assert line["duration_ms"] > 0 and line["overhead_ms"] is not None
    assert line["request_id"] == r.headers["x-request-id"]
    for _ in range(100):  # the access line is written when the server has closed the response
        access = [x for x in logs.lines if x["msg"] == "request"]
        if len(access) == 3:
            break
        await asyncio.sleep(0.01)
    assert [a["route"] for a in access] == [
        "/api/conversation/create",
        "/api/conversation/create_session",
        "/api/conversation/stream_chat",
    ]
    assert access[-1]["status"] == 200 and access[-1]["user"] == "alice"


async def test_metrics_for_the_admin_only(gateway_factory, admin, alice, upstream):
    # its own gateway: the shared one may still be closing another test's stream, and the
    # in-flight gauge is read exactly here
    async with gateway_factory() as client:
        await _metrics_for_the_admin_only(client, admin, alice, upstream)


async def _metrics_for_the_admin_only(client, admin, alice, upstream):
    conv = await client.create_conversation(alice)
    session = await client.create_session(alice, conv["id"], "gpt")
    upstream.script(Reply(chunks=["x"], input_tokens=3, output_tokens=1), Reply(status=500))
    await client.chat(alice, session["id"], "one")
    r, _ = await client.stream_chat(alice, session["id"], "two")
    assert r.status_code == 502
    assert (await client.http.get("/metrics", headers=bearer(alice))).status_code == 403
    assert (await client.http.get("/metrics")).status_code == 401
    r = await client.http.get("/metrics", headers=bearer(admin))
    assert r.status_code == 200
    text = r.text
    assert (
        'gateway_requests_total{method="POST",route="/api/conversation/stream_chat",status="200"}'
        in text
    )
    assert 'gateway_tokens_total{direction="in",model="gpt"}' in text
    assert 'gateway_provider_errors_total{kind="server",model="gpt"}' in text
    assert 'gateway_overhead_seconds_count{model="gpt"}' in text
    assert "gateway_active_streams 0.0" in text


async def test_a_started_worker_has_frozen_its_start_up_heap(gateway_factory):
    """The collector no longer walks what start-up made (bench/levers.py: a full pass over
    it took ~150 ms of the event loop); what a request makes is still collected."""
    gc.unfreeze()
    async with gateway_factory() as client:
        assert gc.get_freeze_count() > 100_000  # the SDKs' type modules, compiled policies
        r = await client.http.get("/healthz")
        assert r.status_code == 200
        frozen = gc.get_freeze_count()
        garbage = [[]]
        garbage[0].append(garbage)  # a cycle made after start-up
        del garbage
        assert gc.collect() >= 1  # the cycle made after start-up was collected
        # and nothing was frozen by it (frozen objects may still die by refcount meanwhile)
        assert gc.get_freeze_count() <= frozen


def test_a_labelled_metric_keeps_its_children_and_counts_every_update():
    metrics = Metrics()
    first = metrics.requests.labels("/x", "POST", "200")
    for _ in range(3):
        metrics.requests.labels("/x", "POST", "200").inc()
    metrics.requests.labels("/x", "GET", "200").inc()

    assert metrics.requests.labels("/x", "POST", "200") is first  # one child per label values
    text = generate_latest(metrics.registry).decode()
    assert 'gateway_requests_total{method="POST",route="/x",status="200"} 3.0' in text
    assert 'gateway_requests_total{method="GET",route="/x",status="200"} 1.0' in text
